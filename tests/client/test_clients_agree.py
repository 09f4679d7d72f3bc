"""The four Python clients behave as one: the same call through ``Client``, ``AsyncClient``,
``GrpcClient`` and ``AsyncGrpcClient`` gives the same loss, dtype and gradients (equal to the
core in-process, which tests/losses checks against torch), and the same error (class, code,
field, message) for the same mistake; tensors in any array-like form; connection failures,
timeouts, API keys with TLS, a server restarted mid-call, and ids with any characters."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lossd
from lossd.client import Evaluation, LossInfo, LossResult
from lossd.errors import DeadlineExceeded, ErrorCode, InvalidArgument, Unauthenticated
from lossd.losses import compute
from tests.reference import Case, all_cases
from tests.reference.compare import assert_close
from tests.support.certs import make_pki
from tests.support.server import RunningServer, free_port, start_server
from tests.support.waiting import wait_until

KINDS = ("rest", "async-rest", "grpc", "async-grpc")


def _cases() -> list[Case]:
    """Per loss: a float64 case, a float32 case and a case with options (valid, with grads)."""
    chosen: dict[tuple[str, str], Case] = {}
    for case in all_cases(7):
        if case.error is not None or not case.grad:
            continue
        dtype = next(iter(case.inputs.values())).dtype.name
        kind = "options" if case.options else dtype
        chosen.setdefault((case.loss, kind), case)
    return list(chosen.values())


CASES = _cases()


def call(server: RunningServer, kind: str, method: str, *args: Any, **kwargs: Any) -> Any:
    """``method(*args, **kwargs)`` on a fresh client of ``kind``; the error raised, if any."""
    client_kwargs = kwargs.pop("client", {})
    try:
        if kind == "rest":
            with lossd.Client(server.url, **client_kwargs) as client:
                return getattr(client, method)(*args, **kwargs)
        if kind == "grpc":
            with lossd.GrpcClient(server.grpc_target, **client_kwargs) as grpc_client:
                return getattr(grpc_client, method)(*args, **kwargs)

        async def run() -> Any:
            if kind == "async-rest":
                async with lossd.AsyncClient(server.url, **client_kwargs) as a:
                    return await getattr(a, method)(*args, **kwargs)
            async with lossd.AsyncGrpcClient(server.grpc_target, **client_kwargs) as g:
                return await getattr(g, method)(*args, **kwargs)
        return asyncio.run(run())
    except lossd.LossdError as error:
        return error


def _signature(error: Any) -> tuple[Any, ...]:
    assert isinstance(error, lossd.LossdError), f"expected an error; got {error!r}"
    return type(error), error.code, error.field, error.message


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.loss}-{c.id}")
def test_every_loss_same_answer_on_four_clients(server: RunningServer, case: Case) -> None:
    expected = compute(case.loss, case.inputs, case.options, grad=True)
    answers = {kind: call(server, kind, "compute", case.loss, grad=True,
                          **case.inputs, **case.options) for kind in KINDS}
    for kind, answer in answers.items():
        assert isinstance(answer, LossResult), f"{kind}: {answer!r}"
        assert answer.loss.dtype == expected.loss.dtype, kind
        assert_close(answer.loss, expected.loss, what=f"{kind} loss", rtol=case.rtol,
                     atol=case.atol)
        assert set(answer.grads) == set(expected.grads), kind
        for name, grad in expected.grads.items():
            assert answer.grads[name].dtype == grad.dtype, (kind, name)
            assert_close(answer.grads[name], grad, what=f"{kind} grad {name}",
                         rtol=case.grad_rtol, atol=case.grad_atol)
    first = answers["rest"]
    for kind, answer in answers.items():  # the transports agree to the bit
        np.testing.assert_array_equal(answer.loss, first.loss, err_msg=kind)
        for name in first.grads:
            np.testing.assert_array_equal(answer.grads[name], first.grads[name], err_msg=kind)


class ArrayOnly:
    """Only ``__array__`` (what pandas, xarray, PIL and many others offer)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.array if dtype is None else self.array.astype(dtype)


