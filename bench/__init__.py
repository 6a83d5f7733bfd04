"""Benchmarks run by hand against a local PostgreSQL: `.venv/bin/python -m bench.<name>`."""
