r"""JSON request bodies parsed as they stream in: ``b64`` strings decoded chunk by chunk.

:func:`jsonbody.loads` needs the whole body: joining a 10 MB body's chunks, then a second pass
that finds and decodes each ``b64`` string in the (by then cold) joined copy, cost about as much
as receiving it. :class:`JsonStream` does :mod:`jsonbody`'s work as the chunks arrive, while each
is hot in cache, and keeps nothing of the body but the skeleton and the decoded bytes:

* Outside ``b64`` strings, bytes go to the *skeleton*, which is searched for the cuts exactly as
  ``jsonbody._cuts`` searches the body (``"b64"``, a ``{``/``,`` before it, ``ws : ws "`` after
  it), a pattern split across chunks being found once its last byte has arrived. The skeleton
  equals the body up to the cuts so far, each cut's content replaced by its placeholder, so the
  searches see the same bytes (a look-back stops at a cut's closing quote at the latest).
* Inside one, the content up to the next ``"`` is decoded as strict base64 in 4-character
  groups (a carry of < 4 characters joins the next chunk); ``=`` may end only the last group.
  Strict base64 of a whole string is valid iff each group is, with padding only at the end, and
  decodes to the concatenation of the groups, so the decoded bytes are those
  :func:`codec.decode_b64` gives for the whole string.
* At the end the skeleton goes through :func:`jsonbody.loads_skeleton`, as in
  :func:`jsonbody.loads`. On any doubt (a string that is not strict base64 — escapes such as
  PHP's ``\/`` or .NET's ``\u002B`` included —, an unterminated one, a skeleton that does not
  parse or whose placeholders do not come back) the body is rebuilt and parsed plainly, which is
  what :func:`jsonbody.loads` does then. The body is rebuilt exactly, without keeping the
  chunks: each cut is the base64 encoding of its decoded bytes, except a padded last group,
  whose unused bits a client may have set, kept as sent.

So ``JsonStream`` gives ``jsonbody.loads(body)`` (value or error) for any body in any chunking.
A body that arrives in one chunk goes to :func:`jsonbody.loads` as is.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pybase64

from ... import codec
from . import jsonbody

_EQUALS = ord("=")
_KEY_TAIL = len(jsonbody.KEY) - 1  # a key split across chunks starts at most this far back
# after "b64": what may still become `ws : ws "` once more bytes arrive
_VALUE_START_SO_FAR = re.compile(rb"[ \t\n\r]*(?::[ \t\n\r]*)?")
_MAX_PENDING = 1024  # longer whitespace around a key's colon: parse plainly (no rescans)


def _decode(text: bytes | memoryview) -> bytes | None:
    try:
        return pybase64.b64decode(text, validate=True)  # the codec's decoder (strict)
    except ValueError:  # binascii.Error included
        return None


class _Cut:
    """One ``b64`` string being decoded: ``out`` holds the decoded groups, ``carry`` the < 4
    characters after them, ``padded`` whether the last group had ``=`` (then it is kept as
    ``last``: it must be the end of the string)."""

    def __init__(self, capacity: int) -> None:
        self.out = np.empty(max(capacity, 4096), np.uint8)  # not zero-filled: written once
        self.size = 0
        self.carry = b""
        self.padded = False
        self.last = b""

    def feed(self, piece: memoryview, final: bool) -> bool:
        """Decode the next ``piece`` of the string (``final``: up to its closing quote); False,
        with nothing changed, when the string cannot be strict base64."""
        size = len(piece)
        if self.padded and size:
            return False  # characters after the padding
        carry = self.carry
        if len(carry) + size < 4:
            if final and (carry or size):
                return False
            self.carry = carry + bytes(piece)
            return True
        split = -len(carry) % 4  # the characters that complete the carry's group
        head = carry + bytes(piece[:split]) if carry else b""
        end = split + (size - split) // 4 * 4
        groups, rest = piece[split:end], piece[end:]
        tail = groups if groups else head
        padded = tail[-1] == _EQUALS
        if (final and rest) or (padded and rest) or (head and groups and head[-1] == _EQUALS):
            return False
        decoded_head = _decode(head) if head else b""
        decoded = _decode(groups)
        if decoded is None or decoded_head is None:
            return False
        self._append(decoded_head)
        self._append(decoded)
        self.carry, self.padded = bytes(rest), padded
        if padded:
            self.last = bytes(tail[-4:])
        return True

    def _append(self, decoded: bytes) -> None:
        end = self.size + len(decoded)
        if end > len(self.out):  # past the bound the body's length gave (or none was given)
            self.out.resize(max(end, 2 * len(self.out)), refcheck=False)  # realloc: no copy
        self.out.data[self.size:end] = decoded  # for large buffers (mremap)
        self.size = end

    def raw(self) -> memoryview:
        """The decoded bytes, the buffer shrunk to them (in place)."""
        self.out.resize(self.size, refcheck=False)
        return self.out.data

    def __bytes__(self) -> bytes:
        """The string's characters so far: the canonical encoding of the decoded groups (a
        group of 4 characters without ``=`` is the only encoding of its 3 bytes), the padded
        group as sent, then the carry."""
        if not self.padded:
            return pybase64.b64encode(self.out.data[:self.size]) + self.carry
        used = self.size - (3 - self.last.count(b"="))
        return pybase64.b64encode(self.out.data[:used]) + self.last


class JsonStream:
    """Feed a JSON body's chunks in order, then :meth:`finish` for what
    ``jsonbody.loads(b"".join(chunks), max_depth)`` gives (or raises)."""

    def __init__(self, max_depth: int, length: int | None = None) -> None:
        self.max_depth, self.length = max_depth, length  # length: the declared body size
        self.received = 0  # bytes of the body consumed before the current chunk
        self.first: bytes | None = None  # held until a second chunk shows the body is split
        self.streaming = False
        self.skeleton = bytearray()
        self.scan = 0  # where the search for the next key resumes in the skeleton
        self.cuts: list[_Cut] = []
        self.spots: list[tuple[int, int]] = []  # each cut's placeholder in the skeleton
        self.cut: _Cut | None = None  # the string being decoded
        self.plain: list[bytes] | None = None  # the body, once it is to be parsed plainly

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the body (the first is held until a second one arrives)."""
        if not chunk:
            return
        if not self.streaming:
            if self.first is None:
                self.first = chunk
                return
            first, self.first, self.streaming = self.first, None, True
            self._consume(first)
        if self.plain is not None:
            self.plain.append(chunk)
        else:
            self._consume(chunk)

    def finish(self) -> Any:
        """The parsed body; ``MalformedRequest`` as :func:`jsonbody.loads` raises it."""
        if self.first is not None:
            return jsonbody.loads(self.first, self.max_depth)
        if self.plain is None:
            if not self.cuts:  # no cut: the skeleton is the body
                return jsonbody.loads(bytes(self.skeleton), self.max_depth)
            if self.cut is None:  # else a string without its end: plain
                decoded = [codec.Base64Bytes(cut.raw(), cut) for cut in self.cuts]
                parsed = jsonbody.loads_skeleton(bytes(self.skeleton), decoded,
                                                 self.max_depth)
                if parsed is not None:
                    return parsed[0]
            self._go_plain(b"")
        assert self.plain is not None
        return jsonbody.loads_plain(b"".join(self.plain), self.max_depth)

    def _consume(self, chunk: bytes) -> None:
        at: int | None = 0
        while at is not None and self.plain is None:
            at = self._inside(chunk, at) if self.cut is not None else self._outside(chunk, at)
        self.received += len(chunk)

    def _outside(self, chunk: bytes, at: int) -> int | None:
        """Skeleton bytes from ``chunk[at:]``; where the next cut's content starts in
        ``chunk``, or None when the chunk is used up."""
        skeleton, key = self.skeleton, jsonbody.KEY
        base = len(skeleton) - at
        skeleton += memoryview(chunk)[at:]
        while True:
            found = skeleton.find(key, self.scan)
            if found < 0:
                self.scan = max(self.scan, len(skeleton) - _KEY_TAIL)
                return None
            value = jsonbody.VALUE_START.match(skeleton, found + len(key))
            if value is None:
                so_far = _VALUE_START_SO_FAR.match(skeleton, found + len(key))
                if so_far is not None and so_far.end() == len(skeleton):
                    if len(skeleton) - found > _MAX_PENDING:
                        self._go_plain(b"")
                    return None  # may still match: wait for the next chunk
                self.scan = found + 1
                continue
            before = found - 1
            while before >= 0 and skeleton[before] in jsonbody.WHITESPACE:
                before -= 1
            if before < 0 or skeleton[before] not in b"{,":
                self.scan = found + 1
                continue
            start = value.end()  # the opening quote came with this chunk: start > base + at
            del skeleton[start:]
            mark = jsonbody.placeholder(len(self.cuts))
            self.spots.append((start, start + len(mark)))
            skeleton += mark
            at = start - base
            # a string's decoded size is at most 3/4 of what is left of the body
            left = (self.length or 0) - self.received - at
            self.cut = _Cut(left // 4 * 3)
            self.cuts.append(self.cut)
            return at

    def _inside(self, chunk: bytes, at: int) -> int | None:
        """Decode the cut's content in ``chunk[at:]``; where its closing quote is in
        ``chunk``, or None when the chunk is used up (or the body is to be parsed plainly)."""
        assert self.cut is not None
        end = chunk.find(b'"', at)
        piece = memoryview(chunk)[at:end if end >= 0 else len(chunk)]
        if not self.cut.feed(piece, final=end >= 0):
            self._go_plain(memoryview(chunk)[at:])
            return None
        if end < 0:
            return None
        self.cut = None
        self.scan = len(self.skeleton) + 1  # after the closing quote
        return end

    def _go_plain(self, rest: bytes | memoryview) -> None:
        """From now on keep the body: rebuilt so far, then ``rest`` and the coming chunks."""
        parts, last = [], 0
        for (start, end), cut in zip(self.spots, self.cuts):
            parts += [bytes(self.skeleton[last:start]), bytes(cut)]
            last = end
        parts += [bytes(self.skeleton[last:]), bytes(rest)]
        self.plain = parts
        self.skeleton, self.cuts, self.spots, self.cut = bytearray(), [], [], None
