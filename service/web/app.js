// The prediction page: every form, label and check comes from the served model's manifest
// (GET /v1/models/{task}); predictions go through the public v1 API, like any other client.
// Text is always set with textContent, never parsed as HTML.
"use strict";

const state = { model: null, card: null, downloadUrl: null, exampleUrl: null };

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await errorText(response)}`);
  return response.json();
}

async function errorText(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : response.statusText;
  } catch {
    return response.statusText;
  }
}

function setStatus(text) {
  $("status").textContent = text || "";
}

// ---- names and numbers in words ----

// "height_cm" with unit "cm" reads "Height" (the unit is shown beside it).
function humanize(name, unit) {
  const suffix = unit ? `_${unit.toLowerCase()}` : null;
  const base = suffix && name.endsWith(suffix) ? name.slice(0, -suffix.length) : name;
  const words = base.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function formatNumber(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return String(value);
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(6)));
}

function withUnit(value, feature) {
  return feature.unit ? `${formatNumber(value)} ${feature.unit}` : formatNumber(value);
}

function percent(p) {
  return `${(p * 100).toFixed(1)}%`;
}

// What a nullable feature's missing value becomes (the manifest's impute rule and value).
const IMPUTE_WORDS = {
  median: "the median in training",
  mean: "the mean in training",
  most_frequent: "the most frequent value in training",
  constant: "a fixed value",
};

function imputeValue(feature) {
  const value = feature.impute_value;
  if (feature.type === "bool") return value ? "Yes" : "No";
  return typeof value === "number" ? withUnit(value, feature) : String(value);
}

function imputeWords(feature) {
  return IMPUTE_WORDS[feature.impute] || feature.impute;
}

// "empty: median 42 years is used"
function emptyNote(feature) {
  return `empty: ${feature.impute.replace(/_/g, " ")} ${imputeValue(feature)} is used`;
}

// ---- tabs ----

function selectTab(tab) {
  for (const other of document.querySelectorAll('[role="tab"]')) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    $(other.getAttribute("aria-controls")).hidden = !selected;
  }
}

function setUpTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      selectTab(next);
      next.focus();
    });
  });
}

// ---- models ----

async function loadModels() {
  const select = $("model");
  try {
    const { models } = await getJson("/v1/models");
    select.replaceChildren();
    const ready = models.filter((m) => m.state === "ready");
    for (const model of ready) {
      const title = model.title ? `${model.title} (${model.name})` : model.name;
      select.append(el("option", { value: model.name }, title));
    }
    if (!ready.length) {
      select.append(el("option", {}, "No model is ready"));
      setStatus("No model is ready to serve; see /readyz.");
      return;
    }
    select.disabled = false;
    const wanted = new URLSearchParams(location.search).get("model");
    if (wanted && ready.some((m) => m.name === wanted)) select.value = wanted;
    await showModel(select.value);
  } catch (error) {
    setStatus(`Could not list the models: ${error.message}`);
  }
}

async function showModel(name) {
  setStatus("");
  try {
    const [model, card] = await Promise.all([
      getJson(`/v1/models/${encodeURIComponent(name)}`),
      getJson(`/web/models/${encodeURIComponent(name)}/card`),
    ]);
    state.model = model;
    state.card = card;
    renderForm(model);
    renderBatchHelp(model);
    renderCard(card);
    $("result").hidden = true;
    $("predict-errors").hidden = true;
    $("batch-result").hidden = true;
    $("batch-errors").hidden = true;
  } catch (error) {
    setStatus(`Could not load model ${name}: ${error.message}`);
  }
}

// ---- the form ----

function exampleRecord(model) {
  return model.examples && model.examples.length ? model.examples[0].record : {};
}

function renderForm(model) {
  $("model-title").textContent = `Predict: ${model.title || model.name}`;
  $("model-description").textContent = `${model.description || ""} Version ${model.version}.`;
  const fields = $("fields");
  const nullable = model.features.some((f) => f.nullable);
  fields.replaceChildren(...model.features.map((f) => fieldFor(f, nullable)));
  fillExample(model);
}

// A required field must be filled in (the browser refuses the form otherwise); a nullable one
// may be left empty, and says what the model then uses.
function fieldFor(feature, someNullable) {
  const id = `f-${feature.name}`;
  const hintId = `${id}-hint`;
  const wrapper = el("div", { class: "field" });
  const label = el("label", { for: id }, humanize(feature.name, feature.unit));
  if (feature.unit) label.append(" ", el("span", { class: "unit" }, `(${feature.unit})`));
  const required = feature.nullable ? undefined : "";
  const empty = feature.nullable ? emptyNote(feature) : undefined;
  let input;
  if (feature.type === "category" || feature.type === "bool") {
    input = el("select", { id, name: feature.name, required, "aria-describedby": hintId });
    if (feature.nullable) input.append(el("option", { value: "" }, `(${empty})`));
    if (feature.type === "bool") {
      input.append(el("option", { value: "true" }, "Yes"), el("option", { value: "false" }, "No"));
    } else {
      for (const category of feature.categories) {
        input.append(el("option", { value: category }, category));
      }
    }
  } else {
    input = el("input", {
      id,
      name: feature.name,
      type: "number",
      required,
      placeholder: empty,
      min: feature.min ?? undefined,
      max: feature.max ?? undefined,
      step: feature.type === "int" ? "1" : "any",
      inputmode: feature.type === "int" ? "numeric" : "decimal",
      "aria-describedby": hintId,
    });
  }
  const hint = hintFor(feature, someNullable);
  wrapper.append(label, input, el("p", { class: "hint", id: hintId }, hint));
  return wrapper;
}

function hintFor(feature, someNullable) {
  const parts = [feature.description];
  if (feature.nullable) {
    parts.push(
      `May be left empty: the model then uses ${imputeValue(feature)} (${imputeWords(feature)}).`,
    );
  } else if (someNullable) {
    parts.push("Required.");
  }
  if (feature.type === "float" || feature.type === "int") {
    if (feature.min !== null && feature.max !== null) {
      parts.push(`Allowed ${formatNumber(feature.min)} to ${withUnit(feature.max, feature)}.`);
    }
    if (feature.train_min !== null && feature.train_max !== null) {
      parts.push(
        `Seen in training: ${formatNumber(feature.train_min)} to ${withUnit(feature.train_max, feature)}.`,
      );
    }
  }
  return parts.filter(Boolean).join(" ");
}

// An example record may leave a nullable feature out: its field is then left empty.
function fillExample(model) {
  const record = exampleRecord(model);
  for (const feature of model.features) {
    const input = $(`f-${feature.name}`);
    const value = record[feature.name];
    if (value === undefined || value === null) input.value = "";
    else input.value = feature.type === "bool" ? String(Boolean(value)) : String(value);
  }
}

// An empty field is left out of the record: the model imputes a nullable feature, and the API
// refuses a required one ("Field required"), should the browser's own check be bypassed.
function readRecord(model) {
  const record = {};
  for (const feature of model.features) {
    const raw = $(`f-${feature.name}`).value;
    if (raw.trim() === "") continue;
    if (feature.type === "category") record[feature.name] = raw;
    else if (feature.type === "bool") record[feature.name] = raw === "true";
    else record[feature.name] = Number(raw);
  }
  return record;
}

const REQUIRED_EMPTY = "required: fill it in (the model has no value to use instead)";

// The required fields left empty, all named (the browser's bubble names only the first; the form
// is `novalidate`, so this check runs before `reportValidity` shows it).
function emptyRequired(model) {
  return model.features.filter((f) => !f.nullable && $(`f-${f.name}`).value.trim() === "");
}

// ---- one prediction ----

async function predict(event) {
  event.preventDefault();
  const form = $("predict-form");
  const model = state.model;
  if (!model) return;
  $("predict-errors").hidden = true;
  const empty = emptyRequired(model);
  if (empty.length) {
    const detail = empty.map((f) => ({ loc: [f.name], msg: REQUIRED_EMPTY }));
    showPredictErrors(detail, "Not sent: some required fields are empty.");
  }
  if (!form.reportValidity()) return;
  const record = readRecord(model);
  const button = $("predict-button");
  button.disabled = true;
  try {
    const response = await fetch(`/v1/models/${encodeURIComponent(model.name)}/predict`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ records: [record] }),
    });
    const body = await response.json();
    if (!response.ok) {
      showPredictErrors(body.detail);
      return;
    }
    showResult(model, record, body.predictions[0]);
  } catch (error) {
    showPredictErrors(`The request failed: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

