// The admin console: every piece of data comes from the admin API, with the admin's own
// credential, so the API authorises, validates and audits each action. Text from the API
// is only ever set as text (never parsed as markup), and the page runs under a strict
// Content-Security-Policy: no inline script or style, no other origin.

import { modelsPage } from "./models.js";

// The credential lives in this variable only: not in a cookie, localStorage or
// sessionStorage, so it ends with the tab (or a reload) and no other page can read it.
let credential = null;
// The gateway's root, wherever a proxy mounts it: the page is <root>/admin/console.
const ROOT = new URL("..", document.baseURI);
const UNITS = ["requests", "images", "usd"];
const WINDOWS = ["minute", "hour", "day", "month"];
const USAGE_COLUMNS = ["requests", "images", "usd", "cache_hits"];
const ACTIONS = ["key.create", "key.revoke", "key.rotate", "quota.set", "quota.unset",
  "models.set", "models.unset", "model_price.set", "model_price.unset", "model.failover"];
const $ = (id) => document.getElementById(id);

// ---- talking to the admin API ------------------------------------------------------

class ApiError extends Error {
  constructor(status, error) {
    super((error && error.message) || `The gateway answered ${status}.`);
    this.status = status;
    this.code = (error && error.code) || null;
    this.param = (error && error.param) || null;
  }
}

