"""Closed-loop load generator (run in its own process): C concurrent callers, each sending a
pre-encoded request as soon as its previous answer arrives, for a fixed time.

    python -m bench.load grpc|rest TARGET PAYLOAD_FILE[,FILE...] CONCURRENCY SECONDS PATH[,PATH...]

PATH is the HTTP path, or the gRPC method (``/lossd.v1.LossService/Compute``). With several
payload files (a mixed workload) each caller cycles through them, starting at its own offset;
one PATH serves them all, or one PATH per file.

Prints one JSON line: requests, errors, seconds, latency percentiles (ms), bytes sent.
HTTP uses a minimal keep-alive HTTP/1.1 client on asyncio streams (so the client costs little
next to the server); gRPC uses grpc.aio with pre-serialized bytes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import uvloop

Calls = list[tuple[str, bytes]]  # (path or method, payload), cycled through by every caller


async def _grpc_worker(stubs: list[tuple[object, bytes]], offset: int, stop: float,
                       lat: list[float], errors: list[int]) -> None:
    i = offset
    while time.perf_counter() < stop:
        stub, payload = stubs[i % len(stubs)]
        i += 1
        t = time.perf_counter()
        try:
            await stub(payload, timeout=60)  # type: ignore[operator]
            lat.append(time.perf_counter() - t)
        except grpc.RpcError:
            errors.append(1)


async def run_grpc(target: str, calls: Calls, concurrency: int, seconds: float
                   ) -> tuple[list[float], int]:
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stubs = [(channel.unary_unary(method, request_serializer=None,
                                      response_deserializer=None), payload)
                 for method, payload in calls]
        for stub, payload in stubs:
            await stub(payload, timeout=60)  # connect and warm up
        lat: list[float] = []
        errors: list[int] = []
        stop = time.perf_counter() + seconds
        await asyncio.gather(*(_grpc_worker(stubs, i, stop, lat, errors)
                               for i in range(concurrency)))
        return lat, len(errors)


async def _http_worker(host: str, port: int, requests: list[bytes], offset: int, stop: float,
                       lat: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    try:
        while time.perf_counter() < stop:
            request = requests[i % len(requests)]
            i += 1
            t = time.perf_counter()
            writer.write(request)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if b" 200 " in status:
                lat.append(time.perf_counter() - t)
            else:
                errors.append(1)
    finally:
        writer.close()


async def run_http(target: str, calls: Calls, concurrency: int, seconds: float
                   ) -> tuple[list[float], int]:
    host, port = target.rsplit(":", 1)
    requests = [(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
                for path, payload in calls]
    warm: list[float] = []
    await _http_worker(host, int(port), requests, 0, time.perf_counter() + 0.2, warm, [])
    lat: list[float] = []
    errors: list[int] = []
    stop = time.perf_counter() + seconds
    await asyncio.gather(*(_http_worker(host, int(port), requests, i, stop, lat, errors)
                           for i in range(concurrency)))
    return lat, len(errors)


def main(argv: list[str]) -> None:
    kind, target, payload_files, concurrency, seconds, paths = argv[:6]
    payloads = [Path(name).read_bytes() for name in payload_files.split(",")]
    targets = paths.split(",")
    calls = [(targets[i % len(targets)], payload) for i, payload in enumerate(payloads)]
    started = time.perf_counter()
    run = run_grpc if kind == "grpc" else run_http
    lat, errors = uvloop.run(run(target, calls, int(concurrency), float(seconds)))
    elapsed = time.perf_counter() - started
    ms = np.array(lat) * 1e3 if lat else np.array([np.nan])
    mean_size = sum(len(p) for p in payloads) / len(payloads)
    print(json.dumps({"requests": len(lat), "errors": errors, "seconds": float(seconds),
                      "rps": len(lat) / float(seconds), "bytes": int(mean_size * len(lat)),
                      "p50_ms": float(np.percentile(ms, 50)),
                      "p99_ms": float(np.percentile(ms, 99)),
                      "wall": elapsed}))


if __name__ == "__main__":
    main(sys.argv[1:])
