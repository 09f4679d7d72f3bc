"""PyTriton 0.7 serving bench/peers/losses.py (run in the pytriton venv: bench/peers/__init__.py):
Triton's C++ HTTP and gRPC fronts decode the request; Triton's Python backend stub hands the
arrays to this process (shared memory), which calls the loss.

    python -m bench.peers.pytriton_model HTTP_PORT GRPC_PORT
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

import numpy as np
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from bench.peers.losses import LOSSES

INPUTS = {"cross_entropy": [Tensor(name="input", dtype=np.float32, shape=(-1, -1)),
                            Tensor(name="target", dtype=np.int64, shape=(-1,))],
          "mse": [Tensor(name="input", dtype=np.float32, shape=(-1,)),
                  Tensor(name="target", dtype=np.float32, shape=(-1,))]}


Loss = Callable[[np.ndarray, np.ndarray], np.ndarray]


def infer_function(loss: Loss) -> Callable[[list], list[dict[str, np.ndarray]]]:
    """PyTriton's callable: a list of requests (dicts of arrays) to a list of answers."""
    def infer(requests: list) -> list[dict[str, np.ndarray]]:
        return [{"loss": np.atleast_1d(loss(r["input"], r["target"]))} for r in requests]
    return infer


def main(http_port: int, grpc_port: int) -> None:
    # SIGTERM as Ctrl-C: leaving the with block stops tritonserver and its stubs
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    config = TritonConfig(http_address="127.0.0.1", http_port=http_port,
                          grpc_address="127.0.0.1", grpc_port=grpc_port, allow_metrics=False)
    with Triton(config=config) as triton:
        for name, loss in LOSSES.items():
            triton.bind(model_name=name, infer_func=infer_function(loss), inputs=INPUTS[name],
                        outputs=[Tensor(name="loss", dtype=np.float32, shape=(1,))],
                        config=ModelConfig(batching=False))
        triton.serve()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