// The one place the page talks to the gateway: an admin API (or /v1/quota) call.
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (credential) headers.Authorization = `Bearer ${credential}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(new URL(path, ROOT), {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store", credentials: "same-origin", redirect: "error",
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data && data.error);
  return data;
}

function query(params) {
  const kept = Object.entries(params).filter(([, v]) => v !== "" && v != null);
  return kept.length ? "?" + new URLSearchParams(kept).toString() : "";
}

// ---- building the page -------------------------------------------------------------

// An element with attributes, listeners (on*) and children; strings become text nodes.
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "value") node.value = value;
    else if (value === true) node.setAttribute(key, "");
    else if (value !== false && value != null) node.setAttribute(key, String(value));
  }
  node.append(...children.flat().filter((c) => c != null && c !== false)
    .map((c) => (c instanceof Node ? c : String(c))));
  return node;
}

// Columns of numbers, right-aligned like their cells.
const NUMERIC = new Set(["Used", "Limit", "Remaining", "Used %", ...USAGE_COLUMNS]);

function table(headings, rows, footer) {
  return h("table", {},
    h("thead", {}, h("tr", {}, headings.map((t) =>
      h("th", { scope: "col", class: NUMERIC.has(t) ? "num" : null }, t)))),
    h("tbody", {}, rows.length ? rows
      : h("tr", {}, h("td", { colspan: headings.length, class: "muted" }, "Nothing to show."))),
    footer ? h("tfoot", {}, footer) : null);
}

function select(name, options, chosen, props = {}) {
  return h("select", { name, ...props }, options.map(([value, label]) =>
    h("option", { value, selected: value === chosen }, label)));
}

function field(label, control, param) {
  return h("label", { class: "field", "data-param": param || null }, h("span", {}, label),
    control, h("span", { class: "field-error", role: "alert" }));
}

function status(text, kind = "ok") {
  return h("p", { class: `status ${kind}`, role: "status" }, text);
}

function banner(text) {
  const node = $("banner");
  node.textContent = text || "";
  node.hidden = !text;
}

function clearErrors(form) {
  form.querySelectorAll(".field-error").forEach((n) => { n.textContent = ""; });
  form.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
}

// Puts an API refusal next to the field it names (its `param`), else under the form.
function showError(form, error) {
  clearErrors(form);
  const spot = error.param && form.querySelector(`[data-param="${CSS.escape(error.param)}"]`);
  const target = spot || form;
  let slot = target.querySelector(":scope > .field-error");
  if (!slot) target.append(slot = h("span", { class: "field-error", role: "alert" }));
  slot.textContent = error.code ? `${error.message} (${error.code})` : error.message;
  const input = spot && spot.querySelector("input, select");
  if (input) input.setAttribute("aria-invalid", "true");
}

// ---- formatting --------------------------------------------------------------------

const USD = new Intl.NumberFormat("en-US",
  { style: "currency", currency: "USD", minimumFractionDigits: 2, maximumFractionDigits: 4 });

function amount(unit, value) {
  return unit === "usd" ? USD.format(value) : Number(value).toLocaleString("en-US");
}

function when(iso) {
  return iso ? iso.replace("T", " ").replace(/(\.\d+)?Z$/, " UTC") : "—";
}

function fromNow(iso) {
  const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
  if (seconds < 60) return "in under a minute";
  const [d, hr, m] = [Math.floor(seconds / 86400), Math.floor(seconds / 3600) % 24,
    Math.floor(seconds / 60) % 60];
  return "in " + [d && `${d} d`, hr && `${hr} h`, !d && m && `${m} min`].filter(Boolean).join(" ");
}

// How close a rule is to its limit: 1 is used up (a limit of 0 admits nothing).
function closeness(rule) {
  return rule.limit > 0 ? rule.used / rule.limit : 1;
}

function percent(rule) {
  return Math.round(closeness(rule) * 100);
}

function meter(rule) {
  // 70% turns it amber and 90% red (a value equal to `high` still counts as amber).
  return h("span", { class: "gauge" }, h("meter", { min: 0, max: 100, low: 69.5, high: 89.5,
    optimum: 0, value: Math.min(percent(rule), 100) }), h("span", {}, `${percent(rule)}%`));
}

// ---- signing in --------------------------------------------------------------------

function show(section) {
  for (const id of ["loading", "sign-in", "refused", "view"]) $(id).hidden = id !== section;
  $("nav").hidden = section !== "view";
  $("sign-out").hidden = section === "loading" || (!credential && section !== "refused");
}

// Who is calling, and whether they are an admin; 401 means nobody yet.
async function probe() {
  const me = await api("GET", "v1/quota");
  try {
    await api("GET", "admin/quotas");
  } catch (error) {
    if (error.status === 403) return { ...me, admin: false };
    throw error;
  }
  return { ...me, admin: true };
}

async function signIn() {
  banner("");
  try {
    const me = await probe();
    $("who").textContent = `${me.user} · ${me.team}${credential ? "" : " (via sign-in proxy)"}`;
    if (!me.admin) {
      $("refused-text").textContent = `You are signed in as ${me.user} (team ${me.team}).`;
      return show("refused");
    }
    show("view");
    return route();
  } catch (error) {
    return signedOut(error.status === 401 && credential ? error.message : "",
      error.status === 401 ? "" : error.message);
  }
}

function signedOut(why, trouble) {
  credential = null;
  $("who").textContent = "";
  $("view").replaceChildren();
  $("sign-in-error").textContent = why ? `Not accepted: ${why}` : "";
  banner(trouble);
  show("sign-in");
  $("credential").focus();
}

function wireSignIn() {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("credential").value.trim();
    $("credential").value = "";
    if (!value) return signedOut("paste an admin key or an SSO token.");
    credential = value;
    return signIn();
  });
  $("sign-out").addEventListener("click", () => signedOut(""));
  $("refused-again").addEventListener("click", () => signedOut(""));
}

// ---- pages -------------------------------------------------------------------------

const PAGES = { overview: overviewPage, keys: keysPage, quotas: quotasPage, usage: usagePage,
  audit: auditPage, models: () => modelsPage(UI) };
// What the pages kept in their own modules (models.js) build with.
const UI = { api, h, table, field, status, showError, route, failed, when, amount };

// A part of the #fragment as typed, when it is not valid percent-encoding.
function decoded(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

// The page named by the address's #fragment: #page or #page/arg/arg.
async function route() {
  const [name, ...args] = location.hash.slice(1).split("/").map(decoded);
  const page = PAGES[name] ? name : "overview";
  document.querySelectorAll("#nav a").forEach((a) => {
    a.toggleAttribute("aria-current", a.dataset.page === page);
  });
  const view = $("view");
  view.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  try {
    view.replaceChildren(...await PAGES[page](...args));
  } catch (error) {
    failed(error);
  }
}

// A refusal outside any form: signed out on 401, else said in the banner.
function failed(error) {
  if (error.status === 401) return signedOut(error.message);
  if (error.status === 403) return signIn();
  banner(error.message);
  return $("view").replaceChildren();
}

// Overview: every user rule and team pool, the closest to its limit first.
async function overviewPage() {
  const quotas = await api("GET", "admin/quotas");
  const rows = quotaRows(quotas);
  const teams = [...new Set(rows.map((r) => r.team))].sort();
  const filters = h("form", { class: "filters", "aria-label": "filters" },
    field("Team", select("team", [["", "all teams"], ...teams.map((t) => [t, t])], "")),
    field("Unit", select("unit", [["", "all units"], ...UNITS.map((u) => [u, u])], "")));
  const holder = h("div", {});
  const draw = () => holder.replaceChildren(overviewTable(rows, filters.team.value,
    filters.unit.value));
  filters.addEventListener("change", draw);
  draw();
  return [h("h2", {}, "Overview"), h("p", { class: "muted" },
    "Every user's rules and every team pool, the closest to its limit first."), filters, holder];
}

function quotaRows(quotas) {
  const rows = [];
  for (const p of quotas.principals) {
    for (const r of p.rules) if (r.scope === "user") rows.push({ ...r, team: p.team });
  }
  for (const t of quotas.teams) for (const r of t.rules) rows.push({ ...r, team: t.team });
  return rows.sort((a, b) => closeness(b) - closeness(a) || a.subject.localeCompare(b.subject));
}

function overviewTable(rows, team, unit) {
  const shown = rows.filter((r) => (!team || r.team === team) && (!unit || r.unit === unit));
  const near = shown.filter((r) => percent(r) >= 90).length;
  return h("div", {}, h("p", { class: "summary" },
    `${shown.length} rules; ${near} at 90% of their limit or more.`),
  table(["Who", "Team", "Unit", "Window", "Used", "Limit", "Remaining", "Used %", "Resets",
    "Source"],
    shown.map((r) => h("tr", { class: closeness(r) >= 1 ? "full" : null },
      h("td", {}, h("a", { href: `#quotas/${r.scope}/${encodeURIComponent(r.subject)}` },
        r.scope === "team" ? `team ${r.subject}` : r.subject)),
      h("td", {}, r.team), h("td", {}, r.unit), h("td", {}, r.window),
      h("td", { class: "num" }, amount(r.unit, r.used)),
      h("td", { class: "num" }, amount(r.unit, r.limit)),
      h("td", { class: "num" }, amount(r.unit, r.remaining)), h("td", { class: "num" }, meter(r)),
      h("td", { title: when(r.resets_at) }, fromNow(r.resets_at)),
      h("td", {}, h("span", { class: `tag ${r.source}` }, r.source))))));
}

