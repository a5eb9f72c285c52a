// The operator console: a page per hash route, drawn from the admin API (/admin/v1) with the
// admin key the operator typed in, kept in this tab's session storage. Every action is an admin
// API call, so the key's role decides what it may do and the API audits it. Text is set with
// textContent only: nothing the API returns is ever parsed as HTML.
"use strict";

const KEY = "tokenhub.adminKey";
const API = "/admin/v1";
let timers = [];
let lastOverview = null;

// ---- DOM helpers -------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
const $ = (id) => document.getElementById(id);
const badge = (s) => el("span", { class: "badge " + (s || "UNKNOWN") }, s || "unknown");
const num = (n) => (n === undefined || n === null ? "–" : Number(n).toLocaleString("en"));
function age(seconds) {
  if (seconds === undefined || seconds === null) return "–";
  if (seconds < 120) return seconds + " s";
  if (seconds < 7200) return Math.round(seconds / 60) + " min";
  return Math.round(seconds / 3600) + " h";
}
function when(t) {
  return t ? new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "–";
}
function table(headers, rows, empty) {
  const head = el("tr", {}, headers.map((h) => el("th", { class: h.endsWith("#") ? "num" : "" },
    h.replace(/#$/, ""))));
  const body = rows.length ? rows : [el("tr", {}, el("td", { colspan: headers.length, class: "muted" },
    empty || "none"))];
  return el("table", {}, el("thead", {}, head), el("tbody", {}, body));
}
const td = (v, cls) => el("td", { class: cls }, v);
const tdn = (v) => el("td", { class: "num" }, num(v));

function banner(text, kind) {
  const b = $("banner");
  b.textContent = text || "";
  b.className = kind || "";
  b.hidden = !text;
}

// ---- the admin API -------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, body) {
    const code = (body && body.error) || "HTTP_" + status;
    const msg = (body && body.message) || "the hub answered " + status;
    super(status === 403 ? "Refused: " + msg + " (403 " + code + ")" : msg + " (" + status + " " + code + ")");
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { authorization: "Bearer " + sessionStorage.getItem(KEY) };
  if (body !== undefined) headers["content-type"] = "application/json";
  const r = await fetch(API + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store", credentials: "omit",
  });
  if (r.status === 401) {
    logout("This admin key was refused (401): it is unknown, revoked or mistyped.");
    throw new ApiError(401, null);
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

// An action's outcome in the banner: the API's refusal as it gave it.
async function act(label, method, path, body) {
  try {
    await api(method, path, body);
    banner(label + ": done.", "info");
    return true;
  } catch (e) {
    banner(label + " — " + e.message);
    return false;
  }
}

// ---- session ------------------------------------------------------------------------------
function logout(message) {
  sessionStorage.removeItem(KEY);
  stopTimers();
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("view").replaceChildren();
  $("login").hidden = false;
  banner(message || "");
}

async function login(ev) {
  ev.preventDefault();
  const key = $("login-key").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY, key);
  $("login-key").value = "";
  banner("");
  show();
}

function show() {
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  if (!location.hash || location.hash === "#" || location.hash === "#/") location.hash = "#/overview";
  else route();
}

// ---- routing ------------------------------------------------------------------------------
function stopTimers() {
  timers.forEach(clearInterval);
  timers = [];
}

// Draws `draw()` now and every `ms` while the page is shown; its errors go to the banner.
function every(ms, draw) {
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      await draw();
      $("updated").textContent = "updated " + new Date().toLocaleTimeString("en-GB");
    } catch (e) {
      if (e.status !== 401) banner(e.message);
    } finally {
      busy = false;
    }
  };
  tick();
  if (ms) timers.push(setInterval(tick, ms));
}

function route() {
  if (!sessionStorage.getItem(KEY)) return logout();
  stopTimers();
  banner("");
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const pages = { overview: overviewPage, campaigns: campaignsPage, tokens: tokensPage, requestors: requestorsPage };
  const page = pages[parts[0]] || overviewPage;
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.page === (pages[parts[0]] ? parts[0] : "overview"));
  }
  const view = $("view");
  view.replaceChildren();
  page(view, parts[1]);
}

