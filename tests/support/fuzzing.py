"""Which Hypothesis profile a test run uses, from the environment (tests/conftest.py loads it).

* Neither variable set (``make test``, CI): ``reproducible`` — derandomized, no example
  database: the same examples on every run, so a failure is a fact about the code, not a draw.
* ``LOSSD_FUZZ_SEED=<n>`` (``make fuzz`` draws one per run and prints it): ``seeded`` — random
  examples from that seed, which pytest gets as ``--hypothesis-seed=<n>`` (set here when the
  command line does not give it) and schemathesis as ``--seed`` (tests/api/rest/
  test_fuzz_rest.py): the same seed replays the same examples, so a failure reproduces with
  ``make fuzz LOSSD_FUZZ_SEED=<n>``.
* ``LOSSD_FUZZ_RANDOM=1``: ``explore`` — fresh examples each run, nothing to replay.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pytest
from hypothesis import settings

SEED = "LOSSD_FUZZ_SEED"
RANDOM = "LOSSD_FUZZ_RANDOM"

settings.register_profile("reproducible", derandomize=True, database=None)
settings.register_profile("seeded", derandomize=False, database=None)
settings.register_profile("explore", derandomize=False)


def profile(environ: Mapping[str, str] = os.environ) -> str:
    """The profile's name for ``environ`` (see the module docstring)."""
    if environ.get(SEED):
        return "seeded"
    return "explore" if environ.get(RANDOM) else "reproducible"


def seed(environ: Mapping[str, str] = os.environ) -> int | None:
    """``LOSSD_FUZZ_SEED`` as an integer (``None`` when unset); anything else is refused."""
    value = environ.get(SEED)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise pytest.UsageError(f"{SEED} must be an integer; got {value!r}") from None


def configure_profile() -> None:
    """Load the environment's profile (before test modules build their ``settings``)."""
    settings.load_profile(profile())


def configure(config: pytest.Config) -> None:
    """With ``LOSSD_FUZZ_SEED``, seed Hypothesis as ``--hypothesis-seed`` does (Hypothesis's
    plugin reads that option before conftest hooks run, so its own mechanism is used); a
    different ``--hypothesis-seed`` beside it is refused (schemathesis would replay another)."""
    configure_profile()
    given = seed()
    if given is None:
        return
    option = config.getoption("hypothesis_seed", None)
    if option is not None and str(option) != str(given):
        raise pytest.UsageError(f"--hypothesis-seed={option} differs from {SEED}={given}")
    from hypothesis import core

    core.global_force_seed = given


def header() -> str:
    """One line for pytest's header: the profile and, when seeded, how to replay the run."""
    given = seed()
    if given is None:
        return f"hypothesis profile: {profile()}"
    return (f"hypothesis profile: seeded, seed {given} (replay: make fuzz {SEED}={given}, or "
            f"{SEED}={given} pytest --hypothesis-seed={given} ...)")