// Keys: the runtime keys, a form to issue one, revoke and rotate.
async function keysPage(user = "", team = "") {
  const listing = await api("GET", "admin/keys" + query({ user, team }));
  const holder = h("div", { id: "secret-holder" });
  const filters = h("form", { class: "filters", "aria-label": "key filters" },
    field("User", h("input", { name: "user", value: user, autocomplete: "off" })),
    field("Team", h("input", { name: "team", value: team, autocomplete: "off" })),
    h("button", { type: "submit", class: "quiet" }, "Filter"));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const [u, t] = [filters.user.value.trim(), filters.team.value.trim()];
    location.hash = `#keys/${encodeURIComponent(u)}/${encodeURIComponent(t)}`;
  });
  return [h("h2", {}, "Keys"), createKeyForm(holder), holder,
    h("h3", {}, "Runtime keys"), filters, keysTable(listing.data, holder)];
}

function createKeyForm(holder) {
  const form = h("form", { class: "card inline", id: "create-key", "aria-label": "create a key" },
    field("User", h("input", { name: "user", autocomplete: "off" }), "user"),
    field("Team", h("input", { name: "team", autocomplete: "off" }), "team"),
    field("New team", h("input", { name: "new_team", type: "checkbox" }), "new_team"),
    field("Role", select("role", [["user", "user"], ["admin", "admin"]], "user"), "role"),
    field("Expires (ISO 8601, optional)",
      h("input", { name: "expires_at", placeholder: "2027-01-01T00:00:00Z" }), "expires_at"),
    field("Note", h("input", { name: "note", maxlength: 200 }), "note"),
    h("button", { type: "submit" }, "Create key"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { user: form.user.value.trim(), team: form.team.value.trim(),
      role: form.role.value, note: form.note.value };
    if (form.expires_at.value.trim()) body.expires_at = form.expires_at.value.trim();
    if (form.new_team.checked) body.new_team = true;  // open a team nobody names yet
    try {
      const created = await api("POST", "admin/keys", body);
      await route();
      $("secret-holder").replaceChildren(secretPanel(created, "New key"));
    } catch (error) {
      if (error.status === 401) return failed(error);
      showError(form, error);
    }
  });
  return form;
}

