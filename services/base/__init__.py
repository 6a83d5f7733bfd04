"""The shared base every domain may use: database, settings, errors, pagination,
idempotency, read replicas. It imports no domain and not the composition root."""
