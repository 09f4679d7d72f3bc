"""A body that is refused is refused for what is wrong with it.

The depth pre-scan runs before the parser, so any body with unbalanced brackets (or compressed,
binary bytes) used to be "JSON nested deeper than 32 levels". Properties over arbitrary bodies:
"nested deeper" is said only of a body whose brackets balance and really nest deeper than the
limit, and always of valid JSON that does; anything else the parser cannot read is "not valid
JSON" or "gzip data"; a compressed body (``Content-Encoding``) is refused by that header.
"""

from __future__ import annotations

import gzip
import os

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossd.api.rest import jsonbody
from lossd.errors import MalformedRequest

LIMIT = 8
EXAMPLES = int(os.environ.get("LOSSD_FUZZ_EXAMPLES", "300"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
PIECES = st.sampled_from([b"[", b"]", b"{", b"}", b'"a":', b'"', b",", b"1", b" ", b"\\",
                          b'"x"', b"\x1f\x8b", b"\xff", b"null"])
BODIES = st.one_of(st.lists(PIECES, max_size=60).map(b"".join), st.binary(max_size=80),
                   st.integers(0, 3 * LIMIT).map(lambda n: b"[" * n + b"]" * n),
                   st.integers(0, 3 * LIMIT).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
                   st.integers(1, 3 * LIMIT).map(lambda n: b"[" * n))


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@SETTINGS
@given(body=BODIES)
def test_the_refusal_says_what_is_wrong(body: bytes) -> None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed, valid = None, False
    else:
        valid = True
    try:
        jsonbody.loads(body, LIMIT)
    except MalformedRequest as error:
        message = error.message
    else:
        assert valid and _depth(parsed) <= LIMIT
        return
    if valid:
        assert _depth(parsed) > LIMIT and "nested deeper than" in message, message
        return
    if "nested deeper than" in message:
        balanced, deepest = _brackets(body)
        assert balanced and deepest > LIMIT, (body, message)
    else:
        assert message.startswith(("body: not valid JSON", "body: gzip data")), message


def _brackets(body: bytes) -> tuple[bool, int]:
    """(every bracket outside strings closed and every string ended, deepest nesting): a plain
    walk over the bytes, the reference for the scan's byte tricks."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        char = chr(byte)
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return depth == 0 and not in_string, deepest


@pytest.mark.parametrize(("body", "headers", "status", "says"), [
    (gzip.compress(b'{"inputs": {"input": [1.0], "target": [0.0]}}'),
     {"content-encoding": "gzip"}, 400, "content-encoding: 'gzip' is not supported"),
    (gzip.compress(b"[" * 200), {}, 422, "gzip data, not JSON"),
    (b'{"inputs": ' + b"[" * 40, {}, 422, "unbalanced brackets: 41 [ or { never closed"),
    (b'{"inputs": ' + b"[" * 40 + b"]" * 40 + b"}", {}, 422, "nested deeper than 32 levels"),
    (b'{"inputs": "' + b"[" * 40, {}, 422, "a string is never closed"),
], ids=["content-encoding", "gzip", "unbalanced", "deep", "open-string"])
def test_refusals_over_rest(server, body: bytes, headers: dict, status: int, says: str) -> None:
    for path in ("/v1/losses/mse", "/v1/batch"):
        r = httpx.post(server.url + path, content=body,
                       headers={"content-type": "application/json", **headers})
        assert r.status_code == status and says in r.json()["error"]["message"], r.text
