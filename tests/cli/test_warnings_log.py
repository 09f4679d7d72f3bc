"""A JSON log stays JSON: NumPy's RuntimeWarnings go through logging and are counted.

A real ``lossd serve --log-json`` is sent inputs whose arithmetic overflows (float16 values whose
squared difference is past float16's range); then every line
the process wrote (stdout and stderr) must parse as a JSON object, the warning must be among
them as a ``py.warnings`` record, and ``/metrics`` must count it by category.
"""

from __future__ import annotations

import json

import httpx
from prometheus_client.parser import text_string_to_metric_families

# (60000 - -60000)^2 is past float16's 65504: the float32 result overflows in the cast back
OVERFLOW = {"input": {"dtype": "float16", "shape": [2], "data": [60000, 1]},
            "target": {"dtype": "float16", "shape": [2], "data": [-60000, 1]}}
CALLS = 3


def warnings_counted(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {sample.labels["category"]: sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "lossd_warnings" for sample in family.samples
            if sample.name == "lossd_warnings_total"}


def test_overflow_warnings_are_json_log_lines_and_counted(spawn) -> None:
    server = spawn("--log-json")
    for _ in range(CALLS):
        r = httpx.post(f"{server.url}/v1/losses/mse", json={"inputs": OVERFLOW}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["loss"] == "Infinity"
    counted = warnings_counted(server.url)
    assert server.terminate() == 0
    records = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert all(isinstance(record, dict) for record in records)
    warned = [r for r in records if r["logger"] == "py.warnings"]
    assert len(warned) == 1, "logged once, then only counted"
    assert warned[0]["level"] == "WARNING"
    assert warned[0]["msg"].startswith("RuntimeWarning: overflow encountered"), warned
    assert counted == {"RuntimeWarning": CALLS}
