// The console's Models page: the image models' lists and prices in force (and where each
// comes from), what the upstream says of each model, and the admin API's changes to them.
// It uses the console's own helpers (`ui`, from console.js): the one admin API call, the
// element builder, the form error placement.

const QUALITIES = ["low", "medium", "high"];

export async function modelsPage(ui) {
  const view = await ui.api("GET", "admin/models");
  const parts = [ui.h("h2", {}, "Models"), ui.h("p", { class: "muted" },
    "The image models the edits adapter calls, in order: the first the upstream has serves, " +
    "and a model it refuses as gone hands the call to the next. Changes reach every replica " +
    "within a second."), watchLine(ui, view.watch)];
  if (!view.lists.length) {
    parts.push(ui.h("p", {}, "This gateway forwards variations as they are " +
      "(adapter: variations): it has no model list."));
    return parts;
  }
  return [...parts, ...view.lists.map((list) => listForm(ui, list)),
    ui.h("h3", {}, "Models of the lists"), modelsTable(ui, view.models),
    ui.h("h3", {}, "Prices"), ...view.prices.map((price) => priceForm(ui, price)),
    priceForm(ui, null)];
}

function watchLine(ui, watch) {
  const read = watch.checked_at ? `last read ${ui.when(watch.checked_at)}` : "not read yet";
  const text = `The upstream's /models: ${read}, every ${watch.every_seconds} s.`;
  return ui.h("p", { class: watch.error ? "status error" : "muted", id: "watch" },
    watch.error ? `${text} The last reading failed: ${watch.error}` : text);
}

function listForm(ui, list) {
  const serving = list.serving ? `Serving now: ${list.serving}.`
    : "No model is available: callers get 503 upstream_model_unavailable.";
  const input = ui.h("input", { name: "models", value: list.models.join(" "), size: 60,
    autocomplete: "off", spellcheck: "false" });
  const form = ui.h("form", { class: "card", id: `list-${list.operation}`,
    "aria-label": `${list.operation} model list` },
  ui.h("h3", {}, `Model list: ${list.operation}`,
    ui.h("span", { class: `tag ${list.source}` }, list.source)),
  ui.h("p", { class: list.serving ? "" : "status error" }, serving),
  ui.field("Models, the preferred first", input, "models"),
  ui.h("p", { class: "muted small" }, `The config's: ${list.config_models.join(" ")}. ` +
    "Saving replaces the whole list; every model needs a price."),
  ui.h("div", { class: "actions" },
    ui.h("button", { type: "submit" }, "Save list"),
    ui.h("button", { type: "button", class: "danger", disabled: list.source !== "runtime",
      onclick: () => changeModels(ui, form, "DELETE", `admin/models/lists/${list.operation}`,
        undefined, "Back to the config's list.") }, "Back to the config's list")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const models = input.value.split(/[\s,]+/).filter(Boolean);
    changeModels(ui, form, "PUT", `admin/models/lists/${list.operation}`, { models },
      "Saved: the list is in force.");
  });
  return form;
}

function state(ui, model) {
  if (model.refused_at) return `gone: refused ${ui.when(model.refused_at)}`;
  if (model.listed === false) return "gone: not listed upstream";
  return model.listed === null ? "available (not read yet)" : "available";
}

function modelsTable(ui, models) {
  return ui.table(["Model", "Lists", "State", "Shutdown date", "Price", "Low", "Medium", "High"],
    models.map((m) => {
      const square = m.estimate_usd && m.estimate_usd["1024x1024"];
      return ui.h("tr", { "data-model": m.model, class: m.available ? null : "full" },
        ui.h("td", { class: "mono" }, m.model), ui.h("td", {}, m.operations.join(", ")),
        ui.h("td", {}, state(ui, m)), ui.h("td", {}, m.shutdown_date || "none announced"),
        ui.h("td", {}, ui.h("span", { class: `tag ${m.price_source}` }, m.price_source)),
        QUALITIES.map((q) => ui.h("td", { class: "num", title: "USD reserved per 1024x1024 image" },
          square ? ui.amount("usd", square[q]) : "—")));
    }));
}

// A model's price table as JSON to edit, or an empty form to price another model.
function priceForm(ui, price) {
  const model = price ? price.model : "";
  const name = ui.h("input", { name: "model", value: model, autocomplete: "off",
    readonly: Boolean(price) });
  const text = ui.h("textarea", { name: "price", rows: 9, cols: 72, spellcheck: "false",
    class: "mono" });
  text.value = JSON.stringify(price ? price.price : EXAMPLE, null, 2);
  const form = ui.h("form", { class: "card", "data-price": model,
    "aria-label": price ? `price of ${model}` : "price another model" },
  ui.h("h3", {}, price ? `Price of ${model}` : "Price another model",
    price ? ui.h("span", { class: `tag ${price.source}` }, price.source) : null),
  ui.field("Model", name, "model"), ui.field("Price table (JSON, USD per 1M tokens)", text),
  ui.h("div", { class: "actions" }, ui.h("button", { type: "submit" }, "Save price"),
    price && price.source === "runtime" ? ui.h("button", { type: "button", class: "danger",
      onclick: () => changeModels(ui, form, "DELETE", priceUrl(model), undefined,
        `Removed: ${model} is priced by the config again.`) }, "Remove runtime price") : null));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    let body;
    try {
      body = JSON.parse(text.value);
    } catch {
      return ui.showError(form, { message: "The price table is not valid JSON." });
    }
    return changeModels(ui, form, "PUT", priceUrl(name.value.trim()), body,
      `Saved: the price of ${name.value.trim()} is in force.`);
  });
  return form;
}

function priceUrl(model) {
  return `admin/models/prices/${encodeURIComponent(model)}`;
}

const EXAMPLE = {
  text_input_per_1m_tokens: 5, image_input_per_1m_tokens: 8, image_output_per_1m_tokens: 30,
  output_tokens: { "1024x1024": { low: 0, medium: 0, high: 0 } },
};

async function changeModels(ui, form, method, path, body, done) {
  try {
    await ui.api(method, path, body);
  } catch (error) {
    if (error.status === 401) return ui.failed(error);
    // A list's refusal names the model's place (models.1): shown by the one list field.
    if (error.param && error.param.startsWith("models.")) error.param = "models";
    return ui.showError(form, error);
  }
  await ui.route();
  document.getElementById("watch").after(ui.status(done));
}
