"""lossd: deep-learning losses (and their gradients) as a service, exact to PyTorch.

The public face is the client (``pip install lossd``: numpy, httpx, grpcio, protobuf); the
server is ``lossd[server]`` and ``lossd serve``. Importing this package never imports a server
dependency.

    >>> import lossd
    >>> with lossd.Client("http://localhost:8000") as client:  # doctest: +SKIP
    ...     out = client.compute("mse", input=x, target=y, grad=True)

``Client``/``AsyncClient`` speak REST, ``GrpcClient``/``AsyncGrpcClient`` gRPC; every refusal
raises :class:`LossdError`. The pure-NumPy core is :mod:`lossd.losses`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .client import AsyncClient, AsyncGrpcClient, Client, GrpcClient, LossdError

try:
    __version__ = version("lossd")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["AsyncClient", "AsyncGrpcClient", "Client", "GrpcClient", "LossdError", "__version__"]
