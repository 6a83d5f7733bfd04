"""Request and response schemas: they validate input, shape output and feed /openapi.json."""
