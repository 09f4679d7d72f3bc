"""Dataset-level losses over real sockets: gRPC and REST streams and runs equal the core on the
concatenated batches for every loss; mismatched batches are refused and change nothing; run ids
and batch ids behave (idempotent retries, conflicts, finish, expected counts, delete)."""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from lossd._proto.inference import grpc_predict_v2_pb2 as v2pb
from lossd._proto.inference import grpc_predict_v2_pb2_grpc as v2pb_grpc
from lossd._proto.lossd.v1 import lossd_pb2 as pb
from lossd._proto.lossd.v1 import lossd_pb2_grpc as pb_grpc
from lossd._proto.lossd.v1 import runs_pb2 as rpb
from lossd._proto.lossd.v1 import runs_pb2_grpc as rpb_grpc
from lossd.client import (
    AsyncClient,
    AsyncGrpcClient,
    Client,
    Evaluation,
    GrpcClient,
    LossdError,
    grpc_request,
    grpc_tensor,
)
from lossd.losses import REGISTRY, batch_axes, compute, prepare
from tests.losses.test_aggregate import DATASET_RTOL, PER_CALL_LABELS, split
from tests.reference import Case, all_cases
from tests.reference.compare import assert_close
from tests.support.server import RunningServer, start_server


def _one_case_per_loss() -> list[Case]:
    """Per loss: a valid case with at least 3 samples, float64 where there is one."""
    chosen: dict[str, Case] = {}
    for case in all_cases(0):
        if case.error is not None or case.name in PER_CALL_LABELS:
            continue
        call = prepare(case.loss, case.inputs, case.options)
        axes = batch_axes(call)
        if axes is None:
            continue
        first = next(iter(axes))
        if call.arrays[first].shape[axes[first]] < 3:
            continue
        best = chosen.get(case.loss)
        if best is None or (call.out_dtype == np.float64 and prepare(
                best.loss, best.inputs, best.options).out_dtype != np.float64):
            chosen[case.loss] = case
    return list(chosen.values())


# a two-part loss (Terms.addend) whose Σ weights is 0: the aggregate keeps the parts apart
# through the run store, as torch's nan needs
TWO_PART = [c for c in all_cases(0) if c.name == "cross_entropy-zero-weight-sum-smoothing-0.1"]
CASES = [pytest.param(c, id=c.name) for c in _one_case_per_loss() + TWO_PART]


@pytest.fixture(scope="module")
def lossd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("lossd-eval"))
    yield running
    assert running.terminate() == 0, running.log()


def _fixed(case: Case) -> set[str]:
    """Tensors that are per-call constants (class weights): run options, not batch inputs."""
    return {k for k in case.inputs if REGISTRY[case.loss].tensor_map[k].batch_axis is None}


def _dataset_options(case: Case) -> dict:
    spec = REGISTRY[case.loss]
    reduction = case.options.get("reduction", spec.option_map["reduction"].default)
    return {**case.options, "reduction": "mean" if reduction == "none" else reduction}


def test_every_loss_is_streamed() -> None:
    assert {c.values[0].loss for c in CASES} == set(REGISTRY)


