"""Thin adapters to AWS, each behind a small Protocol so tests can swap in a fake."""
