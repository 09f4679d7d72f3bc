"""One frozen Settings object, from ``LOSSD_*`` environment variables; CLI flags override."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Every knob of a lossd process. Environment: ``LOSSD_<FIELD>`` (e.g. ``LOSSD_HTTP_PORT``)."""

    model_config = SettingsConfigDict(env_prefix="LOSSD_", frozen=True, extra="forbid")

    host: str = Field("0.0.0.0", description="address both servers bind")
    http_port: int = Field(8000, ge=0, le=65535, description="REST port (0: pick a free one)")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port (0: pick a free one)")
    workers: int = Field(1, ge=1, description="processes sharing the ports (SO_REUSEPORT)")

    max_body_bytes: int = Field(64 * MIB, ge=1024, description="largest request body / message")
    max_tensor_elements: int = Field(64 * MIB, ge=1, description="largest tensor, in elements")
    max_tensors: int = Field(16, ge=1, description="most tensors in one request")
    max_ndim: int = Field(16, ge=1, description="most dimensions of a tensor")
    max_json_depth: int = Field(32, ge=2, description="deepest JSON nesting of a request")
    max_batch_requests: int = Field(64, ge=1, le=100_000, description="largest batch, in requests")
    max_batch_elements: int = Field(
        64 * 1024, ge=1, description="largest batch, in elements of its inputs (a bigger request "
                                     "runs alone: batching saves only per-call overhead, which "
                                     "big arrays do not notice, and concatenating copies them)")

    batch_wait_us: int = Field(
        2_000, ge=0, le=1_000_000,
        description="under load, the longest a request waits for the requests that usually "
                    "join its batch (learnt from the batches formed; a lone request does not "
                    "wait, but for a probe every quarter second; 0: never wait)")
    max_batch_delay_us: int = Field(
        0, ge=0, le=1_000_000, description="make every batch wait this long to fill (0: never; "
                                           "when set, it replaces the adaptive batch_wait_us)")
    max_queue: int = Field(1024, ge=1, description="queued requests before rejecting (503)")
    inline_compute_elements: int = Field(
        16_384, ge=0, description="batches with at most this many input elements are computed "
                                  "on the event loop (a thread hop costs more than they do)")
    inline_compute_us: int = Field(
        2_000, ge=0, description="bigger batches are computed on the event loop too when "
                                 "their loss's measured time per element predicts at most this "
                                 "many microseconds (0: never); the longest a compute may hold "
                                 "the loop, so lower it when small requests' tail latency beside "
                                 "big ones matters more than throughput")
    compute_threads: int = Field(1, ge=1, le=64,
                                 description="threads computing batches off the event loop")
    drain_seconds: float = Field(30.0, ge=0, description="grace to finish work on SIGTERM")
    shutdown_delay_s: float = Field(
        0.0, ge=0, description="with replicas: after SIGTERM, keep both servers open (new work "
                               "refused: UNAVAILABLE / 503, health NOT_SERVING) until this many "
                               "seconds after the signal, so that balancers and health-checking "
                               "gRPC clients move to other replicas before connections close "
                               "(0: close once drained, as a lone server has nowhere to send "
                               "its clients)")
    grpc_max_connection_age_s: float = Field(
        0.0, ge=0, description="close gRPC connections after this age so clients re-balance "
                               "(0: never)")
    http_max_header_bytes: int = Field(
        64 * 1024, ge=1024, le=16 * MIB, description="largest request line plus headers of an "
                                                      "HTTP request (more: 431)")
    http_idle_timeout_s: float = Field(
        60.0, gt=0, description="close an HTTP connection whose request (line, headers or "
                                "body), or whose first request, sends nothing for this long "
                                "(408 once a request began)")
    http_keep_alive_s: int = Field(30, ge=1, description="close an idle HTTP keep-alive "
                                                         "connection after this many seconds")
    grpc_max_metadata_bytes: int = Field(
        16 * 1024, ge=1024, le=16 * MIB, description="largest gRPC request metadata (headers), "
                                                      "in bytes (more: RESOURCE_EXHAUSTED)")
    grpc_idle_timeout_s: float = Field(
        600.0, ge=0, description="close a gRPC connection with no call for this long "
                                 "(0: never; clients reconnect on their next call)")

    api_keys: str = Field("", description="comma-separated API keys; empty: auth off")
    api_keys_file: str = Field("", description="file with one API key per line (adds to "
                                                "api_keys)")
    metrics_auth: bool = Field(False, description="require an API key for /metrics too")

    tls_cert_file: str = Field("", description="PEM certificate (chain) for both servers; "
                                                "empty: no TLS")
    tls_key_file: str = Field("", description="PEM private key of tls_cert_file")
    tls_client_ca_file: str = Field("", description="PEM CA that gRPC client certificates "
                                                     "must chain to (mutual TLS; REST unchanged)")

    runs_store: Literal["sqlite", "redis"] = Field(
        "sqlite", description="where evaluation runs live: sqlite (embedded, in runs_dir) or "
                              "redis (shared by replicas, at redis_url)")
    runs_dir: str = Field("", description="data directory of the sqlite run store (empty: "
                                          "$XDG_DATA_HOME/lossd/runs)")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis of the redis run store")
    runs_retention_s: float = Field(7 * 86400.0, ge=0, description="drop runs idle this long "
                                                                   "(0: keep until deleted)")

    console: bool = Field(True, description="serve the web console at / (its static files are "
                                            "public; the API data it shows needs a key when "
                                            "api_keys are set)")

    log_level: str = Field("info", description="debug, info, warning or error")
    log_json: bool = Field(True, description="structured (JSON) logs")

    def keys(self) -> frozenset[str]:
        """Accepted API keys (empty: authentication is off)."""
        keys = {k.strip() for k in self.api_keys.split(",") if k.strip()}
        if self.api_keys_file:
            keys |= {line.strip() for line in Path(self.api_keys_file).read_text().splitlines()
                     if line.strip() and not line.startswith("#")}
        return frozenset(keys)
