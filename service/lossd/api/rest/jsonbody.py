r"""JSON request bodies, with ``b64`` tensor strings cut out before the parser sees them.

A ``{"dtype", "shape", "b64"}`` tensor of a million float32 is a 5.3 MB string: handing it to
orjson costs a UTF-8 scan and a str copy (about 6 ms per 10 MB body), the depth pre-scan another
translate of it, and base64 needs bytes again. :func:`loads` instead finds each ``"b64": "..."``
value with C-speed ``bytes`` searches, decodes it straight from a memoryview of the body with
:func:`codec.decode_b64` (the one base64 decoder, also used for ``b64`` strings that come
through the parser), and parses only the *skeleton*: the body with each value replaced by a
short placeholder. The placeholders are then swapped for :class:`codec.Base64Bytes`, which
:func:`codec.from_json` treats exactly as the decoded string.

Why the result is the one the plain parse gives:

* In valid JSON a match of ``[{,] ws "b64" ws : ws "`` is the key ``b64`` of an object followed
  by the opening quote of a string value: the ``"`` after ``{``/``,``/whitespace is not escaped,
  so were the ``{``/``,`` inside a string that quote would close it and ``b64"`` after a string
  is not JSON; outside strings, ``"b64"`` after ``{`` or ``,`` followed by ``:`` is a key.
* The value ends at the next ``"``, unless a ``\`` escape precedes it; a cut is kept only when
  it decodes as strict base64, whose alphabet has no ``"``, ``\``, control or non-ASCII byte:
  then it is plain string content and its JSON string is exactly those characters. Anything
  else (escapes, whitespace, a bad character) falls back to the plain parse of the whole body,
  which raises the error it always raised (invalid JSON, or ``b64 is not valid base64``).
* A cut and its placeholder are both plain string content between the same two quotes, so the
  skeleton tokenizes as the body does: same validity, same brackets (same depth), same values
  elsewhere. Any failure to parse the skeleton falls back to the plain parse, so error
  messages stay those of the plain path.
* Placeholders cannot be forged: the skeleton must have no ``\`` (so no string in it is
  written with escapes) and hold the marker exactly once per cut, so a parsed string equal to a
  placeholder is one this module wrote; each must come back exactly once, as the ``b64`` value
  of a tensor object (keys among dtype, shape, data, b64). Duplicate keys, a placeholder out of
  reach (e.g. an object in a list of numbers), or a client that writes the marker itself fall
  back to the plain parse.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from ... import codec
from ...errors import MalformedRequest, cut, shown
from . import depth, jsonnumbers

KEY = b'"b64"'
_MARKER = "lossd-b64-cut:"  # placeholders are MARKER + index: not base64 (":" and "-")
WHITESPACE = b" \t\n\r"
_TENSOR_KEYS = {"dtype", "shape", "data", "b64"}
VALUE_START = re.compile(rb'[ \t\n\r]*:[ \t\n\r]*"')


def loads(body: bytes, max_depth: int) -> Any:
    """Parse ``body`` as JSON (depth at most ``max_depth``), its ``b64`` values pre-decoded.

    Raises ``MalformedRequest`` for a body nested too deep or not JSON, with the messages of
    the plain parse; ``b64`` strings that are not strict base64 stay strings (the codec refuses
    them). A body without ``b64`` has its long numeric arrays read straight into NumPy arrays
    (:mod:`.jsonnumbers`).
    """
    if KEY in body:
        sliced = _loads_sliced(body, max_depth)
        if sliced is not None:
            return sliced[0]
    else:
        numbers = jsonnumbers.loads(body)
        if numbers is not None:
            depth.check_json_depth(numbers[1], max_depth)  # as deep as the body
            return numbers[0]
    return loads_plain(body, max_depth)


def loads_plain(body: bytes, max_depth: int) -> Any:
    """The body parsed whole by orjson after the depth check (no cuts); ``MalformedRequest``
    if it is not JSON or nests deeper than ``max_depth``."""
    depth.check_json_depth(body, max_depth)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "number" in str(exc):
            return _loads_big_integers(body)
        if body.startswith(depth.GZIP_MAGIC):
            raise MalformedRequest("body: gzip data, not JSON (lossd reads uncompressed "
                                   "bodies: send it without Content-Encoding: gzip)",
                                   field="body") from None
        raise MalformedRequest(f"body: not valid JSON ({exc})", field="body") from None


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {shown(text)} is out of the float64 range")
    return value


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not JSON (write the string {text!r})")


def _loads_big_integers(body: bytes) -> Any:  # noqa: ANN401 - any JSON value
    """orjson refuses an integer beyond float64 (a 400-digit option); Python's json keeps it
    an int, so that the field it is in refuses it by name (an option, a V2 parameter, a
    tensor value). Floats stay finite and NaN/Infinity tokens stay refused, as orjson does;
    the depth was checked before (no RecursionError)."""
    try:
        return json.loads(body, parse_float=_finite, parse_constant=_no_constant)
    except ValueError as exc:  # JSONDecodeError, an int of over 4300 digits, _finite
        raise MalformedRequest(f"body: not valid JSON ({cut(str(exc), 200)})",
                               field="body") from None


def _cuts(body: bytes) -> list[tuple[int, int]] | None:
    """``(start, end)`` of each ``"b64"`` string value's content, None when one has no end."""
    cuts = []
    at = body.find(KEY)
    while at >= 0:
        before = at - 1
        while before >= 0 and body[before] in WHITESPACE:
            before -= 1
        value = VALUE_START.match(body, at + len(KEY))
        if before >= 0 and body[before] in b"{," and value is not None:
            start = value.end()
            end = body.find(b'"', start)
            if end < 0:
                return None
            cuts.append((start, end))
            at = body.find(KEY, end + 1)
        else:
            at = body.find(KEY, at + 1)
    return cuts