// The one showing of a secret: the gateway keeps only its SHA-256.
function secretPanel(record, title) {
  const value = h("input", { class: "secret-value", readonly: true, value: record.key,
    "aria-label": "the new secret", spellcheck: "false" });
  const note = h("span", { class: "copied", role: "status" });
  const copy = h("button", { type: "button", class: "copy", onclick: () => copySecret(value, note) },
    "Copy");
  const panel = h("section", { class: "secret card", "aria-label": "new secret" },
    h("h3", {}, `${title} for ${record.user} (${record.team}): ${record.id}`),
    h("p", { class: "warning" }, "Copy this key now: it is shown this once. The gateway " +
      "stores only its SHA-256, so nobody can display it again. Whoever holds it can spend " +
      `${record.user}'s quota.`),
    h("div", { class: "secret-row" }, value, copy, note),
    h("button", { type: "button", class: "quiet", onclick: () => panel.remove() },
      "I have stored it: hide"));
  return panel;
}

async function copySecret(input, note) {
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    input.select(); // no clipboard API (a plain-http page): select it for Ctrl+C
    note.textContent = "Selected: press Ctrl+C to copy.";
    return;
  }
  note.textContent = "Copied.";
}

function keyState(k) {
  if (k.revoked_at) return `revoked ${when(k.revoked_at)}`;
  if (k.expires_at && Date.parse(k.expires_at) <= Date.now()) return "expired";
  if (k.previous_key_expires_at && Date.parse(k.previous_key_expires_at) > Date.now()) {
    return `active (old secret until ${when(k.previous_key_expires_at)})`;
  }
  return "active";
}

function keysTable(keys, holder) {
  return table(["Id", "User", "Team", "Role", "Note", "Created", "Expires", "Last used", "State",
    ""],
    keys.map((k) => h("tr", { "data-key": k.id, class: k.revoked_at ? "revoked" : null },
      h("td", { class: "mono" }, k.id), h("td", {}, k.user), h("td", {}, k.team),
      h("td", {}, k.role), h("td", {}, k.note || ""),
      h("td", { title: `by ${k.created_by}` }, when(k.created_at)),
      h("td", {}, when(k.expires_at)), h("td", {}, when(k.last_used_at)),
      h("td", {}, keyState(k)),
      h("td", {}, k.revoked_at ? null : h("div", { class: "row-actions" },
        h("button", { type: "button", class: "quiet", onclick: () => rotateKey(k, holder) },
          "Rotate"),
        h("button", { type: "button", class: "danger", onclick: () => revokeKey(k) },
          "Revoke"))))));
}

// A yes/no question in the page's own dialog; resolves to whether the admin confirmed.
function confirmAction(text, okLabel, extra) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  $("confirm-extra").replaceChildren(...(extra ? [extra] : []));
  return new Promise((resolve) => {
    const done = (answer) => () => { dialog.close(); resolve(answer); };
    $("confirm-ok").onclick = done(true);
    $("confirm-cancel").onclick = done(false);
    dialog.oncancel = done(false);
    dialog.showModal();
  });
}