// ---- overview -----------------------------------------------------------------------------
function tile(label, value, id) {
  return el("div", { class: "tile" }, el("div", { class: "label" }, label),
    el("div", { class: "value", id }, value));
}

// Counts per second between this reading and the last one of the same series.
function rate(key, count, now) {
  const prev = lastOverview && lastOverview.counts[key];
  if (prev === undefined || !lastOverview || now <= lastOverview.at) return "–";
  return ((count - prev) / ((now - lastOverview.at) / 1000)).toFixed(1) + "/s";
}

async function tspHealth() {
  // The TSPs' health, where this hub shows it; without it every TSP is shown "unknown".
  try {
    const list = await api("GET", "/tsps");
    const items = Array.isArray(list) ? list : (list && list.items) || [];
    return Object.fromEntries(items.map((t) => [t.tspId, t.health]));
  } catch (_) {
    return {};
  }
}

async function hubNodes() {
  // The hub nodes sharing the database, where this key may read them (else none shown).
  try {
    const r = await api("GET", "/nodes");
    return (r && r.nodes) || [];
  } catch (_) {
    return [];
  }
}

function nodeRow(n) {
  const state = n.live ? "RUNNING" : (n.stoppedAt ? "STOPPED" : "DOWN");
  return el("tr", { "data-node": n.nodeId },
    td([el("code", {}, n.nodeId), n.thisNode ? el("span", { class: "muted" }, " (this one)") : ""]),
    td(badge(state)), td(n.version), td(when(n.startedAt)), td(when(n.lastHeartbeatAt)),
    tdn(n.holds.tspCalls), tdn(n.holds.notifications));
}

function overviewPage(view) {
  const body = el("div", { id: "overview" });
  view.append(el("h1", {}, "Overview"), body);
  every(5000, async () => {
    const [o, health, members] = await Promise.all([api("GET", "/overview"), tspHealth(), hubNodes()]);
    const now = Date.parse(o.at);
    const counts = {};
    const n = o.notifications;
    const tiles = el("div", { class: "tiles" },
      tile("Outbox: calls owed to TSPs", num(o.tsps.reduce((s, t) => s + t.outbox.pending, 0)), "outbox-pending"),
      tile("Notifications pending", num(n.pending), "notifications-pending"),
      tile("Dead letters", num(n.dead), "notifications-dead"),
      tile("Endpoints disabled", num(n.endpointsDisabled)),
      tile("Personalizations pending", num(o.personalizations.pending)),
      tile("Store writer queue", o.store.writerQueueDepth === undefined ? "–" :
        num(o.store.writerQueueDepth) + " / " + num(o.store.writerQueueCapacity)));
    const tsps = o.tsps.map((t) => {
      const h = health[t.tspId];
      const calls = t.calls.map((c) => {
        const key = "tsp:" + t.tspId + ":" + c.call + ":" + c.outcome;
        counts[key] = c.count;
        return el("div", {}, el("code", {}, c.call), " ", c.outcome, ": ", num(c.count),
          el("span", { class: "muted" }, " (" + rate(key, c.count, now) + ")"));
      });
      return el("tr", { "data-tsp": t.tspId },
        td(el("code", {}, t.tspId)), td(h ? badge(h.state) : el("span", { class: "badge UNKNOWN" }, "unknown"), "health"),
        td(h && h.latencyMs !== undefined && h.latencyMs !== null ? h.latencyMs + " ms" : "–"),
        td(h ? when(h.lastCheckAt) : "–"), td(h ? when(h.lastHubCheckAt) : "–"),
        tdn(t.outbox.pending), td(age(t.outbox.oldestPendingAgeSeconds)), tdn(t.outbox.dead),
        td(calls.length ? calls : el("span", { class: "muted" }, "no calls yet")));
    });
    const api_ = o.tspApi.map((c) => {
      const key = "api:" + c.tsp + ":" + c.operation + ":" + c.responseCode;
      counts[key] = c.count;
      return el("tr", {}, td(el("code", {}, c.tsp)), td(el("code", {}, c.operation)),
        td(c.responseCode === "ok" ? badge("ok") : el("code", {}, c.responseCode)),
        tdn(c.count), td(rate(key, c.count, now), "num"));
    });
    const busiest = n.busiest.map((r) => el("tr", {},
      td(el("a", { href: "#/requestors/" + encodeURIComponent(r.requestorId) }, r.requestorId)),
      td(badge(r.state)), tdn(r.pending), td(age(r.oldestPendingAgeSeconds)), tdn(r.dead)));
    const campaigns = o.campaigns.map((c) => el("tr", {},
      td(el("a", { href: "#/campaigns/" + encodeURIComponent(c.campaignId) }, c.campaignId)),
      td(badge(c.state)), td(progress(c.steps))));
    lastOverview = { at: now, counts };
    body.replaceChildren(tiles,
      el("h2", {}, "TSPs"),
      table(["TSP", "health", "latency", "last check", "TSP checked the hub", "outbox#", "oldest",
        "dead#", "the hub's calls (since start)"], tsps, "no TSP registered"),
      el("h2", {}, "TSP API: answers by TSP, operation and code (since start)"),
      table(["TSP", "operation", "code", "count#", "rate#"], api_, "no TSP API request yet"),
      el("h2", {}, "Requestors with the most waiting"),
      table(["requestor", "endpoint", "pending#", "oldest", "dead#"], busiest, "no token requestor"),
      el("h2", {}, "Live campaigns"),
      table(["campaign", "state", "progress"], campaigns, "no campaign running"),
      el("h2", {}, "Hub nodes"),
      table(["node", "state", "version", "started", "last heartbeat", "TSP calls held#",
        "updates held#"], members.map(nodeRow), "no node listed"));
  });
}

