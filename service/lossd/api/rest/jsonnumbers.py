r"""Long numeric arrays in a JSON body read straight into NumPy, without a Python object each.

A V2 ``data`` list or a native nested list of 100,000 numbers costs orjson 100,000 Python floats
and ``np.asarray`` a walk over them. :func:`loads` cuts each long array of numbers out of the
body, reads it with simdjson (pysimdjson's ``as_buffer``: a C++ loop from its parse tape into a
buffer of doubles or int64), and parses only the *skeleton*: the body with each array replaced
by a short placeholder string, swapped back for the array afterwards. The caller, as for the
``b64`` cuts of :mod:`.jsonbody`, gets what the plain parse gives, with a NumPy array where the
plain parse has the nested list that ``np.asarray`` turns into that array:

* A candidate is an object's value (after ``:``), ``[`` then a number or ``[[`` then a
  number, up to the first ``]`` (or ``]]``, space allowed between), at least
  :data:`MIN_ARRAY` bytes long; a list inside a longer list is skipped whole (it can be no
  tensor's value of its own, see below), and so is one of more than :data:`MAX_ROWS` rows.
  simdjson parses it as its own document (valid JSON by RFC 8259, as orjson requires); it
  must be an array holding only numbers, or rows of one length (at least 1) holding only
  numbers, with no other ``[`` in the text (``as_buffer`` would flatten deeper or ragged
  lists): exactly the lists ``np.asarray`` makes a regular array of, and the buffer must hold
  as many numbers as that shape. A text with ``.``, ``e`` or ``E`` is read as doubles (orjson
  gives a float for such a number, and ``np.asarray`` converts the ints beside it to float64,
  correctly rounded, as simdjson does), else as int64 (orjson's ints; one beyond int64 fails
  the read). Both round decimal text to the nearest double. What simdjson refuses (``1e400``,
  an integer beyond 64 bits, ``true``, ``null``, a string) leaves the candidate in the
  skeleton, where orjson meets it as before.
* Cuts are trusted only outside strings. The body has no ``\`` (else the plain parse), so
  every ``"`` opens or closes a string; a placeholder is ``"`` + marker + ``"``, so were a cut
  inside a string, its placeholder would leave the marker, a bare word, outside any string:
  the skeleton is not JSON and the plain parse runs. Each cut must come back from the skeleton
  as a tensor's value (``data`` of an object with ``shape``, or a value of ``inputs``), and
  the marker must occur once per cut (a client writing it falls back).
* The skeleton is the body with JSON values swapped for one string each, so it is valid JSON
  iff the body is. The stand-in :func:`loads` also returns (each cut written ``[0]`` or
  ``[[0]]``) is exactly as deep as the body, for the caller's depth check, so errors stay
  those of the plain path, which parses the whole body whenever :func:`loads` answers None.

Bodies under :data:`MIN_BODY` bytes are not searched (small requests are unchanged).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import orjson
import simdjson

MIN_BODY = 64 * 1024
"""Smaller bodies go to orjson whole: a few numbers cost less than finding them."""
MIN_ARRAY = 16 * 1024
"""Bytes of array text worth a cut (about 1,000 numbers)."""
_MARKER = "lossd-numbers-cut:"
_CANDIDATE = re.compile(rb"\[[ \t\n\r]*(\[[ \t\n\r]*)?-?[0-9]")
_ROWS_END = re.compile(rb"\][ \t\n\r]*\]")  # the first row that ends the whole list
_OPEN = ord("[")
MAX_ROWS = 10_000
"""Rows of a nested list checked one by one at most (more, shorter rows: the plain parse)."""
_FLOAT_MARKS = (b".", b"e", b"E")


class Cut(NamedTuple):
    """One array cut out of the body: ``body[start:end]`` read as ``array``."""

    start: int
    end: int
    array: np.ndarray


def loads(body: bytes) -> tuple[Any, bytes] | None:
    """``(parsed, stand-in)``: the body parsed with its long numeric arrays as NumPy arrays,
    and a small document exactly as deep as the body (for the depth check: each cut written
    ``[0]`` or ``[[0]]``); None to take the plain parse."""
    if len(body) < MIN_BODY or b"\\" in body:
        return None
    cuts = list(_cuts(body))
    if not cuts:
        return None
    skeleton = _replace(body, cuts, lambda i, _: f'"{_MARKER}{i}"'.encode())
    if skeleton.count(_MARKER.encode()) != len(cuts):
        return None
    try:
        parsed = orjson.loads(skeleton)
    except orjson.JSONDecodeError:
        return None
    placeholders = {f"{_MARKER}{i}": cut.array for i, cut in enumerate(cuts)}
    if not _swap(parsed, placeholders) or placeholders:  # each swapped once, and popped
        return None
    stand_in = _replace(body, cuts, lambda _, cut: b"[" * cut.array.ndim + b"0" +
                        b"]" * cut.array.ndim)
    return parsed, stand_in


def _cuts(body: bytes) -> Iterator[Cut]:
    """Each long ``[numbers]`` or ``[[numbers], ...]`` that reads as a regular array."""
    at = 0
    while (found := _CANDIDATE.search(body, at)) is not None:
        start = found.start()
        rows = found.group(1) is not None
        close = _ROWS_END.search(body, start) if rows else None
        end = (close.end() if close else start) if rows else body.find(b"]", start) + 1
        before = body[max(start - 64, 0):start].rstrip(b" \t\n\r")[-1:]
        # an object's value (after ":"), not an item of a longer list (after "[" or ",")
        array = (_read(body[start:end], rows) if end - start >= MIN_ARRAY and before == b":"
                 else None)
        if array is None:  # go on after it: what it holds is no tensor's value of its own
            at = max(end, start + 1)
            continue
        yield Cut(start, end, array)
        at = end


def _replace(body: bytes, cuts: list[Cut], text: Callable[[int, Cut], bytes]) -> bytes:
    parts, last = [], 0
    for i, cut in enumerate(cuts):
        parts += [body[last:cut.start], text(i, cut)]
        last = cut.end
    parts.append(body[last:])
    return b"".join(parts)


def _read(text: bytes, rows: bool) -> np.ndarray | None:
    """``text`` (``[...]``, or ``[[...], ...]`` when ``rows``) as the array ``np.asarray``
    makes of the lists orjson gives for it, or None when that is not certain."""
    # as_buffer flattens nested arrays: the brackets must be exactly the shape's
    opens = np.count_nonzero(np.frombuffer(text, np.uint8) == _OPEN) if rows else 1
    if (rows and opens - 1 > MAX_ROWS) or (not rows and text.find(b"[", 1) >= 0):
        return None  # too many rows to check here, or a list inside
    floats = any(mark in text for mark in _FLOAT_MARKS)
    try:  # a parser per call: a simdjson parser serves one thread at a time
        document = simdjson.Parser().parse(text)
        if not isinstance(document, simdjson.Array):
            return None
        shape: tuple[int, ...] = (len(document),)
        if rows:
            if not 0 < len(document) == opens - 1:
                return None  # deeper
            lengths = {len(row) if isinstance(row, simdjson.Array) else -1 for row in document}
            if len(lengths) != 1 or min(lengths) < 1:
                return None  # ragged, a number beside the rows, or empty rows
            shape = (len(document), lengths.pop())
        flat = np.frombuffer(document.as_buffer(of_type="d" if floats else "i"),
                             np.float64 if floats else np.int64)
    except (ValueError, TypeError, RuntimeError):  # not JSON, true/null, 1e400, > 64 bits
        return None
    return flat.reshape(shape) if flat.size == math.prod(shape) else None


def _swap(node: Any, placeholders: dict[str, np.ndarray]) -> bool:
    """Put each array where its placeholder is (popping it), if that is a tensor's value:
    ``data`` of an object with ``shape``, or a value of an ``inputs`` object. False if a
    placeholder sits anywhere else (a key, a list item, an option)."""
    if isinstance(node, list):
        return all(_swap(item, placeholders) for item in node if isinstance(item, (dict, list))
                   ) and not any(isinstance(item, str) and item in placeholders for item in node)
    for key, value in node.items():
        if isinstance(value, str):
            if value in placeholders:
                if not (key == "data" and "shape" in node):
                    return False
                node[key] = placeholders.pop(value)
        elif key == "inputs" and isinstance(value, dict):
            for name, tensor in value.items():
                if isinstance(tensor, str) and tensor in placeholders:
                    value[name] = placeholders.pop(tensor)
                elif isinstance(tensor, (dict, list)) and not _swap(tensor, placeholders):
                    return False
        elif isinstance(value, (dict, list)) and not _swap(value, placeholders):
            return False
    return True
