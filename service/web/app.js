// The prediction page: every form, label and check comes from the served model's manifest
// (GET /v1/models/{task}); predictions go through the public v1 API, like any other client.
// Text is always set with textContent, never parsed as HTML.
"use strict";

const state = { model: null, card: null, downloadUrl: null, exampleUrl: null, driftAsked: 0 };

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

// A feature's display label comes from the manifest (the spec's `label`, or the default the
// service derives from the name: service.manifest.default_label); the name stays the field's id.
function labelOf(feature) {
  return feature.label || feature.name;
}

function endsWithWord(text, word) {
  const [lower, end] = [text.toLowerCase(), word.toLowerCase()];
  return lower === end || lower.endsWith(` ${end}`);
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
  if (tab.id === "tab-drift") loadDrift();
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
    resetDrift();
    if ($("tab-drift").getAttribute("aria-selected") === "true") loadDrift();
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
  const text = labelOf(feature);
  const label = el("label", { for: id }, text);
  // "Number of products", not "Number of products (products)"
  if (feature.unit && !endsWithWord(text, feature.unit)) {
    label.append(" ", el("span", { class: "unit" }, `(${feature.unit})`));
  }
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
    const explain = explainable(model) ? "?explain=true" : "";
    const url = `/v1/models/${encodeURIComponent(model.name)}/predict${explain}`;
    const response = await fetch(url, {
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
  showExplanation(model, prediction);
  $("result").hidden = false;
}

// ---- the explanation of one prediction ----

// Bars drawn (the largest first, as the API sends them), sentences written, and the smallest
// change worth a sentence ("by 0.00" says nothing).
const EXPLAINED_BARS = 10;
const EXPLAINED_SENTENCES = 3;
const WORTH_SAYING = 0.005;

// A version trained before explanations has no reference values: the page then predicts
// without `explain=true` (which the API would refuse) and says why there is no chart.
function explainable(model) {
  return model.features.every((f) => f.reference !== undefined && f.reference !== null);
}

// The probability the contributions are about: P(positive label), or P(predicted label).
function explainedLabel(model, prediction) {
  return model.kind === "binary" ? model.positive_label : prediction.label;
}

function showExplanation(model, prediction) {
  const box = $("explanation");
  const missing = $("explanation-missing");
  const entries = prediction.explanation;
  box.hidden = !entries;
  missing.hidden = Boolean(entries);
  if (!entries) {
    missing.textContent = explainable(model)
      ? "The server sent no explanation with this prediction."
      : `Version ${model.version} has no reference values to explain against (it was trained ` +
        "before explanations); retrain it to see which features moved the prediction.";
    return;
  }
  const target = `P(${explainedLabel(model, prediction)})`;
  const features = new Map(model.features.map((f) => [f.name, f]));
  const sentences = entries
    .filter((e) => Math.abs(e.contribution) >= WORTH_SAYING)
    .slice(0, EXPLAINED_SENTENCES)
    .map((e) => el("li", {}, contributionSentence(e, features.get(e.feature), target)));
  if (!sentences.length) {
    const none = `No single feature moved ${target} by ${WORTH_SAYING} or more from its typical value.`;
    sentences.push(el("li", {}, none));
  }
  $("explanation-sentences").replaceChildren(...sentences);
  const shown = entries.slice(0, EXPLAINED_BARS);
  const scale = Math.max(...shown.map((e) => Math.abs(e.contribution)), 1e-9);
  const chart = $("explanation-chart");
  chart.replaceChildren(
    ...shown.map((e) => contributionRow(e, features.get(e.feature), target, scale)),
  );
  if (entries.length > shown.length) {
    const note = `The ${shown.length} largest of ${entries.length} features.`;
    chart.append(el("p", { class: "muted small" }, note));
  }
  $("explanation-method").textContent =
    `Each bar: how ${target} changes when this value is replaced by the training's typical value ` +
    `(median, or most frequent category); a bar to the right means the value raised ${target}. ` +
    "Not SHAP.";
}

// "Age 62 raised P(churned) by 0.21"
function contributionSentence(entry, feature, target) {
  const verb = entry.contribution > 0 ? "raised" : "lowered";
  const by = Math.abs(entry.contribution).toFixed(2);
  return `${featureValue(entry, feature)} ${verb} ${target} by ${by}`;
}

// "Age 62", "Country Germany", "Has a credit card: No", "Pixel at row 2, column 4: 12"
function featureValue(entry, feature) {
  const label = entry.label || entry.feature;
  const value = shownValue(entry.value, feature);
  const joiner = /[0-9]$/.test(label) || (feature && feature.type === "bool") ? ": " : " ";
  return `${label}${joiner}${value}`;
}

function shownValue(value, feature) {
  if (value === null || value === undefined) return "(empty)";
  if (typeof value === "boolean") return value ? "Yes" : "No";
  return String(value); // numbers come as the shortest decimal that reads back as sent
}

function signed(value) {
  const text = Math.abs(value).toFixed(3);
  if (Number(text) === 0) return "0";
  return `${value > 0 ? "+" : "−"}${text}`;
}

// One row of the diverging chart: the feature and its value, then a track with zero in the
// middle, the bar growing right (raised) or left (lowered), then the signed change.
function contributionRow(entry, feature, target, scale) {
  const row = el("div", { class: "contribution-row" });
  const name = el("span", { class: "contribution-name" }, featureValue(entry, feature));
  name.append(
    el("span", { class: "typical" }, ` (typical ${shownValue(entry.reference, feature)})`),
  );
  const direction = entry.contribution > 0 ? "up" : entry.contribution < 0 ? "down" : "none";
  const words =
    direction === "none"
      ? `${featureValue(entry, feature)}: no change to ${target}`
      : contributionSentence(entry, feature, target);
  const track = el("div", { class: "contribution-track", role: "img", "aria-label": words });
  const bar = el("div", { class: `contribution-bar ${direction}` });
  bar.style.width = `${(Math.abs(entry.contribution) / scale) * 50}%`;
  track.append(el("div", { class: "zero", "aria-hidden": "true" }), bar);
  row.append(name, track, el("span", { class: "contribution-value" }, signed(entry.contribution)));
  return row;
}

function imputedNote(model, name) {
  const feature = model.features.find((f) => f.name === name);
  if (!feature || !feature.nullable) return `${name} was missing; the model imputed it.`;
  return `${labelOf(feature)} was left empty: the model used ${imputeValue(feature)} (${imputeWords(feature)}).`;
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
  const given = `${labelOf(feature)}: ${withUnit(value, feature)}`;
  if (feature.train_max !== null && value > feature.train_max) {
    return `${given} is above every value seen in training (max ${withUnit(feature.train_max, feature)}); the prediction is an extrapolation.`;
  }
  if (feature.train_min !== null && value < feature.train_min) {
    return `${given} is below every value seen in training (min ${withUnit(feature.train_min, feature)}); the prediction is an extrapolation.`;
  }
  return `${given} is outside the range seen in training.`;
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
        `${labelOf(f)} (${f.impute.replace(/_/g, " ")} ${imputeValue(f)}; ` +
        `missing in ${percent(f.train_missing_rate)} of training rows)`,
    );
    facts.push(["May be missing", missing.join(", ")]);
  }
  const list = $("card-facts");
  list.replaceChildren();
  for (const [term, value] of facts) list.append(el("dt", {}, term), el("dd", {}, value));
  renderFeatures(card);
  renderMetrics(card);
  renderPlots(card);
}

