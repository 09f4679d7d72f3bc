"""Without the torch extra, lossd.torch and lossd.torchmetrics still import (the package's
doctests import every module) and using them names the extra to install."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
sys.modules["torch"] = sys.modules["torchmetrics"] = None  # as if not installed
import lossd.torch, lossd.torchmetrics
for module, name in ((lossd.torch, "RemoteLoss"), (lossd.torchmetrics, "RemoteLossMetric")):
    try:
        getattr(module, name)
    except ModuleNotFoundError as missing:
        assert "pip install 'lossd[torch]'" in str(missing), missing
    else:
        raise AssertionError(name)
assert not hasattr(lossd.torch, "pytest_plugins")  # other names are plain AttributeErrors
"""


def test_the_bridges_import_without_torch_and_name_the_extra() -> None:
    subprocess.run([sys.executable, "-c", CODE], check=True)
