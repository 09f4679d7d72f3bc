"""Python clients for lossd: NumPy in, NumPy out, over REST or gRPC, sync or async.

    >>> from lossd import Client
    >>> with Client("http://localhost:8000") as client:  # doctest: +SKIP
    ...     out = client.compute("cross_entropy", input=logits, target=labels,
    ...                          label_smoothing=0.1, grad=True)
    >>> out.loss, out.grads["input"]  # doctest: +SKIP

``Client`` (REST), ``GrpcClient`` and their asyncio twins ``AsyncClient`` and
``AsyncGrpcClient`` have the same methods and give the same results for the same call:

    compute(loss, *, grad=False, timeout=None, **tensors_and_options) -> LossResult
    losses() -> list[LossInfo]
    evaluate(loss, batches, *, grad=False, timeout=None, **options) -> Evaluation
    create_run(loss, *, expected_batches=None, run_id=None, **options) -> run (dict)
    add_batch(run_id, batch_id, *, worker="", generation="", **tensors)
                                                      -> {"counted", "batches"}
    run(run_id), finish_run(run_id) -> run (dict);  delete_run(run_id)
    list_runs(*, state=None, limit=None, page_token=None) -> {"runs", "next_page_token"}

Tensors may be NumPy arrays, Python or NumPy scalars, lists, tuples, or anything with
``__array__``/``__dlpack__`` (torch tensors, JAX arrays); which arguments are options is what
the loss's registry says. Results have torch's dtype on both transports. Connections:
``api_key=``, TLS (``https://`` or ``tls=True``; ``ca=``, ``cert=`` + ``key=`` for mutual TLS),
``timeout=`` (seconds, per call; the server drops work whose deadline passed) and ``retries=``
(UNAVAILABLE and refused connections, with backoff, within the deadline).

Every failure raises a :class:`lossd.LossdError` subclass from :mod:`lossd.errors`
(``InvalidArgument``, ``NotFound``, ``Unavailable``, ``DeadlineExceeded``, ...) with ``code``,
``message``, ``field``, and the HTTP ``status`` over REST. Needs only what ``pip install lossd``
brings (numpy, httpx, grpcio, protobuf).
"""

from ..errors import LossdError
from .arguments import Evaluation, LossInfo, LossResult, TensorInfo
from .rest import AsyncClient, Client
from .rpc import AsyncGrpcClient, GrpcClient, grpc_array, grpc_request, grpc_tensor

__all__ = ["AsyncClient", "AsyncGrpcClient", "Client", "Evaluation", "GrpcClient", "LossInfo",
           "LossResult", "LossdError", "TensorInfo", "grpc_array", "grpc_request",
           "grpc_tensor"]