function renderFeatures(card) {
  const body = $("card-features").tBodies[0];
  body.replaceChildren();
  for (const feature of card.features || []) {
    const name = el("td");
    name.append(el("code", {}, feature.name));
    const tr = el("tr");
    tr.append(
      el("th", { scope: "row" }, labelOf(feature)),
      name,
      el("td", {}, feature.type),
      el("td", {}, allowedText(feature)),
    );
    body.append(tr);
  }
}

// "France, Germany, Spain", "Yes or No", "18 to 100 years"
function allowedText(feature) {
  if (feature.categories) return feature.categories.join(", ");
  if (feature.type === "bool") return "Yes or No";
  if (feature.min === null || feature.max === null) return feature.unit || "any number";
  return `${formatNumber(feature.min)} to ${withUnit(feature.max, feature)}`;
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

// ---- drift ----

// Below this many records in the window, a PSI says more about chance than about drift.
const FEW_RECORDS = 200;

const STATUS_WORDS = {
  stable: "stable",
  watch: "watch",
  drifted: "drifted",
  no_data: "no data",
};

function resetDrift() {
  state.driftAsked += 1; // an answer still on its way is for the previous model
  $("drift-summary").textContent = "";
  $("drift-refused").hidden = true;
  $("drift-empty").hidden = true;
  $("drift-chart").hidden = true;
}

async function loadDrift(event) {
  if (event) event.preventDefault();
  const model = state.model;
  if (!model) return;
  resetDrift();
  const asked = state.driftAsked;
  const span = $("drift-window").value;
  const button = $("drift-button");
  button.disabled = true;
  $("drift-title").textContent = `Drift: ${model.title || model.name}`;
  $("drift-summary").textContent = "Loading…";
  try {
    const url =
      `/v1/models/${encodeURIComponent(model.name)}/drift?window=${encodeURIComponent(span)}`;
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (asked !== state.driftAsked) return;
    if (!response.ok) {
      showDriftRefused(model, response.status, await errorText(response));
      return;
    }
    const answer = await response.json();
    if (asked !== state.driftAsked) return;
    showDrift(model, answer);
  } catch (error) {
    if (asked === state.driftAsked) {
      showDriftRefused(model, 0, `the request failed: ${error.message}`);
    }
  } finally {
    button.disabled = false;
  }
}

// A 409 is a version trained before reference distributions; the API's text says so.
function showDriftRefused(model, status, reason) {
  $("drift-summary").textContent = "";
  const box = $("drift-refused");
  const heading =
    status === 409
      ? `No drift for version ${model.version}:`
      : `Could not compute the drift${status ? ` (${status})` : ""}:`;
  box.replaceChildren(el("p", {}, heading), el("p", {}, reason));
  box.hidden = false;
}

function showDrift(model, answer) {
  const { window: span, thresholds } = answer;
  const records = span.records;
  const byRecords = /^[0-9]+$/.test(span.requested);
  const asked = byRecords
    ? `the last ${count(Number(span.requested))} records`
    : `the last ${span.requested}`;
  let partial = "";
  if (!span.complete) {
    partial = byRecords
      ? " (all there are since this version was loaded on this worker)"
      : " (the oldest of that time are no longer kept)";
  }
  $("drift-summary").textContent =
    `Window: ${asked} of this worker's traffic to version ${answer.version}: ` +
    `${count(records)} ${records === 1 ? "record" : "records"}${partial}. ` +
    `PSI below ${thresholds.watch} is stable, from ${thresholds.watch} watch, ` +
    `from ${thresholds.drifted} drifted.` +
    (records && records < FEW_RECORDS
      ? ` With fewer than ${FEW_RECORDS} records, a PSI is mostly noise: wait for more traffic.`
      : "");
  if (!records) {
    const empty = $("drift-empty");
    empty.textContent =
      `No traffic yet in this window: no record has been predicted by ${model.name} version ` +
      `${answer.version} on this worker${byRecords ? "" : " in that time"}. ` +
      "Send some predictions, then refresh.";
    empty.hidden = false;
    return;
  }
  renderLegend(thresholds);
  const scale = 2 * thresholds.drifted; // the bars' full width; a larger PSI is cut (marked)
  const list = $("drift-features");
  list.replaceChildren(...answer.features.map((f) => psiRow(f, thresholds, scale, answer)));
  $("drift-detail").hidden = true;
  const prediction = answer.prediction;
  $("drift-prediction-note").textContent =
    `${predictionWhat(model)} in the window against the test sample: PSI ` +
    `${psiText(prediction.psi)} (${STATUS_WORDS[prediction.status] || prediction.status}).`;
  const binName = model.kind === "binary" ? probabilityBin : undefined;
  $("drift-prediction").replaceChildren(
    ...histograms(prediction, "Test sample", `Window (${count(records)} records)`, binName),
  );
  $("drift-chart").hidden = false;
}

function predictionWhat(model) {
  return model.kind === "binary"
    ? `P(${model.positive_label}) of the predictions`
    : "The predicted labels";
}

// A binary model's predictions are binned by P(positive label): "0.0126045..0.0246744" reads
// "1.26%..2.47%".
function probabilityBin(name) {
  const asPercent = (p) => `${Number((Number(p) * 100).toPrecision(3))}%`;
  return name.replace(/[0-9]+(\.[0-9]+)?(e-?[0-9]+)?/g, asPercent);
}

function psiText(value) {
  return typeof value === "number" ? value.toFixed(3) : "–";
}

function renderLegend(thresholds) {
  const items = [
    ["stable", `stable: PSI < ${thresholds.watch}`],
    ["watch", `watch: ${thresholds.watch} ≤ PSI < ${thresholds.drifted}`],
    ["drifted", `drifted: PSI ≥ ${thresholds.drifted}`],
  ];
  $("drift-legend").replaceChildren(
    ...items.map(([status, text]) => {
      const item = el("li", { class: `status-${status}` });
      item.append(el("span", { class: "swatch", "aria-hidden": "true" }), text);
      return item;
    }),
  );
}

// One feature: a button (opens its histograms) holding its label, the PSI bar coloured by
// status with the two thresholds marked, the PSI and the status in words.
function psiRow(feature, thresholds, scale, answer) {
  const item = el("li");
  const label = feature.label || feature.name;
  const status = feature.status;
  const words = STATUS_WORDS[status] || status;
  const button = el("button", {
    type: "button",
    class: `psi-row status-${status}`,
    "aria-pressed": "false",
    "data-feature": feature.name,
    "aria-label": `${label}: PSI ${psiText(feature.psi)}, ${words}. Show its histograms.`,
  });
  const bar = el("span", { class: "psi-bar", "aria-hidden": "true" });
  const fill = el("span", { class: "psi-fill" });
  const psi = typeof feature.psi === "number" ? feature.psi : 0;
  fill.style.width = `${Math.min(psi / scale, 1) * 100}%`;
  if (psi > scale) fill.classList.add("beyond");
  bar.append(fill);
  for (const limit of [thresholds.watch, thresholds.drifted]) {
    const mark = el("span", { class: "psi-mark" });
    mark.style.left = `${(limit / scale) * 100}%`;
    bar.append(mark);
  }
  button.append(
    el("span", { class: "psi-name" }, label),
    bar,
    el("span", { class: "psi-value" }, psiText(feature.psi)),
    el("span", { class: "psi-status" }, words),
  );
  button.addEventListener("click", () => showFeatureDrift(feature, button, answer));
  item.append(button);
  return item;
}

function showFeatureDrift(feature, button, answer) {
  for (const other of document.querySelectorAll("#drift-features .psi-row")) {
    other.setAttribute("aria-pressed", String(other === button));
  }
  const label = feature.label || feature.name;
  $("drift-detail-title").textContent = `${label}: PSI ${psiText(feature.psi)}`;
  const records = answer.window.records;
  $("drift-detail-note").textContent =
    "Share of records per bin (numbers: training deciles; categories: each one). " +
    "The line in a window bar marks the training share.";
  $("drift-histograms").replaceChildren(
    ...histograms(feature, "Training", `Window (${count(records)} records)`),
  );
  $("drift-detail").hidden = false;
}

// The two histograms of a column, on one scale: the reference shares and the window's.
// "missing" and "other" are left out where both are empty (most columns never see them).
function histograms(column, referenceTitle, windowTitle, binName = (name) => name) {
  const bins = column.bins
    .map((name, i) => ({
      name: binName(name),
      reference: column.reference_shares[i],
      window: column.window_shares[i],
      count: column.counts[i],
    }))
    .filter((b) => b.reference > 0 || b.count > 0 || !["missing", "other"].includes(b.name));
  const top = Math.max(...bins.map((b) => Math.max(b.reference, b.window)), 1e-9);
  return [
    histogram(referenceTitle, "reference", bins, top, (b) => b.reference, null),
    histogram(windowTitle, "window", bins, top, (b) => b.window, (b) => b.reference),
  ];
}

function histogram(title, kind, bins, top, share, marker) {
  const figure = el("figure", { class: `histogram ${kind}` });
  const list = el("ol", { class: "hist-bins" });
  for (const bin of bins) {
    const row = el("li", { class: "hist-row" });
    const bar = el("span", { class: "hist-bar", "aria-hidden": "true" });
    const fill = el("span", { class: "hist-fill" });
    fill.style.width = `${(share(bin) / top) * 100}%`;
    bar.append(fill);
    if (marker) {
      const mark = el("span", { class: "hist-mark" });
      mark.style.left = `calc(${(marker(bin) / top) * 100}% - 1px)`;
      bar.append(mark);
    }
    const value =
      kind === "window" ? `${percent(share(bin))} (${count(bin.count)})` : percent(share(bin));
    row.append(
      el("span", { class: "hist-bin" }, bin.name),
      bar,
      el("span", { class: "hist-share" }, value),
    );
    list.append(row);
  }
  figure.append(el("figcaption", {}, title), list);
  return figure;
}

// ---- start ----

document.addEventListener("DOMContentLoaded", () => {
  setUpTabs();
  $("model").addEventListener("change", (event) => showModel(event.target.value));
  $("predict-form").addEventListener("submit", predict);
  $("reset-button").addEventListener("click", () => state.model && fillExample(state.model));
  $("batch-form").addEventListener("submit", scoreFile);
  $("drift-form").addEventListener("submit", loadDrift);
  $("drift-window").addEventListener("change", () => loadDrift());
  loadModels();
});
