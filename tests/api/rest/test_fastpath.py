"""The fast path (``lossd.api.rest.fastpath``) answers every compute request exactly as FastAPI's
documented routes do: the same status, body and headers for good requests and for each kind of
mistake, native and V2, unversioned and versioned. Each request goes through the whole app once
and through the FastAPI app behind the fast path once, in one process on one engine."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from lossd.api.rest import create_app
from lossd.api.rest.fastpath import ComputeFastPath, v2_infer_path
from lossd.engine import Engine
from lossd.settings import Settings

X = np.arange(6, dtype=np.float32).reshape(2, 3).tolist()
Y = np.ones((2, 3), np.float32).tolist()
V2_GOOD = {"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": X},
                      {"name": "target", "shape": [2, 3], "datatype": "FP32", "data": Y}]}
V2_BINARY = orjson.dumps({"inputs": [
    {"name": "input", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
    {"name": "target", "shape": [2], "datatype": "FP32", "data": [0, 0]}]})
REQUESTS: list[tuple[str, Any, dict[str, str]]] = [
    # (path, body: an object sent as JSON or bytes as they are, headers)
    ("/v1/losses/mse", {"inputs": {"input": X, "target": Y}, "grad": True}, {}),
    ("/v1/losses/mse", {"inputs": {"input": X, "target": [1.0]}}, {}),
    ("/v1/losses/mse", {"inputs": {"input": X}}, {}),
    ("/v1/losses/mse", b"{not json", {}),
    ("/v1/losses/mse", {"inputs": {"input": X, "target": Y}, "options": {"reduction": "max"}},
     {}),
    ("/v1/losses/cross_entropy", {"inputs": {"input": X, "target": [0, 7]}}, {}),
    ("/v2/models/mse/infer", V2_GOOD, {}),
    ("/v2/models/mse/versions/1/infer", V2_GOOD, {"X-Request-Id": "mine"}),
    ("/v2/models/mse/versions/2/infer", V2_GOOD, {}),
    ("/v2/models/mse/infer", {**V2_GOOD, "parameters": {"reduction": "sum", "grad": True}}, {}),
    ("/v2/models/mse/infer", {**V2_GOOD, "outputs": [{"name": "nope"}]}, {}),
    ("/v2/models/mse/infer", {**V2_GOOD, "model_name": "l1_loss"}, {}),
    ("/v2/models/mse/infer", {"inputs": [{"name": "input", "shape": [2, 3],
                                          "datatype": "FP32", "data": [1.0]}]}, {}),
    ("/v2/models/mse/infer", {"inputs": "x"}, {}),
    ("/v2/models/mse/infer", b"[1, 2]", {}),
    ("/v2/models/mse/infer", V2_BINARY + np.ones(2, np.float32).tobytes(),
     {"Inference-Header-Content-Length": str(len(V2_BINARY))}),
    ("/v2/models/mse/infer", V2_BINARY, {"Inference-Header-Content-Length": "-1"}),
    ("/v2/models/cross_entropy/infer", {"inputs": [
        {"name": "input", "shape": [2, 3], "datatype": "FP32", "data": X},
        {"name": "target", "shape": [2], "datatype": "INT64", "data": [0, 9]}]}, {}),
]


def _fast_path(app: Any) -> ComputeFastPath:
    while not isinstance(app, ComputeFastPath):  # the middleware in front of it
        app = app.app
    return app


async def _answers(path: str, body: Any, headers: dict[str, str]
                   ) -> tuple[httpx.Response, httpx.Response]:
    engine = Engine(Settings())
    await engine.start()
    try:
        whole = create_app(Settings(), engine)
        routed = _fast_path(whole).app  # FastAPI, with its own middleware
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        answers = []
        for app in (whole, routed):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://lossd") as client:
                answers.append(await client.post(path, content=content, headers={
                    "content-type": "application/json", **headers}))
        return answers[0], answers[1]
    finally:
        await engine.drain()


@pytest.mark.parametrize("path, body, headers", REQUESTS,
                         ids=[f"{i}-{r[0]}" for i, r in enumerate(REQUESTS)])
def test_fast_path_answers_as_the_documented_route(path: str, body: Any,
                                                   headers: dict[str, str]) -> None:
    fast, routed = asyncio.run(_answers(path, body, headers))
    assert fast.status_code == routed.status_code
    assert fast.content == routed.content
    drop = {"x-request-id", "content-length"}
    assert {k: v for k, v in fast.headers.items() if k not in drop} == {
        k: v for k, v in routed.headers.items() if k not in drop}
    if "X-Request-Id" in headers:
        assert fast.headers["x-request-id"] == routed.headers["x-request-id"] == "mine"


def test_mistakes_are_among_the_cases() -> None:
    """The table above holds good answers and refusals of each frontend (a table of 200s
    alone would not test the guards)."""
    statuses = {path.split("/")[1]: set() for path, _, _ in REQUESTS}
    for path, body, headers in REQUESTS:
        fast, _ = asyncio.run(_answers(path, body, headers))
        statuses[path.split("/")[1]].add(fast.status_code)
    assert statuses["v1"] >= {200, 400, 422} and statuses["v2"] >= {200, 400, 404}


@pytest.mark.parametrize("path", ["/v2/models/infer", "/v2/models/mse/versions/infer",
                                  "/v2/models/mse/versions//infer", "/v2/models/a/b/c/infer",
                                  "/v2/models/mse/infer/", "/v1/losses/mse"])
def test_other_paths_are_not_v2_infer(path: str) -> None:
    assert v2_infer_path(path) is None
