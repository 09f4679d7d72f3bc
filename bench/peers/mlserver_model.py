"""MLServer 1.7.1 serving bench/peers/losses.py over V2 REST and gRPC (run in the mlserver venv:
bench/peers/__init__.py).

    python -m bench.peers.mlserver_model HTTP_PORT GRPC_PORT

The models run inline on the server's event loop (``parallel_workers=0``: for a loss of a few
microseconds a worker pool only adds a round trip between processes), with debug logging and the
metrics server off.
"""

from __future__ import annotations

import asyncio
import sys

import numpy as np
from mlserver import MLModel, MLServer
from mlserver.codecs import NumpyCodec
from mlserver.settings import ModelSettings, Settings
from mlserver.types import InferenceRequest, InferenceResponse

from bench.peers.losses import LOSSES


class Loss(MLModel):
    """The loss named by the model's name."""

    async def load(self) -> bool:
        self._loss = LOSSES[self.name]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        arrays = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        loss = np.atleast_1d(self._loss(arrays["input"], arrays["target"]))
        return InferenceResponse(model_name=self.name,
                                 outputs=[NumpyCodec.encode_output("loss", loss)])


async def serve(http_port: int, grpc_port: int) -> None:
    """As ``mlserver start`` does: the server is made inside the running loop, where it
    installs its SIGTERM handler."""
    settings = Settings(host="127.0.0.1", http_port=http_port, grpc_port=grpc_port,
                        parallel_workers=0, debug=False, metrics_endpoint=None,
                        grpc_max_message_length=2**30, load_models_at_startup=False)
    server = MLServer(settings)
    await server.start([ModelSettings(name=name, implementation=Loss) for name in LOSSES])


def main(http_port: int, grpc_port: int) -> None:
    asyncio.run(serve(http_port, grpc_port))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
