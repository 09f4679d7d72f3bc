"""Shared pytest setup.

Hypothesis runs derandomized (the same examples on every run), so CI is reproducible: a failure
is a fact about the code, not about a draw. ``LOSSD_FUZZ_RANDOM=1`` explores fresh examples.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("reproducible", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile("explore" if os.environ.get("LOSSD_FUZZ_RANDOM") else "reproducible")