function showResult(model, record, prediction) {
  $("result-label").textContent = prediction.label;
  const bars = $("bars");
  bars.replaceChildren();
  if (model.kind === "binary") {
    const positive = model.positive_label;
    bars.append(probabilityBar(positive, prediction.probabilities[positive], model.threshold));
    $("result-note").textContent =
      `The label is "${positive}" when P(${positive}) is at least ${percent(model.threshold)} ` +
      "(the line on the bar).";
  } else {
    const ranked = Object.entries(prediction.probabilities).sort((a, b) => b[1] - a[1]);
    for (const [label, p] of ranked.slice(0, 3)) bars.append(probabilityBar(label, p, null));
    $("result-note").textContent = "The three most probable labels.";
  }
  const warnings = $("warnings");
  warnings.replaceChildren(
    ...prediction.out_of_range.map((name) => el("li", {}, rangeWarning(model, record, name))),
  );
  $("imputed").replaceChildren(
    ...(prediction.imputed || []).map((name) => el("li", {}, imputedNote(model, name))),
  );
  $("result").hidden = false;
}

function imputedNote(model, name) {
  const feature = model.features.find((f) => f.name === name);
  if (!feature || !feature.nullable) return `${name} was missing; the model imputed it.`;
  const label = humanize(feature.name, feature.unit);
  return `${label} was left empty: the model used ${imputeValue(feature)} (${imputeWords(feature)}).`;
}