@pytest.mark.parametrize("case", CASES)
def test_stream_and_run_equal_the_concatenation(lossd: RunningServer, case: Case) -> None:
    options = _dataset_options(case)
    expected = compute(case.loss, case.inputs, options).loss
    rtol = case.rtol or DATASET_RTOL[expected.dtype.name]
    # a stable seed per case (str hashes change per process: PYTHONHASHSEED)
    batches = split(case, np.random.default_rng(zlib.crc32(case.name.encode())), 3)
    fixed = {k: case.inputs[k] for k in _fixed(case)}
    per_sample = [{k: v for k, v in b.items() if k not in fixed} for b in batches]
    with Client(lossd.url) as rest, GrpcClient(lossd.grpc_target) as native:
        for transport in (rest, native):
            got = transport.evaluate(case.loss, per_sample, **fixed, **options)
            assert got.batches == len(batches)
            assert_close(got.loss, expected, what=f"{type(transport).__name__} stream",
                         rtol=rtol, atol=case.atol or 1e-12)
            for batch, answer in zip(batches, got.results):
                assert_close(answer.loss, compute(case.loss, batch, options).loss,
                             what="per-batch answer", rtol=case.rtol, atol=case.atol)
        run = rest.create_run(case.loss, expected_batches=len(batches), **fixed, **options)
        order = np.random.default_rng(1).permutation(len(batches))
        for i in order:
            assert rest.add_batch(run["run_id"], f"part-{i}", worker=f"w{i % 2}",
                                  **per_sample[i])["counted"]
        aggregate = rest.run(run["run_id"])["aggregate"]
        assert aggregate["batches"] == len(batches)
        value = np.asarray(float(aggregate["value"]), dtype=aggregate["dtype"])
        assert_close(value, expected, what="run", rtol=rtol, atol=case.atol or 1e-12)
        rest.delete_run(run["run_id"])


