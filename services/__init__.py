"""Trellis business logic: one module per capability. No Flask in here."""