function probabilityBar(label, p, threshold) {
  const row = el("div", { class: "bar-row" });
  const name = el("span", {}, `P(${label})`);
  const bar = el("div", {
    class: "bar",
    role: "meter",
    "aria-label": `Probability of ${label}`,
    "aria-valuemin": "0",
    "aria-valuemax": "100",
    "aria-valuenow": (p * 100).toFixed(1),
  });
  const fill = el("div", { class: "fill" });
  fill.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
  bar.append(fill);
  if (threshold !== null) {
    const mark = el("div", { class: "threshold", "aria-hidden": "true" });
    mark.style.left = `calc(${threshold * 100}% - 1px)`;
    bar.append(mark);
  }
  row.append(name, bar, el("span", { class: "bar-value" }, percent(p)));
  return row;
}

function rangeWarning(model, record, name) {
  const feature = model.features.find((f) => f.name === name);
  const value = record[name];
  if (!feature) return `${name} is outside the range seen in training.`;
  const given = `the ${name} given (${withUnit(value, feature)})`;
  if (feature.train_max !== null && value > feature.train_max) {
    return `${capitalize(given)} is above every value seen in training (max ${withUnit(feature.train_max, feature)}); the prediction is an extrapolation.`;
  }
  if (feature.train_min !== null && value < feature.train_min) {
    return `${capitalize(given)} is below every value seen in training (min ${withUnit(feature.train_min, feature)}); the prediction is an extrapolation.`;
  }
  return `${capitalize(given)} is outside the range seen in training.`;
}

