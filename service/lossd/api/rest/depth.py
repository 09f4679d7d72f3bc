"""Request limits that must hold before a body is parsed.

``check_json_depth`` refuses JSON nested deeper than ``max_json_depth`` without parsing it: the
body is reduced, with C-speed ``bytes`` operations only, to its brackets outside strings, and the
innermost ``[]`` pairs are peeled ``limit`` times. Each peel lowers the depth by exactly one
(``bytes.replace`` does not rescan what it produced), so anything left after ``limit`` peels was
nested deeper than ``limit``. A numeric tensor costs one ``translate`` of the body; a deep one is
caught by a substring search.
"""

from __future__ import annotations

import re

import numpy as np

from ...errors import MalformedRequest

_STRUCTURE = b'[]{}"'
_DROP = bytes(sorted(set(range(256)) - set(_STRUCTURE)))
_BRACES = bytes.maketrans(b"{}", b"[]")
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
GZIP_MAGIC = b"\x1f\x8b"


def _brackets(body: bytes) -> bytes:
    """The body's brackets outside strings, ``{}`` written ``[]`` (a ``"`` left over: a string
    without its end)."""
    if b"\\" in body:  # escapes live only in strings; drop them so \" cannot end one
        body = _ESCAPE.sub(b"", body)
    brackets = body.translate(None, _DROP)
    if b'"' in brackets:
        brackets = _STRING.sub(b"", brackets)
    return brackets.translate(_BRACES)


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether ``body`` (JSON) nests arrays/objects deeper than ``limit`` (top level is 1).

    Invalid JSON may answer either way: the parser refuses it next.
    """
    brackets = _brackets(body)
    if b"[" * (limit + 1) in brackets:
        return True
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")
    return bool(brackets)


def check_json_depth(body: bytes, limit: int) -> None:
    """Raise ``MalformedRequest`` (422) when ``body`` nests deeper than ``limit``, saying what
    is wrong when the scan was misled by a body that is not JSON at all (compressed, binary,
    brackets that never close)."""
    if json_depth_exceeds(body, limit):
        raise MalformedRequest(f"body: {_diagnosis(body, limit)}", field="body")


def _diagnosis(body: bytes, limit: int) -> str:
    """Why a body the depth scan flagged is refused: not JSON, or really too deep."""
    if body.startswith(GZIP_MAGIC):
        return ("gzip data, not JSON (lossd reads uncompressed bodies: send it without "
                "Content-Encoding: gzip)")
    brackets = _brackets(body)
    first = body.lstrip(b" \t\r\n")[:1]
    if first not in (b"[", b"{"):
        return f"not valid JSON (a nested document starts with [ or {{; got {first!r})"
    if b'"' in brackets:
        return "not valid JSON (a string is never closed)"
    # the running depth (one cumulative sum in C): below 0 a bracket closes what was never
    # opened; not back at 0 at the end, some bracket was never closed
    depth = np.cumsum(np.where(np.frombuffer(brackets, np.uint8) == ord("["), 1, -1))
    if depth.min() < 0:
        return "not valid JSON (unbalanced brackets: a ] or } without its opening)"
    if depth[-1] != 0:
        return f"not valid JSON (unbalanced brackets: {depth[-1]} [ or {{ never closed)"
    return f"JSON nested deeper than {limit} levels (max_json_depth)"
