// "Try it": any loss, tensors as JSON (or a .npy file), options from its schema; the answer,
// its gradients, and the same call as curl, Python (lossd.Client) and grpcurl.

import { api, config, format, getKey, h, listLosses, values } from "./api.js";
import { example } from "./curves.js";

// JSON with floats written as floats (1.0, not 1): lossd reads an all-integer list as int64.
export function tensorText(tensor) {
  const float = tensor.dtype.startsWith("float");
  const flat = tensor.data.map((v) => (float && Number.isInteger(v) ? v.toFixed(1) : String(v)));
  const nest = (shape, offset) => {
    if (!shape.length) return flat[offset];
    const size = shape.slice(1).reduce((a, b) => a * b, 1);
    return `[${Array.from({ length: shape[0] }, (_, i) => nest(shape.slice(1), offset + i * size)).join(", ")}]`;
  };
  return nest(tensor.shape, 0);
}

// A .npy file (little-endian, C order, the common dtypes) as a {dtype, shape, data} tensor.
async function readNpy(file) {
  const buffer = await file.arrayBuffer();
  const view = new DataView(buffer);
  const major = view.getUint8(6);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(new Uint8Array(buffer, start, headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${file.name}: Fortran order is not supported`);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  const types = { "<f8": ["float64", Float64Array], "<f4": ["float32", Float32Array],
    "<i8": ["int64", BigInt64Array], "<i4": ["int32", Int32Array], "|b1": ["bool", Uint8Array],
    "|u1": ["uint8", Uint8Array], "<i2": ["int16", Int16Array], "|i1": ["int8", Int8Array] };
  if (!types[descr]) throw new Error(`${file.name}: dtype ${descr} is not supported here`);
  const [dtype, Kind] = types[descr];
  const data = Array.from(new Kind(buffer.slice(start + headerLength)), (v) =>
    (typeof v === "bigint" ? Number(v) : dtype === "bool" ? Boolean(v) : v));
  return { dtype, shape, data };
}

const shellQuote = (s) => `'${s.replace(/'/g, "'\\''")}'`;

function pyLiteral(value) {
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (Array.isArray(value)) return `[${value.map(pyLiteral).join(", ")}]`;
  return JSON.stringify(value);
}

function snippets(name, tensors, options, grad, loss) {
  const origin = location.origin;
  const key = getKey();
  const inputs = Object.entries(tensors).map(([k, text]) => `${JSON.stringify(k)}: ${text}`).join(", ");
  const body = `{"inputs": {${inputs}}, "options": ${JSON.stringify(options)}, "grad": ${grad}}`;
  const curl = [`curl -s ${origin}/v1/losses/${name}`, "-H 'content-type: application/json'",
    key ? `-H ${shellQuote(`Authorization: Bearer ${key}`)}` : null, `-d ${shellQuote(body)}`]
    .filter(Boolean).join(" \\\n  ");

  const pyArgs = Object.entries(tensors).map(([k, text]) => {
    const parsed = JSON.parse(text);
    if (parsed && !Array.isArray(parsed) && typeof parsed === "object") {
      return `${k}=np.array(${pyLiteral(parsed.data)}, dtype="${parsed.dtype}").reshape(${JSON.stringify(parsed.shape)})`;
    }
    return `${k}=np.array(${text.replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False")})`;
  }).concat(Object.entries(options).map(([k, v]) => `${k}=${pyLiteral(v)}`));
  const python = [
    "import numpy as np",
    "from lossd import Client",
    "",
    `with Client(${JSON.stringify(origin)}${key ? `, api_key=${JSON.stringify(key)}` : ""}) as lossd:`,
    `    result = lossd.compute(${JSON.stringify(name)}${grad ? ", grad=True" : ""},`,
    ...pyArgs.map((a, i) => `        ${a}${i === pyArgs.length - 1 ? ")" : ","}`),
    `    print(result.loss${grad ? ", result.grads" : ""})`,
  ].join("\n");

  const dtypes = Object.fromEntries(loss.tensors.map((t) => [t.name, t.dtypes]));
  const grpcTensors = Object.fromEntries(Object.entries(tensors).map(([k, text]) => {
    const parsed = JSON.parse(text);
    let dtype, shape, data;
    if (parsed && !Array.isArray(parsed) && typeof parsed === "object") ({ dtype, shape, data } = parsed);
    else {
      data = values(parsed);
      shape = [];
      for (let level = parsed; Array.isArray(level); level = level[0]) shape.push(level.length);
      const integral = !/[.eE]|NaN|Infinity/.test(text);
      dtype = integral && (dtypes[k] || []).includes("int64") ? "int64" : "float64";
    }
    const field = dtype.startsWith("int") || dtype.startsWith("uint") ? "int64Data" : dtype === "bool" ? "boolData" : "doubleData";
    return [k, { dtype: dtype.toUpperCase(), shape, [field]: field === "int64Data" ? data.map(String) : data }];
  }));
  const props = loss.options.properties;
  const grpcOptions = Object.fromEntries(Object.entries(options).map(([k, v]) => {
    const type = [].concat((props[k] || {}).type || []);
    if (v === null) return [k, { null: true }];
    if (typeof v === "boolean") return [k, { flag: v }];
    if (typeof v === "string") return [k, { text: v }];
    return [k, type.includes("integer") && !type.includes("number") ? { integer: String(v) } : { number: v }];
  }));
  const grpcBody = JSON.stringify({ loss: name, inputs: grpcTensors, options: grpcOptions, grad });
  // TLS is on for both servers or for neither (LOSSD_TLS_*): plaintext only over http
  const grpcurl = [location.protocol === "https:" ? "grpcurl" : "grpcurl -plaintext", key ? `-H ${shellQuote(`authorization: Bearer ${key}`)}` : null,
    `-d ${shellQuote(grpcBody)}`, `${location.hostname}:${config.grpc_port} lossd.v1.LossService/Compute`]
    .filter(Boolean).join(" \\\n  ");
  return { body, curl, python, grpcurl };
}

function optionInput(name, schema) {
  const id = `try-opt-${name}`;
  const type = [].concat(schema.type || []);
  let input, read;
  if (schema.enum) {
    input = h("select", { id }, schema.enum.map((v) => h("option", { value: JSON.stringify(v), selected: v === schema.default }, String(v))));
    read = () => JSON.parse(input.value);
  } else if (type.includes("boolean")) {
    input = h("input", { id, type: "checkbox", checked: Boolean(schema.default) });
    read = () => input.checked;
  } else if (type.includes("number") || type.includes("integer")) {
    input = h("input", { id, type: "number", step: "any", value: schema.default ?? "", placeholder: "default" });
    read = () => (input.value === "" ? undefined : Number(input.value));
  } else {
    input = h("input", { id, type: "text", value: schema.default ?? "" });
    read = () => (input.value === "" ? undefined : input.value);
  }
  return { element: h("div", { class: "control" }, h("label", { for: id }, name), input),
    read, isDefault: () => { const v = read(); return v === undefined || v === schema.default; } };
}

export async function showTry(main, selected) {
  const losses = await listLosses();
  const loss = losses.find((l) => l.name === selected) || losses.find((l) => l.name === "cross_entropy");
  document.title = `Try ${loss.name} · lossd`;
  const picker = h("select", { id: "try-loss", onchange: () => { location.hash = `#/try/${picker.value}`; } },
    losses.map((l) => h("option", { value: l.name, selected: l.name === loss.name }, l.name)));
  const ex = example(loss.name);
  const fields = loss.tensors.map((t) => {
    const id = `try-tensor-${t.name}`;
    const area = h("textarea", { id, rows: 3, spellcheck: "false", "aria-describedby": `${id}-help` },
      ex[t.name] ? tensorText(ex[t.name]) : "");
    const file = h("input", { type: "file", accept: ".npy", id: `${id}-npy`, onchange: async () => {
      try { area.value = JSON.stringify(await readNpy(file.files[0])); } catch (error) { area.value = ""; result.textContent = String(error.message); }
    } });
    return { name: t.name, area, element: h("div", { class: "tensor-field" },
      h("label", { for: id }, t.name, t.optional ? " (optional)" : ""),
      h("p", { class: "help", id: `${id}-help` }, `${t.role}; shapes ${t.dims.map((d) => `(${d.join(", ")})`).join(" or ")}; ${t.dtypes.join(", ")}`),
      area, h("label", { for: `${id}-npy`, class: "npy" }, `or a .npy file for ${t.name}`), file) };
  });
  const options = Object.entries(loss.options.properties).map(([name, schema]) => [name, optionInput(name, schema)]);
  const grad = h("input", { id: "try-grad", type: "checkbox", checked: true });
  const result = h("div", { id: "try-result", "aria-live": "polite" });
  const form = h("form", { class: "card try", onsubmit: async (event) => {
    event.preventDefault();
    const tensors = {};
    try {
      for (const f of fields) {
        const text = f.area.value.trim();
        if (!text) continue;
        JSON.parse(text);  // a clear message here rather than a 422 from the server
        tensors[f.name] = text;
      }
    } catch (error) {
      result.replaceChildren(h("p", { class: "error", role: "alert" }, `Not JSON: ${error.message}`));
      return;
    }
    const chosen = Object.fromEntries(options.filter(([, o]) => !o.isDefault()).map(([n, o]) => [n, o.read()]));
    const s = snippets(loss.name, tensors, chosen, grad.checked, loss);
    let answerView;
    try {
      const answer = await api(`/v1/losses/${loss.name}`, { method: "POST", body: s.body });
      answerView = h("div", {},
        h("p", { class: "answer" }, "loss = ", h("output", { id: "try-loss-value" },
          Array.isArray(answer.loss) ? JSON.stringify(answer.loss) : format(values(answer.loss)[0], 10))),
        answer.grads ? h("div", {}, h("h3", {}, "Gradients"), Object.entries(answer.grads).map(([k, g]) =>
          h("div", {}, h("h4", {}, `∂loss/∂${k}`), h("pre", { class: "grad", "data-tensor": k }, JSON.stringify(g))))) : null,
        h("details", {}, h("summary", {}, "Raw answer"), h("pre", { id: "try-raw" }, JSON.stringify(answer, null, 1))));
    } catch (error) {
      answerView = h("p", { class: "error", role: "alert" }, String(error.message || error));
    }
    result.replaceChildren(answerView,
      h("h3", {}, "The same call"),
      h("h4", {}, "curl"), h("pre", { id: "snippet-curl" }, s.curl),
      h("h4", {}, "Python (lossd.Client)"), h("pre", { id: "snippet-python" }, s.python),
      h("h4", {}, "gRPC (grpcurl)"), h("pre", { id: "snippet-grpcurl" }, s.grpcurl));
  } },
  h("h1", {}, "Try it"),
  h("div", { class: "control" }, h("label", { for: "try-loss" }, "Loss"), picker),
  h("fieldset", {}, h("legend", {}, "Tensors (JSON: nested lists, or {\"dtype\", \"shape\", \"data\"})"), fields.map((f) => f.element)),
  options.length ? h("fieldset", {}, h("legend", {}, "Options (blank: torch's default)"), options.map(([, o]) => o.element)) : null,
  h("div", { class: "control" }, grad, h("label", { for: "try-grad" }, "gradients")),
  h("button", { type: "submit", id: "try-compute" }, "Compute"));
  main.replaceChildren(form, h("section", { class: "card", "aria-label": "Answer" }, result));
}
