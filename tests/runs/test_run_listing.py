"""Listing runs (``GET /v1/runs``, ``RunService/ListRuns``) on both stores: newest first, pages
by token (runs created meanwhile do not shift the next page) or offset, filtered by state,
deleted runs gone, bad parameters refused with the field named; REST and gRPC agree."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest

from lossd._proto.lossd.v1 import runs_pb2 as rpb
from lossd._proto.lossd.v1 import runs_pb2_grpc as rpb_grpc
from tests.support.server import RunningServer, start_server


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def lossd(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[RunningServer]:
    env = {}
    if request.param == "redis":
        env = {"LOSSD_RUNS_STORE": "redis", "LOSSD_REDIS_URL": request.getfixturevalue("redis_url")}
    running = start_server(tmp_path_factory.mktemp(f"lossd-list-{request.param}"), env=env)
    yield running
    assert running.terminate() == 0, running.log()


def _create(url: str, n: int, prefix: str) -> list[dict]:
    runs = []
    for i in range(n):
        r = httpx.post(f"{url}/v1/runs", json={"loss": "mse", "run_id": f"{prefix}-{i}",
                                               "expected_batches": 4})
        assert r.status_code == 201, r.text
        runs.append(r.json())
    return runs


def _newest_first(runs: list[dict]) -> list[str]:
    return [r["run_id"] for r in sorted(runs, key=lambda r: (r["created"], r["run_id"]),
                                        reverse=True)]


def _pages(url: str, **params) -> tuple[list[str], int]:
    ids, pages, token = [], 0, None
    while True:
        query = {**params, **({"page_token": token} if token else {})}
        answer = httpx.get(f"{url}/v1/runs", params=query)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["runs"]) <= params.get("limit", 20)
        ids += [r["run_id"] for r in body["runs"]]
        pages += 1
        token = body["next_page_token"]
        if token is None:
            return ids, pages


def test_runs_listed_newest_first_by_page_offset_and_state(lossd: RunningServer) -> None:
    prefix = f"list-{uuid.uuid4().hex[:8]}"
    runs = _create(lossd.url, 7, prefix)
    for run in runs[:3]:
        assert httpx.post(f"{lossd.url}/v1/runs/{run['run_id']}/finish").status_code == 200
    x = np.arange(3.0)
    httpx.put(f"{lossd.url}/v1/runs/{runs[4]['run_id']}/batches/b0",
              json={"inputs": {"input": x.tolist(), "target": (x + 0.5).tolist()}})
    order = _newest_first(runs)

    ids, pages = _pages(lossd.url, limit=3)
    assert [i for i in ids if i.startswith(prefix)] == order and pages == 3
    assert _pages(lossd.url)[0] == ids  # default page size 20: one page
    finished = _newest_first(runs[:3])
    assert [i for i in _pages(lossd.url, state="finished", limit=2)[0]
            if i.startswith(prefix)] == finished
    assert [i for i in _pages(lossd.url, state="open")[0] if i.startswith(prefix)] == [
        i for i in order if i not in finished]
    window = httpx.get(f"{lossd.url}/v1/runs", params={"limit": 2, "offset": 2}).json()
    assert [r["run_id"] for r in window["runs"]] == ids[2:4]

    listed = {r["run_id"]: r for r in httpx.get(f"{lossd.url}/v1/runs").json()["runs"]}
    fed = listed[runs[4]["run_id"]]
    assert fed["aggregate"]["batches"] == 1 and fed["expected_batches"] == 4
    assert fed["aggregate"]["value"] == pytest.approx(0.25)
    assert fed == httpx.get(f"{lossd.url}/v1/runs/{runs[4]['run_id']}").json()

    # a page token marks a place: a run created between two pages does not shift the next one
    first = httpx.get(f"{lossd.url}/v1/runs", params={"limit": 3}).json()
    _create(lossd.url, 1, f"{prefix}-late")
    second = httpx.get(f"{lossd.url}/v1/runs", params={
        "limit": 3, "page_token": first["next_page_token"]}).json()
    assert [r["run_id"] for r in first["runs"] + second["runs"]] == ids[:6]

    assert httpx.delete(f"{lossd.url}/v1/runs/{runs[-1]['run_id']}").status_code == 200
    assert runs[-1]["run_id"] not in _pages(lossd.url, limit=5)[0]


@pytest.mark.parametrize("params, status, field", [
    ({"state": "closed"}, 400, "state"),
    ({"limit": 101}, 400, "limit"),
    ({"limit": -1}, 400, "limit"),
    ({"offset": -1}, 400, "offset"),
    ({"page_token": "not-a-token"}, 400, "page_token"),
    ({"limit": "ten"}, 422, "query.limit"),
], ids=["state", "limit-high", "limit-negative", "offset", "token", "limit-not-int"])
def test_list_refusals_name_the_parameter(lossd: RunningServer, params: dict, status: int,
                                          field: str) -> None:
    r = httpx.get(f"{lossd.url}/v1/runs", params=params)
    assert (r.status_code, r.json()["error"]["field"]) == (status, field), r.text


def test_grpc_list_runs_equals_rest(lossd: RunningServer) -> None:
    prefix = f"grpc-{uuid.uuid4().hex[:8]}"
    _create(lossd.url, 4, prefix)
    rest = _pages(lossd.url, limit=3)[0]
    with grpc.insecure_channel(lossd.grpc_target) as channel:
        stub = rpb_grpc.RunServiceStub(channel)
        ids, token = [], ""
        while True:
            page = stub.ListRuns(rpb.ListRunsRequest(limit=3, page_token=token))
            assert len(page.runs) <= 3
            ids += [r.run_id for r in page.runs]
            token = page.next_page_token
            if not token:
                break
        assert ids == rest
        opened = stub.ListRuns(rpb.ListRunsRequest(state="open", limit=100))
        assert {r.state for r in opened.runs} == {"open"}
        assert [r.run_id for r in stub.ListRuns(rpb.ListRunsRequest(offset=1, limit=2)).runs
                ] == rest[1:3]
        with pytest.raises(grpc.RpcError) as info:
            stub.ListRuns(rpb.ListRunsRequest(state="closed"))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "state" in info.value.details()
