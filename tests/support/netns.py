"""A private network of hosts on one machine: Linux network namespaces joined by veth pairs
to a bridge (the "switch", itself in a namespace of its own), for tests that need several
hosts (tests/e2e/test_scale.py). Needs root and iproute2.

    net = Network.create()                   # unique names per run
    net.add_host("r1", "10.77.0.11")         # namespace <prefix>-r1, eth0 = 10.77.0.11/24
    proc = net.spawn("r1", ["lossd", "serve"], log=path)   # runs inside r1
    net.cut("r1"); net.heal("r1")            # the host's cable out / in (its switch port down)
    net.destroy()                            # kills what runs inside, removes every namespace

Nothing is added to the machine's own namespace: traffic stays inside the namespaces made here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.support.waiting import wait_until


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=30)


def cannot_make_namespaces() -> str | None:
    """Why namespaces cannot be made here (None: they can): not root, no iproute2, or the
    kernel/container refuses ``ip netns add``."""
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"lsdprobe{secrets.token_hex(3)}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


@dataclass
class Process:
    """A process started inside a host; its output goes to ``log``."""

    host: str
    popen: subprocess.Popen[bytes]
    log: Path
    log_file: IO[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.popen.wait(10)
        finally:
            self.log_file.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Network:
    """Hosts (namespaces) on one /24 behind one bridge; see the module's docstring."""

    prefix: str
    subnet: int = 24
    hosts: dict[str, str] = field(default_factory=dict)  # name -> address
    processes: list[Process] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    @classmethod
    def create(cls) -> Network:
        """A fresh switch namespace with a bridge (names unique to this run)."""
        net = cls(f"lsd{os.getpid() % 100000}{secrets.token_hex(2)}")
        try:
            net._namespace(net.switch)
            ip("-n", net.switch, "link", "add", "br0", "type", "bridge")
            ip("-n", net.switch, "link", "set", "br0", "up")
            ip("-n", net.switch, "link", "set", "lo", "up")
        except BaseException:
            net.destroy()
            raise
        return net

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    def ns(self, host: str) -> str:
        """The namespace of ``host``."""
        return f"{self.prefix}-{host}"

    def _namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self.namespaces.append(name)

    def port(self, host: str) -> str:
        """The switch's end of ``host``'s cable."""
        return f"p-{host}"

    def add_host(self, host: str, address: str) -> None:
        """A namespace with ``eth0`` at ``address`` on the switch, and ``lo`` up."""
        ns = self.ns(host)
        self._namespace(ns)
        ip("-n", self.switch, "link", "add", self.port(host), "type", "veth",
           "peer", "name", "eth0", "netns", ns)
        ip("-n", self.switch, "link", "set", self.port(host), "master", "br0", "up")
        ip("-n", ns, "addr", "add", f"{address}/{self.subnet}", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        self.hosts[host] = address

    def cut(self, host: str) -> None:
        """Partition ``host``: its switch port goes down (packets to and from it are lost;
        its TCP connections stay open and resume when healed)."""
        ip("-n", self.switch, "link", "set", self.port(host), "down")

    def heal(self, host: str) -> None:
        ip("-n", self.switch, "link", "set", self.port(host), "up")

    def spawn(self, host: str, argv: list[str], log: Path,
              env: dict[str, str] | None = None, cwd: Path | None = None) -> Process:
        """Run ``argv`` inside ``host`` (``ip netns exec`` execs it: the pid is its own)."""
        log_file = log.open("ab")
        popen = subprocess.Popen(["ip", "netns", "exec", self.ns(host), *argv],
                                 stdout=log_file, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                                 cwd=cwd)
        process = Process(host, popen, log, log_file)
        self.processes.append(process)
        return process

    def run(self, host: str, argv: list[str], timeout: float = 60.0
            ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``host`` to completion."""
        return subprocess.run(["ip", "netns", "exec", self.ns(host), *argv],
                              capture_output=True, text=True, timeout=timeout)

    def destroy(self) -> list[str]:
        """Kill every process started here or still running inside the namespaces, then
        remove the namespaces (their veths go with them). Returns what could not be removed."""
        for process in self.processes:
            if process.popen.poll() is None:
                process.signal(signal.SIGKILL)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(10)
            with contextlib.suppress(Exception):
                process.log_file.close()
        for ns in self.namespaces:  # anything else that ran inside (a child of a child)
            pids = ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        left = []
        for ns in reversed(self.namespaces):
            try:  # a namespace is busy until its last process is gone
                wait_until(lambda: ip("netns", "del", ns, check=False).returncode == 0,
                           what=f"ip netns del {ns}", timeout=2)
            except TimeoutError:
                left.append(ns)
        self.namespaces = [ns for ns in self.namespaces if ns in left]
        return left
