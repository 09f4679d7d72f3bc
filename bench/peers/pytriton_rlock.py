"""Copied into the pytriton peer's venv with a ``.pth`` line that imports it, so it runs at the
start of every interpreter there, Triton's Python stubs included (bench/peers/__init__.py).

PyTriton 0.7's Python backend stub for 3.11 links the system's libpython3.11 (Debian's 3.11.2
here) but runs the standard library of the venv's interpreter (3.11.7 here), and it ignores
PYTHONPATH. 3.11.7's ``multiprocessing.resource_tracker`` calls ``RLock._recursion_count()``,
which 3.11.2's C ``_thread.RLock`` lacks, so every model fails to load with an AttributeError.
Where the C RLock lacks it, the tracker's lock becomes the standard library's pure-Python RLock,
which has it. Nothing else changes: the losses run in the stub as PyTriton runs them.
"""

import _thread
import threading

if not hasattr(_thread.RLock(), "_recursion_count"):
    from multiprocessing import resource_tracker

    resource_tracker._resource_tracker._lock = threading._PyRLock()