// ---- campaigns ----------------------------------------------------------------------------
function settled(steps) {
  return (steps.DONE || 0) + (steps.FAILED || 0) + (steps.SKIPPED || 0) + (steps.CANCELLED || 0);
}

function progress(steps, total) {
  const t = total || Object.values(steps).reduce((a, b) => a + b, 0) || 1;
  const pct = (n) => (100 * (n || 0) / t).toFixed(2) + "%";
  const bar = el("div", { class: "progress", title: settled(steps) + " of " + t + " settled" },
    el("div", { class: "done", style: null }), el("div", { class: "failed" }),
    el("div", { class: "moving" }));
  // Widths through the CSSOM: the policy allows no inline style attribute.
  bar.children[0].style.width = pct(steps.DONE);
  bar.children[1].style.width = pct((steps.FAILED || 0) + (steps.SKIPPED || 0) + (steps.CANCELLED || 0));
  bar.children[2].style.width = pct((steps.RECOVERING || 0) + (steps.DELIVERING || 0));
  return bar;
}

function campaignsPage(view, id) {
  if (id) return campaignPage(view, id);
  const list = el("div", { id: "campaign-list" });
  const field = (name, label, value) => el("label", {}, label,
    el("input", { name, value, required: true, size: 12 }));
  const form = el("form", { class: "inline", id: "deploy-form", onsubmit: deploy },
    field("issuer", "issuer", ""), field("product", "product", ""), field("version", "profile version", ""),
    field("rate", "tokens/s", "50"), field("inflight", "in flight", "200"), field("canary", "canary %", "0"),
    el("button", { type: "submit", class: "primary" }, "Deploy with a campaign"));
  view.append(el("h1", {}, "Campaigns"),
    el("div", { class: "card" }, el("h2", {}, "Deploy a profile version with a campaign"),
      el("p", { class: "muted" }, "The version must be defined (PUT …/profiles/{version}); every token ACTIVE on the product is re-personalized."),
      form),
    list);
  every(2000, async () => {
    const page = await api("GET", "/campaigns?limit=50");
    list.replaceChildren(table(["campaign", "issuer / product", "version", "state", "progress",
      "done#", "failed#", "total#", "started"], page.items.map((c) => el("tr", { "data-campaign": c.campaignId },
      td(el("a", { href: "#/campaigns/" + encodeURIComponent(c.campaignId) }, c.campaignId)),
      td(c.issuerId + " / " + c.productId), td(c.profileVersion), td(badge(c.state)),
      td(progress(c.steps, c.total)), tdn(c.steps.DONE), tdn(c.steps.FAILED), tdn(c.total),
      td(when(c.startedAt)))), "no campaign yet"));
  });
}

