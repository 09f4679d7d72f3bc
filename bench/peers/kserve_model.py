"""KServe 0.21's ModelServer serving bench/peers/losses.py over V2 REST and gRPC (run in the
kserve venv: bench/peers/__init__.py).

    python -m bench.peers.kserve_model --http_port P --grpc_port P [ModelServer flags...]

KServe reads its flags from the command line when it is imported; the bench turns off the log
line per request (``--enable_latency_logging false``) and raises the gRPC message limits.
"""

from __future__ import annotations

import logging

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

from bench.peers.losses import LOSSES


class Loss(Model):
    """The loss named by the model's name."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._loss = LOSSES[name]
        self.ready = True

    async def predict(self, payload: InferRequest, headers: dict | None = None,
                      response_headers: dict | None = None) -> InferResponse:
        arrays = {i.name: i.as_numpy() for i in payload.inputs}
        loss = np.atleast_1d(self._loss(arrays["input"], arrays["target"]))
        output = InferOutput(name="loss", shape=list(loss.shape), datatype="FP32")
        output.set_data_from_numpy(loss, binary_data=False)
        return InferResponse(response_id=payload.id or "", model_name=self.name,
                             infer_outputs=[output])


def main() -> None:
    server = ModelServer()
    for name in ("uvicorn.access", "kserve.trace"):  # no log line per request
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([Loss(name) for name in LOSSES])


if __name__ == "__main__":
    main()
