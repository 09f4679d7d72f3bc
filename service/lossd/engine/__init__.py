"""The batching engine between the frontends and the compute core."""

from .batcher import Engine

__all__ = ["Engine"]
