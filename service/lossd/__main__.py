"""``python -m lossd``: the ``lossd`` command (:mod:`lossd.cli`).

Importing this module loads no server dependency; ``lossd serve`` lives in :mod:`lossd.serve`.
``from lossd.__main__ import serve`` still finds the server's coroutine (there until the callers
import it from :mod:`lossd.serve`).
"""

from __future__ import annotations

from lossd.cli import main


def __getattr__(name: str) -> object:
    if name == "serve":
        from lossd.serve import serve
        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    raise SystemExit(main())
