"""The web console and the offline API docs in a real headless Chromium (Debian's ``chromium``,
driven by Playwright): the catalogue lists every loss; the MSE/L1/smooth-L1/Huber comparison is
drawn with the core's numbers; a slider redraws a curve with exactly the API's answers; try-it
computes cross_entropy with gradients and its curl and Python snippets, run as shown, give the
same number (and so does the grpcurl snippet's body, sent to the same method); a run fed by a
client reaches 100%; the load page reads /metrics; /docs and /redoc render with every other
origin blocked; with API keys on, no API data loads without the key (and the docs' pages send
the key the console was given). Every page is watched: a request for anything outside the lossd
origin fails the test.

Screenshots go to docs/img/console-*.png (the README shows them). Without chromium the tests
skip, except in CI, where .ci/run installs it: there they fail (tests/support/tools.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import json_format
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from lossd._proto.lossd.v1 import lossd_pb2 as pb
from lossd._proto.lossd.v1 import lossd_pb2_grpc as pb_grpc
from lossd.client import Client
from lossd.losses import REGISTRY, compute
from tests.support import tools
from tests.support.server import ROOT, RunningServer, start_server

CHROMIUM = tools.which("chromium")
IMG = ROOT / "docs" / "img"
KEY = "console-test-key"

if CHROMIUM is None:
    tools.missing("chromium is not installed (apt-get install -y chromium)", module=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def lossd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("console"))
    yield running
    assert running.terminate() == 0, running.log()


class Watched:
    """A page whose every request is checked: only the lossd origin is reached; the rest is
    aborted and recorded (so /docs renders with the network blocked)."""

    def __init__(self, browser: Browser, origin: str, width: int = 1280) -> None:
        self.origin = origin
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.outside: list[str] = []
        self.requests: list[tuple[str, str | None]] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda r: self.requests.append(
            (r.url, r.headers.get("authorization"))))

    def _route(self, route: Route) -> None:
        if route.request.url.startswith(f"{self.origin}/"):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def close(self) -> None:
        self.context.close()
        assert not self.outside, f"requests left the lossd origin: {self.outside}"
        assert not self.errors, self.errors


@pytest.fixture
def watched(browser: Browser, lossd: RunningServer) -> Iterator[Watched]:
    w = Watched(browser, lossd.url)
    yield w
    w.close()


def _series(page: Page, selector: str) -> dict:
    """What the plot ``selector`` drew (once drawn)."""
    page.wait_for_selector(f"{selector}[data-ready]")
    return json.loads(page.eval_on_selector(selector, "e => e.dataset.series"))


def _shot(page: Page, name: str) -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / f"console-{name}.png"), full_page=False)


def test_catalogue_lists_every_loss_at_both_widths(watched: Watched, browser: Browser,
                                                   lossd: RunningServer) -> None:
    page = watched.page
    page.goto(f"{lossd.url}/#/losses/huber")
    items = page.locator("#loss-list li")
    expect(items).to_have_count(len(REGISTRY))
    assert sorted(items.evaluate_all("els => els.map(e => e.dataset.loss)")) == sorted(REGISTRY)
    assert len(REGISTRY) == 37
    assert page.locator("#loss-list h3").all_inner_texts() == [
        "Regression", "Classification", "Margin", "Boxes", "Segmentation", "Sequence"] or \
        page.locator("#loss-list h3").all_inner_texts() == [
        "regression", "classification", "margin", "boxes", "segmentation", "sequence"]
    _series(page, "#plot-huber")
    expect(page.locator(".formula")).to_contain_text("δ")
    _shot(page, "catalogue")
    page.fill("#search", "margin")
    expect(page.locator("#loss-count")).to_contain_text("of 37 losses")
    shown = items.evaluate_all("els => els.map(e => e.dataset.loss)")
    assert "margin_ranking" in shown and "mse" not in shown

    narrow = Watched(browser, lossd.url, width=390)
    try:
        narrow.page.goto(f"{lossd.url}/#/losses/cross_entropy")
        _series(narrow.page, "#plot-cross_entropy")
        width = narrow.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways at 390 px ({width} px wide)"
        _shot(narrow.page, "mobile")
    finally:
        narrow.close()


def test_comparison_draws_the_core_numbers(watched: Watched, lossd: RunningServer) -> None:
    page = watched.page
    page.goto(f"{lossd.url}/#/compare")
    series = _series(page, "#compare-loss")
    assert list(series) == ["mse", "l1", "smooth_l1 (β=1)", "huber (δ=1)"]
    assert page.locator("#compare-loss path.line").count() == 4
    for path in page.locator("#compare-loss path.line").all():
        assert path.get_attribute("d").count("L") >= 50

    def check(options: dict[str, dict]) -> None:
        drawn = _series(page, "#compare-loss")
        for (name, opts), (label, curve) in zip(options.items(), drawn.items()):
            x = np.array(curve["x"])
            expected = compute(name, {"input": x, "target": np.zeros_like(x)},
                               {"reduction": "none", **opts}).loss
            np.testing.assert_allclose(curve["y"], expected, rtol=1e-12, err_msg=label)

    check({"mse": {}, "l1": {}, "smooth_l1": {"beta": 1.0}, "huber": {"delta": 1.0}})
    grads = _series(page, "#compare-grad")
    assert grads["mse"]["y"] == pytest.approx([2 * v for v in grads["mse"]["x"]])
    page.focus("#opt-delta")
    for _ in range(100):  # δ 1 -> 2: Huber leaves smooth L1
        page.keyboard.press("ArrowRight")
    expect(page.locator("#compare-loss")).to_have_attribute(
        "data-options", '{"mse":{},"l1":{},"smooth_l1":{"beta":1},"huber":{"delta":2}}')
    check({"mse": {}, "l1": {}, "smooth_l1": {"beta": 1.0}, "huber": {"delta": 2.0}})
    _shot(page, "compare")


def test_slider_redraws_with_the_api_answers(watched: Watched, lossd: RunningServer) -> None:
    page = watched.page
    page.goto(f"{lossd.url}/#/losses/huber")
    before = _series(page, "#plot-huber")
    page.focus("#opt-delta")
    for _ in range(50):  # step 0.01: delta 1 -> 1.5, by keyboard
        page.keyboard.press("ArrowRight")
    expect(page.locator("#plot-huber")).to_have_attribute("data-options", '{"delta":1.5}')
    after = json.loads(page.eval_on_selector("#plot-huber", "e => e.dataset.series"))
    assert after["huber loss"]["y"] != before["huber loss"]["y"]
    expect(page.locator("#opt-delta-value")).to_have_text("1.5")
    x = after["huber loss"]["x"]
    answer = httpx.post(f"{lossd.url}/v1/losses/huber", json={
        "inputs": {"input": {"dtype": "float64", "shape": [len(x)], "data": x},
                   "target": {"dtype": "float64", "shape": [len(x)], "data": [0] * len(x)}},
        "options": {"delta": 1.5, "reduction": "none"}, "grad": True}).json()
    assert after["huber loss"]["y"] == answer["loss"]["data"]
    assert after["gradient"]["y"] == answer["grads"]["input"]["data"]
    _shot(page, "loss")


def test_try_it_cross_entropy_and_its_snippets(watched: Watched, lossd: RunningServer,
                                               tmp_path: Path) -> None:
    page = watched.page
    page.goto(f"{lossd.url}/#/try/cross_entropy")
    page.fill("#try-opt-label_smoothing", "0.1")
    expect(page.locator("#try-grad")).to_be_checked()
    page.click("#try-compute")
    shown = float(page.locator("#try-loss-value").inner_text())
    x = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    expected = compute("cross_entropy", {"input": x, "target": np.array([0, 2])},
                       {"label_smoothing": 0.1}, grad=True)
    assert shown == pytest.approx(float(expected.loss), rel=1e-9)
    grad = json.loads(page.locator("pre.grad[data-tensor='input']").inner_text())
    np.testing.assert_allclose(grad, expected.grads["input"], rtol=1e-12)

    curl = page.locator("#snippet-curl").inner_text()
    assert curl.startswith(f"curl -s {lossd.url}/v1/losses/cross_entropy")
    out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["loss"] == pytest.approx(shown, rel=1e-9)

    python = page.locator("#snippet-python").inner_text()
    out = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.split()[0]) == pytest.approx(shown, rel=1e-9)
    grpcurl = page.locator("#snippet-grpcurl").inner_text()
    assert grpcurl.rstrip().endswith(f"127.0.0.1:{lossd.grpc_port} lossd.v1.LossService/Compute")
    # grpcurl is not installed here: its -d body goes through protobuf's JSON mapping, as
    # grpcurl would send it, to the same method
    body = grpcurl.split(" -d '", 1)[1].split("' \\", 1)[0]
    request = json_format.Parse(body, pb.ComputeRequest())
    with grpc.insecure_channel(lossd.grpc_target) as channel:
        answer = pb_grpc.LossServiceStub(channel).Compute(request, timeout=10)
    loss = answer.loss
    got = np.frombuffer(loss.raw, np.float64) if loss.raw else np.array(loss.double_data)
    assert float(got[0]) == pytest.approx(shown, rel=1e-9)
    assert set(answer.grads) == {"input"}
    page.locator("#try-result").scroll_into_view_if_needed()
    _shot(page, "try")

    # a .npy upload: float32 logits are sent as float32, and answered in float32
    logits = np.array([[1.5, -0.25, 0.125], [0.3, 0.7, -1.1]], np.float32)
    np.save(tmp_path / "logits.npy", logits)
    page.set_input_files("#try-tensor-input-npy", str(tmp_path / "logits.npy"))
    expect(page.locator("#try-tensor-input")).to_have_value(re.compile('"dtype":"float32"'))
    page.click("#try-compute")
    expect(page.locator("#try-raw")).to_contain_text('"dtype": "float32"')
    expected32 = compute("cross_entropy", {"input": logits, "target": np.array([0, 2])},
                         {"label_smoothing": 0.1}).loss
    assert float(page.locator("#try-loss-value").inner_text()) == pytest.approx(
        float(expected32), rel=1e-6)


def test_run_fed_by_a_client_reaches_100_percent(watched: Watched, lossd: RunningServer) -> None:
    page = watched.page
    rng = np.random.default_rng(0)
    with Client(lossd.url) as client:
        run = client.create_run("cross_entropy", expected_batches=4, run_id="console-run")
        page.goto(f"{lossd.url}/#/runs")
        row = page.locator("tr[data-run='console-run']")
        expect(row).to_contain_text("0 / 4 (0%)")
        for i in range(4):
            client.add_batch(run["run_id"], f"b{i}", worker=f"w{i % 2}",
                             input=rng.normal(size=(5, 3)), target=rng.integers(0, 3, 5))
            if i == 1:
                expect(row).to_contain_text("2 / 4 (50%)")
        expect(row).to_contain_text("4 / 4 (100%)")
        value = client.run(run["run_id"])["aggregate"]["value"]
    _shot(page, "runs")
    page.click("tr[data-run='console-run'] a")
    expect(page.locator("dd[data-field='complete']")).to_have_text("yes")
    assert float(page.locator("dd[data-field='aggregate']").inner_text()) == pytest.approx(
        float(value), rel=1e-9)


def test_load_page_reads_the_metrics(watched: Watched, lossd: RunningServer) -> None:
    page = watched.page
    page.goto(f"{lossd.url}/#/load")
    for _ in range(20):
        httpx.post(f"{lossd.url}/v1/losses/mse", json={"inputs": {"input": [1.0, 2.0],
                                                                  "target": [0.0, 0.5]}})
    expect(page.locator("#load-rates")).to_contain_text("mse")
    # batch sizes per loss (a batch holds one loss's calls, from any protocol)
    mean = page.locator("#load-rates td[data-mean-batch='mse']").first
    expect(mean).not_to_have_text("–")
    assert float(mean.inner_text()) >= 1
    expect(page.locator("#load-latency")).to_contain_text("ms")
    page.wait_for_selector("#load-rate svg", timeout=10_000)
    _shot(page, "load")


def test_docs_render_with_the_network_blocked(watched: Watched, lossd: RunningServer) -> None:
    page = watched.page
    page.goto(f"{lossd.url}/docs")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible(timeout=15_000)
    text = page.locator(".swagger-ui").inner_text()
    for route in ("/v1/losses/{name}/stream", "/v1/runs", "/v2/models/{loss}/infer",
                  "/v1/batch"):
        assert route in text, route
    _shot(page, "docs")
    page.goto(f"{lossd.url}/redoc")
    expect(page.locator("text=List runs, newest first").first).to_be_attached(timeout=15_000)


def test_with_api_keys_nothing_loads_without_the_key(browser: Browser, spawn) -> None:
    keyed = spawn(env={"LOSSD_API_KEYS": KEY})
    w = Watched(browser, keyed.url)
    try:
        page = w.page
        page.goto(f"{keyed.url}/#/losses")
        expect(page.locator("#api-key")).to_be_visible()
        assert page.locator("#loss-list li").count() == 0
        api = [url for url, _ in w.requests if not url.startswith(
            (f"{keyed.url}/console/", f"{keyed.url}/#"))
            and url.rstrip("/") != keyed.url]
        assert api == [], api
        assert page.evaluate("fetch('/v1/losses').then(r => r.status)") == 401
        assert page.evaluate("fetch('/v1/runs').then(r => r.status)") == 401
        _shot(page, "key")
        w.requests.clear()
        page.fill("#api-key", KEY)
        page.click("text=Use key")
        expect(page.locator("#loss-list li")).to_have_count(len(REGISTRY))
        sent = [(url, auth) for url, auth in w.requests if "/v1/" in url]
        assert sent and all(auth == f"Bearer {KEY}" for _, auth in sent), sent
        # the docs' pages send the key the console was given in this tab
        page.goto(f"{keyed.url}/docs")
        expect(page.locator(".swagger-ui .opblock").first).to_be_visible(timeout=15_000)
        page.goto(f"{keyed.url}/redoc")
        expect(page.locator("text=List runs, newest first").first).to_be_attached(
            timeout=15_000)
        page.evaluate("sessionStorage.clear()")
        page.goto(f"{keyed.url}/redoc")
        expect(page.locator("#redoc")).to_contain_text("requires an API key")
    finally:
        w.close()


CHECK_EVERY_LOSS = """async () => {
  const { CURVES, curveBody, grid, example } = await import('/console/curves.js');
  const { tensorText } = await import('/console/tryit.js');
  const { values } = await import('/console/api.js');
  const post = (name, body) => fetch(`/v1/losses/${name}`, { method: 'POST',
    headers: { 'content-type': 'application/json' }, body });
  const losses = (await (await fetch('/v1/losses')).json()).losses;
  const out = {};
  for (const loss of losses) {
    const curve = CURVES[loss.name], result = {};
    if (curve) {
      const xs = grid(...curve.range);
      const r = await post(loss.name, JSON.stringify(curveBody(loss.name, xs, {})));
      const answer = await r.json();
      result.curve = r.status === 200 ? [values(answer.loss).filter(Number.isFinite).length,
        curve.grad ? curve.grad(answer.grads).filter(Number.isFinite).length : xs.length,
        xs.length] : [r.status, JSON.stringify(answer)];
    }
    const inputs = Object.entries(example(loss.name)).map(([k, t]) => `"${k}": ${tensorText(t)}`);
    const r = await post(loss.name, `{"inputs": {${inputs.join(', ')}}, "grad": true}`);
    result.example = r.status === 200 ? 'ok' : `${r.status} ${await r.text()}`;
    out[loss.name] = result;
  }
  return out;
}"""


def test_every_loss_has_a_curve_and_a_try_it_example(watched: Watched,
                                                     lossd: RunningServer) -> None:
    """The console's curve request and its Try-it example (as the form writes it) are answered
    for every loss; every curve is finite at all its points (CTC has no curve)."""
    page = watched.page
    page.goto(f"{lossd.url}/#/losses")
    expect(page.locator("#loss-list li")).to_have_count(len(REGISTRY))
    checked = page.evaluate(CHECK_EVERY_LOSS)
    assert set(checked) == set(REGISTRY)
    for name, result in checked.items():
        assert result["example"] == "ok", (name, result)
        if name == "ctc":
            assert "curve" not in result
            continue
        finite, grad_finite, points = result["curve"]
        assert finite == grad_finite == points, (name, result)


A11Y = """() => {
  const problems = [];
  const visible = (e) => e.offsetParent !== null || e.getClientRects().length > 0;
  for (const e of document.querySelectorAll('input, select, textarea')) {
    if (e.type === 'hidden' || !visible(e)) continue;
    if (!(e.labels && e.labels.length) && !e.getAttribute('aria-label')
        && !e.getAttribute('aria-labelledby')) problems.push(`unlabelled ${e.tagName} #${e.id}`);
  }
  for (const e of document.querySelectorAll('button, a')) {
    if (visible(e) && !e.textContent.trim() && !e.getAttribute('aria-label'))
      problems.push(`nameless ${e.tagName}`);
  }
  for (const e of document.querySelectorAll('svg[role="img"]')) {
    if (!e.getAttribute('aria-label')) problems.push('plot without a label');
  }
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (e) => {
    for (; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const texts = [...document.querySelectorAll('main *, header *')].filter((e) => visible(e)
    && [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())
    && !e.closest('svg'));
  for (const e of texts) {
    const fg = rgb(getComputedStyle(e).color).slice(0, 3);
    const [a, b] = [lum(fg), lum(background(e))].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    if (!(ratio >= 4.5)) problems.push(`contrast ${ratio.toFixed(2)} for ${e.tagName}: `
      + e.textContent.trim().slice(0, 30));
  }
  return problems;
}"""


@pytest.mark.parametrize("route", ["#/losses", "#/compare", "#/try/cross_entropy",
                                   "#/runs", "#/load"])
def test_pages_are_labelled_keyboard_reachable_and_legible(watched: Watched, lossd: RunningServer,
                                                          route: str) -> None:
    """Every control has a label, every plot a text alternative, all text 4.5:1 contrast (WCAG
    AA) against its background; the first Tab reaches the skip link, which moves to main."""
    page = watched.page
    page.goto(f"{lossd.url}/{route}")
    page.wait_for_selector("main h1, main h2")
    if route in ("#/losses", "#/compare"):
        page.wait_for_selector("figure[data-ready]")
    assert page.evaluate(A11Y) == []
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_console_can_be_turned_off(spawn) -> None:
    off = spawn(env={"LOSSD_CONSOLE": "false"})
    assert httpx.get(f"{off.url}/").status_code == 404
    assert httpx.get(f"{off.url}/console/main.js").status_code == 404
    assert httpx.get(f"{off.url}/docs").status_code == 200  # the API docs stay
    assert httpx.get(f"{off.url}/docs-assets/swagger-ui.css").status_code == 200


def test_console_files_ship_in_the_package() -> None:
    console = ROOT / "service" / "lossd" / "console"
    names = {p.name for p in console.iterdir()}
    assert {"index.html", "main.js", "console.css"} <= names
    for js in console.glob("*.js"):  # no other origin named anywhere in the console's code
        text = js.read_text().replace('"http://www.w3.org/2000/svg"', "")  # SVG's namespace
        assert "http://" not in text and "https://" not in text, js.name
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"console/*"' in pyproject
    assert Path(ROOT / "service" / "lossd" / "console" / "index.html").read_text().count(
        "{{config}}") == 1
