"""Schemathesis (every phase: examples, coverage, fuzzing, stateful) over every route that
``/openapi.json`` of a real running lossd lists, positive and negative data: zero 5xx, and every
answer within the schema (status code, content type, headers, body); schema-invalid requests
are refused (4xx).

``make test`` runs a few cases per route; ``make fuzz`` sets ``LOSSD_FUZZ_EXAMPLES`` for the
full run (>= 1,000 cases), whose printed summary goes into docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

CONFIG = Path(__file__).resolve().parents[2] / "support" / "schemathesis.toml"
EXAMPLES = int(os.environ.get("LOSSD_FUZZ_EXAMPLES", "8"))
MIN_CASES = int(os.environ.get("LOSSD_FUZZ_MIN_CASES", "50"))
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance",
          "negative_data_rejection")


def test_schemathesis_every_route(spawn, tmp_path: Path) -> None:
    s = spawn()
    report = tmp_path / "report.json"
    run = subprocess.run(
        [str(Path(sys.executable).parent / "st"), "--config-file", str(CONFIG),
         "--no-color", "run", f"{s.url}/openapi.json", "--checks", ",".join(CHECKS),
         "--max-examples", str(EXAMPLES), "--seed", os.environ.get("LOSSD_FUZZ_SEED", "0"),
         "--workers", "1", "--generation-database", "none", "--request-timeout", "30",
         "--report", "json", "--report-json-path", str(report)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    summary = json.loads(report.read_text())
    cases = summary["test_cases"]
    operations = summary["operations"]
    print(f"\nschemathesis: {operations['tested']}/{operations['total']} operations, "
          f"{cases['generated']} cases generated, {cases['with_failures']} with failures, "
          f"{cases['errored']} errored")
    assert operations["tested"] == operations["total"] >= 6
    assert cases["generated"] >= MIN_CASES and cases["with_failures"] == cases["errored"] == 0
    assert httpx.get(f"{s.url}/readyz").status_code == 200, "not healthy after fuzzing"
    assert "Traceback" not in s.log(), s.log()
