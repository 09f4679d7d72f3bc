"""Protobuf requests read without copying their tensors.

protobuf's C runtime (upb) copies every ``bytes`` field out of the request when it parses, and
Python copies it again on each access: for an 8 MB request that is two full copies before the
loss starts. Here the fields that carry tensor bytes are sliced out of the request buffer as
``memoryview``s (which ``np.frombuffer`` wraps, still without a copy), and upb parses the rest:

    lossd.v1 ComputeRequest    inputs (field 2): map entries read here (``Tensor`` dtype,
                               shape and raw); loss, options and grad parsed by upb
    inference ModelInferRequest  raw_input_contents (field 7) sliced here; the rest by upb

Requests under ``SLICE_FROM`` bytes go to upb whole: its C parser beats walking the fields in
Python until the copies it saves outweigh that (measured crossover about 200 KB). Only the
common encodings are read by hand. Anything else (packed value lists, unknown or
repeated-with-another-wire-type fields inside an entry, groups, a truncated or malformed
buffer) makes the reader hand the whole message to upb, so what is accepted, and every error,
stays exactly upb's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from google.protobuf.message import DecodeError

from ...errors import MalformedRequest

SLICE_FROM = 256 * 1024
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
_FIXED_SIZE = {FIXED64: 8, FIXED32: 4}


class _Unusual(Exception):
    """Not a layout the fast reader handles: upb reads the whole message instead."""


class RawTensor(NamedTuple):
    """A ``lossd.v1.Tensor`` read off the wire; ``raw`` is a view into the request."""

    dtype: int
    shape: list[int]
    raw: memoryview
    double_data: tuple[()] = ()
    int64_data: tuple[()] = ()
    bool_data: tuple[()] = ()


def parse(message_type: Any, data: bytes | bytearray) -> Any:
    """upb's parse; a malformed buffer raises ``MalformedRequest`` (422 / INVALID_ARGUMENT)."""
    try:
        return message_type.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise MalformedRequest(f"request: not a valid {message_type.DESCRIPTOR.full_name} "
                               f"message ({exc})", field="request") from None


def _varint(data: memoryview, pos: int, end: int) -> tuple[int, int]:
    """(value, next position) of the base-128 varint at ``pos``."""
    value = shift = 0
    while pos < end and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value >> 64:
                raise _Unusual  # beyond 64 bits: leave it to upb
            return value, pos
        shift += 7
    raise _Unusual  # truncated or over 10 bytes


def _fields(data: memoryview, pos: int, end: int) -> list[tuple[int, int, int, int]]:
    """``(number, wire type, start, stop)`` of each field in ``data[pos:end]``: for varints
    ``start`` is the value itself; for bytes, the payload is ``data[start:stop]``."""
    out = []
    while pos < end:
        tag, pos = _varint(data, pos, end)
        number, wire = tag >> 3, tag & 7
        if wire == VARINT:
            value, pos = _varint(data, pos, end)
            out.append((number, wire, value, pos))
            continue
        if wire == LENGTH:
            size, pos = _varint(data, pos, end)
            stop = pos + size
        elif wire in _FIXED_SIZE:
            stop = pos + _FIXED_SIZE[wire]
        else:  # groups and invalid wire types
            raise _Unusual
        if stop > end or number == 0:
            raise _Unusual
        out.append((number, wire, pos, stop))
        pos = stop
    return out


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _tensor(data: memoryview, start: int, stop: int) -> RawTensor:
    """A Tensor that sets only dtype, shape and raw (the fast path); anything else is unusual."""
    dtype, shape, raw = 0, [], data[start:start]
    for number, wire, begin, end in _fields(data, start, stop):
        if number == 1 and wire == VARINT:
            dtype = _int64(begin) & 0xFFFFFFFF  # an enum is an int32 on the wire
            dtype = dtype - (1 << 32) if dtype >= 1 << 31 else dtype
        elif number == 2 and wire == VARINT:
            shape.append(_int64(begin))
        elif number == 2 and wire == LENGTH:
            pos = begin
            while pos < end:
                value, pos = _varint(data, pos, end)
                shape.append(_int64(value))
        elif number == 3 and wire == LENGTH:
            raw = data[begin:end]
        else:
            raise _Unusual
    return RawTensor(dtype, shape, raw)


def _entry(data: memoryview, start: int, stop: int) -> tuple[str, RawTensor]:
    """One ``map<string, Tensor>`` entry: (key, value)."""
    key, value = "", RawTensor(0, [], data[start:start])
    for number, wire, begin, end in _fields(data, start, stop):
        if number == 1 and wire == LENGTH:
            try:
                key = str(data[begin:end], "utf-8")
            except UnicodeDecodeError:
                raise _Unusual from None
        elif number == 2 and wire == LENGTH:
            value = _tensor(data, begin, end)
        else:
            raise _Unusual
    return key, value


def _take(view: memoryview, number: int) -> tuple[bytearray, list[tuple[int, int]]]:
    """Split a (big) message into its other top-level fields, as they are, and the payload
    spans of its length-delimited field ``number``, in order."""
    if len(view) < SLICE_FROM:
        raise _Unusual
    rest, spans, pos = bytearray(), [], 0
    for field, wire, begin, end in _fields(view, 0, len(view)):
        if field == number and wire == LENGTH:
            spans.append((begin, end))
        else:
            rest += view[pos:end]
        pos = end
    return rest, spans


def compute_request(message_type: Any, data: bytes) -> tuple[Any, dict[str, Any]]:
    """A ``lossd.v1.ComputeRequest``: (the message without its inputs, inputs by name).

    Inputs are :class:`RawTensor` views on the fast path, else upb's ``Tensor`` messages.
    """
    view = memoryview(data)
    try:
        rest, entries = _take(view, 2)  # map<string, Tensor> inputs = 2
        inputs = dict(_entry(view, begin, end) for begin, end in entries)  # last key wins
        return parse(message_type, rest), inputs
    except _Unusual:
        request = parse(message_type, data)
        inputs = request.inputs
        return request, {key: inputs[key] for key in inputs}  # faster than dict(map)


def infer_request(message_type: Any, data: bytes) -> tuple[Any, list[bytes | memoryview]]:
    """An ``inference.ModelInferRequest``: (the message without raw_input_contents, those
    contents in order: views of ``data`` on the fast path, else upb's copies)."""
    view = memoryview(data)
    try:
        rest, contents = _take(view, 7)  # repeated bytes raw_input_contents = 7
        return parse(message_type, rest), [view[begin:end] for begin, end in contents]
    except _Unusual:
        request = parse(message_type, data)
        return request, list(request.raw_input_contents)
