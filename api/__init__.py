"""The HTTP layer: parse, authorise, call a service, serialise. Nothing else."""

from api.app import create_app

__all__ = ["create_app"]
