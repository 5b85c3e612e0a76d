// The admin console: every piece of data comes from the admin API, with the admin's own
// credential, so the API authorises, validates and audits each action. Text from the API
// is only ever set as text (never parsed as markup), and the page runs under a strict
// Content-Security-Policy: no inline script or style, no other origin.

import { dayChart } from "./chart.js";
import { modelsPage } from "./models.js";

// The credential lives in this variable only: not in a cookie, localStorage or
// sessionStorage, so it ends with the tab (or a reload) and no other page can read it.
let credential = null;
// The gateway's root, wherever a proxy mounts it: the page is <root>/admin/console.
const ROOT = new URL("..", document.baseURI);
const UNITS = ["requests", "images", "usd"];
const WINDOWS = ["minute", "hour", "day", "week", "month"];
const USAGE_COLUMNS = ["requests", "images", "usd", "cache_hits"];
// Column headings as the other pages word them (the CSV keeps the API's field names).
const LABELS = { team: "Team", user: "User", requests: "Requests", images: "Images",
  usd: "Spend (USD)", cache_hits: "Cache hits" };
const ACTIONS = ["key.create", "key.revoke", "key.rotate", "quota.set", "quota.unset",
  "webhook.create", "webhook.rotate", "webhook.delete", "alerts.set", "alerts.unset",
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
const NUMERIC = new Set(["Used", "Limit", "Remaining", "Used %",
  ...USAGE_COLUMNS.map((c) => LABELS[c])]);

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

// What a field takes, in the form's words, for a refusal naming it (by the last part of
// the API's `param`: `rules.0.limit` is a Limit field).
const FIELD_WORDS = {
  limit: "Type a number, 0 or more.",
  unit: "Pick one of the units listed.",
  window: "Pick one of the windows listed.",
  rules: "Add at least one rule, at most 16.",
  expires_at: "Type a date and time to come, like 2027-01-01T00:00:00Z (UTC unless it " +
    "says otherwise), or leave it empty.",
  grace_seconds: "Type whole seconds, from 0 to 2592000 (30 days).",
  since: "Type a date and time, like 2026-11-01T00:00:00Z, or leave it empty.",
  until: "Type a date and time, like 2026-11-30T23:59:59Z, or leave it empty.",
  role: "Pick user or admin.",
  note: "At most 200 characters.",
  thresholds: "Type whole percents from 1 to 100, each once, separated by commas.",
};
const CODE_WORDS = {
  missing_required_parameter: "Fill this in.",
  duplicate_rule: "Two rules have the same unit and window: keep one of them.",
};

// A refusal in the form's words: for the checks the form knows, what to type instead; else
// the API's sentence without the field's name in front (the field is right above it), and
// never its error code.
function formWords(error) {
  const last = (error.param || "").split(".").pop();
  if (CODE_WORDS[error.code]) return CODE_WORDS[error.code];
  if (error.code === "invalid_value" && FIELD_WORDS[last]) return FIELD_WORDS[last];
  return error.message.replace(/^[\w.]+: /, "");
}

// Puts an API refusal next to the field it names (its `param`), else under the form.
function showError(form, error) {
  clearErrors(form);
  const spot = error.param && form.querySelector(`[data-param="${CSS.escape(error.param)}"]`);
  const target = spot || form;
  let slot = target.querySelector(":scope > .field-error");
  if (!slot) target.append(slot = h("span", { class: "field-error", role: "alert" }));
  slot.textContent = formWords(error);
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

// SSO sign-in (OIDC authorization code with PKCE), when the gateway offers it: the IdP's
// authorization endpoint and the console's client id. `pending` holds one attempt's PKCE
// verifier, state and nonce, in memory only; `ending` is the timer of the token's expiry.
let sso = null;
let pending = null;
let ending = null;

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomValue() {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

async function offerSso() {
  try {
    const offered = await api("GET", "admin/console/sso");
    sso = offered.enabled ? offered : null;
  } catch {
    sso = null; // the IdP cannot be reached now: keys and tokens still work
  }
  $("sso").hidden = !sso;
}

// Opens the IdP's sign-in in a popup; its answer comes back over the callback channel.
async function startSso() {
  const verifier = randomValue();
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  pending = { verifier, state: randomValue(), nonce: randomValue(),
    redirect: new URL("console/callback", document.baseURI).href };
  const url = new URL(sso.authorization_endpoint);
  url.search = new URLSearchParams({ response_type: "code", client_id: sso.client_id,
    redirect_uri: pending.redirect, scope: sso.scope, state: pending.state,
    nonce: pending.nonce, code_challenge: base64url(digest), code_challenge_method: "S256" });
  window.open(url.href, "gateway-sso", "popup,width=520,height=680");
}

async function finishSso({ data }) {
  if (!pending || !data || data.state !== pending.state) return; // not this tab's attempt
  const { verifier, nonce, redirect } = pending;
  pending = null;
  if (!data.code) return signedOut(`the identity provider said: ${data.error}`);
  try {
    const done = await api("POST", "admin/console/sso/token",
      { code: data.code, code_verifier: verifier, redirect_uri: redirect, nonce });
    credential = done.token;
    ending = setTimeout(sessionEnded, Math.max(0, done.expires_at * 1000 - Date.now()),
      done.expires_at);
    return signIn();
  } catch (error) {
    return signedOut(error.message);
  }
}

// The SSO token expired: forget it, say so, and offer to sign in again.
function sessionEnded(expiresAt) {
  const at = new Date(expiresAt * 1000).toISOString();
  signedOut("");
  $("session-ended").textContent = `Your sign-in expired at ${when(at)}. Sign in again to go on.`;
  $("session-ended").hidden = false;
}

function show(section) {
  for (const id of ["loading", "sign-in", "refused", "view"]) $(id).hidden = id !== section;
  $("nav").hidden = section !== "view";
  $("sign-out").hidden = section === "loading" || (!credential && section !== "refused");
}

// Who is calling, and whether they are an admin; 401 means nobody yet.
async function probe() {
  const me = await api("GET", "v1/quota");
  try {
    timezone = (await api("GET", "admin/quotas")).timezone || "UTC";
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
  clearTimeout(ending);
  ending = null;
  $("session-ended").hidden = true;
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
  $("sso-sign-in").addEventListener("click", startSso);
  const channel = new BroadcastChannel("gateway-console-sso");
  channel.addEventListener("message", finishSso);
}

// ---- pages -------------------------------------------------------------------------

const PAGES = { overview: overviewPage, keys: keysPage, quotas: quotasPage, usage: usagePage,
  alerts: alertsPage, models: () => modelsPage(UI), audit: auditPage };
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
  if (error.status === 401 && ending) return sessionEnded(Date.now() / 1000);
  if (error.status === 401) return signedOut(error.message);
  if (error.status === 403) return signIn();
  banner(error.message);
  return $("view").replaceChildren();
}

// Overview: every user rule and team pool, the closest to its limit first.
async function overviewPage() {
  const [quotas, usage] = await Promise.all([api("GET", "admin/quotas"),
    api("GET", "admin/usage" + query({ month: localDay().slice(0, 7), by: "team" }))]);
  const rows = quotaRows(quotas);
  const teams = [...new Set(rows.map((r) => r.team))].sort();
  const filters = h("form", { class: "filters", "aria-label": "filters" },
    field("Team", select("team", [["", "all teams"], ...teams.map((t) => [t, t])], "")),
    field("Unit", select("unit", [["", "all units"], ...UNITS.map((u) => [u, u])], "")));
  const holder = h("div", { class: "rules" });
  const draw = () => holder.replaceChildren(overviewTable(rows, filters.team.value,
    filters.unit.value));
  filters.addEventListener("change", draw);
  draw();
  return [h("h2", {}, "Overview"), h("p", { class: "muted" },
    "Every user's rules and every team pool, the closest to its limit first."), filters, holder,
    endpointTable(usage)];
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
    field("Existing user", h("input", { name: "existing_user", type: "checkbox" }), "existing_user"),
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
    // add a key for a name a config principal or another admin's keys hold
    if (form.existing_user.checked) body.existing_user = true;
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

// A yes/no question in the page's own dialog; resolves to whether the admin confirmed. Its
// button looks destructive only for what cannot be undone (`danger`).
function confirmAction(text, okLabel, extra, danger = true) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  $("confirm-ok").className = danger ? "danger" : "";
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

// The old secret's grace by default: time to put the new one where callers read it, short
// enough for a key that may have leaked.
const ROTATE_GRACE_SECONDS = 300;

async function rotateKey(k, holder) {
  const grace = h("input", { type: "number", min: 0, max: 2592000, name: "grace",
    value: String(ROTATE_GRACE_SECONDS) });
  const text = `Rotate ${k.id} (${k.user})? A new secret replaces the old one, which keeps ` +
    "working for the grace period below.";
  const extra = h("div", {}, field("Grace seconds", grace, "grace_seconds"),
    h("p", { class: "muted small" }, `${ROTATE_GRACE_SECONDS} s (5 minutes) gives callers ` +
      "time to switch to the new secret. 0 stops the old secret at once: every caller " +
      "still using it is refused from now on (do that for a key that leaked)."));
  if (!await confirmAction(text, "Rotate", extra, false)) return;
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

// The company's calendar (`quotas.timezone`), as /admin/quotas says: its today, its month.
let timezone = "UTC";

function localDay(date = new Date()) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: timezone }).format(date);
}

// Usage: the chosen month's spend per team day by day, and its books by team and by user,
// with their CSV files.
async function usagePage(month = localDay().slice(0, 7), team = "") {
  const ask = (params) => api("GET", "admin/usage" + query({ month, ...params }));
  const [teams, users, daily, quotas] = await Promise.all([ask({ by: "team" }),
    ask({ by: "user" }), ask({ by: "team", period: "day" }), api("GET", "admin/quotas")]);
  const form = h("form", { class: "filters", "aria-label": "month" },
    field(`Month (${teams.timezone})`, h("input", { type: "month", name: "month", value: month }),
      "month"),
    h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#usage/${form.month.value}`;
  });
  return [h("h2", {}, "Usage"), form, spendSection(daily, quotas, team), usageTable(teams),
    usageTable(users), endpointTable(teams)];
}

// A month's books by endpoint (variations, generations, edits) and model, every team's
// added up: the `endpoints` split of each row of GET /admin/usage.
function endpointTable(answer) {
  const sums = new Map();
  for (const row of answer.data) {
    for (const part of row.endpoints || []) {
      const key = `${part.endpoint}\u0000${part.model}`;
      const sum = sums.get(key) || { endpoint: part.endpoint, model: part.model,
        ...Object.fromEntries(USAGE_COLUMNS.map((c) => [c, 0])) };
      for (const c of USAGE_COLUMNS) sum[c] += Number(part[c]);
      sums.set(key, sum);
    }
  }
  const rows = [...sums.values()].sort((a, b) => a.endpoint.localeCompare(b.endpoint) ||
    a.model.localeCompare(b.model));
  return h("section", { class: "usage", "data-by": "endpoint" },
    h("h3", {}, `By endpoint and model, ${answer.month}`),
    table(["Endpoint", "Model", ...USAGE_COLUMNS.map((c) => LABELS[c])],
      rows.map((row) => h("tr", {},
        h("td", {}, row.endpoint), h("td", {}, row.model),
        ...USAGE_COLUMNS.map((c) => h("td", { class: "num" },
          c === "usd" ? USD.format(row[c]) : Number(row[c]).toLocaleString("en-US")))))));
}

// The team's monthly usd budget, if it has one.
function budgetOf(quotas, team) {
  const pool = quotas.teams.find((t) => t.team === team);
  const rule = pool && pool.rules.find((r) => r.unit === "usd" && r.window === "month");
  return rule ? rule.limit : null;
}

function spendSection(daily, quotas, chosen) {
  const names = [...new Set([...daily.data.map((r) => r.team),
    ...quotas.teams.map((t) => t.team)])].sort();
  const team = names.includes(chosen) ? chosen : (daily.forecast || daily.data).reduce(
    (best, r) => (r.usd > (best ? best.usd : -1) ? r : best), null)?.team || names[0] || "";
  const picker = h("form", { class: "filters", "aria-label": "chart of a team" },
    field("Team", select("team", names.map((n) => [n, n]), team)));
  picker.addEventListener("change", () => {
    location.hash = `#usage/${daily.month}/${encodeURIComponent(picker.team.value)}`;
  });
  const section = h("section", { class: "card spend", "data-team": team },
    h("h3", {}, `Daily spend, ${daily.month}`), picker);
  if (!team) return section;
  const per = (unit) => daily.days.map((day) => {
    const row = daily.data.find((r) => r.day === day && r.team === team);
    return row ? row[unit] : 0;
  });
  const forecast = (daily.forecast || []).find((f) => f.team === team);
  const budget = budgetOf(quotas, team);
  const count = (v) => Math.round(v).toLocaleString("en-US");
  const chart = (name, label, extra) => dayChart({ name, label: `${team}: ${label}`,
    days: daily.days, values: per(name), last: lastDay(daily), format: count, ...extra });
  section.append(spendSummary(team, per("usd"), budget, forecast),
    chart("usd", "spend so far each day, in USD", { cumulative: true, budget,
      format: (v) => USD.format(v), projected: forecast ? forecast.projected_usd : null }),
    legend(budget != null, !!forecast),
    h("h4", {}, "Requests per day"), chart("requests", "requests per day"),
    h("h4", {}, "Images per day"), chart("images", "images per day"));
  return section;
}

// The index of the month's last day with books so far: today in the company's zone for
// the current month, every day of a past one, none of a future one.
function lastDay(daily) {
  const today = localDay();
  if (daily.month === today.slice(0, 7)) return daily.days.indexOf(today);
  return daily.month < today ? daily.days.length - 1 : -1;
}

function spendSummary(team, usd, budget, forecast) {
  const spent = usd.reduce((a, b) => a + b, 0);
  const parts = [`${team} spent ${USD.format(spent)}`];
  if (budget != null) parts.push(`of a ${USD.format(budget)} monthly budget`);
  let text = parts.join(" ");
  if (forecast) {
    text += `; at this month's rate so far, ${USD.format(forecast.projected_usd)} by its end`;
  }
  return h("p", { class: "summary", "data-spent": spent, "data-budget": budget,
    "data-projected": forecast ? forecast.projected_usd : null }, text + ".");
}

function legend(budget, projection) {
  const key = (cls, text) => h("span", { class: `key key-${cls}` }, text);
  return h("p", { class: "legend small" }, key("before", "earlier days"),
    key("day", "the day itself"), budget ? key("budget", "monthly budget") : null,
    projection ? key("projection", "projection at this month's rate") : null);
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
    table([...names, ...USAGE_COLUMNS].map((c) => LABELS[c]),
      answer.data.map((row) => h("tr", {}, cells(row))),
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

// Alerts: the webhooks budget alerts go to, each team's (or user's) thresholds, and what
// became of every delivery.
async function alertsPage() {
  const [hooks, alerts, history] = await Promise.all([api("GET", "admin/webhooks"),
    api("GET", "admin/alerts"), api("GET", "admin/deliveries?limit=50")]);
  const holder = h("div", { id: "secret-holder" });
  return [h("h2", {}, "Alerts"), h("p", { class: "muted" }, "Thresholds of a team's (or " +
    "user's) usd and images budgets of a day, week or month; each is posted once per period " +
    "to the chosen webhooks, signed with the webhook's secret."),
  webhookForm(), holder, h("h3", {}, "Webhooks"), webhooksTable(hooks.data),
  alertsForm(hooks.data), alertsTable(alerts.data), h("h3", {}, "Deliveries"),
  deliveriesTable(history.data, hooks.data)];
}

function webhookForm() {
  const form = h("form", { class: "card inline", id: "create-webhook",
    "aria-label": "add a webhook" },
  field("Name", h("input", { name: "name", autocomplete: "off" }), "name"),
  field("URL", h("input", { name: "url", autocomplete: "off", placeholder: "https://…" }), "url"),
  field("Format", select("format", [["json", "JSON"], ["slack", "Slack"], ["teams", "Teams"]],
    "json"), "format"),
  h("button", { type: "submit" }, "Add webhook"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { name: form.name.value.trim(), url: form.url.value.trim(),
      format: form.format.value };
    try {
      const created = await api("POST", "admin/webhooks", body);
      await route();
      $("secret-holder").replaceChildren(webhookSecret(created));
    } catch (error) {
      if (error.status === 401) return failed(error);
      showError(form, error);
    }
  });
  return form;
}

// The one showing of a webhook's signing secret.
function webhookSecret(hook) {
  const value = h("input", { class: "secret-value", readonly: true, value: hook.secret,
    "aria-label": "the signing secret", spellcheck: "false" });
  const panel = h("section", { class: "secret card", "aria-label": "signing secret" },
    h("h3", {}, `Signing secret of ${hook.name} (${hook.id})`),
    h("p", { class: "warning" }, "Give this to the receiver now, to check signatures: it is " +
      "shown this once."), h("div", { class: "secret-row" }, value),
    h("button", { type: "button", class: "quiet", onclick: () => panel.remove() }, "Hide"));
  return panel;
}

function webhooksTable(hooks) {
  return table(["Id", "Name", "Format", "URL", "Created", ""], hooks.map((w) =>
    h("tr", { "data-webhook": w.id }, h("td", { class: "mono" }, w.id), h("td", {}, w.name),
      h("td", {}, w.format), h("td", { class: "mono" }, w.url),
      h("td", { title: `by ${w.created_by}` }, when(w.created_at)),
      h("td", {}, h("div", { class: "row-actions" },
        h("button", { type: "button", class: "quiet", onclick: () => sendTest(w) }, "Send test"),
        h("button", { type: "button", class: "danger", onclick: () => deleteWebhook(w) },
          "Delete"))))));
}

async function sendTest(hook) {
  try {
    await api("POST", `admin/webhooks/${encodeURIComponent(hook.id)}/test`);
    $("secret-holder").replaceChildren(status(`Test message queued for ${hook.name}.`));
  } catch (error) {
    failed(error);
  }
}

async function deleteWebhook(hook) {
  if (!await confirmAction(`Delete the webhook ${hook.name}? Alerts no longer go there.`,
    "Delete")) return;
  try {
    await api("DELETE", `admin/webhooks/${encodeURIComponent(hook.id)}`);
    await route();
  } catch (error) {
    failed(error);
  }
}

function alertsForm(hooks) {
  const boxes = hooks.map((w) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "webhook", value: w.id }), ` ${w.name}`));
  const form = h("form", { class: "card inline", id: "set-alerts",
    "aria-label": "set thresholds" },
  field("Scope", select("scope", [["team", "team"], ["user", "user"]], "team")),
  field("Name", h("input", { name: "subject", autocomplete: "off" }), "subject"),
  field("Thresholds (%)", h("input", { name: "thresholds", value: "50, 80, 95, 100" }),
    "thresholds"),
  h("div", { class: "field", "data-param": "webhooks" }, h("span", {}, "Webhooks"),
    h("div", { class: "checks" }, boxes.length ? boxes : "add a webhook first"),
    h("span", { class: "field-error", role: "alert" })),
  h("button", { type: "submit" }, "Save thresholds"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const thresholds = form.thresholds.value.split(/[\s,]+/).filter(Boolean)
      .map((t) => (Number.isFinite(Number(t)) ? Number(t) : t));
    const webhooks = [...form.querySelectorAll("[name=webhook]:checked")].map((c) => c.value);
    const path = `admin/alerts/${form.scope.value}s/${encodeURIComponent(form.subject.value.trim())}`;
    try {
      await api("PUT", path, { thresholds, webhooks });
      await route();
    } catch (error) {
      if (error.status === 401) return failed(error);
      showError(form, error);
    }
  });
  return form;
}