async function deploy(ev) {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const path = "/issuers/" + encodeURIComponent(f.get("issuer")) + "/products/" +
    encodeURIComponent(f.get("product")) + "/profiles/" + encodeURIComponent(f.get("version")) + "/deploy";
  try {
    const r = await api("POST", path, { campaign: {
      ratePerSecond: Number(f.get("rate")), maxInFlight: Number(f.get("inflight")),
      canaryPercent: Number(f.get("canary")) } });
    if (r && r.campaignId) location.hash = "#/campaigns/" + encodeURIComponent(r.campaignId);
    else banner("Deployed; no token was ACTIVE on the product, so no campaign started.", "info");
  } catch (e) {
    banner("Deploy — " + e.message);
  }
}

function campaignPage(view, id) {
  const body = el("div", { id: "campaign" });
  const path = "/campaigns/" + encodeURIComponent(id);
  const command = (name) => el("button", { type: "button", id: "campaign-" + name,
    onclick: async () => { await act(name + " " + id, "POST", path + "/" + name); } }, name);
  view.append(el("h1", {}, "Campaign ", el("code", {}, id)),
    el("div", { class: "actions" }, command("pause"), command("resume"), command("cancel"),
      el("button", { type: "button", id: "report-json", onclick: () => download(path + "/report", id + "-report.json") }, "Report (JSON)"),
      el("button", { type: "button", id: "report-csv", onclick: () => download(path + "/report?format=csv", id + "-report.csv") }, "Report (CSV)")),
    body);
  every(1000, async () => {
    const c = await api("GET", path);
    const s = c.steps;
    body.replaceChildren(el("div", { class: "card" },
      el("dl", { class: "facts" },
        el("dt", {}, "state"), el("dd", { id: "campaign-state" }, badge(c.state), c.stateReason ? " " + c.stateReason : ""),
        el("dt", {}, "profile"), el("dd", {}, c.issuerId + " / " + c.productId + " → " + c.profileVersion),
        el("dt", {}, "progress"), el("dd", {}, progress(s, c.total)),
        el("dt", {}, "settled"), el("dd", { id: "campaign-settled" }, num(settled(s)) + " of " + num(c.total)),
        el("dt", {}, "pace"), el("dd", {}, c.ratePerSecond + " tokens/s, at most " + c.maxInFlight + " in flight, canary " + c.canarySize),
        el("dt", {}, "started"), el("dd", {}, when(c.startedAt)),
        el("dt", {}, c.finishedAt ? "finished" : "estimated end"),
        el("dd", {}, when(c.finishedAt || c.estimatedEnd)))),
      el("h2", {}, "Tokens by step"),
      table(Object.keys(s).map((k) => k + "#"), [el("tr", { id: "campaign-steps" },
        Object.values(s).map((v) => tdn(v)))]));
  });
}

