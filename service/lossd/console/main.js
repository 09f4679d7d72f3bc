// The console's entry: the API-key gate, the sections and the hash router.
//   #/losses[/name]  catalogue        #/compare  MSE vs L1 vs smooth L1 vs Huber
//   #/try[/name]     try it           #/runs[/id]  evaluation runs     #/load  metrics

import { config, forgetLosses, getKey, h, needsKey, say, setKey } from "./api.js";
import { showCatalogue, showCompare } from "./catalogue.js";
import { showLoad } from "./load.js";
import { showRun, showRuns } from "./runs.js";
import { showTry } from "./tryit.js";

const main = document.getElementById("main");
let stopPage = null;  // a page's clean-up (polling timers)

function keyForm(message) {
  const input = h("input", { id: "api-key", type: "password", autocomplete: "off", required: true,
    "aria-describedby": "api-key-help" });
  const form = h("form", { class: "card key-form", onsubmit: (event) => {
    event.preventDefault();
    setKey(input.value.trim());
    forgetLosses();
    document.getElementById("forget-key").hidden = false;
    route();
  } },
  h("h1", {}, "API key"),
  h("p", { id: "api-key-help" }, message || "This lossd requires an API key. It is kept in this tab only and sent as ",
    h("code", {}, "Authorization: Bearer <key>"), " to this server."),
  h("label", { for: "api-key" }, "API key"), input,
  h("button", { type: "submit" }, "Use key"));
  main.replaceChildren(form);
  input.focus();
}

async function route() {
  if (stopPage) { stopPage(); stopPage = null; }
  if (needsKey()) { keyForm(); return; }
  const [section = "losses", ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : "";
  for (const link of document.querySelectorAll("nav a[data-section]")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const pages = {
    losses: () => showCatalogue(main, arg),
    compare: () => showCompare(main),
    try: () => showTry(main, arg),
    runs: () => (arg ? showRun(main, arg) : showRuns(main)),
    load: () => showLoad(main),
  };
  const page = pages[section] || pages.losses;
  try {
    stopPage = (await page()) || null;
  } catch (error) {
    if (error.status === 401) return;  // the key form is shown instead
    main.replaceChildren(h("div", { class: "card error", role: "alert" }, String(error.message || error)));
  }
  say(document.title);
}

document.getElementById("version").textContent = config.version || "";
const forget = document.getElementById("forget-key");
forget.hidden = !config.auth || !getKey();
forget.addEventListener("click", () => { setKey(""); forgetLosses(); forget.hidden = true; route(); });
window.addEventListener("lossd-unauthorized", () => {
  forgetLosses();
  forget.hidden = true;
  keyForm("That API key was refused. Enter a valid one; it is sent as ");
});
window.addEventListener("hashchange", route);
route();