class DlpackOnly:
    """Only DLPack (what JAX and CuPy arrays offer)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return self.array.__dlpack_device__()


LOGITS = np.array([[1.0, 2.0, 0.5], [0.1, -1.0, 3.0]], dtype=np.float32)
FORMS: dict[str, dict[str, Any]] = {
    "ndarray": {"input": LOGITS, "target": np.array([1, 2])},
    "lists": {"input": LOGITS.tolist(), "target": [1, 2]},
    "tuples": {"input": tuple(map(tuple, LOGITS.tolist())), "target": (1, 2)},
    "__array__": {"input": ArrayOnly(LOGITS), "target": ArrayOnly(np.array([1, 2]))},
    "dlpack": {"input": DlpackOnly(LOGITS), "target": DlpackOnly(np.array([1, 2]))},
    "numpy scalar options": {"input": LOGITS, "target": np.array([1, 2]),
                             "ignore_index": np.int64(2), "label_smoothing": np.float32(0.25)},
}


@pytest.mark.parametrize("form", FORMS)
def test_tensor_forms(server: RunningServer, form: str) -> None:
    arguments = FORMS[form]
    tensors = {k: v.array if isinstance(v, (ArrayOnly, DlpackOnly)) else np.asarray(v)
               for k, v in arguments.items() if k in ("input", "target")}
    options = {k: v.item() for k, v in arguments.items() if k not in tensors}
    expected = compute("cross_entropy", tensors, options, grad=True)
    for kind in KINDS:
        answer = call(server, kind, "compute", "cross_entropy", grad=True, **arguments)
        assert isinstance(answer, LossResult), f"{kind}: {answer!r}"
        assert answer.loss.dtype == expected.loss.dtype
        np.testing.assert_allclose(answer.loss, expected.loss, rtol=1e-6)
        np.testing.assert_allclose(answer.grads["input"], expected.grads["input"], rtol=1e-6)


def test_python_scalars_are_tensors_where_the_registry_says_so(server: RunningServer) -> None:
    expected = compute("mse", {"input": np.asarray(1.5), "target": np.asarray(2.0)}, {})
    for kind in KINDS:
        answer = call(server, kind, "compute", "mse", input=1.5, target=2.0)
        assert isinstance(answer, LossResult), f"{kind}: {answer!r}"
        assert answer.loss.dtype == np.float64 and answer.loss == expected.loss


MISTAKES: dict[str, tuple[str, dict[str, Any], ErrorCode, str | None]] = {
    "unknown loss": ("mse2", {"input": [1.0], "target": [1.0]}, ErrorCode.NOT_FOUND, "loss"),
    "shapes": ("mse", {"input": np.zeros((2, 3)), "target": np.zeros(4)},
               ErrorCode.INVALID_ARGUMENT, "inputs.target"),
    "missing tensor": ("mse", {"input": np.zeros(3)}, ErrorCode.INVALID_ARGUMENT,
                       "inputs.target"),
    "option value": ("mse", {"input": [1.0], "target": [1.0], "reduction": "avg"},
                     ErrorCode.INVALID_ARGUMENT, "options.reduction"),
    "unknown option": ("mse", {"input": [1.0], "target": [1.0], "beta": 2.0},
                       ErrorCode.INVALID_ARGUMENT, "options.beta"),
    "class index": ("cross_entropy", {"input": LOGITS, "target": [1, 7]},
                    ErrorCode.INVALID_ARGUMENT, "inputs.target"),
    "option type": ("cross_entropy", {"input": LOGITS, "target": [1, 2],
                                      "ignore_index": 1.5},
                    ErrorCode.INVALID_ARGUMENT, "options.ignore_index"),
    "not an array": ("mse", {"input": [1.0, [2.0]], "target": [1.0, 2.0]},
                     ErrorCode.INVALID_ARGUMENT, "inputs.input"),
    "text tensor": ("mse", {"input": ["a"], "target": [1.0]}, ErrorCode.INVALID_ARGUMENT,
                    "inputs.input"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_same_error_on_four_clients(server: RunningServer, mistake: str) -> None:
    loss, arguments, code, field = MISTAKES[mistake]
    errors = {kind: call(server, kind, "compute", loss, **arguments) for kind in KINDS}
    signatures = {kind: _signature(error) for kind, error in errors.items()}
    assert len(set(signatures.values())) == 1, signatures
    error = errors["grpc"]
    assert error.code is code and error.field == field, signatures
    refused_here = mistake in ("not an array", "text tensor")  # before anything is sent
    assert (errors["rest"].status is None) == refused_here and errors["grpc"].status is None


def test_losses_are_the_same_objects(server: RunningServer) -> None:
    lists = {kind: call(server, kind, "losses") for kind in KINDS}
    for kind, losses in lists.items():
        assert all(isinstance(info, LossInfo) for info in losses), kind
        assert losses == lists["rest"], kind
    names = {info.name for info in lists["rest"]}
    assert len(names) == 37 and "cross_entropy" in names


def test_evaluate_and_runs_agree(server: RunningServer) -> None:
    batches = [{"input": np.arange(4.0), "target": np.ones(4)},
               {"input": np.arange(2.0), "target": np.zeros(2)}]
    everything = compute("mse", {"input": np.r_[np.arange(4.0), np.arange(2.0)],
                                 "target": np.r_[np.ones(4), np.zeros(2)]}, {})
    for kind in KINDS:
        evaluation = call(server, kind, "evaluate", "mse", batches)
        assert isinstance(evaluation, Evaluation), f"{kind}: {evaluation!r}"
        assert evaluation.loss == everything.loss and evaluation.batches == 2


IDS = ["shard-0/17", "a?b=c&d#e", "100%", "with space", "über/ß", "../..", "x" * 200]


@pytest.mark.parametrize("kind", KINDS)
def test_batch_ids_with_any_characters(server: RunningServer, kind: str) -> None:
    run = call(server, kind, "create_run", "mse", reduction="sum")
    run_id = run["run_id"]
    for n, batch_id in enumerate(IDS):
        tensors = {"input": np.full(2, float(n)), "target": np.zeros(2)}
        assert call(server, kind, "add_batch", run_id, batch_id, **tensors)["counted"]
        again = call(server, kind, "add_batch", run_id, batch_id, **tensors)
        assert again == {"counted": False, "batches": n + 1}, batch_id
    total = sum(2 * float(n) ** 2 for n in range(len(IDS)))
    assert call(server, kind, "run", run_id)["aggregate"]["value"] == total


@pytest.mark.parametrize("run_id", ["a/b", "bad id", "é"])
def test_refused_run_ids_name_the_id(server: RunningServer, run_id: str) -> None:
    created = {kind: call(server, kind, "create_run", "mse", run_id=run_id) for kind in KINDS}
    assert len({_signature(e) for e in created.values()}) == 1, created
    assert created["rest"].field == "run_id" and "run_id" in created["rest"].message
    fetched = {kind: call(server, kind, "run", run_id) for kind in KINDS}
    assert len({_signature(e) for e in fetched.values()}) == 1, fetched
    assert fetched["grpc"].field == "run_id"


def test_connection_refused_is_unavailable(tmp_path: Path) -> None:
    nobody = RunningServer(None, free_port(), free_port(), tmp_path, None, "http")  # type: ignore[arg-type]
    for kind in KINDS:
        error = call(nobody, kind, "compute", "mse", input=[1.0], target=[1.0],
                     client={"timeout": 5, "retries": 1})
        assert isinstance(error, lossd.errors.Unavailable), f"{kind}: {error!r}"
        assert "refused" in error.message.lower() or "connect" in error.message.lower()


def test_timeout_is_deadline_exceeded(server: RunningServer) -> None:
    steps = 300_000  # CTC loops over time: seconds of compute (tests/support/slow.py)
    slow = {"log_probs": np.log(np.full((steps, 1, 2), 0.5, dtype=np.float32)),
            "targets": [[1, 1, 1]], "input_lengths": [steps], "target_lengths": [3]}
    for kind in KINDS:
        started = time.monotonic()
        error = call(server, kind, "compute", "ctc", timeout=0.3, **slow)
        assert isinstance(error, DeadlineExceeded), f"{kind}: {error!r}"
        assert time.monotonic() - started < 5


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Any]]:
    tmp = tmp_path_factory.mktemp("secured")
    pki = make_pki(tmp)
    server = start_server(tmp, "--tls-cert-file", str(pki.server_cert), "--tls-key-file",
                          str(pki.server_key), env={"LOSSD_API_KEYS": "k1,k2"},
                          verify=ssl.create_default_context(cafile=str(pki.ca)))
    yield server, pki
    server.terminate()


def test_api_key_and_tls_on_every_client(secured: tuple[RunningServer, Any]) -> None:
    server, pki = secured
    tls = {"ca": str(pki.ca), "tls": True}
    for kind in KINDS:
        answer = call(server, kind, "compute", "mse", input=[1.0, 2.0], target=[0.0, 0.0],
                      client={"api_key": "k2", **tls})
        assert isinstance(answer, LossResult) and answer.loss == 2.5, f"{kind}: {answer!r}"
        for key in (None, "wrong"):
            error = call(server, kind, "compute", "mse", input=[1.0], target=[0.0],
                         client={"api_key": key, **tls})
            assert isinstance(error, Unauthenticated), f"{kind} key={key}: {error!r}"
            assert error.code == "UNAUTHENTICATED"


def test_tls_failure_is_a_clear_error(secured: tuple[RunningServer, Any]) -> None:
    server, _ = secured  # the server's CA is not among the system roots
    for kind in KINDS:
        error = call(server, kind, "compute", "mse", input=[1.0], target=[0.0],
                     client={"api_key": "k1", "tls": True, "timeout": 5, "retries": 0})
        assert isinstance(error, lossd.errors.Unavailable), f"{kind}: {error!r}"


def test_a_server_restarted_mid_call_is_survived(tmp_path: Path) -> None:
    ports = (free_port(), free_port())
    holder: dict[str, RunningServer] = {"server": start_server(tmp_path, ports=ports)}
    answers: dict[str, list[Any]] = {kind: [] for kind in KINDS}

    def restart() -> None:
        wait_until(lambda: all(answers.values()), what="an answer to every client")
        old = holder["server"]
        old.terminate()  # SIGTERM: drains, then exits
        # nothing listens until the new process has imported lossd and bound the ports: the
        # gap the clients' retries must bridge
        holder["server"] = start_server(tmp_path, ports=ports)

    restarter = threading.Thread(target=restart)
    restarter.start()
    try:
        while True:  # calls before, across and (a last round) after the restart
            restarted = not restarter.is_alive()
            for kind in KINDS:  # retries up to the deadline: a loaded machine starts slowly
                answers[kind].append(call(holder["server"], kind, "compute", "mse",
                                          input=[3.0], target=[1.0],
                                          client={"timeout": 20, "retries": 100}))
            if restarted:
                break
        for kind, results in answers.items():
            failures = [r for r in results if not isinstance(r, LossResult)]
            assert not failures, f"{kind}: {failures[:3]}"
            assert all(r.loss == 4.0 for r in results)
    finally:
        restarter.join()
        holder["server"].terminate()


def test_invalid_argument_before_sending() -> None:
    client: Callable[..., Any] = lossd.Client("http://127.0.0.1:9").compute
    with pytest.raises(InvalidArgument, match="input: expected numbers"):
        client("mse", input=["text"], target=[1.0])


def test_list_runs_pages_alike(spawn) -> None:
    s = spawn()
    made = [call(s, "rest", "create_run", "mse", run_id=f"r{i}")["run_id"] for i in range(5)]
    call(s, "grpc", "finish_run", "r1")
    for kind in KINDS:
        first = call(s, kind, "list_runs", limit=3)
        assert [r["run_id"] for r in first["runs"]] == made[::-1][:3], kind
        rest = call(s, kind, "list_runs", limit=3, page_token=first["next_page_token"])
        assert [r["run_id"] for r in rest["runs"]] == made[::-1][3:], kind
        assert rest["next_page_token"] is None
        finished = call(s, kind, "list_runs", state="finished")["runs"]
        assert [r["run_id"] for r in finished] == ["r1"], kind


def _same_run(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert set(a) == set(b), (sorted(a), sorted(b))
    for key in a:
        if key == "options":
            assert set(a[key]) == set(b[key])
            for name, value in a[key].items():
                np.testing.assert_array_equal(value, b[key][name], err_msg=name)
                assert np.asarray(value).dtype == np.asarray(b[key][name]).dtype, name
        elif key != "updated":
            assert a[key] == b[key], key


def test_runs_read_the_same_on_four_clients(server: RunningServer) -> None:
    weight = np.array([1.0, 2.0, 0.5], dtype=np.float32)
    created = call(server, "grpc", "create_run", "cross_entropy", weight=weight,
                   label_smoothing=0.1, expected_batches=2)
    run_id = created["run_id"]
    call(server, "rest", "add_batch", run_id, "a/1", input=LOGITS, target=[0, 2])
    runs = {kind: call(server, kind, "run", run_id) for kind in KINDS}
    for kind, run in runs.items():
        _same_run(run, runs["rest"])
    np.testing.assert_array_equal(runs["grpc"]["options"]["weight"], weight)
    assert runs["grpc"]["options"]["label_smoothing"] == 0.1
    fixed = ("run_id", "loss", "options", "expected_batches", "created")
    _same_run({k: created[k] for k in fixed}, {k: runs["rest"][k] for k in fixed})
