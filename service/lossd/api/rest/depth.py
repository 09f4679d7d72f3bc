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

from ...errors import MalformedRequest

_STRUCTURE = b'[]{}"'
_DROP = bytes(sorted(set(range(256)) - set(_STRUCTURE)))
_BRACES = bytes.maketrans(b"{}", b"[]")
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether ``body`` (JSON) nests arrays/objects deeper than ``limit`` (top level is 1).

    Invalid JSON may answer either way: the parser refuses it next.
    """
    if b"\\" in body:  # escapes live only in strings; drop them so \" cannot end one
        body = _ESCAPE.sub(b"", body)
    brackets = body.translate(None, _DROP)
    if b'"' in brackets:
        brackets = _STRING.sub(b"", brackets)
    brackets = brackets.translate(_BRACES)
    if b"[" * (limit + 1) in brackets:
        return True
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")
    return bool(brackets)


def check_json_depth(body: bytes, limit: int) -> None:
    """Raise ``MalformedRequest`` (422) when ``body`` nests deeper than ``limit``."""
    if json_depth_exceeds(body, limit):
        raise MalformedRequest(f"body: JSON nested deeper than {limit} levels "
                               f"(max_json_depth)", field="body")