async function revokeKey(k) {
  const text = `Revoke ${k.id} (${k.user}, ${k.team})? Every replica refuses it within a ` +
    "second. This cannot be undone.";
  if (!await confirmAction(text, "Revoke")) return;
  try {
    await api("DELETE", `admin/keys/${encodeURIComponent(k.id)}`);
    await route();
    $("secret-holder").replaceChildren(status(`Revoked ${k.id}.`));
  } catch (error) {
    failed(error);
  }
}

async function rotateKey(k, holder) {
  const grace = h("input", { type: "number", min: 0, max: 2592000, value: "0", name: "grace" });
  const text = `Rotate ${k.id} (${k.user})? A new secret replaces the old one, which keeps ` +
    "working for the grace period below.";
  if (!await confirmAction(text, "Rotate", field("Grace seconds", grace, "grace_seconds"))) return;
  try {
    const rotated = await api("POST", `admin/keys/${encodeURIComponent(k.id)}/rotate`,
      { grace_seconds: Number(grace.value) });
    await route();
    $("secret-holder").replaceChildren(secretPanel(rotated, "Rotated key"));
  } catch (error) {
    if (error.status === 401) return failed(error);
    holder.replaceChildren(status(error.message, "error"));
  }
}

// Quotas: the effective rules of one user or team, and its runtime overrides.
async function quotasPage(scope = "user", name = "") {
  const quotas = await api("GET", "admin/quotas");
  const chooser = subjectForm(quotas, scope, name);
  if (!name) return [h("h2", {}, "Quotas"), chooser];
  const override = quotas.overrides.find((o) => o.scope === scope && o.subject === name);
  return [h("h2", {}, "Quotas"), chooser, effectiveRules(quotas, scope, name),
    overridesForm(scope, name, override ? override.rules : [])];
}

function subjectForm(quotas, scope, name) {
  const users = [...new Set(quotas.principals.map((p) => p.user))];
  const teams = quotas.teams.map((t) => t.team);
  const form = h("form", { class: "filters", "aria-label": "subject" },
    field("Scope", select("scope", [["user", "user"], ["team", "team"]], scope)),
    field("Name", h("input", { name: "name", value: name, list: "subjects", autocomplete: "off" })),
    h("datalist", { id: "subjects" }, [...users, ...teams].map((v) => h("option", { value: v }))),
    h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#quotas/${form.scope.value}/${encodeURIComponent(form.name.value.trim())}`;
  });
  return form;
}

function effectiveRules(quotas, scope, name) {
  const entry = scope === "user" ? quotas.principals.find((p) => p.user === name)
    : quotas.teams.find((t) => t.team === name);
  const title = h("h3", {}, `Effective rules of ${scope} ${name}`);
  if (!entry) {
    return h("div", {}, title, h("p", { class: "muted" }, scope === "user"
      ? "Not a configured principal nor the user of a runtime key: an SSO or proxy user's " +
        "rules show on their own GET /v1/quota. Overrides set here apply to them."
      : "This team has no pool yet: set rules below to give it one."));
  }
  return h("div", {}, title, table(
    ["Scope", "Subject", "Unit", "Window", "Limit", "Used", "Remaining", "Resets", "Source"],
    entry.rules.map((r) => h("tr", {}, h("td", {}, r.scope), h("td", {}, r.subject),
      h("td", {}, r.unit), h("td", {}, r.window), h("td", { class: "num" }, amount(r.unit, r.limit)),
      h("td", { class: "num" }, amount(r.unit, r.used)),
      h("td", { class: "num" }, amount(r.unit, r.remaining)),
      h("td", { title: when(r.resets_at) }, fromNow(r.resets_at)),
      h("td", {}, h("span", { class: `tag ${r.source}` }, r.source))))));
}

