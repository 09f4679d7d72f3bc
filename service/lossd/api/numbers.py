"""Numbers from the wire: one parser per kind (int, float, bool, seconds), each with bounds.

Every header and request parameter lossd reads as a number goes through here, so that what
Python would also accept (``int("²")`` is refused but ``"²".isdigit()`` is true; ``float``
takes ``"1_000"``, ``" nan "`` and ``"infinity"``; ``int`` of 5000 digits raises; a 400-digit
JSON integer overflows ``float``) never reaches the code as a surprise. A value outside the
grammar or the bounds is an :class:`~lossd.errors.InvalidArgument` (400 / INVALID_ARGUMENT)
naming the field, with the value cut to :data:`~lossd.errors.SHOWN` characters.

Grammars (ASCII only, surrounding spaces and tabs allowed as HTTP's optional whitespace):
    int      ``[0-9]+`` with at most 19 digits (optionally ``-`` when ``low < 0``)
    float    JSON number syntax (``-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?``), finite
    bool     ``true`` or ``false`` (any case), ``1`` or ``0``
    seconds  a float ``> 0`` and at most :data:`MAX_SECONDS`

``*_value`` functions check a value that a JSON or protobuf parser already produced (a Python
``int`` of any size, a ``float``, a ``bool``).
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..codec import JSON_NUMBER
from ..errors import InvalidArgument, shown

MAX_SECONDS = 86_400.0
"""The longest timeout a request may ask for (one day): beyond it the value is a mistake."""
_INT = re.compile(r"-?[0-9]{1,19}")
_OWS = " \t"


def _refuse(field: str, expected: str, raw: object) -> InvalidArgument:
    return InvalidArgument(f"{field}: expected {expected}; got {shown(raw)}", field=field)


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" in [{low:g}, {high:g}]"
    if low is not None:
        return f" >= {low:g}"
    return "" if high is None else f" <= {high:g}"


def parse_int(raw: str, *, field: str, low: int | None = 0, high: int | None = None) -> int:
    """An integer written in ASCII digits, within ``[low, high]``."""
    text = raw.strip(_OWS)
    if not _INT.fullmatch(text) or (text.startswith("-") and (low is None or low >= 0)):
        raise _refuse(field, f"an integer{_bounds(low, high)}", raw)
    return int_value(int(text), field=field, low=low, high=high, raw=raw)


def parse_float(raw: str, *, field: str, low: float | None = None, high: float | None = None,
                low_open: bool = False) -> float:
    """A finite number in JSON number syntax, within ``[low, high]`` (``(low, high]`` when
    ``low_open``)."""
    text = raw.strip(_OWS)
    if not JSON_NUMBER.fullmatch(text):
        raise _refuse(field, f"a number{_bounds(low, high)}", raw)
    return float_value(float(text), field=field, low=low, high=high, low_open=low_open,
                       raw=raw)


def parse_bool(raw: str, *, field: str) -> bool:
    """``true``/``false`` (any case) or ``1``/``0``."""
    text = raw.strip(_OWS).lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise _refuse(field, "true or false", raw)


def parse_seconds(raw: str, *, field: str, high: float = MAX_SECONDS) -> float:
    """A duration in seconds, ``> 0`` and at most ``high``."""
    return parse_float(raw, field=field, low=0.0, high=high, low_open=True)


def int_value(value: Any, *, field: str, low: int | None = None,  # noqa: ANN401
              high: int | None = None, raw: object = None) -> int:
    """``value`` if it is an integer (not a bool) within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int) or (
            low is not None and value < low) or (high is not None and value > high):
        raise _refuse(field, f"an integer{_bounds(low, high)}", value if raw is None else raw)
    return value


def float_value(value: Any, *, field: str, low: float | None = None,  # noqa: ANN401
                high: float | None = None, low_open: bool = False, raw: object = None
                ) -> float:
    """``value`` as a finite float within the bounds (an int too large for a float refused)."""
    number = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            pass
    if not math.isfinite(number) or (low is not None and (
            number < low or (low_open and number == low))) or (
            high is not None and number > high):
        raise _refuse(field, f"a number{_bounds(low, high)}", value if raw is None else raw)
    return number


def bool_value(value: Any, *, field: str) -> bool:  # noqa: ANN401 - a parsed wire value
    """``value`` if it is a JSON/protobuf boolean."""
    if not isinstance(value, bool):
        raise _refuse(field, "true or false", value)
    return value


def microseconds_value(value: Any, *, field: str) -> float:  # noqa: ANN401
    """A V2 ``timeout`` parameter: whole microseconds ``> 0``, at most :data:`MAX_SECONDS`;
    returned in seconds."""
    return int_value(value, field=field, low=1, high=int(MAX_SECONDS * 1e6)) / 1e6
