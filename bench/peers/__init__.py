"""The peers that ``make bench`` runs beside lossd: other servers of the Open Inference Protocol
(V2), each serving the bench's two losses (bench/peers/losses.py) with a minimal NumPy function
and no validation, on V2 REST and V2 gRPC.

    MLServer 1.7.1               bench/peers/mlserver_model.py
    KServe 0.21 ModelServer      bench/peers/kserve_model.py
    PyTriton 0.7                 bench/peers/pytriton_model.py (Triton's C++ HTTP and gRPC fronts)

The peer servers import this package in their own venvs: it uses the standard library only.
Each is installed on first use into its own venv, ``.venv/peers/<name>``, at the versions pinned
in ``bench/peers/constraints-<name>.txt`` (never into lossd's venv: their pins fight lossd's and
each other's). A peer that cannot be installed or started is skipped with a printed message.

PyTriton on Python 3.11.7: its Python backend stub links the system's libpython 3.11.2 but runs
3.11.7's standard library, whose ``multiprocessing.resource_tracker`` needs a method that the
older C RLock lacks; the venv gets a ``.pth`` line that swaps in the pure-Python RLock where it
is missing (bench/peers/pytriton_rlock.py). The bench prints this note whenever PyTriton runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENVS = ROOT / ".venv" / "peers"
MODELS = ("cross_entropy", "mse")  # bench/peers/losses.py LOSSES, by lossd's loss names
MAX_MESSAGE = 2**30  # gRPC message limit given to the peers that have one (16M-element calls)


@dataclass(frozen=True)
class Peer:
    name: str  # venv and module name
    label: str  # as the tables print it
    requirement: str  # pinned again, with its dependencies, in constraints-<name>.txt
    args: Callable[[int, int], list[str]]  # (http port, grpc port) -> module arguments
    note: str = ""  # printed whenever the peer runs
    start_timeout: float = 90.0

    @property
    def constraints(self) -> Path:
        return HERE / f"constraints-{self.name}.txt"

    @property
    def python(self) -> Path:
        return VENVS / self.name / "bin" / "python"


PYTRITON_NOTE = ("PyTriton 0.7 on Python 3.11.7: its Python backend stub links the system's "
                 "libpython 3.11.2 but runs 3.11.7's standard library; "
                 "multiprocessing.resource_tracker's lock is swapped for the pure-Python RLock "
                 "there (bench/peers/pytriton_rlock.py), or no model loads")

PEERS = (
    Peer("mlserver", "MLServer 1.7.1", "mlserver==1.7.1",
         lambda http, grpc: [str(http), str(grpc)]),
    Peer("kserve", "KServe 0.21", "kserve==0.21.0",
         lambda http, grpc: ["--http_port", str(http), "--grpc_port", str(grpc),
                             "--enable_latency_logging", "false",
                             "--grpc_max_receive_message_length", str(MAX_MESSAGE),
                             "--grpc_max_send_message_length", str(MAX_MESSAGE)]),
    Peer("pytriton", "PyTriton 0.7", "nvidia-pytriton==0.7.0",
         lambda http, grpc: [str(http), str(grpc)], note=PYTRITON_NOTE, start_timeout=120.0),
)
BY_NAME = {peer.name: peer for peer in PEERS}


def _stamp(peer: Peer) -> Path:
    return VENVS / peer.name / ".bench-installed"


def _digest(peer: Peer) -> str:
    sources = [peer.constraints, HERE / "pytriton_rlock.py"]
    return hashlib.sha256(b"".join(p.read_bytes() for p in sources)
                          + peer.requirement.encode()).hexdigest()


def _site_packages(peer: Peer) -> Path:
    out = subprocess.run([str(peer.python), "-c", "import sysconfig; "
                          "print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def install(peer: Peer) -> bool:
    """Create ``.venv/peers/<name>`` and install the pinned peer (once per constraints file).
    False, with the reason printed, when that fails."""
    if _stamp(peer).exists() and _stamp(peer).read_text() == _digest(peer):
        return True
    venv = VENVS / peer.name
    print(f"peers: installing {peer.requirement} into {os.path.relpath(venv, ROOT)} "
          f"(pins: {os.path.relpath(peer.constraints, ROOT)})", flush=True)
    base = Path(getattr(sys, "_base_executable", sys.executable))
    steps = [[str(base), "-m", "venv", "--clear", str(venv)],
             [str(peer.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              "-c", str(peer.constraints), peer.requirement]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode:
            print(f"peers: {peer.label} skipped: {' '.join(step[-2:])} failed:\n"
                  f"{done.stderr.strip()[-2000:]}", flush=True)
            return False
    if peer.name == "pytriton":  # runs at the start of every interpreter of the venv
        site = _site_packages(peer)
        shutil.copy(HERE / "pytriton_rlock.py", site / "pytriton_rlock.py")
        (site / "pytriton_rlock.pth").write_text("import pytriton_rlock\n")
    _stamp(peer).write_text(_digest(peer))
    return True


def _ready(http: int) -> bool:
    try:
        for model in MODELS:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/{model}/ready",
                                        timeout=2):
                pass  # urlopen raises on anything but 2xx
        return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def launch(peer: Peer, http: int, grpc: int) -> subprocess.Popen:
    """Start ``peer`` on loopback in a session of its own; :func:`wait_ready` waits for it."""
    cmd = [str(peer.python), "-m", f"bench.peers.{peer.name}_model", *peer.args(http, grpc)]
    log = tempfile.TemporaryFile()  # the peer's own log, shown if it fails to start
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    proc.stdout = log  # kept with the process, read by wait_ready
    return proc


def wait_ready(peer: Peer, proc: subprocess.Popen, http: int) -> None:
    """Until both models answer ready on V2 REST; RuntimeError (the peer stopped) if the peer
    exits or is not ready within its start timeout."""
    deadline = time.monotonic() + peer.start_timeout
    while not _ready(http):
        if proc.poll() is not None:
            assert proc.stdout is not None
            proc.stdout.seek(0)
            raise RuntimeError(f"{peer.label} exited with {proc.returncode}: "
                               f"{proc.stdout.read().decode(errors='replace')[-2000:]}")
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"{peer.label} not ready after {peer.start_timeout:.0f} s")
        time.sleep(0.2)


def start(peer: Peer, http: int, grpc: int) -> subprocess.Popen:
    proc = launch(peer, http, grpc)
    wait_ready(peer, proc, http)
    return proc


def stop(proc: subprocess.Popen, *, signalled: bool = False) -> None:
    """SIGTERM (each peer stops its own servers on it; ``signalled``: already sent), then
    SIGKILL to the peer's own session (tritonserver and its stubs) if it lingers."""
    if not signalled:
        proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    if proc.stdout:
        proc.stdout.close()


def available(names: list[str] | None = None) -> list[Peer]:
    """The peers to run (all, or those named), each installed; those that cannot be are
    skipped with a message."""
    chosen = PEERS if names is None else tuple(BY_NAME[n] for n in names)
    out = []
    for peer in chosen:
        if install(peer):
            out.append(peer)
            if peer.note:
                print(f"peers: note: {peer.note}", flush=True)
    return out

