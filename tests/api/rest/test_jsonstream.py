"""JSON bodies parsed as they stream in (service/lossd/api/jsonstream.py) give exactly what
``jsonbody.loads`` gives for the joined body (value or error message), in any chunking: 1-byte
chunks, splits inside ``"b64": "``, inside a value, inside a 4-character group; escapes that PHP
(``\\/``) and .NET (``\\u002B``) write; padding with unused bits set; fallbacks after cuts."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lossd.api.rest import jsonbody, jsonstream
from tests.api.rest.test_jsonbody import BODIES, DEPTH, SCALE, TRICKY, _layout, _outcome, tensor


def chunked(body: bytes, sizes: list[int]) -> list[bytes]:
    """``body`` cut into chunks of ``sizes`` (cycled)."""
    chunks, at, i = [], 0, 0
    while at < len(body):
        size = sizes[i % len(sizes)]
        chunks.append(body[at:at + size])
        at, i = at + size, i + 1
    return chunks


def loads_chunks(chunks: list[bytes], max_depth: int) -> Any:
    """What the server gets from a body arriving as ``chunks``."""
    stream = jsonstream.JsonStream(max_depth)
    for chunk in chunks:
        stream.feed(chunk)
    return stream.finish()


def assert_streams_alike(body: bytes, sizes: list[int]) -> tuple[str, Any]:
    expected = _outcome(jsonbody.loads, body)
    streamed = _outcome(lambda b, d: loads_chunks(chunked(b, sizes), d), body)
    assert streamed == expected, sizes
    return streamed


SIZES = [[1], [2], [3], [5], [7, 1], [4, 4, 1], [64], [10**9]]


@pytest.mark.parametrize("name", TRICKY)
def test_tricky_bodies_in_any_chunking(name: str) -> None:
    text, _ = TRICKY[name]
    body = text if isinstance(text, bytes) else text.encode()
    for sizes in SIZES:
        assert_streams_alike(body, sizes)


PHP = '{"x": {"dtype": "uint8", "shape": [%d], "b64": "%s"}}'


@pytest.mark.parametrize("escape", ["\\/", "\\u002F", "\\u002B", "\\u002b", "\\u0041"])
def test_escaped_values_take_the_plain_path(escape: str) -> None:
    """PHP's json_encode writes ``/`` as ``\\/``, .NET's encoder ``+`` as ``\\u002B``: valid
    JSON for a valid base64 string, decoded by the plain parse, whichever chunk it falls in."""
    raw = bytes(range(256)) * 40
    text = base64.b64encode(raw).decode()
    plain = text.replace("/", "\\/") if escape == "\\/" else text.replace("/", escape)
    body = (PHP % (len(raw), plain)).encode()
    for sizes in [[1], [3], [1000], [4093, 7]]:
        kind, parsed = assert_streams_alike(body, sizes)
    assert kind == "ok" and (escape != "\\/" or parsed["x"]["b64"] == text)


def test_large_values_in_odd_chunks() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(300_001).astype(np.float32)
    body = orjson.dumps({"inputs": {"input": tensor(a), "target": tensor(a[::-1].copy())}})
    for sizes in [[65536], [65533], [4097, 3, 1], [1_000_003]]:
        parsed = loads_chunks(chunked(body, sizes), DEPTH)
        cut = parsed["inputs"]["input"]["b64"]
        assert np.array_equal(np.frombuffer(cut.raw, np.float32), a)
        assert bytes(cut.text) == tensor(a)["b64"].encode()
    assert_streams_alike(body, [65536, 1])


def test_padding_with_unused_bits_is_kept_as_sent() -> None:
    """``QR==`` decodes to ``A`` as ``QQ==`` does; the string shown is the one sent, and a body
    rebuilt for the plain parse holds it."""
    for value in ("QR==", "QUJDQR==", "QUJDQUI=", "QUJDQUK="):
        body = (PHP % (1, value)).encode()
        for sizes in [[1], [2], [3], [len(body) - 3]]:
            kind, parsed = assert_streams_alike(body, sizes)
            assert parsed["x"]["b64"] == value
        after = (PHP % (1, value)).replace("}}", '}, "y": tru}').encode()  # plain after a cut
        for sizes in [[1], [3], [len(body)]]:
            assert assert_streams_alike(after, sizes)[0] == "error"


def test_whitespace_around_the_colon() -> None:
    for ws in ("", " ", " \n\t\r " * 3, " " * 2000):  # long: read plainly (no rescans)
        body = ('{"x": {"dtype": "uint8", "shape": [3], "b64"%s:%s"QUJD"}}' % (ws, ws)).encode()
        for sizes in [[1], [2], [5], [100]]:
            assert assert_streams_alike(body, sizes)[0] == "ok"


CHUNKINGS = st.lists(st.integers(1, 12), min_size=1, max_size=6)


@settings(max_examples=300 * SCALE // 8, deadline=None)
@given(BODIES, st.data(), CHUNKINGS)
def test_any_layout_in_any_chunking(obj: Any, data: st.DataObject, sizes: list[int]) -> None:
    assert_streams_alike(_layout(obj, data.draw).encode(), sizes)


@settings(max_examples=300 * SCALE // 8, deadline=None)
@given(BODIES, st.data(), st.integers(0, 10**6), st.binary(min_size=1, max_size=3), CHUNKINGS)
def test_mutated_bodies_in_any_chunking(obj: Any, data: st.DataObject, at: int, insert: bytes,
                                        sizes: list[int]) -> None:
    body = _layout(obj, data.draw).encode()
    at %= len(body) + 1
    assert_streams_alike(body[:at] + insert + body[at + 1:], sizes)


def _slowly(body: bytes, size: int):
    for at in range(0, len(body), size):
        yield body[at:at + size]


def test_rest_body_sent_in_small_chunks(server, spawn) -> None:
    """Over the wire, a body streamed in small chunks (no Content-Length) gets the answer it
    gets in one piece; an escaped one too; past the body limit it is refused as it streams."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((512, 10)).astype(np.float32)
    t = rng.integers(0, 10, 512)
    body = orjson.dumps({"inputs": {"input": tensor(x), "target": tensor(t)}, "grad": True})
    escaped = body.replace(b"/", b"\\/")
    assert escaped != body
    with httpx.Client(base_url=server.url, timeout=30) as client:
        whole = client.post("/v1/losses/cross_entropy", content=body)
        assert whole.status_code == 200
        for content, size in [(body, 7), (body, 1000), (escaped, 333)]:
            r = client.post("/v1/losses/cross_entropy", content=_slowly(content, size))
            assert r.status_code == 200 and r.json() == whole.json()
        batch = orjson.dumps({"requests": [{"loss": "cross_entropy", **orjson.loads(body)}]})
        r = client.post("/v1/batch", content=_slowly(batch, 4099))
        assert r.status_code == 200 and r.json()["results"][0] == whole.json()
    limited = spawn("--max-body-bytes", "20000")
    with httpx.Client(base_url=limited.url, timeout=30) as client:
        r = client.post("/v1/losses/cross_entropy", content=_slowly(body, 1000))
        assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
