"""``lossd serve`` / ``python -m lossd serve``: REST and gRPC in one process, one event loop.

SIGTERM (or SIGINT) drains: readiness and gRPC health go false, new work is refused with
UNAVAILABLE / 503, queued and running work finishes, then the servers stop and the process exits
0 (1 if the drain grace ran out first). ``--workers N`` starts N such processes sharing both
ports with SO_REUSEPORT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.sharedctypes import Synchronized
from types import FrameType
from typing import Any

import uvicorn

from ._malloc import tune_malloc
from .api import tls
from .api.rest import create_app
from .api.rpc import create_grpc_server
from .engine import Engine
from .metrics import Metrics
from .runs import RunManager
from .settings import Settings

log = logging.getLogger("lossd")


class JsonFormatter(logging.Formatter):
    """One JSON object per log line (``LOSSD_LOG_JSON``): ts, level, logger, msg[, exc]."""

    def format(self, record: logging.LogRecord) -> str:
        """``{"ts": ..., "level": ..., "logger": ..., "msg": ...}``, plus ``exc`` with a
        traceback."""
        entry: dict[str, Any] = {"ts": round(record.created, 6), "level": record.levelname,
                                 "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(settings: Settings) -> None:
    """Route every logger to stderr at ``settings.log_level``, as JSON if ``log_json``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_json
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: lossd drains first, then stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A listening, non-blocking TCP socket on ``host:port`` (IPv6 if ``host`` has a colon);
    ``reuse_port`` lets several workers share the port (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or ``stop`` is set), then drain. Returns the exit code."""
    engine = Engine(settings, Metrics())
    await engine.start()
    runs = RunManager(settings, engine)
    app = create_app(settings, engine, runs)
    sock = bind(settings.host, settings.http_port, settings.workers > 1)
    http = _HttpServer(uvicorn.Config(app, lifespan="off", log_config=None, access_log=False,
                                      http="httptools", timeout_keep_alive=30,
                                      limit_concurrency=None, server_header=False,
                                      **tls.uvicorn_options(settings),
                                      headers=[("X-Lossd-Pid", str(os.getpid()))]))
    grpc_server = create_grpc_server(settings, engine, runs)
    await grpc_server.start()
    http_task = asyncio.create_task(http.serve(sockets=[sock]))

    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    while not http.started and not http_task.done():
        await asyncio.sleep(0.01)
    log.info("lossd ready: REST on %s:%d, gRPC on %s:%d", settings.host,
             sock.getsockname()[1], settings.host, grpc_server.port)
    await asyncio.wait({asyncio.create_task(stop.wait()), http_task},
                       return_when=asyncio.FIRST_COMPLETED)

    log.info("draining (grace %.1f s)", settings.drain_seconds)
    started = time.perf_counter()
    await grpc_server.set_serving(False)
    finished = await engine.drain(settings.drain_seconds)
    await grpc_server.stop(grace=1.0)
    await runs.close()
    http.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await http_task
    log.info("stopped after %.2f s drain (%s)", time.perf_counter() - started,
             "all work finished" if finished else "grace ran out")
    return 0 if finished else 1


def _run(settings: Settings) -> int:
    configure_logging(settings)
    tune_malloc()
    try:
        import uvloop
        return uvloop.run(serve(settings))
    except ImportError:
        return asyncio.run(serve(settings))


def _worker(settings: Settings, code: Synchronized[int]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards SIGTERM
    code.value = _run(settings)


def run_workers(settings: Settings) -> int:
    """N processes sharing the ports (SO_REUSEPORT); SIGTERM is forwarded to each.

    Their metrics share a fresh PROMETHEUS_MULTIPROC_DIR (see lossd.metrics), set before the
    workers start; it is removed when they have all stopped.
    """
    metrics_dir = tempfile.mkdtemp(prefix="lossd-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    context = multiprocessing.get_context("spawn")
    codes = [context.Value("i", 1) for _ in range(settings.workers)]
    children = [context.Process(target=_worker, args=(settings, code), name=f"lossd-{i}")
                for i, code in enumerate(codes)]
    for child in children:
        child.start()

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.is_alive() and child.pid:
                with contextlib.suppress(ProcessLookupError):
                    import os
                    os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    return max((code.value for code in codes), default=0)


def parse_args(argv: list[str] | None = None) -> Settings:
    """Settings from ``lossd serve [--flag ...]``: one flag per Settings field, over the
    ``LOSSD_*`` environment."""
    parser = argparse.ArgumentParser(prog="lossd", description="Loss computation service")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run REST and gRPC servers")
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            serve_cmd.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                   default=None, help=field.description)
        else:
            kind = {"int": int, "float": float}.get(str(field.annotation), str)
            serve_cmd.add_argument(flag, dest=name, type=kind, default=None,
                                   help=f"{field.description} (env LOSSD_{name.upper()}, "
                                        f"default {field.default})")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    return Settings(**overrides)


def main(argv: list[str] | None = None) -> None:
    """The ``lossd`` command: serve in this process, or in ``--workers N`` processes; exits
    with the servers' exit code."""
    settings = parse_args(argv)
    sys.exit(run_workers(settings) if settings.workers > 1 else _run(settings))


if __name__ == "__main__":
    # `python -m lossd`: run the copy imported by name, so that spawned workers can unpickle
    # their target (multiprocessing never re-imports a `*.__main__` module in the child)
    from lossd.__main__ import main as importable_main
    importable_main()
