"""``make container-test``: build the lossd image with podman, run it, prove it serves and stops.

Steps (each one fails loudly with the container's log):

1. install podman, runc and debootstrap with apt if they are missing (CI runs as root);
2. build ``localhost/lossd-base:bookworm`` (Debian bookworm + Python 3.11, a stand-in for
   ``python:3.11-slim``, which no registry here serves) with debootstrap if it is missing;
3. build ``localhost/lossd:test`` from the Dockerfile with the base swapped in (``--from``);
4. run it on the host network on free loopback ports, wait for ``/readyz``;
5. compute a loss over REST and over gRPC, scrape ``/metrics``, run the image's HEALTHCHECK,
   check that the server process is not root and that the image holds no test dependencies;
6. send SIGTERM while a slow request is in flight: the request must finish and the container
   must exit 0 within the drain grace.

Prints the image size and the time of each step. Flags follow ``../shared/notes/container.md``:
runc (crun fails on this cgroup setup), lowered ulimits, the host CA bundle mounted for pip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lossd.client import Client, GrpcClient  # noqa: E402
from tests.support.server import free_port  # noqa: E402
from tests.support.slow import slow_ctc_body  # noqa: E402

BASE = "localhost/lossd-base:bookworm"
IMAGE = "localhost/lossd:test"
RUNTIME = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"]
DRAIN_SECONDS = 10.0
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}  # binary -> package


def run(*cmd: str, check: bool = True, capture: bool = True, **kwargs) -> str:
    done = subprocess.run(cmd, check=False, text=True, capture_output=capture, **kwargs)
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n"
                         f"{done.stdout or ''}{done.stderr or ''}")
    return (done.stdout or "").strip()


@contextmanager
def step(name: str) -> Iterator[None]:
    started = time.perf_counter()
    print(f"-- {name}", flush=True)
    yield
    print(f"   ok ({time.perf_counter() - started:.1f} s)", flush=True)


def install_tools() -> None:
    missing = [pkg for binary, pkg in TOOLS.items()
               if shutil.which(binary) is None and not Path("/usr/sbin", binary).exists()]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run("apt-get", "update", "-qq", env=env)
        run("apt-get", "install", "-y", "-qq", *missing, env=env)
    print(f"   {run('podman', '--version')}")


def build_base() -> None:
    if subprocess.run(["podman", "image", "exists", BASE]).returncode == 0:
        print(f"   {BASE} exists")
        return
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    with tempfile.TemporaryDirectory(prefix="lossd-rootfs-") as rootfs:
        run(debootstrap, "--variant=minbase",
            "--include=python3,python3-venv,python3-pip,ca-certificates", "bookworm", rootfs)
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        run("podman", "import", "-", BASE, stdin=tar.stdout)
        tar.wait()


def build_image() -> None:
    cmd = ["podman", "build", *RUNTIME, "--network", "host", "--format", "docker",
           "--from", BASE, "-t", IMAGE]
    # the host's CA bundle: on machines whose outbound TLS is re-signed by a local CA it is the
    # one that trusts it (PIP_CERT names it; Debian's bundle otherwise)
    cert = os.environ.get("PIP_CERT") or HOST_CA_BUNDLE
    if Path(cert).exists():
        folder = str(Path(cert).parent)
        cmd += ["-v", f"{folder}:{folder}:ro", "--build-arg", f"PIP_CERT={cert}"]
    if os.environ.get("PIP_INDEX_URL"):
        cmd += ["--build-arg", f"PIP_INDEX_URL={os.environ['PIP_INDEX_URL']}"]
    run(*cmd, str(ROOT))


def image_size() -> str:
    def mb(image: str) -> float:
        return int(run("podman", "image", "inspect", "--format", "{{.Size}}", image)) / 1e6
    total, base = mb(IMAGE), mb(BASE)
    return f"{total:.0f} MB ({total - base:.0f} MB over the {base:.0f} MB base)"


def check_image_contents() -> None:
    code = ("import importlib.util as u, sys; "
            "bad = [m for m in ('torch', 'pytest', 'hypothesis', 'tritonclient', 'pip') "
            "if u.find_spec(m)]; print(sys.version.split()[0], bad); sys.exit(bool(bad))")
    print(f"   python, test-only modules present: "
          f"{run('podman', 'run', '--rm', *RUNTIME, '--entrypoint', 'python', IMAGE, '-c', code)}")


class Container:
    """One ``podman run -d`` of the image on free loopback ports (host network)."""

    def __init__(self) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        self.name = f"lossd-ctest-{os.getpid()}"
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"

    def start(self) -> None:
        env = {"LOSSD_HOST": "127.0.0.1", "LOSSD_HTTP_PORT": self.http_port,
               "LOSSD_GRPC_PORT": self.grpc_port, "LOSSD_DRAIN_SECONDS": DRAIN_SECONDS}
        run("podman", "run", "-d", "--name", self.name, *RUNTIME, "--network", "host",
            *(arg for k, v in env.items() for arg in ("-e", f"{k}={v}")), IMAGE)

    def state(self, field: str) -> str:
        return run("podman", "inspect", "--format", "{{.State.%s}}" % field, self.name)

    def logs(self) -> str:
        return run("podman", "logs", self.name, check=False)

    def fail(self, message: str) -> SystemExit:
        return SystemExit(f"{message}\n--- container log ---\n{self.logs()}")

    def wait_ready(self, timeout: float = 60.0) -> float:
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if self.state("Running") != "true":
                raise self.fail("the container exited before it was ready")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise self.fail(f"/readyz did not answer 200 within {timeout} s")

    def remove(self) -> None:
        run("podman", "rm", "-f", "-t", "0", self.name, check=False)


def check_serving(c: Container) -> None:
    x = np.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
    y = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    want = float(np.mean((x - y) ** 2))
    with Client(c.url) as rest, GrpcClient(c.grpc_target) as grpc_client:
        for name, client in (("REST", rest), ("gRPC", grpc_client)):
            got = client.compute("mse", input=x, target=y, grad=True)
            if not np.isclose(float(got.loss), want, rtol=1e-12) or not np.allclose(
                    got.grads["input"], 2 * (x - y) / x.size):
                raise c.fail(f"{name}: wrong answer {got}")
            print(f"   {name} mse = {float(got.loss):.6f} (want {want:.6f}), grad ok")


def check_metrics(c: Container) -> None:
    text = httpx.get(f"{c.url}/metrics", timeout=5).text
    for protocol in ("rest", "grpc"):
        line = f'lossd_requests_total{{code="OK",loss="mse",protocol="{protocol}"}} 1.0'
        if line not in text:
            raise c.fail(f"/metrics lacks {line!r}:\n{text}")
    print(f"   /metrics: {len(text.splitlines())} lines, lossd_requests_total counted both calls")


def check_healthcheck_and_user(c: Container) -> None:
    run("podman", "healthcheck", "run", c.name)
    pid = c.state("Pid")
    uids = next(line.split()[1:] for line in Path(f"/proc/{pid}/status").read_text()
                .splitlines() if line.startswith("Uid:"))
    if "0" in uids:
        raise c.fail(f"the server process runs as root (uids {uids})")
    print(f"   HEALTHCHECK passes; server process {pid} runs as uid {uids[0]}")


def check_sigterm_drain(c: Container) -> None:
    answers: list[int] = []
    slow = threading.Thread(target=lambda: answers.append(httpx.post(
        f"{c.url}/v1/losses/ctc", json=slow_ctc_body(), timeout=60).status_code))
    slow.start()
    time.sleep(0.3)  # the slow request is computing
    started = time.perf_counter()
    run("podman", "kill", "--signal", "TERM", c.name)
    try:
        code = run("podman", "wait", c.name, timeout=DRAIN_SECONDS + 15)
    except subprocess.TimeoutExpired:
        raise c.fail(f"no exit within {DRAIN_SECONDS + 15} s of SIGTERM") from None
    elapsed = time.perf_counter() - started
    slow.join(10)
    if code != "0" or answers != [200]:
        raise c.fail(f"SIGTERM: exit code {code}, in-flight request answered {answers}")
    if elapsed > DRAIN_SECONDS:
        raise c.fail(f"SIGTERM: took {elapsed:.1f} s, past the {DRAIN_SECONDS} s drain grace")
    print(f"   SIGTERM: in-flight request answered 200, exit code 0 after {elapsed:.2f} s "
          f"(grace {DRAIN_SECONDS:.0f} s)")


def main() -> None:
    with step("tools"):
        install_tools()
    with step(f"base image {BASE}"):
        build_base()
    with step(f"build {IMAGE}"):
        build_image()
    print(f"   image size: {image_size()}")
    with step("image contents"):
        check_image_contents()
    c = Container()
    try:
        with step(f"run on 127.0.0.1:{c.http_port} (REST) and :{c.grpc_port} (gRPC)"):
            c.start()
            print(f"   ready after {c.wait_ready():.2f} s")
        with step("compute over REST and gRPC"):
            check_serving(c)
        with step("metrics"):
            check_metrics(c)
        with step("healthcheck and user"):
            check_healthcheck_and_user(c)
        with step("SIGTERM drains and exits 0"):
            check_sigterm_drain(c)
    finally:
        c.remove()
    print(f"container-test passed: {IMAGE}, {image_size()}")


if __name__ == "__main__":
    main()
