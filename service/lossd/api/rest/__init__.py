"""REST frontend (FastAPI): native, V2 and evaluation routes over one guard; see :mod:`.app`."""

from .app import create_app

__all__ = ["create_app"]