function capitalize(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function showPredictErrors(detail, heading = "The model refused this record:") {
  const box = $("predict-errors");
  box.replaceChildren(el("p", {}, heading));
  const list = el("ul");
  for (const item of Array.isArray(detail) ? detail : [{ msg: String(detail) }]) {
    const field = Array.isArray(item.loc) ? item.loc[item.loc.length - 1] : null;
    const prefix = typeof field === "string" && field !== "records" ? `${field}: ` : "";
    list.append(el("li", {}, `${prefix}${item.msg}`));
  }
  box.append(list);
  box.hidden = false;
  $("result").hidden = true;
}

// ---- a CSV file ----

function renderBatchHelp(model) {
  const names = model.features.map((f) => f.name).join(", ");
  const nullable = model.features.filter((f) => f.nullable).map((f) => f.name);
  $("expected-columns").textContent =
    `Columns: ${names}.` +
    (nullable.length ? ` Cells of ${nullable.join(", ")} may be left empty (imputed).` : "");
  if (state.exampleUrl) URL.revokeObjectURL(state.exampleUrl);
  const header = model.features.map((f) => f.name);
  const lines = [header.join(",")];
  for (const example of model.examples || []) {
    lines.push(header.map((name) => csvCell(example.record[name])).join(","));
  }
  state.exampleUrl = URL.createObjectURL(new Blob([`${lines.join("\n")}\n`], { type: "text/csv" }));
  const link = $("example-csv");
  link.href = state.exampleUrl;
  link.download = `${model.name}-example.csv`;
}

function csvCell(value) {
  const text = value === undefined || value === null ? "" : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

async function scoreFile(event) {
  event.preventDefault();
  const model = state.model;
  const file = $("csv-file").files[0];
  if (!model || !file) return;
  const button = $("batch-button");
  button.disabled = true;
  $("batch-result").hidden = true;
  $("batch-errors").hidden = true;
  try {
    const response = await fetch(`/v1/models/${encodeURIComponent(model.name)}/predict`, {
      method: "POST",
      headers: { "Content-Type": "text/csv", Accept: "text/csv" },
      body: file,
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({ detail: response.statusText }));
      showBatchErrors(body.detail, body.not_listed || 0);
      return;
    }
    showScored(model, file, await response.text());
  } catch (error) {
    showBatchErrors(`The upload failed: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

// The appended columns come last, named as the API names them (prefixed `predicted_` when the
// file already had such a column).
function appendedColumn(header, name) {
  for (let i = header.length - 1; i >= 0; i--) {
    if (header[i] === name || header[i] === `predicted_${name}`) return i;
  }
  return -1;
}

function showScored(model, file, text) {
  const records = parseCsv(text);
  const header = records.shift() || [];
  const count = (name) => {
    const column = appendedColumn(header, name);
    return column < 0 ? 0 : records.filter((r) => r[column]).length;
  };
  const flagged = count("out_of_range");
  const imputed = count("imputed");
  const rows = records.length;
  const notes = [];
  if (flagged) notes.push(`${flagged} with values outside the training range (see out_of_range)`);
  if (imputed) notes.push(`${imputed} with empty values the model imputed (see imputed)`);
  $("batch-summary").textContent =
    `${rows} ${rows === 1 ? "row" : "rows"} scored, 0 errors` +
    (notes.length ? `; ${notes.join("; ")}.` : ".");
  if (state.downloadUrl) URL.revokeObjectURL(state.downloadUrl);
  state.downloadUrl = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  const link = $("batch-download");
  link.href = state.downloadUrl;
  link.download = `${file.name.replace(/\.csv$/i, "")}-scored.csv`;
  $("batch-result").hidden = false;
}

// The API lists up to 100 problems and counts the others in `not_listed`.
function showBatchErrors(detail, notListed = 0) {
  const items = Array.isArray(detail) ? detail : [{ loc: [], msg: String(detail) }];
  const rows = new Set(items.map((i) => rowOf(i)).filter((r) => r !== null));
  const total = items.length + notListed;
  const where = rows.size ? `in ${rows.size} ${rows.size === 1 ? "row" : "rows"}` : "";
  const found = notListed
    ? `${total} errors; the first ${items.length}${where ? ` (${where})` : ""} are listed`
    : `${total} ${total === 1 ? "error" : "errors"}${where ? ` ${where}` : ""}`;
  $("batch-error-summary").textContent =
    `The file was not scored: ${found}. ` +
    "Fix them and upload again (python -m service score keeps the good rows).";
  const body = $("batch-error-table").tBodies[0];
  body.replaceChildren();
  for (const item of items) {
    const row = rowOf(item);
    const column = columnOf(item);
    const value = item.input === undefined || item.input === null ? "" : String(item.input);
    const tr = el("tr");
    tr.append(
      el("td", {}, row === null ? "header" : String(row + 1)),
      el("td", {}, column || ""),
      el("td", {}, item.msg),
      el("td", {}, value),
    );
    body.append(tr);
  }
  $("batch-errors").hidden = false;
}

// The API names a row from 0 after the header: loc = ["body", "rows", i, column].
function rowOf(item) {
  const loc = item.loc || [];
  return loc[1] === "rows" && typeof loc[2] === "number" ? loc[2] : null;
}

function columnOf(item) {
  const loc = item.loc || [];
  if (loc[1] === "rows") return typeof loc[3] === "string" ? loc[3] : "";
  if (loc[1] === "header") return typeof loc[2] === "string" ? loc[2] : "";
  return "";
}

// RFC 4180 records (quoted cells may hold commas, quotes and newlines); blank lines skipped.
function parseCsv(text) {
  const records = [];
  let record = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      record.push(cell);
      cell = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      record.push(cell);
      if (record.length > 1 || record[0] !== "") records.push(record);
      record = [];
      cell = "";
    } else cell += c;
  }
  if (cell !== "" || record.length) {
    record.push(cell);
    records.push(record);
  }
  return records;
}

// ---- the model card ----

const METRICS = [
  ["roc_auc", "ROC AUC", "bayes_roc_auc"],
  ["accuracy", "Accuracy", "bayes_accuracy"],
  ["precision", "Precision", null],
  ["recall", "Recall", null],
  ["f1", "F1", null],
  ["log_loss", "Log loss", null],
  ["brier", "Brier score", null],
  ["ece", "Expected calibration error", null],
];

function renderCard(card) {
  $("card-title").textContent = `Model card: ${card.title || card.name}`;
  $("card-description").textContent = card.description || "";
  const data = card.data;
  const facts = [
    ["Version", card.version],
    ["Created", new Date(card.created_at).toUTCString()],
    ["Data source", data.source],
    [
      "Rows",
      `${count(data.rows)} (${count(data.train_rows)} to train, ${count(data.validation_rows)} ` +
        `to validate, ${count(data.test_rows)} to test; seed ${data.seed})`,
    ],
    ["Labels", card.labels.join(", ")],
  ];
  if (card.kind === "binary") {
    const how = card.threshold_criterion ? ` (${card.threshold_criterion})` : "";
    facts.push([
      "Threshold",
      `${card.positive_label} when P(${card.positive_label}) ≥ ${formatNumber(card.threshold)}${how}`,
    ]);
  }
  if (card.nullable && card.nullable.length) {
    const missing = card.nullable.map(
      (f) =>
        `${f.name} (${f.impute.replace(/_/g, " ")} ${imputeValue(f)}; ` +
        `missing in ${percent(f.train_missing_rate)} of training rows)`,
    );
    facts.push(["May be missing", missing.join(", ")]);
  }
  const list = $("card-facts");
  list.replaceChildren();
  for (const [term, value] of facts) list.append(el("dt", {}, term), el("dd", {}, value));
  renderMetrics(card);
  renderPlots(card);
}

function renderMetrics(card) {
  const table = $("card-metrics");
  const main = card.metrics;
  const holdout = card.holdout_metrics;
  const bayes = METRICS.some(([, , b]) => b && main[b] !== null && main[b] !== undefined);
  $("card-metrics-caption").textContent = `Measured on the ${main.sample} (${count(main.rows)} rows).`;
  const head = el("tr");
  head.append(el("th", { scope: "col" }, "Metric"), el("th", { scope: "col" }, "This model"));
  if (holdout) head.append(el("th", { scope: "col" }, `Held-out test split (${holdout.rows} rows)`));
  if (bayes) head.append(el("th", { scope: "col" }, "Bayes-optimal"));
  table.tHead.replaceChildren(head);
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const [key, name, bayesKey] of METRICS) {
    const tr = el("tr");
    tr.append(el("th", { scope: "row" }, name), el("td", { class: "number" }, fixed(main[key])));
    if (holdout) tr.append(el("td", { class: "number" }, fixed(holdout[key])));
    if (bayes) tr.append(el("td", { class: "number" }, bayesKey ? fixed(main[bayesKey]) : ""));
    body.append(tr);
  }
}

function count(n) {
  return Number(n).toLocaleString("en-US");
}

function fixed(value) {
  return typeof value === "number" ? value.toFixed(4) : "–";
}

function renderPlots(card) {
  const plots = $("card-plots");
  plots.replaceChildren();
  if (!card.plots.length) {
    plots.append(el("p", { class: "muted" }, "This version has no report plots."));
    return;
  }
  for (const plot of card.plots) {
    const figure = el("figure");
    const link = el("a", { href: plot.url });
    link.append(el("img", { src: plot.url, alt: plot.title, width: "640", height: "480" }));
    figure.append(link, el("figcaption", {}, plot.title));
    plots.append(figure);
  }
}

// ---- start ----

document.addEventListener("DOMContentLoaded", () => {
  setUpTabs();
  $("model").addEventListener("change", (event) => showModel(event.target.value));
  $("predict-form").addEventListener("submit", predict);
  $("reset-button").addEventListener("click", () => state.model && fillExample(state.model));
  $("batch-form").addEventListener("submit", scoreFile);
  loadModels();
});
