// Evaluation runs (GET /v1/runs, GET /v1/runs/{id}), polled while the page is open.

import { api, format, h, say } from "./api.js";

const POLL_MS = 1000;

const time = (seconds) => (seconds ? new Date(seconds * 1000).toLocaleString() : "");

function progress(run) {
  const done = run.aggregate.batches;
  const expected = run.expected_batches;
  if (!expected) return h("span", { class: "progress-text" }, `${done} batches (open-ended)`);
  const percent = Math.min(100, Math.round((100 * done) / expected));
  return h("div", { class: "progress" },
    h("progress", { max: expected, value: done, "aria-label": `${run.run_id}: ${done} of ${expected} batches` }),
    h("span", { class: "progress-text", "data-percent": percent }, `${done} / ${expected} (${percent}%)`));
}

function aggregate(run) {
  const a = run.aggregate;
  return a.batches ? `${format(a.value, 8)} (${a.reduction}, ${a.samples} samples)` : "no batches yet";
}

function poller(refresh) {
  let timer = null, stopped = false;
  const tick = async () => {
    try { await refresh(); } catch (error) { if (error.status === 401) stopped = true; }
    if (!stopped) timer = setTimeout(tick, POLL_MS);
  };
  timer = setTimeout(tick, POLL_MS);
  return () => { stopped = true; clearTimeout(timer); };
}

export async function showRuns(main) {
  document.title = "Runs · lossd";
  const state = h("select", { id: "run-state" },
    [["", "any"], ["open", "open"], ["finished", "finished"]].map(([v, label]) => h("option", { value: v }, label)));
  const body = h("tbody", { id: "runs-body" });
  const more = h("button", { type: "button", hidden: true }, "Older runs");
  const note = h("p", { id: "runs-note", role: "status" });
  let pages = 1;
  more.addEventListener("click", () => { pages += 1; });
  const refresh = async () => {
    const runs = [];
    let token = null;
    for (let page = 0; page < pages; page += 1) {
      const query = new URLSearchParams({ limit: "25" });
      if (state.value) query.set("state", state.value);
      if (token) query.set("page_token", token);
      const answer = await api(`/v1/runs?${query}`);
      runs.push(...answer.runs);
      token = answer.next_page_token;
      if (!token) break;
    }
    more.hidden = !token;
    note.textContent = runs.length ? `${runs.length} runs, newest first; updated ${new Date().toLocaleTimeString()}` : "No runs yet. Create one with POST /v1/runs or lossd.Client.create_run.";
    body.replaceChildren(...runs.map((run) => h("tr", { "data-run": run.run_id },
      h("th", { scope: "row" }, h("a", { href: `#/runs/${encodeURIComponent(run.run_id)}` }, run.run_id)),
      h("td", {}, run.loss), h("td", {}, run.state), h("td", {}, progress(run)),
      h("td", {}, aggregate(run)), h("td", {}, time(run.created)),
      h("td", {}, run.state === "finished" ? time(run.updated) : ""))));
  };
  state.addEventListener("change", () => { pages = 1; refresh(); });
  main.replaceChildren(h("article", { class: "card" }, h("h1", {}, "Evaluation runs"),
    h("div", { class: "control" }, h("label", { for: "run-state" }, "State"), state), note,
    h("div", { class: "scroll" }, h("table", { class: "runs" },
      h("caption", { class: "sr-only" }, "Evaluation runs"),
      h("thead", {}, h("tr", {}, ["run", "loss", "state", "progress", "aggregate so far", "created", "finished"].map(
        (c) => h("th", { scope: "col" }, c)))), body)), more));
  await refresh();
  return poller(refresh);
}

export async function showRun(main, runId) {
  document.title = `Run ${runId} · lossd`;
  const view = h("div", { id: "run-view" });
  main.replaceChildren(h("article", { class: "card" }, h("p", {}, h("a", { href: "#/runs" }, "← all runs")),
    h("h1", {}, `Run ${runId}`), view));
  let lastState = "";
  const refresh = async () => {
    const run = await api(`/v1/runs/${encodeURIComponent(runId)}`);
    const a = run.aggregate;
    view.replaceChildren(progress(run), h("dl", { class: "facts" },
      ...[["loss", run.loss], ["options", JSON.stringify(run.options)], ["state", run.state],
        ["aggregate", a.batches ? format(a.value, 10) : "no batches yet"],
        ["dtype, reduction", `${a.dtype}, ${a.reduction}`], ["batches", a.batches], ["samples", a.samples],
        ["workers", Object.entries(run.workers).map(([w, n]) => `${w || "(unnamed)"}: ${n}`).join(", ") || "none"],
        ["created", time(run.created)], ["updated", time(run.updated)], ["complete", run.complete ? "yes" : "no"]]
        .flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-field": k }, String(v))])));
    if (run.state !== lastState) { say(`Run ${runId} is ${run.state}`); lastState = run.state; }
  };
  await refresh();
  return poller(refresh);
}