function alertsTable(alerts) {
  return table(["Scope", "Subject", "Thresholds", "Webhooks"], alerts.map((a) =>
    h("tr", { "data-subject": `${a.scope}:${a.subject}` }, h("td", {}, a.scope),
      h("td", {}, a.subject), h("td", {}, a.thresholds.map((t) => `${t} %`).join(", ")),
      h("td", { class: "mono" }, a.webhooks.join(", ")))));
}

function deliveriesTable(entries, hooks) {
  const names = Object.fromEntries(hooks.map((w) => [w.id, w.name]));
  return table(["Time", "Webhook", "Event", "Summary", "Attempt", "Status", "HTTP", "Error"],
    entries.map((e) => h("tr", { "data-status": e.status, "data-delivery": e.id },
      h("td", {}, when(e.at)), h("td", { title: e.webhook }, names[e.webhook] || e.webhook),
      h("td", {}, e.event), h("td", {}, e.summary), h("td", { class: "num" }, e.attempt),
      h("td", {}, h("span", { class: `tag ${e.status}` }, e.status)),
      h("td", {}, e.http_status ?? "—"), h("td", {}, e.error || ""))));
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
    // Rows of the last filter would read as this one's answer: none until it is fixed.
    if (!before) holder.replaceChildren(h("p", { class: "muted" }, "No entries shown: fix " +
      "the filter above."));
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

// Which credential acted, beside the user name: a key's id, the config's key, an SSO token.
function credentialText(c) {
  if (!c) return "";
  if (c.source === "key") return c.key_id === "config" ? "config key" : `key ${c.key_id || "?"}`;
  if (c.source === "jwt") return `SSO ${c.subject || "?"} · ${c.issuer || "?"}`;
  return c.source === "header" ? "proxy header" : c.source;
}

function auditRow(e) {
  const change = (label, value) => h("div", {}, h("strong", {}, label),
    h("pre", {}, value == null ? "—" : JSON.stringify(value, null, 1)));
  return h("tr", { "data-action": e.action },
    h("td", { title: e.request_id }, when(e.time)),
    h("td", {}, e.actor, h("div", { class: "mono muted" }, credentialText(e.credential))),
    h("td", {}, h("span", { class: "tag" }, e.action)), h("td", { class: "mono" }, e.target),
    h("td", {}, e.source_address || "—"),
    h("td", {}, h("details", {}, h("summary", {}, "before / after"),
      change("before", e.before), change("after", e.after))));
}

// ---- start -------------------------------------------------------------------------

wireSignIn();
window.addEventListener("hashchange", () => { if (!$("view").hidden) route(); });
offerSso();
signIn();
