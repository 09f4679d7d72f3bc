"""The API describes itself: /v1/losses from the registry, /openapi.json for every route,
ListLosses over gRPC, and generated stubs that match protos/."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from lossd.client import GrpcClient
from lossd.losses import REGISTRY

ROOT = Path(__file__).resolve().parents[2]


def test_list_losses_from_registry(server) -> None:
    losses = httpx.get(f"{server.url}/v1/losses").json()["losses"]
    assert [x["name"] for x in losses] == sorted(REGISTRY)
    for info in losses:
        spec = REGISTRY[info["name"]]
        props = info["options"]["properties"]
        assert set(props) == set(spec.option_map)
        for option in spec.options:
            schema = props[option.name]
            assert "type" in schema and "description" in schema
            if option.default is not None and option.type is not float or (
                    isinstance(option.default, float) and option.default == option.default):
                assert schema.get("default") == option.default, (info["name"], option.name)
        assert info["differentiable"] == list(spec.differentiable)
        assert info["torch"] == spec.torch
    one = httpx.get(f"{server.url}/v1/losses/cross_entropy").json()
    assert one["options"]["properties"]["label_smoothing"]["default"] == 0.0
    assert one["options"]["properties"]["ignore_index"]["default"] == -100


def test_grpc_list_losses(server) -> None:
    with GrpcClient(server.grpc_target) as client:
        assert sorted(x.name for x in client.losses()) == sorted(REGISTRY)


def test_openapi_documents_every_route_with_examples(server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    paths = spec["paths"]
    for route in ("/v1/losses", "/v1/losses/{name}", "/v1/batch", "/livez", "/readyz",
                  "/metrics", "/v1/losses/{name}/stream", "/v1/runs", "/v2",
                  "/v2/models/{loss}", "/v2/models/{loss}/infer",
                  "/v2/models/{loss}/versions/{version}/infer", "/v2/health/ready"):
        assert route in paths, route
    for route in ("/v1/losses/cross_entropy", "/v1/batch", "/v2/models/{loss}/infer"):
        body = paths[route]["post"]["requestBody"]["content"]["application/json"]
        assert body["example"] and body["schema"], route
        assert {"400", "404", "413", "503"} <= set(paths[route]["post"]["responses"])


def test_openapi_has_one_request_schema_per_loss(server) -> None:
    """Each loss's body names its own tensors (required ones required) and options (torch's
    types, defaults, bounds and choices), from the registry."""
    spec = httpx.get(f"{server.url}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for name, loss in REGISTRY.items():
        body = spec["paths"][f"/v1/losses/{name}"]["post"]["requestBody"]["content"][
            "application/json"]["schema"]
        model = schemas[body["$ref"].rsplit("/", 1)[1]]
        inputs = schemas[model["properties"]["inputs"]["$ref"].rsplit("/", 1)[1]]
        options = schemas[model["properties"]["options"]["$ref"].rsplit("/", 1)[1]]
        assert set(inputs["properties"]) == {t.name for t in loss.tensors}, name
        assert set(inputs["required"]) == {t.name for t in loss.tensors if not t.optional}
        assert {o.name for o in loss.options} <= set(options["properties"]), name
        assert options["additionalProperties"] is False
        for option in loss.options:
            schema = options["properties"][option.name]
            if option.choices is not None:
                assert set(option.choices) <= set(schema.get("enum", [])), (name, option.name)
            if option.minimum is not None and not option.exclusive_minimum:
                assert schema["minimum"] == option.minimum, (name, option.name)
    smooth = schemas["SmoothL1Options"]["properties"]["beta"]
    assert smooth["minimum"] == 0 and smooth["default"] == 1.0


@pytest.mark.parametrize("body, status, field", [
    ({"inputs": {"input": [1.0], "target": [1.0]}, "grad": "yes"}, 422, "grad"),
    ({"inputs": {"input": [1.0], "target": [1.0]}, "extra": 1}, 422, "extra"),
    ({"inputs": {"input": [1.0], "target": [1.0]}, "options": []}, 422, "options"),
    ({"inputs": {"input": [1.0], "target": [1.0]}, "options": {"beta": "1"}}, 400,
     "options.beta"),
    ({"inputs": {"input": [1.0], "target": [1.0]}, "options": {"beta": -1.0}}, 400,
     "options.beta"),
    ({"inputs": {"input": [1.0], "target": [1.0]}, "options": {"gamma": 1.0}}, 400,
     "options.gamma"),
], ids=["grad-not-bool", "unknown-field", "options-not-object", "option-type", "option-bound",
        "unknown-option"])
def test_request_model_refusals_name_the_field(server, body, status: int, field: str) -> None:
    r = httpx.post(f"{server.url}/v1/losses/smooth_l1", json=body)
    assert r.status_code == status and r.json()["error"]["field"] == field, r.text


def test_option_the_core_accepts_passes_the_model(server) -> None:
    """An integer option sent as 2.0 is torch's 2 (the core's rule), though the schema says
    integer."""
    r = httpx.post(f"{server.url}/v1/losses/cross_entropy", json={"inputs": {
        "input": [[1.0, 2.0, 3.0]], "target": [2]}, "options": {"ignore_index": 1.0}})
    assert r.status_code == 200, r.text


def test_batch_endpoint_answers_in_order_with_own_errors(server) -> None:
    r = httpx.post(f"{server.url}/v1/batch", json={"requests": [
        {"loss": "mse", "inputs": {"input": [1.0, 2.0], "target": [0.0, 0.0]}},
        {"loss": "nope", "inputs": {}},
        {"loss": "l1", "inputs": {"input": [1.0, -2.0], "target": [0.0, 0.0]},
         "options": {"reduction": "sum"}}]})
    assert r.status_code == 200
    results = r.json()["results"]
    assert results[0] == {"loss": 2.5, "dtype": "float64"}
    assert results[1]["error"]["code"] == "NOT_FOUND"
    assert results[2] == {"loss": 3.0, "dtype": "float64"}


def test_generated_stubs_match_protos(tmp_path) -> None:
    """Regenerating service/_proto with the pinned grpcio-tools changes nothing."""
    out = tmp_path / "_proto"
    subprocess.run([sys.executable, str(ROOT / "protos" / "generate.py"), str(out)], check=True,
                   capture_output=True)
    committed = ROOT / "service" / "lossd" / "_proto"
    generated = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    existing = sorted(p.relative_to(committed) for p in committed.rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts)
    assert generated == existing
    mismatch = [str(p) for p in generated if not filecmp.cmp(out / p, committed / p,
                                                             shallow=False)]
    assert not mismatch, f"stale stubs: {mismatch}; run make proto"
