"""``lossd serve``: REST and gRPC in one process, one event loop (the ``lossd[server]`` extra).

SIGTERM (or SIGINT) drains: readiness and gRPC health go false, new work is refused with
UNAVAILABLE / 503, queued and running work finishes; the servers stay open, refusing, until
``shutdown_delay_s`` after the signal (so that balancers and health-checking gRPC clients have
moved away), then stop, and the process exits 0 (1 if the drain grace ran out first).
``--workers N`` starts N such processes sharing both ports with SO_REUSEPORT.

Start-up mistakes are one line on stderr and a non-zero exit, before anything starts: an unknown
``LOSSD_*`` variable (with the closest setting's name), a value a setting refuses (each field's
flag and variable named), an unknown log level, a file setting that cannot be read, a port in
use (with the setting that changes it). :mod:`lossd.cli` parses the flags that
:func:`add_arguments` declares (one per Settings field) and calls :func:`main`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import errno
import gc
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from multiprocessing.sharedctypes import Synchronized
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ._malloc import tune_malloc
from .api import tls
from .api.rest import create_app
from .api.rest.connection import bounded_protocol
from .api.rpc import create_grpc_server
from .engine import Engine
from .metrics import Metrics
from .runs import RunManager
from .settings import Settings

log = logging.getLogger("lossd")

ENV_PREFIX = str(Settings.model_config.get("env_prefix", "LOSSD_"))
# LOSSD_* names that lossd's own tools read and the server does not: the CLI's API key, and the
# test suite's knobs, which the servers it starts inherit (``make fuzz``'s LOSSD_FUZZ_*, and
# LOSSD_CI, which .ci/run sets so that a missing test tool fails)
NOT_SETTINGS = ("LOSSD_API_KEY", "LOSSD_FUZZ_", "LOSSD_CI")
# Kubernetes' service links: a Service named lossd (deploy/k8s) gives the pods of its namespace
# LOSSD_SERVICE_HOST, LOSSD_SERVICE_PORT[_HTTP], LOSSD_PORT=tcp://..., LOSSD_PORT_8000_TCP[_ADDR]
# and so on (lossd-foo: LOSSD_FOO_...); a bare ..._PORT only with its tcp:// value
SERVICE_LINK = re.compile(r"LOSSD(_\w+)?_(SERVICE_HOST|SERVICE_PORT(_\w+)?|"
                          r"PORT_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)", re.IGNORECASE)
SERVICE_LINK_URL = re.compile(r"LOSSD(_\w+)?_PORT", re.IGNORECASE)


class StartupError(Exception):
    """A mistake that keeps lossd from starting: one line for each in ``lines``, no traceback.

    ``exit_code`` is 2 for a configuration mistake (flags, environment, files) and 1 for what
    the machine refused (a port in use).
    """

    def __init__(self, *lines: str, exit_code: int = 2) -> None:
        super().__init__("; ".join(lines))
        self.lines, self.exit_code = lines, exit_code


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


MAX_WARNING_SITES = 1024  # distinct warnings logged in full; past that they are only counted


@contextlib.contextmanager
def warnings_logged(metrics: Metrics) -> Iterator[None]:
    """Route Python warnings through logging while serving, never raw to stderr.

    NumPy reports overflow, invalid values and division by zero as ``RuntimeWarning`` (a cast
    of 1e300 to float16, an exp that overflows); Python's default hook would print them as
    two raw lines, breaking a JSON log. Here each one is counted in
    ``lossd_warnings_total{category}``, and the first of each kind (category, message,
    source line) is logged once by the ``py.warnings`` logger, a log line like any other.
    """
    logger = logging.getLogger("py.warnings")
    seen: set[tuple[str, str, str, int]] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:  # noqa: ANN401, ARG001
        metrics.warned(category.__name__)
        site = (category.__name__, str(message), filename, lineno)
        if site not in seen and len(seen) < MAX_WARNING_SITES:
            seen.add(site)
            logger.warning("%s: %s (%s:%d; each further one is counted in "
                           "lossd_warnings_total)", *site)

    with warnings.catch_warnings():
        warnings.simplefilter("always")  # every one reaches show() to be counted
        warnings.showwarning = show
        yield


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
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _setting(field: str) -> str:
    """How a user sets ``field``: ``--http-port / LOSSD_HTTP_PORT``."""
    return f"--{field.replace('_', '-')} / {ENV_PREFIX}{field.upper()}"


def _cannot_listen(settings: Settings, field: str, reason: str) -> str:
    """The line for a port that cannot be had, naming the setting that changes it."""
    port = getattr(settings, field)
    server = "REST" if field == "http_port" else "gRPC"
    return (f"{server} cannot listen on {settings.host}:{port}: {reason}; choose another "
            f"port with {_setting(field)} (0 picks a free one)")


def listen(settings: Settings, field: str) -> socket.socket:
    """:func:`bind` the port of setting ``field`` (``http_port`` or ``grpc_port``) on
    ``settings.host``; a port in use (or a host that is not this machine's) is a
    :class:`StartupError` that says which setting to change."""
    port: int = getattr(settings, field)
    try:
        return bind(settings.host, port, settings.workers > 1)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            reason = "the port is in use"
        else:
            reason = f"{error.strerror or error} (check {_setting('host')})"
        raise StartupError(_cannot_listen(settings, field, reason), exit_code=1) from None


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or ``stop`` is set), then drain. Returns the exit code.

    Both ports are bound before anything starts: a port that cannot be had raises
    :class:`StartupError`. Python warnings go to the log meanwhile (:func:`warnings_logged`).
    """
    metrics = Metrics()
    with warnings_logged(metrics):
        return await _serve(settings, metrics, stop)


async def _serve(settings: Settings, metrics: Metrics, stop: asyncio.Event | None) -> int:
    engine = Engine(settings, metrics)
    runs = RunManager(settings, engine)
    sock = listen(settings, "http_port")
    try:
        grpc_server = create_grpc_server(settings, engine, runs)
    except RuntimeError as error:  # grpc's "Failed to bind to address ..."
        sock.close()
        raise StartupError(_cannot_listen(settings, "grpc_port", str(error)),
                           exit_code=1) from None
    await engine.start()
    app = create_app(settings, engine, runs)
    http = _HttpServer(uvicorn.Config(app, lifespan="off", log_config=None, access_log=False,
                                      http=bounded_protocol(settings),
                                      timeout_keep_alive=settings.http_keep_alive_s,
                                      limit_concurrency=None, server_header=False,
                                      **tls.uvicorn_options(settings),
                                      headers=[("X-Lossd-Pid", str(os.getpid()))]))
    await grpc_server.start()
    http_task = asyncio.create_task(http.serve(sockets=[sock]))

    loop = asyncio.get_running_loop()
    handled: tuple[signal.Signals, ...] = ()
    if stop is None:
        stop = asyncio.Event()
        handled = (signal.SIGTERM, signal.SIGINT)
        for sig in handled:
            loop.add_signal_handler(sig, stop.set)
    while not http.started and not http_task.done():
        await asyncio.sleep(0.01)
    # what start-up made (modules, the registry, both servers) lives as long as the process:
    # frozen out of the collector, a full collection walks only what requests made. Batching
    # keeps a turn's requests alive together, so more of them reach the oldest generation, and
    # full collections that also walked start-up's objects paused the loop for tens of ms
    gc.collect()
    gc.freeze()
    log.info("lossd ready: REST on %s:%d, gRPC on %s:%d", settings.host,
             sock.getsockname()[1], settings.host, grpc_server.port)
    await asyncio.wait({asyncio.create_task(stop.wait()), http_task},
                       return_when=asyncio.FIRST_COMPLETED)

    log.info("draining (grace %.1f s, servers open for %.1f s at least)",
             settings.drain_seconds, settings.shutdown_delay_s)
    started = time.perf_counter()
    await grpc_server.set_serving(False)
    finished = await engine.drain(settings.drain_seconds)
    # Stopping grpc's server cancels the calls it has received but not handed to lossd yet
    # (the client sees CANCELLED, not safe to retry): what still arrives in the moment before
    # its GOAWAY reaches the client. So the servers stay open, answering UNAVAILABLE, until
    # balancers (readiness 503) and health-checking clients (NOT_SERVING) have moved away.
    await asyncio.sleep(max(0.0, settings.shutdown_delay_s - (time.perf_counter() - started)))
    await grpc_server.stop(grace=1.0)
    await runs.close()
    http.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await http_task
    log.info("stopped %.2f s after the signal (drain: %s)", time.perf_counter() - started,
             "all work finished" if finished else "grace ran out")
    for sig in handled:  # closing the loop would restore the default action: a second SIGTERM
        loop.remove_signal_handler(sig)  # while the process exits would end it with -15
        signal.signal(sig, signal.SIG_IGN)
    return 0 if finished else 1


def _run(settings: Settings) -> int:
    configure_logging(settings)
    tune_malloc()
    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(serve(settings))
        return uvloop.run(serve(settings))
    except StartupError as error:
        report(error)
        return error.exit_code


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
                    os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    return max((code.value for code in codes), default=0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per Settings field (``--http-port``, ``--log-json/--no-log-json``, ...), each
    defaulting to None (not given: the ``LOSSD_*`` environment, then the field's default).

    Values stay strings: Settings (pydantic) converts and checks them, as it does the
    environment's, so that a flag and its variable are refused in the same words.
    """
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = f"env {ENV_PREFIX}{name.upper()}"
        if field.annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                default=None, help=f"{field.description} ({env}, default "
                                                   f"{field.default})")
        else:
            parser.add_argument(flag, dest=name, default=None, metavar=name.upper(),
                                help=f"{field.description} ({env}, default {field.default!r})")


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse ``LOSSD_*`` variables that name no setting (``LOSSD_HTTP_PROT``: did you mean
    ``LOSSD_HTTP_PORT``?), which pydantic-settings would ignore. Names are matched as
    pydantic-settings matches them: prefix plus field name, in any case. Not refused: the
    names lossd's tools read (:data:`NOT_SETTINGS`) and Kubernetes' service links.

    Example:
        >>> check_environment({"LOSSD_HTTP_PORT": "8000", "LOSSD_SERVICE_HOST": "10.0.0.7",
        ...                    "LOSSD_PORT": "tcp://10.0.0.7:8000", "PATH": "/bin"})
        >>> check_environment({"LOSSD_HTTP_PROT": "8001"})
        Traceback (most recent call last):
        ...
        lossd.serve.StartupError: unknown setting LOSSD_HTTP_PROT: did you mean LOSSD_HTTP_PORT?
    """
    prefix = ENV_PREFIX.upper()
    fields = [name.upper() for name in Settings.model_fields]
    lines = []
    for name in sorted(environ):
        upper = name.upper()
        if (not upper.startswith(prefix) or upper.removeprefix(prefix) in fields
                or upper.startswith(NOT_SETTINGS) or SERVICE_LINK.fullmatch(name)
                or (SERVICE_LINK_URL.fullmatch(name)
                    and environ[name].startswith(("tcp://", "udp://", "sctp://")))):
            continue
        close = difflib.get_close_matches(upper.removeprefix(prefix), fields, n=1, cutoff=0.75)
        hint = (f"did you mean {prefix}{close[0]}?" if close
                else "lossd serve --help lists the settings")
        lines.append(f"unknown setting {name}: {hint}")
    if lines:
        raise StartupError(*lines)


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Settings from the flags that :func:`add_arguments` declared, over ``environ`` (the
    ``LOSSD_*`` variables, checked by :func:`check_environment` first); a value a field
    refuses is a :class:`StartupError` with one line per field."""
    check_environment(environ)
    given = {name: value for name, value in vars(args).items()
             if name in Settings.model_fields and value is not None}
    try:
        settings = Settings(**given)
    except ValidationError as error:
        raise StartupError(*(_refused(e) for e in error.errors())) from None
    levels = logging.getLevelNamesMapping()
    if settings.log_level.upper() not in levels:
        allowed = ", ".join(level.lower() for level in ("DEBUG", "INFO", "WARNING", "ERROR"))
        raise StartupError(f"log_level ({_setting('log_level')}): expected one of {allowed}; "
                           f"got {settings.log_level!r}")
    return settings


def _refused(error: ErrorDetails) -> str:
    """One line for one field's ValidationError entry: the field, its flag and variable, what
    it expects and what it got."""
    field = ".".join(str(part) for part in error["loc"])
    where = f"{field} ({_setting(field)})" if field in Settings.model_fields else field
    return f"{where}: {error['msg']}; got {error['input']!r}"


def check_files(settings: Settings) -> None:
    """Every file a setting names can be read (API keys, TLS), or a :class:`StartupError`."""
    lines = []
    for field in ("api_keys_file", "tls_cert_file", "tls_key_file", "tls_client_ca_file"):
        path = getattr(settings, field)
        if path and not os.access(path, os.R_OK):
            reason = "no such file" if not os.path.exists(path) else "not readable"
            lines.append(f"{field} ({_setting(field)}): {reason}: {path}")
    if lines:
        raise StartupError(*lines)


def check_ports(settings: Settings) -> None:
    """Both ports can be bound now (:func:`listen`), so that a busy port is refused before
    any worker starts."""
    for field in ("http_port", "grpc_port"):
        if getattr(settings, field):
            listen(settings, field).close()


def report(error: StartupError) -> None:
    """Each line of ``error`` on stderr, as ``lossd: <line>``."""
    for line in error.lines:
        print(f"lossd: {line}", file=sys.stderr)


def main(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """``lossd serve``: check the settings (from ``args`` over ``environ``, by default the
    process's environment), files and ports, then serve in this process or in ``--workers N``
    processes. Returns the exit code: the servers', or 2 (1 for a port) for a start-up
    mistake, reported as one line each."""
    try:
        settings = settings_from(args, os.environ if environ is None else environ)
        check_files(settings)
        check_ports(settings)
    except StartupError as error:
        report(error)
        return error.exit_code
    return run_workers(settings) if settings.workers > 1 else _run(settings)
