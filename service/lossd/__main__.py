"""``python -m lossd``: the ``lossd`` command (:mod:`lossd.cli`).

Importing this module loads no server dependency; ``lossd serve`` lives in :mod:`lossd.serve`.
"""

from __future__ import annotations

from lossd.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
