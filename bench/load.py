"""Closed-loop load generator (run in its own process): C concurrent callers, each sending the
same pre-encoded request as soon as its previous answer arrives, for a fixed time.

    python -m bench.load grpc|rest TARGET PAYLOAD_FILE CONCURRENCY SECONDS PATH

PATH is the HTTP path, or the gRPC method (``/lossd.v1.LossService/Compute``).

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


async def _grpc_worker(stub, payload: bytes, stop: float, lat: list[float], errors: list[int]
                       ) -> None:
    while time.perf_counter() < stop:
        t = time.perf_counter()
        try:
            await stub(payload, timeout=60)
            lat.append(time.perf_counter() - t)
        except grpc.RpcError:
            errors.append(1)


async def run_grpc(target: str, method: str, payload: bytes, concurrency: int, seconds: float
                   ) -> tuple[list[float], int]:
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = channel.unary_unary(method, request_serializer=None,
                                   response_deserializer=None)
        await stub(payload, timeout=60)  # connect and warm up
        lat: list[float] = []
        errors: list[int] = []
        stop = time.perf_counter() + seconds
        await asyncio.gather(*(_grpc_worker(stub, payload, stop, lat, errors)
                               for _ in range(concurrency)))
        return lat, len(errors)


async def _http_worker(host: str, port: int, request: bytes, stop: float, lat: list[float],
                       errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop:
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


async def run_http(target: str, path: str, payload: bytes, concurrency: int, seconds: float
                   ) -> tuple[list[float], int]:
    host, port = target.rsplit(":", 1)
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
    warm: list[float] = []
    await _http_worker(host, int(port), request, time.perf_counter() + 0.2, warm, [])
    lat: list[float] = []
    errors: list[int] = []
    stop = time.perf_counter() + seconds
    await asyncio.gather(*(_http_worker(host, int(port), request, stop, lat, errors)
                           for _ in range(concurrency)))
    return lat, len(errors)


def main(argv: list[str]) -> None:
    kind, target, payload_file, concurrency, seconds = argv[:5]
    payload = Path(payload_file).read_bytes()
    started = time.perf_counter()
    if kind == "grpc":
        lat, errors = uvloop.run(run_grpc(target, argv[5], payload, int(concurrency),
                                          float(seconds)))
    else:
        lat, errors = uvloop.run(run_http(target, argv[5], payload, int(concurrency),
                                          float(seconds)))
    elapsed = time.perf_counter() - started
    ms = np.array(lat) * 1e3 if lat else np.array([np.nan])
    print(json.dumps({"requests": len(lat), "errors": errors, "seconds": float(seconds),
                      "rps": len(lat) / float(seconds), "bytes": len(payload) * len(lat),
                      "p50_ms": float(np.percentile(ms, 50)),
                      "p99_ms": float(np.percentile(ms, 99)),
                      "wall": elapsed}))


if __name__ == "__main__":
    main(sys.argv[1:])