function ruleRow(rule, index) {
  const row = h("div", { class: "rule-row", "data-param": `rules.${index}` },
    field("Unit", select("unit", UNITS.map((u) => [u, u]), rule.unit), `rules.${index}.unit`),
    field("Window", select("window", WINDOWS.map((w) => [w, w]), rule.window),
      `rules.${index}.window`),
    field("Limit", h("input", { name: "limit", inputmode: "decimal", autocomplete: "off",
      value: rule.limit === "" ? "" : String(rule.limit) }), `rules.${index}.limit`),
    h("button", { type: "button", class: "quiet", onclick: () => row.remove() }, "Remove"));
  return row;
}

// A limit as typed: a number when it reads as one, else the text, for the API to refuse.
function limitValue(text) {
  const trimmed = text.trim();
  return trimmed !== "" && Number.isFinite(Number(trimmed)) ? Number(trimmed) : trimmed;
}

function overridesForm(scope, name, rules) {
  const list = h("div", { class: "rules", "data-param": "rules" },
    (rules.length ? rules : [{ unit: "requests", window: "day", limit: "" }]).map(ruleRow));
  const add = () => list.append(ruleRow({ unit: "images", window: "day", limit: "" },
    list.querySelectorAll(".rule-row").length));
  const form = h("form", { class: "card", id: "overrides", "aria-label": "runtime overrides" },
    h("h3", {}, `Runtime overrides of ${scope} ${name}`),
    h("p", { class: "muted small" }, "Each replaces the config's rule of the same unit and " +
      "window (or adds one). Saving replaces the whole list; usage so far is kept."),
    list, h("div", { class: "actions" },
      h("button", { type: "button", class: "quiet", onclick: add }, "Add a rule"),
      h("button", { type: "submit" }, "Save overrides"),
      h("button", { type: "button", class: "danger", disabled: !rules.length,
        onclick: () => removeOverrides(scope, name, form) }, "Remove all overrides")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    saveOverrides(scope, name, form);
  });
  return form;
}

// Rows are numbered as sent, so the API's `rules.<i>.limit` finds the field typed in.
function numberRows(form) {
  const rows = [...form.querySelectorAll(".rule-row")];
  rows.forEach((row, i) => {
    row.dataset.param = `rules.${i}`;
    row.querySelectorAll("[data-param]").forEach((f) => {
      f.dataset.param = f.dataset.param.replace(/^rules\.\d+/, `rules.${i}`);
    });
  });
  return rows;
}

async function saveOverrides(scope, name, form) {
  const rules = numberRows(form).map((row) => ({
    unit: row.querySelector("[name=unit]").value,
    window: row.querySelector("[name=window]").value,
    limit: limitValue(row.querySelector("[name=limit]").value),
  }));
  await changeRules(form, "PUT", scope, name, { rules }, "Saved: the overrides are in force.");
}

async function removeOverrides(scope, name, form) {
  if (!await confirmAction(`Remove every runtime override of ${scope} ${name}? The config's ` +
    "rules apply again.", "Remove")) return;
  await changeRules(form, "DELETE", scope, name, undefined, "Removed: the config's rules apply.");
}

async function changeRules(form, method, scope, name, body, done) {
  const path = `admin/quotas/${scope}s/${encodeURIComponent(name)}`;
  try {
    await api(method, path, body);
  } catch (error) {
    if (error.status === 401) return failed(error);
    return showError(form, error);
  }
  await route();
  $("overrides").before(status(done));
}

// Usage: a month's books by team and by user, and their CSV files.
async function usagePage(month = new Date().toISOString().slice(0, 7)) {
  const [teams, users] = await Promise.all(["team", "user"].map((by) =>
    api("GET", "admin/usage" + query({ month, by }))));
  const form = h("form", { class: "filters", "aria-label": "month" },
    field("Month (UTC)", h("input", { type: "month", name: "month", value: month }), "month"),
    h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#usage/${form.month.value}`;
  });
  return [h("h2", {}, "Usage"), form, usageTable(teams), usageTable(users)];
}