def _x(n: int, dtype: str = "float64", d: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    return {"input": rng.normal(size=(n, d)).astype(dtype),
            "target": rng.normal(size=(n, d)).astype(dtype)}


def test_grpc_stream_refuses_mismatches_and_counts_the_rest(lossd: RunningServer) -> None:
    good = [_x(2), _x(3), _x(4)]
    requests = [grpc_request("mse", False, good[0]),
                grpc_request("mse", False, _x(2, d=4)),  # per-sample shape
                grpc_request("mse", False, _x(2, "float32")),  # dtype
                grpc_request("mse", False, {**good[1], "reduction": "sum"}),  # options
                grpc_request("l1", False, good[1]),  # loss
                grpc_request("mse", False, {"input": np.zeros(3), "target": np.zeros(3)}),
                pb.ComputeRequest(loss="nope"),
                grpc_request("mse", False, good[1]),
                grpc_request("mse", False, good[2])]
    with grpc.insecure_channel(lossd.grpc_target) as channel:
        answers = list(pb_grpc.LossServiceStub(channel).ComputeStream(iter(requests)))
    kinds = [a.WhichOneof("result") for a in answers]
    assert kinds == ["response"] + ["error"] * 6 + ["response", "response", "aggregate"]
    assert "expected mse(reduction='mean') input float64[N, 3]" in answers[1].error.message
    assert "input float64[N, 4]" in answers[1].error.message
    assert answers[6].error.code == "NOT_FOUND"
    aggregate = answers[-1].aggregate
    assert [r.index for r in aggregate.refused] == [1, 2, 3, 4, 5, 6]  # never a silent gap
    assert [r.error for r in aggregate.refused] == [a.error for a in answers[1:7]]
    whole = {k: np.concatenate([g[k] for g in good]) for k in good[0]}
    assert aggregate.batches == 3 and aggregate.samples == 9 and aggregate.elements == 27
    value = np.frombuffer(aggregate.value.raw, np.float64)[0]
    assert value == pytest.approx(float(compute("mse", whole).loss), rel=1e-12)


def test_empty_stream_answers_an_empty_aggregate(lossd: RunningServer) -> None:
    with grpc.insecure_channel(lossd.grpc_target) as channel:
        answers = list(pb_grpc.LossServiceStub(channel).ComputeStream(iter([])))
    assert [a.WhichOneof("result") for a in answers] == ["aggregate"]
    assert answers[0].aggregate.batches == 0 and not answers[0].aggregate.refused


def test_async_grpc_evaluate(lossd: RunningServer) -> None:
    batches = [_x(2), _x(5)]

    async def evaluate() -> Evaluation:
        async with AsyncGrpcClient(lossd.grpc_target) as client:
            return await client.evaluate("huber", batches, delta=0.5, reduction="sum")
    got = asyncio.run(evaluate())
    whole = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    assert got.loss == pytest.approx(float(compute("huber", whole, {"delta": 0.5,
                                                                    "reduction": "sum"}).loss))


def test_rest_stream_with_curl_style_ndjson(lossd: RunningServer) -> None:
    lines = b"\n".join([
        b'{"inputs": {"input": [[1.0, 2.0]], "target": [[0.0, 0.0]]}}',
        b'{"inputs": {"input": [[1.0], [2.0]], "target": [[0.0], [0.0]]}}',  # shape mismatch
        b"not json",
        b'{"inputs": {"input": [[3.0, 4.0], [0.0, 0.0]], "target": [[0.0, 0.0], [0.0, 0.0]]}}',
        b""])
    r = httpx.post(f"{lossd.url}/v1/losses/mse/stream", content=lines,
                   headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["results"][0] == {"loss": 2.5, "dtype": "float64"}
    assert [list(x) for x in body["results"][1:3]] == [["error"], ["error"]]
    refused = body["aggregate"].pop("refused")  # the batches left out: never a silent gap
    assert refused == [{"index": 1, **body["results"][1]["error"]},
                       {"index": 2, **body["results"][2]["error"]}]
    assert [r["code"] for r in refused] == ["INVALID_ARGUMENT", "INVALID_ARGUMENT"]
    assert body["aggregate"] == {"loss": "mse", "reduction": "mean", "value": 5.0,
                                 "dtype": "float64", "batches": 2, "samples": 3,
                                 "elements": 6, "sum": 30.0, "weight": 6.0}
    assert httpx.post(f"{lossd.url}/v1/losses/nope/stream", content=b"").status_code == 404
    with Client(lossd.url) as client, pytest.raises(LossdError, match="batch 1"):
        client.evaluate("mse", [_x(2), _x(2, d=5)])


def test_torch_warnings_travel_with_answers_and_streams(lossd: RunningServer) -> None:
    """torch warns of mse with a target that broadcasts to another size, and of kl_div's
    'mean': each answer carries the text (REST ``warnings``, gRPC ``warnings``, V2's
    ``warnings`` parameter), streamed batches' answers too."""
    x, y = np.zeros((3, 4)), np.ones((3, 1))
    expected = compute("mse", {"input": x, "target": y}).warnings
    assert expected and expected[0].startswith("Using a target size (torch.Size([3, 1]))")
    r = httpx.post(f"{lossd.url}/v1/losses/mse",
                   json={"inputs": {"input": x.tolist(), "target": y.tolist()}})
    assert r.status_code == 200 and r.json()["warnings"] == list(expected), r.text
    plain = httpx.post(f"{lossd.url}/v1/losses/mse", json={"inputs": {
        "input": x.tolist(), "target": x.tolist()}}).json()
    assert "warnings" not in plain
    p = np.full((2, 3), 1 / 3)
    kl_div = compute("kl_div", {"input": np.log(p), "target": p}).warnings
    assert kl_div and kl_div[0].startswith("reduction: 'mean' divides the total loss")
    line = json.dumps({"inputs": {"input": np.log(p).tolist(), "target": p.tolist()}})
    r = httpx.post(f"{lossd.url}/v1/losses/kl_div/stream", content=f"{line}\n{line}".encode())
    assert [a["warnings"] for a in r.json()["results"]] == [list(kl_div)] * 2, r.text
    with grpc.insecure_channel(lossd.grpc_target) as channel:
        stub = pb_grpc.LossServiceStub(channel)
        request = grpc_request("mse", False, {"input": x, "target": y})
        assert list(stub.Compute(request).warnings) == list(expected)
        request = grpc_request("kl_div", False, {"input": np.log(p), "target": p})
        answers = list(stub.ComputeStream(iter([request, request])))
    assert [list(a.response.warnings) for a in answers[:2]] == [list(kl_div)] * 2
    with Client(lossd.url) as rest, GrpcClient(lossd.grpc_target) as native:
        for client in (rest, native):
            assert client.compute("mse", input=x, target=y).warnings == expected
            assert client.compute("mse", input=x, target=x).warnings == ()
    # V2: a response parameter (V2 parameters are scalars: the texts one per line)
    v2 = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [3, 4],
                      "data": x.ravel().tolist()},
                     {"name": "target", "datatype": "FP64", "shape": [3, 1],
                      "data": y.ravel().tolist()}]}
    r = httpx.post(f"{lossd.url}/v2/models/mse/infer", json=v2)
    assert r.json()["parameters"] == {"warnings": expected[0]}, r.text
    request = v2pb.ModelInferRequest(model_name="mse", inputs=[
        v2pb.ModelInferRequest.InferInputTensor(name=name, datatype="FP64", shape=a.shape)
        for name, a in (("input", x), ("target", y))], raw_input_contents=[
        x.tobytes(), y.tobytes()])
    with grpc.insecure_channel(lossd.grpc_target) as channel:
        response = v2pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert response.parameters["warnings"].string_param == expected[0]