async function download(path, name) {
  try {
    const r = await fetch(API + path, { headers: { authorization: "Bearer " + sessionStorage.getItem(KEY) }, cache: "no-store" });
    if (!r.ok) {
      let b = null;
      try { b = await r.json(); } catch (_) { /* not JSON */ }
      throw new ApiError(r.status, b);
    }
    const url = URL.createObjectURL(await r.blob());
    const a = el("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    banner("Report — " + e.message);
  }
}

// ---- tokens -------------------------------------------------------------------------------
function tokensPage(view, id) {
  const form = el("form", { class: "inline", id: "token-form", onsubmit: (ev) => {
    ev.preventDefault();
    const t = new FormData(ev.target).get("token").trim();
    if (t) location.hash = "#/tokens/" + encodeURIComponent(t);
  } }, el("label", {}, "token id", el("input", { name: "token", id: "token-id", size: 40, value: id || "", required: true })),
  el("button", { type: "submit", class: "primary" }, "Show"));
  view.append(el("h1", {}, "Tokens"), el("div", { class: "card" }, form));
  if (!id) return;
  const body = el("div", { id: "token" });
  view.append(body);
  const path = "/tokens/" + encodeURIComponent(id);
  const action = (name, cls) => el("button", { type: "button", id: "token-" + name, class: cls,
    onclick: async () => { if (await act(name + " " + id, "POST", path + "/" + name)) drawToken(); } }, name);
  const drawToken = async () => {
    const [t, updates] = await Promise.all([api("GET", path), api("GET", path + "/notifications?limit=50")]);
    body.replaceChildren(
      el("div", { class: "actions" }, action("suspend"), action("resume"), action("delete", "danger")),
      el("div", { class: "card" }, el("dl", { class: "facts" },
        el("dt", {}, "state"), el("dd", { id: "token-state" }, badge(t.state)),
        el("dt", {}, "issuer / product"), el("dd", {}, t.issuerId + " / " + t.productId),
        el("dt", {}, "profile version"), el("dd", { id: "token-version" }, t.profileVersion),
        el("dt", {}, "device"), el("dd", {}, el("code", {}, t.deviceId)),
        el("dt", {}, "token"), el("dd", {}, "…" + (t.tokenInfo.last4 || "") + (t.tokenInfo.exp ? " exp " + t.tokenInfo.exp : "")),
        el("dt", {}, "requestor"), el("dd", {}, t.tokenRequestorId ? el("a", { href: "#/requestors/" + encodeURIComponent(t.tokenRequestorId) }, t.tokenRequestorId) : "–"),
        el("dt", {}, "elements held"), el("dd", {}, t.elementsHeld.length ? t.elementsHeld.join(", ") : "none (names only; never a value)"),
        t.failureReason ? [el("dt", {}, "failure"), el("dd", {}, t.failureReason)] : null,
        el("dt", {}, "created / updated"), el("dd", {}, when(t.createdAt) + " / " + when(t.updatedAt)))),
      el("h2", {}, "Profile versions (personalizations, newest first)"),
      table(["personalization", "version", "kind", "state", "offers#", "reason", "created"],
        t.personalizations.map((p) => el("tr", {}, td(el("code", {}, p.personalizationId)), td(p.profileVersion),
          td(p.kind), td(badge(p.state)), tdn(p.tries), td(p.reason || ""), td(when(p.createdAt))))),
      el("h2", {}, "History"),
      table(["at", "event", "correlation id"], t.history.slice().reverse().map((e) =>
        el("tr", {}, td(when(e.at)), td(e.event), td(el("code", {}, e.correlationId))))),
      el("h2", {}, "Updates sent to the requestor"),
      table(["update", "state", "lastUpdateTimestamp", "attempts#", "last status", "created"],
        updates.map((u) => el("tr", { "data-notification": u.notificationId }, td(String(u.notificationId)),
          td(badge(u.state)), td(u.lastUpdateTimestamp), tdn(u.attempts), td(u.lastStatus || u.lastError || ""),
          td(when(u.createdAt)))), "no update sent"));
  };
  every(3000, drawToken);
}

// ---- requestors ---------------------------------------------------------------------------
function requestorsPage(view, id) {
  if (id) return requestorPage(view, id);
  const list = el("div", { id: "requestor-list" });
  view.append(el("h1", {}, "Token requestors"), list);
  every(5000, async () => {
    const page = await api("GET", "/token-requestors?limit=100");
    list.replaceChildren(table(["requestor", "merchant", "endpoint", "state", "pending#", "oldest", "dead#"],
      page.items.map((r) => el("tr", { "data-requestor": r.requestorId },
        td(el("a", { href: "#/requestors/" + encodeURIComponent(r.requestorId) }, r.requestorId)),
        td(r.merchantId), td(el("code", {}, r.baseUrl)), td(badge(r.state)), tdn(r.pending),
        td(age(r.oldestPendingAgeSeconds)), tdn(r.dead))), "no token requestor registered"));
  });
}

function requestorPage(view, id) {
  const body = el("div", { id: "requestor" });
  const path = "/token-requestors/" + encodeURIComponent(id);
  view.append(el("h1", {}, "Requestor ", el("code", {}, id)), body);
  const draw = async () => {
    const [r, dead, recent] = await Promise.all([api("GET", path),
      api("GET", path + "/notifications?state=DEAD&limit=100"), api("GET", path + "/notifications?limit=50")]);
    const counts = r.notifications || {};
    const replay = (n) => el("button", { type: "button", class: "replay", "data-id": n.notificationId,
      onclick: async () => { if (await act("replay " + n.notificationId, "POST", "/notifications/" + n.notificationId + "/replay")) draw(); } }, "Replay");
    body.replaceChildren(
      el("div", { class: "card" }, el("dl", { class: "facts" },
        el("dt", {}, "endpoint"), el("dd", {}, el("code", {}, r.baseUrl)),
        el("dt", {}, "state"), el("dd", { id: "requestor-state" }, badge(r.state), r.disabledReason ? " " + r.disabledReason : ""),
        el("dt", {}, "merchant"), el("dd", {}, r.merchantId),
        el("dt", {}, "updates"), el("dd", { id: "requestor-counts" }, Object.entries(counts).map(([k, v]) => k + " " + num(v)).join(" · ") || "none")),
      el("div", { class: "actions" },
        r.state === "DISABLED" ? el("button", { type: "button", id: "requestor-enable", onclick: async () => { if (await act("enable " + id, "POST", path + "/enable")) draw(); } }, "Enable the endpoint") : null,
        el("button", { type: "button", id: "replay-all", disabled: dead.length === 0, onclick: async () => { if (await act("replay every dead letter of " + id, "POST", path + "/dead-letters/replay")) draw(); } }, "Replay every dead letter"))),
      el("h2", {}, "Dead letters"),
      table(["update", "token", "lastUpdateTimestamp", "attempts#", "last status", "created", ""],
        dead.map((n) => el("tr", { class: "dead-letter", "data-id": n.notificationId }, td(String(n.notificationId)),
          td(el("a", { href: "#/tokens/" + encodeURIComponent(n.tokenId) }, n.tokenId)), td(n.lastUpdateTimestamp),
          tdn(n.attempts), td(n.lastStatus || n.lastError || ""), td(when(n.createdAt)), td(replay(n)))),
        "the dead-letter list is empty"),
      el("h2", {}, "Recent deliveries"),
      table(["update", "token", "state", "attempts#", "last status", "next attempt", "delivered"],
        recent.map((n) => el("tr", { class: "delivery", "data-id": n.notificationId }, td(String(n.notificationId)),
          td(el("a", { href: "#/tokens/" + encodeURIComponent(n.tokenId) }, n.tokenId)), td(badge(n.state)),
          tdn(n.attempts), td(n.lastStatus || n.lastError || ""), td(when(n.nextAttemptAt)), td(when(n.deliveredAt)))),
        "nothing sent yet"));
  };
  every(3000, draw);
}

// ---- start --------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => logout("Logged out."));
  window.addEventListener("hashchange", route);
  if (sessionStorage.getItem(KEY)) show(); else logout();
});