function usageTable(answer) {
  const names = answer.by === "user" ? ["team", "user"] : ["team"];
  const cells = (row) => [...names.map((n) => h("td", {}, row[n] ?? "")),
    ...USAGE_COLUMNS.map((c) => h("td", { class: "num" },
      c === "usd" ? USD.format(row[c]) : Number(row[c]).toLocaleString("en-US")))];
  const total = Object.fromEntries(USAGE_COLUMNS.map((c) =>
    [c, answer.data.reduce((sum, row) => sum + Number(row[c]), 0)]));
  return h("section", { class: "usage", "data-by": answer.by },
    h("h3", {}, `By ${answer.by}, ${answer.month}`,
      h("button", { type: "button", class: "quiet download",
        onclick: () => download(answer) }, "Download CSV")),
    table([...names, ...USAGE_COLUMNS], answer.data.map((row) => h("tr", {}, cells(row))),
      h("tr", { class: "total" }, h("th", { scope: "row", colspan: names.length }, "Total"),
        cells(total).slice(names.length))));
}

// The same CSV as `gateway usage export --format csv` (gateway/quota/books.py's to_csv).
function toCsv(answer) {
  const columns = ["team", ...(answer.by === "user" ? ["user"] : []), ...USAGE_COLUMNS];
  const cell = (name, value) => {
    let text = name === "usd" ? Number(value).toFixed(6) : String(value);
    if (typeof value === "string" && /^[=+\-@]/.test(text)) text = "'" + text;
    return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  const lines = answer.data.map((row) => columns.map((c) => cell(c, row[c])).join(","));
  return [columns.join(","), ...lines].map((line) => line + "\n").join("");
}

function download(answer) {
  const url = URL.createObjectURL(new Blob([toCsv(answer)], { type: "text/csv" }));
  const link = h("a", { href: url, download: `usage-${answer.month}-by-${answer.by}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// Audit: the latest admin actions, filtered, a page at a time.
async function auditPage() {
  const form = h("form", { class: "filters", "aria-label": "audit filters" },
    field("Actor", h("input", { name: "actor", autocomplete: "off" }), "actor"),
    field("Action", select("action", [["", "any action"], ...ACTIONS.map((a) => [a, a])], ""),
      "action"),
    field("Target", h("input", { name: "target", placeholder: "key_… or user:alice" }), "target"),
    field("Since (ISO 8601)", h("input", { name: "since" }), "since"),
    field("Until (ISO 8601)", h("input", { name: "until" }), "until"),
    h("button", { type: "submit" }, "Filter"));
  const holder = h("div", {});
  const load = (before) => loadAudit(form, holder, before);
  form.addEventListener("submit", (event) => { event.preventDefault(); load(null); });
  await load(null);
  return [h("h2", {}, "Audit"), form, holder];
}

async function loadAudit(form, holder, before) {
  const params = Object.fromEntries(["actor", "action", "target", "since", "until"]
    .map((n) => [n, form[n].value.trim()]));
  let page;
  try {
    page = await api("GET", "admin/audit" + query({ ...params, before, limit: 50 }));
  } catch (error) {
    if (error.status === 401) return failed(error);
    return showError(form, error);
  }
  clearErrors(form);
  const rows = page.data.map(auditRow);
  if (before) holder.querySelector("tbody").append(...rows);
  else holder.replaceChildren(table(["Time", "Actor", "Action", "Target", "From", "Change"], rows));
  holder.querySelector(".more")?.remove();
  if (page.next_before) {
    holder.append(h("button", { type: "button", class: "quiet more",
      onclick: () => loadAudit(form, holder, page.next_before) }, "Older entries"));
  }
}

function auditRow(e) {
  const change = (label, value) => h("div", {}, h("strong", {}, label),
    h("pre", {}, value == null ? "—" : JSON.stringify(value, null, 1)));
  return h("tr", { "data-action": e.action },
    h("td", { title: e.request_id }, when(e.time)), h("td", {}, e.actor),
    h("td", {}, h("span", { class: "tag" }, e.action)), h("td", { class: "mono" }, e.target),
    h("td", {}, e.source_address || "—"),
    h("td", {}, h("details", {}, h("summary", {}, "before / after"),
      change("before", e.before), change("after", e.after))));
}

// ---- start -------------------------------------------------------------------------

wireSignIn();
window.addEventListener("hashchange", () => { if (!$("view").hidden) route(); });
signIn();
