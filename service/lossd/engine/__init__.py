"""The batching engine between the frontends and the compute core."""

from .batcher import Engine, InternalError

__all__ = ["Engine", "InternalError"]