def _loads_sliced(body: bytes, max_depth: int) -> tuple[Any] | None:
    """``(parsed,)`` with the cuts decoded, or None to take the plain parse."""
    cuts = _cuts(body)
    if not cuts:
        return None
    view = memoryview(body)
    decoded = []
    for start, end in cuts:
        raw = codec.decode_b64(view[start:end])
        if raw is None:
            return None
        decoded.append(codec.Base64Bytes(raw, view[start:end]))
    parts, last = [], 0
    for i, (start, end) in enumerate(cuts):
        parts += [body[last:start], placeholder(i)]
        last = end
    parts.append(body[last:])
    return loads_skeleton(b"".join(parts), decoded, max_depth)


def placeholder(index: int) -> bytes:
    """What replaces the content of the ``index``-th cut ``b64`` string in the skeleton."""
    return f"{_MARKER}{index}".encode()


def loads_skeleton(skeleton: bytes, decoded: list[codec.Base64Bytes], max_depth: int
                   ) -> tuple[Any] | None:
    """``(parsed,)`` for a skeleton holding ``placeholder(i)`` for each ``decoded[i]``, or None
    to take the plain parse (may raise the plain parse's depth error: same brackets)."""
    placeholders = {f"{_MARKER}{i}": i for i in range(len(decoded))}
    if b"\\" in skeleton or skeleton.count(_MARKER.encode()) != len(decoded):
        return None
    depth.check_json_depth(skeleton, max_depth)  # same brackets as the body: same answer
    try:
        parsed = orjson.loads(skeleton)
    except orjson.JSONDecodeError:
        return None
    found: dict[int, dict[str, Any]] = {}
    if not _collect(parsed, placeholders, found) or len(found) != len(decoded):
        return None
    for i, holder in found.items():
        holder["b64"] = decoded[i]
    return (parsed,)


def _collect(node: Any, placeholders: dict[str, int], found: dict[int, dict[str, Any]]
             ) -> bool:
    """Record each tensor object whose ``b64`` is a placeholder; False if one comes back twice
    or sits elsewhere.

    Lists are entered only when they start with an object or a list, so numeric tensors are
    not walked; a placeholder left unvisited makes the count differ (plain parse)."""
    if isinstance(node, dict):
        value = node.get("b64")
        index = placeholders.get(value) if isinstance(value, str) else None
        if index is not None:
            if index in found or not set(node) <= _TENSOR_KEYS:
                return False
            found[index] = node
        return all(_collect(v, placeholders, found) for v in node.values()
                   if isinstance(v, (dict, list)))
    if node and isinstance(node[0], (dict, list)):
        return all(_collect(v, placeholders, found) for v in node if isinstance(v, (dict, list)))
    return True
