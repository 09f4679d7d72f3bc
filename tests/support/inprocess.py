"""An in-process lossd (both servers in a background thread) with a deliberately broken loss
registered, to prove that a bug answers INTERNAL instead of crashing."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import threading
from collections.abc import Iterator

import httpx
import numpy as np

from lossd.losses import REGISTRY, LossSpec, TensorSpec, Terms
from lossd.losses._spec import reduction_option
from lossd.serve import serve
from lossd.settings import Settings

from .server import free_port


def _broken(input: np.ndarray) -> Terms:
    """Always fails (a stand-in for a bug)."""
    raise ZeroDivisionError("deliberate")


@contextlib.contextmanager
def broken_loss_server() -> Iterator[tuple[str, str, io.StringIO]]:
    spec = LossSpec("broken_for_test", _broken, (TensorSpec("input", "input", "(*)"),),
                    (reduction_option(),), torch="none", family="test")
    REGISTRY[spec.name] = spec
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    logging.getLogger("lossd").addHandler(handler)
    settings = Settings(host="127.0.0.1", http_port=free_port(), grpc_port=free_port())
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(settings, stop),),
                              daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.http_port}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            threading.Event().wait(0.05)
        yield url, f"127.0.0.1:{settings.grpc_port}", logs
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
        del REGISTRY[spec.name]
        logging.getLogger("lossd").removeHandler(handler)