def _client(lossd: RunningServer, transport: str) -> Client | GrpcClient:
    return Client(lossd.url) if transport == "rest" else GrpcClient(lossd.grpc_target)


def _computed(lossd: RunningServer) -> float:
    """Batches the server's engine has computed so far (its Prometheus counter)."""
    metrics = httpx.get(f"{lossd.url}/metrics").text
    return float(re.search(r"^lossd_compute_duration_seconds_count (\S+)$", metrics,
                           re.M).group(1))


def _refused(info: pytest.ExceptionInfo[LossdError], code: str, status: int) -> None:
    """The same error code over both transports; REST also gives the HTTP status."""
    assert info.value.code == code
    assert info.value.status in (status, None)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_run_batches_are_idempotent_and_mismatches_change_nothing(lossd: RunningServer,
                                                                   transport: str) -> None:
    with _client(lossd, transport) as client:
        run = client.create_run("mse", reduction="sum", expected_batches=3)
        rid = run["run_id"]
        assert run["state"] == "open" and run["aggregate"]["batches"] == 0
        assert client.add_batch(rid, "a", worker="w1", **_x(2)) == {"counted": True,
                                                                    "batches": 1}
        computed = _computed(lossd)
        assert client.add_batch(rid, "a", worker="w1", **_x(2)) == {"counted": False,
                                                                    "batches": 1}
        assert _computed(lossd) == computed  # a retry is answered from the store
        before = client.run(rid)
        for bad, match in (({**_x(2, d=4)}, "per-sample shapes"),
                           ({**_x(2, "float32")}, "per-sample shapes"),
                           ({"input": np.zeros(3), "target": np.zeros(3)}, "per-sample"),
                           ({"input": np.zeros((2, 3)), "target": np.zeros(3)}, "batched form"),
                           ({"input": np.zeros((2, 3))}, "target")):
            with pytest.raises(LossdError, match=match) as info:
                client.add_batch(rid, "b", **bad)
            _refused(info, "INVALID_ARGUMENT", 400)
        with pytest.raises(LossdError, match="already counted with other data") as info:
            client.add_batch(rid, "a", **_x(3))
        _refused(info, "FAILED_PRECONDITION", 409)
        assert _computed(lossd) == computed  # refused before computing: they cost nothing
        after = client.run(rid)
        assert after["aggregate"] == before["aggregate"] and after["workers"] == {"w1": 1}
        client.add_batch(rid, "b", worker="w2", **_x(3))
        client.add_batch(rid, "c", worker="w2", **_x(4))
        with pytest.raises(LossdError, match="expected 3 batches") as info:
            client.add_batch(rid, "d", **_x(2))
        _refused(info, "FAILED_PRECONDITION", 409)
        done = client.run(rid)
        whole = {k: np.concatenate([_x(n)[k] for n in (2, 3, 4)]) for k in ("input", "target")}
        assert done["complete"] and done["workers"] == {"w1": 1, "w2": 2}
        assert done["aggregate"]["value"] == pytest.approx(
            float(compute("mse", whole, {"reduction": "sum"}).loss), rel=1e-12)
        assert done["signature"] == "mse(reduction='sum') input float64[N, 3]; " \
                                    "target float64[N, 3]"
        assert client.finish_run(rid)["state"] == "finished"
        assert client.add_batch(rid, "c", **_x(4))["counted"] is False  # a late retry is fine
        client.delete_run(rid)
        with pytest.raises(LossdError) as info:
            client.run(rid)
        _refused(info, "NOT_FOUND", 404)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_async_clients_run_an_evaluation(lossd: RunningServer, transport: str) -> None:
    weight = np.array([1.0, 0.5, 2.0])
    rng = np.random.default_rng(5)
    x, t = rng.normal(size=(7, 3)), rng.integers(0, 3, 7)

    async def evaluation() -> tuple[dict, dict]:
        client = (AsyncClient(lossd.url) if transport == "rest"
                  else AsyncGrpcClient(lossd.grpc_target))
        async with client:
            run = await client.create_run("cross_entropy", expected_batches=2, weight=weight,
                                          label_smoothing=0.1)
            for i, part in enumerate((slice(0, 3), slice(3, 7))):
                assert (await client.add_batch(run["run_id"], f"b{i}", input=x[part],
                                               target=t[part]))["counted"]
            finished = await client.finish_run(run["run_id"])
            await client.delete_run(run["run_id"])
            with pytest.raises(LossdError) as info:
                await client.run(run["run_id"])
            assert info.value.code == "NOT_FOUND"
            return run, finished

    run, finished = asyncio.run(evaluation())
    assert run["state"] == "open" and finished["state"] == "finished" and finished["complete"]
    assert finished["aggregate"]["value"] == pytest.approx(float(compute(
        "cross_entropy", {"input": x, "target": t, "weight": weight},
        {"label_smoothing": 0.1}).loss), rel=1e-12)


