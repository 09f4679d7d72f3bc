"""``lossd --version``, ``losses``, ``compute`` and ``evaluate`` as subprocesses, against real
servers (REST and gRPC) and the in-process core; values checked against :mod:`lossd.losses`
(the independently tested core) and by hand."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest

import lossd
from lossd.losses import REGISTRY, compute
from tests.cli.support import ROOT, ok, one_line_error
from tests.cli.support import lossd as run_lossd

RNG = np.random.default_rng(15)


def _where(server, transport: str) -> list[str]:
    return {"local": [], "rest": ["--url", server.url],
            "grpc": ["--grpc", server.grpc_target]}[transport]


def test_version() -> None:
    assert ok("--version") == f"lossd {lossd.__version__}\n"


def test_bare_lossd_prints_help() -> None:
    done = run_lossd()
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("usage: lossd") and "compute" in done.stderr


def test_a_misspelt_flag_is_one_line_with_the_closest() -> None:
    line = one_line_error(run_lossd("compute", "mse", "--input", "[1.0]", "--gard", "g.npz"))
    assert "--gard" in line and "did you mean --grad?" in line


def test_losses_table() -> None:
    rows = {line.split()[0]: line.split(None, 2) for line in ok("losses").splitlines()[1:]}
    assert set(rows) == set(REGISTRY)
    for name, (_, family, torch) in rows.items():
        assert (family, torch) == (REGISTRY[name].family, REGISTRY[name].torch)


@pytest.mark.parametrize("transport", ["local", "rest", "grpc"])
def test_losses_json(server, transport: str) -> None:
    listed = json.loads(ok("losses", "--json", *_where(server, transport)))
    assert [d["name"] for d in listed] == sorted(REGISTRY)
    for d in listed:
        spec = REGISTRY[d["name"]]
        assert (d["family"], d["torch"], d["summary"]) == (spec.family, spec.torch,
                                                           spec.summary)
        assert [t["name"] for t in d["tensors"]] == [t.name for t in spec.tensors]
        assert set(d["options"]) == {o.name for o in spec.options}
        assert d["options"]["reduction"]["default"] == spec.option_map["reduction"].default


@pytest.mark.parametrize("transport", ["local", "rest", "grpc"])
def test_compute_mse_by_hand(server, transport: str, tmp_path: Path) -> None:
    x = np.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
    y = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    by_hand = (0.25 + 4.0 + 0.0 + 0.25 + 1.0 + 2.25) / 6  # mean of the squared differences
    where = _where(server, transport)
    printed = ok("compute", "mse", "--input", tmp_path / "x.npy", "--target", tmp_path / "y.npy",
                 *where)
    assert float(printed) == pytest.approx(by_hand, rel=1e-12)
    out = json.loads(ok("compute", "mse", "--input", tmp_path / "x.npy", "--target",
                        tmp_path / "y.npy", "-o", "reduction=sum", "--json", *where))
    assert out == {"loss": pytest.approx(by_hand * 6, rel=1e-12), "dtype": "float64",
                   "shape": []}


@pytest.mark.parametrize("transport", ["local", "rest", "grpc"])
def test_compute_matches_the_core(server, transport: str, tmp_path: Path) -> None:
    """cross_entropy with every kind of source (.npy, .npz:key, .json, inline JSON), options of
    three JSON types and a string, and gradients; equal to lossd.losses.compute in-process."""
    logits = RNG.standard_normal((6, 4)).astype(np.float32)
    labels = np.array([0, 1, 3, 1, 2, 1])
    weight = [0.5, 1.0, 2.0, 1.5]
    np.save(tmp_path / "logits.npy", logits)
    np.savez(tmp_path / "data.npz", labels=labels, other=np.zeros(3))
    (tmp_path / "weight.json").write_text(json.dumps(
        {"dtype": "float32", "shape": [4], "data": weight}))
    options = {"label_smoothing": 0.1, "ignore_index": 1, "reduction": "sum"}
    expected = compute("cross_entropy", {"input": logits, "target": labels,
                                         "weight": np.array(weight, np.float32)},
                       options, grad=True)
    grads = tmp_path / "grads.npz"
    done = run_lossd("compute", "cross_entropy", "--input", tmp_path / "logits.npy",
                     "--target", f"{tmp_path / 'data.npz'}:labels",
                     "--weight", tmp_path / "weight.json", "-o", "label_smoothing=0.1",
                     "-o", "ignore_index=1", "-o", "reduction=sum", "--grad", grads, "--json",
                     *_where(server, transport))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["dtype"] == "float32" and out["shape"] == []
    assert out["loss"] == pytest.approx(float(expected.loss), rel=1e-6)
    assert out["grads"] == {"file": str(grads), "tensors": sorted(expected.grads)}
    with np.load(grads) as written:
        assert written["input"].dtype == np.float32
        np.testing.assert_allclose(written["input"], expected.grads["input"], rtol=1e-5,
                                   atol=1e-7)

    inline = ok("compute", "cross_entropy", "--input", json.dumps(logits.tolist()),
                "--target", json.dumps(labels.tolist()), *_where(server, transport))
    float64 = compute("cross_entropy", {"input": logits.astype(np.float64), "target": labels})
    assert float(inline) == pytest.approx(float(float64.loss), rel=1e-12)


def test_gradients_are_reported_on_stderr(tmp_path: Path) -> None:
    done = run_lossd("compute", "mse", "--input", "[1.0, 2.0]", "--target", "[0.0, 0.0]",
                     "--grad", tmp_path / "g.npz")
    assert done.returncode == 0 and done.stdout == "2.5\n"
    assert done.stderr == f"gradients of input, target written to {tmp_path / 'g.npz'}\n"
    with np.load(tmp_path / "g.npz") as written:  # d/dx mean((x - y)²) = x - y = -d/dy
        assert (written["input"].tolist(), written["target"].tolist()) == ([1.0, 2.0],
                                                                            [-1.0, -2.0])


def test_reduction_none_and_nan(tmp_path: Path) -> None:
    out = json.loads(ok("compute", "mse", "--input", "[1.0, NaN]", "--target", "[0.0, 0.0]",
                        "-o", "reduction=none", "--json"))
    assert out == {"loss": [1.0, "NaN"], "dtype": "float64", "shape": [2]}


@pytest.mark.parametrize("transport", ["local", "rest", "grpc"])
def test_a_refusal_is_one_line(server, transport: str) -> None:
    where = _where(server, transport)
    line = one_line_error(run_lossd("compute", "no_such_loss", "--input", "[1.0]", *where))
    assert line.startswith("lossd: NOT_FOUND: ") and "no_such_loss" in line
    line = one_line_error(run_lossd("compute", "mse", "--input", "[1.0, 2.0]",
                                    "--target", "[1.0]", "-o", "reduction=most", *where))
    assert line.startswith("lossd: INVALID_ARGUMENT: ") and "reduction" in line


def test_unreachable_server_is_one_line() -> None:
    from tests.support.server import free_port
    done = run_lossd("compute", "mse", "--input", "[1.0]", "--target", "[0.0]", "--url",
                     f"http://127.0.0.1:{free_port()}", "--timeout", "2")
    assert one_line_error(done).startswith("lossd: UNAVAILABLE: ")


@pytest.mark.parametrize("args, words", [
    (["--input", "missing.npy"], "missing.npy"),
    (["--input", "[1.0]", "-o", "reduction"], "KEY=VALUE"),
    (["--input", "{\"data\": [1]}"], "not a tensor"),
])
def test_usage_mistakes_are_one_line(args: list[str], words: str) -> None:
    done = run_lossd("compute", "mse", "--target", "[0.0]", *args)
    assert done.returncode == 2 and words in one_line_error(done)


# evaluate: 10 samples of weighted cross_entropy (the weighted mean divides by the whole
# dataset's target weights: not a mean of batch means)
LOGITS = RNG.standard_normal((10, 3))
LABELS = RNG.integers(0, 3, 10)
WEIGHT = np.array([0.2, 1.0, 3.0])
ONE_CALL = compute("cross_entropy", {"input": LOGITS, "target": LABELS, "weight": WEIGHT})


@pytest.fixture
def data_npz(tmp_path: Path) -> Path:
    path = tmp_path / "val.npz"
    np.savez(path, input=LOGITS, target=LABELS, weight=WEIGHT)
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    shards = tmp_path / "shards"
    shards.mkdir()
    for i, (start, stop) in enumerate([(0, 4), (4, 5), (5, 10)]):
        np.savez(shards / f"part-{i}.npz", input=LOGITS[start:stop], target=LABELS[start:stop],
                 weight=WEIGHT)
    return shards


@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("layout", ["npz", "dir"])
def test_evaluate_streams_to_the_one_call_value(server, transport: str, layout: str,
                                                data_npz: Path, data_dir: Path) -> None:
    data = data_npz if layout == "npz" else data_dir
    out = json.loads(ok("evaluate", "cross_entropy", data, "--batch-size", "3", "--json",
                        *_where(server, transport)))
    assert out["value"] == pytest.approx(float(ONE_CALL.loss), rel=1e-9)
    assert (out["batches"], out["samples"], out["reduction"]) == (
        4 if layout == "npz" else 3, 10, "mean")
    text = ok("evaluate", "cross_entropy", data, "--batch-size", "3",
              *_where(server, transport))
    assert float(text) == pytest.approx(float(ONE_CALL.loss), rel=1e-9)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("layout", ["npz", "dir"])
def test_evaluate_into_a_run_counts_each_batch_once(server, transport: str, layout: str,
                                                    data_npz: Path, data_dir: Path) -> None:
    data = data_npz if layout == "npz" else data_dir
    run_id = f"cli-{transport}-{layout}"
    args = ("evaluate", "cross_entropy", data, "--run-id", run_id, "--batch-size", "4",
            "--json", *_where(server, transport))
    first = json.loads(ok(*args))
    assert first["value"] == pytest.approx(float(ONE_CALL.loss), rel=1e-9)
    assert (first["batches"], first["samples"]) == (3, 10)
    again = json.loads(ok(*args))  # the run is reused; its batches are not counted twice
    assert again == first
    with lossd.Client(server.url) as client:
        run = client.run(run_id)
    assert run["aggregate"]["batches"] == 3 and run["complete"]


def test_evaluate_options_and_errors(server, data_npz: Path) -> None:
    summed = json.loads(ok("evaluate", "cross_entropy", data_npz, "-o", "reduction=sum",
                           "--json", "--url", server.url))
    expected = compute("cross_entropy", {"input": LOGITS, "target": LABELS, "weight": WEIGHT},
                       {"reduction": "sum"})
    assert summed["value"] == pytest.approx(float(expected.loss), rel=1e-9)
    assert one_line_error(run_lossd("evaluate", "cross_entropy", data_npz)) == (
        "lossd: evaluate needs a server: --url URL or --grpc HOST:PORT")
    line = one_line_error(run_lossd("evaluate", "cross_entropy", data_npz, "-o",
                                    "label_smoothing=2", "--url", server.url))
    assert line.startswith("lossd: INVALID_ARGUMENT: ") and "label_smoothing" in line


def test_evaluate_shows_progress_on_a_terminal_only(server, data_npz: Path) -> None:
    """A progress bar on stderr when it is a terminal (a pty of 100 columns here), none with
    --quiet; stdout is the loss either way."""
    def run(*extra: str) -> tuple[str, str]:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        done = subprocess.run([sys.executable, "-m", "lossd", "evaluate", "cross_entropy",
                               str(data_npz), "--batch-size", "2", "--url", server.url, *extra],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=slave, text=True,
                              timeout=60)
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the pty is closed and drained
                break
            if not chunk:
                break
            shown += chunk
        os.close(master)
        assert done.returncode == 0
        return done.stdout, shown.decode()

    stdout, bar = run()
    assert float(stdout) == pytest.approx(float(ONE_CALL.loss), rel=1e-9)
    assert "5/5" in bar and "batch" in bar
    stdout, bar = run("--quiet")
    assert float(stdout) == pytest.approx(float(ONE_CALL.loss), rel=1e-9) and bar == ""