def test_run_batches_take_the_dtypes_torch_takes(lossd: RunningServer) -> None:
    """A bfloat16 input of multi_margin (torch's kernel has none) is refused in a run too, over
    REST and gRPC, naming the tensor; the same batch in float32 counts."""
    run = httpx.post(f"{lossd.url}/v1/runs", json={"loss": "multi_margin"}).json()
    scores = {"dtype": "bfloat16", "shape": [2, 3], "data": [0.5, 1.0, -1.0, 2.0, 0.0, 1.5]}
    target = {"dtype": "int64", "shape": [2], "data": [0, 2]}
    url = f"{lossd.url}/v1/runs/{run['run_id']}/batches"
    r = httpx.put(f"{url}/b0", json={"inputs": {"input": scores, "target": target}})
    assert r.status_code == 400 and r.json()["error"]["field"] == "inputs.input", r.text
    assert "dtype bfloat16 is not accepted; expected one of float32, float64" in r.text
    raw = np.array(scores["data"], np.float32).view(np.uint32) >> 16
    request = rpb.AddBatchRequest(run_id=run["run_id"], batch_id="b1", inputs={
        "input": pb.Tensor(dtype=pb.BFLOAT16, shape=[2, 3], raw=raw.astype("<u2").tobytes()),
        "target": grpc_tensor(np.array(target["data"]))})
    with grpc.insecure_channel(lossd.grpc_target) as channel, pytest.raises(
            grpc.RpcError) as info:
        rpb_grpc.RunServiceStub(channel).AddBatch(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "dtype bfloat16 is not accepted" in info.value.details()
    r = httpx.put(f"{url}/b2", json={"inputs": {"input": {**scores, "dtype": "float32"},
                                                "target": target}})
    assert r.status_code == 201 and r.json()["counted"], r.text
    assert httpx.delete(f"{lossd.url}/v1/runs/{run['run_id']}").status_code == 200


def test_run_creation_validates_and_is_retry_safe(lossd: RunningServer) -> None:
    url = f"{lossd.url}/v1/runs"
    weight = {"dtype": "float32", "shape": [3], "data": [1, 2, 3]}
    body = {"loss": "cross_entropy", "options": {"weight": weight, "label_smoothing": 0.1},
            "run_id": "eval-ce-1"}
    first = httpx.post(url, json=body)
    assert first.status_code == 201, first.text
    assert httpx.post(url, json=body).json() == first.json()
    taken = httpx.post(url, json={**body, "options": {"label_smoothing": 0.2}})
    assert taken.status_code == 409 and "another definition" in taken.text
    for bad, status, field in (
            ({"loss": "nope"}, 404, "loss"),
            ({"loss": "mse", "options": {"reduction": "none"}}, 400, "options.reduction"),
            ({"loss": "mse", "options": {"beta": 1}}, 400, "options.beta"),
            ({"loss": "mse", "options": {"input": [1.0]}}, 400, "options.input"),
            ({"loss": "mse", "expected_batches": -1}, 400, "expected_batches"),
            ({"loss": "mse", "run_id": "no spaces"}, 400, "run_id"),
            ({"loss": "mse", "colour": 1}, 422, "colour")):
        r = httpx.post(url, json=bad)
        assert (r.status_code, r.json()["error"]["field"]) == (status, field), r.text
    assert httpx.get(f"{lossd.url}/v1/runs/nope").status_code == 404
    assert httpx.put(f"{lossd.url}/v1/runs/nope/batches/1",
                     json={"inputs": {}}).status_code == 404
    assert httpx.delete(f"{url}/eval-ce-1").status_code == 200
    metrics = httpx.get(f"{lossd.url}/metrics").text
    assert 'lossd_runs_total{event="created"}' in metrics
    assert 'lossd_run_batches_total{outcome="counted"}' in metrics


def test_grpc_run_service(lossd: RunningServer) -> None:
    with grpc.insecure_channel(lossd.grpc_target) as channel:
        stub = rpb_grpc.RunServiceStub(channel)
        weight = np.array([1.0, 0.5, 2.0])
        run = stub.CreateRun(rpb.CreateRunRequest(
            loss="cross_entropy", expected_batches=2,
            options={"weight": pb.OptionValue(tensor=grpc_tensor(weight))}))
        rng = np.random.default_rng(3)
        x, t = rng.normal(size=(7, 3)), rng.integers(0, 3, 7)
        for i, part in enumerate((slice(0, 3), slice(3, 7))):
            request = rpb.AddBatchRequest(run_id=run.run_id, batch_id=str(i), worker="g",
                                          inputs={"input": grpc_tensor(x[part]),
                                                  "target": grpc_tensor(t[part])})
            assert stub.AddBatch(request).counted
            assert not stub.AddBatch(request).counted
        got = stub.GetRun(rpb.RunRef(run_id=run.run_id))
        assert got.complete and dict(got.workers) == {"g": 2} and got.aggregate.samples == 7
        value = np.frombuffer(got.aggregate.value.raw, np.float64)[0]
        assert value == pytest.approx(float(compute(
            "cross_entropy", {"input": x, "target": t, "weight": weight}).loss), rel=1e-12)
        assert stub.FinishRun(rpb.RunRef(run_id=run.run_id)).state == "finished"
        with pytest.raises(grpc.RpcError) as info:
            stub.AddBatch(rpb.AddBatchRequest(run_id=run.run_id, batch_id="late",
                                              inputs={"input": grpc_tensor(x),
                                                      "target": grpc_tensor(t)}))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        stub.DeleteRun(rpb.RunRef(run_id=run.run_id))
        with pytest.raises(grpc.RpcError) as info:
            stub.GetRun(rpb.RunRef(run_id=run.run_id))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary("/lossd.v1.RunService/GetRun")(b"\xff\xff")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_sqlite_store_lives_in_the_data_dir(lossd: RunningServer) -> None:
    assert (Path(lossd.log_path).parent / "runs" / "runs.sqlite3").exists()
