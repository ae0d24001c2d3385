// mindo-bulk dashboard: plain JavaScript, no dependency, no build step. It uses the public
// API like any client: X-API-Key on fetch, a dashboard token for the EventSource streams
// (GET /api/v1/events/ for the list, GET …/bulk-sends/{id}/events/ for the open send).
"use strict";

const KEY_STORAGE = "mindo.apiKey";
const API = "/api/v1";
const FINISHED = new Set(["COMPLETED", "PARTIAL", "FAILED", "CANCELLED"]);
const MAX_LISTED = 50;
const MAX_SAMPLES = 600;
const NUMBERS_REFRESH_MS = 30000;
const NUMBERS_SOON_MS = 3000;

const $ = (id) => document.getElementById(id);

const state = {
  key: null,
  sends: new Map(), // id -> status object
  selected: null, // id of the send shown in detail
  samples: [], // [{t, sent, delivered, read, failed}] of the selected send
  tenantStream: null,
  sendStream: null,
  numbersTimer: null,
  numbersSoon: null,
  who: "", // the tenant and key, for the header
  stream: "", // the tenant stream's state, for the header
  failedShown: -1,
};

/** A fetch against the API with the key; throws an Error with the API's detail. */
async function api(path, options = {}) {
  const res = await fetch(API + path, {
    ...options,
    headers: { "X-API-Key": state.key, Accept: "application/json", ...(options.headers || {}) },
  });
  if (!res.ok) {
    let detail = res.statusText;
    try {
      const body = await res.json();
      detail = body.detail || detail;
    } catch (_) { /* not JSON */ }
    const err = new Error(detail);
    err.status = res.status;
    throw err;
  }
  return res.json();
}

/** The header line: who the key is, and whether the live stream is up. */
function setConnection(stream, who) {
  if (who !== undefined) state.who = who;
  if (stream !== undefined) state.stream = stream;
  $("connection").textContent = [state.who, state.stream].filter(Boolean).join(" · ");
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

const fmt = (n) => Number(n).toLocaleString("en-US");

// ---- the key ---------------------------------------------------------------------------

async function openWithKey(key) {
  state.key = key;
  try {
    await loadNumbers();
  } catch (err) {
    state.key = null;
    sessionStorage.removeItem(KEY_STORAGE);
    $("key-error").textContent = err.status === 401 ? "This API key is not valid." : `Could not connect: ${err.message}`;
    $("api-key").focus();
    return;
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  $("login").hidden = true;
  $("board").hidden = false;
  $("forget").hidden = false;
  await loadSends();
  openTenantStream();
  state.numbersTimer = setInterval(() => loadNumbers().catch(() => {}), NUMBERS_REFRESH_MS);
  const fromHash = location.hash.match(/^#send\/([0-9a-f-]{36})$/);
  if (fromHash) selectSend(fromHash[1]);
}

function forget() {
  sessionStorage.removeItem(KEY_STORAGE);
  location.hash = "";
  location.reload();
}

// ---- live streams -----------------------------------------------------------------------

async function token() {
  const body = await api("/dashboard-token/", { method: "POST" });
  return body.token;
}

/** Opens an EventSource with a fresh token; when the server refuses it (an expired token
 * after a disconnect) it asks for a new token and opens again. */
function liveStream(path, handlers, onOpen) {
  let source = null;
  let closed = false;
  let retryMs = 1000;
  const open = async () => {
    if (closed) return;
    let t;
    try {
      t = await token();
    } catch (err) {
      setConnection(`disconnected (${err.message}), retrying`);
      setTimeout(open, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
      return;
    }
    source = new EventSource(`${API}${path}?token=${encodeURIComponent(t)}`);
    source.onopen = () => { retryMs = 1000; if (onOpen) onOpen(); };
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (e) => fn(JSON.parse(e.data), e));
    }
    source.onerror = () => {
      if (!closed && path === "/events/") setConnection("reconnecting");
      // EventSource reconnects by itself unless the server refused it (CLOSED).
      if (source.readyState === EventSource.CLOSED && !closed) {
        setTimeout(open, retryMs);
        retryMs = Math.min(retryMs * 2, 30000);
      }
    };
  };
  open();
  return {
    close() {
      closed = true;
      if (source) source.close();
    },
  };
}

function openTenantStream() {
  state.tenantStream = liveStream(
    "/events/",
    {
      status: (send) => {
        upsertSend(send);
        refreshNumbersSoon();
      },
    },
    () => setConnection("live"),
  );
}

/** Sends move the numbers' quotas: read them again, at most every few seconds. */
function refreshNumbersSoon() {
  if (state.numbersSoon) return;
  state.numbersSoon = setTimeout(() => {
    state.numbersSoon = null;
    loadNumbers().catch(() => {});
  }, NUMBERS_SOON_MS);
}

// ---- the sends ------------------------------------------------------------------------

async function loadSends() {
  const page = await api(`/meta-templates/bulk-sends/?page_size=${MAX_LISTED}`);
  for (const send of page.results.reverse()) state.sends.set(send.id, send);
  renderSends();
}

function upsertSend(send) {
  const known = state.sends.get(send.id);
  // The list shows list items; keep the object as the stream gives it.
  state.sends.set(send.id, { ...(known || {}), ...send });
  if (!known) {
    renderSends();
  } else {
    const row = document.querySelector(`[data-send="${send.id}"]`);
    if (row) row.replaceWith(sendCard(state.sends.get(send.id)));
    else renderSends();
  }
  if (state.selected === send.id) showDetail(send);
}

function sortedSends() {
  return [...state.sends.values()]
    .sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : a.id < b.id ? 1 : -1))
    .slice(0, MAX_LISTED);
}

function renderSends() {
  const list = $("send-list");
  list.replaceChildren(...sortedSends().map(sendCard));
  $("sends-empty").hidden = state.sends.size > 0;
}

function statusBadge(send) {
  const frag = document.createDocumentFragment();
  frag.append(el("span", { class: `badge ${send.status}`, text: send.status }));
  if (send.paused && !FINISHED.has(send.status)) {
    frag.append(" ", el("span", { class: "badge paused", text: "PAUSED" }));
  }
  return frag;
}

function progress(send, labelId) {
  const pct = Number(send.progress_percentage || 0);
  const wrap = el("div");
  const bar = el("div", {
    class: "bar",
    role: "progressbar",
    "aria-valuemin": "0",
    "aria-valuemax": "100",
    "aria-valuenow": pct.toFixed(1),
    "aria-labelledby": labelId,
  });
  const fill = el("span");
  // A style property, not a style attribute: the page's CSP allows no inline style.
  fill.style.width = `${Math.min(100, pct)}%`;
  bar.append(fill);
  wrap.append(bar, funnel(send));
  return wrap;
}

function funnel(send) {
  const list = el(
    "ul",
    { class: "funnel", "aria-label": "Funnel" },
    el("li", { class: "sent", "data-count": "sent", text: `${fmt(send.sent_count)} sent` }),
    el("li", { "data-count": "delivered", text: `${fmt(send.delivered_count)} delivered` }),
    el("li", { "data-count": "read", text: `${fmt(send.read_count)} read` }),
    el("li", { class: "failed", "data-count": "failed", text: `${fmt(send.failed_count)} failed` }),
  );
  // Recipients never sent: shown only when there are some.
  for (const [what, n] of [["suppressed", send.suppressed_count], ["cancelled", send.cancelled_count]]) {
    if (n > 0) list.append(el("li", { "data-count": what, text: `${fmt(n)} ${what}` }));
  }
  return list;
}

function sendCard(send) {
  const titleId = `send-title-${send.id}`;
  const open = el("button", {
    type: "button",
    class: "link title",
    id: titleId,
    "aria-label": `${send.template.template_name} to ${fmt(send.total_recipients)} recipients, ${send.status}: show details`,
    text: `${send.template.template_name} · ${fmt(send.total_recipients)} recipients`,
  });
  open.addEventListener("click", () => selectSend(send.id));
  const card = el(
    "li",
    { class: `card${state.selected === send.id ? " selected" : ""}`, "data-send": send.id, "data-status": send.status },
    el("div", { class: "card-head" }, open, el("span", {}, statusBadge(send))),
    el("div", { class: "help", text: `${send.phone_number.display_phone_number} · created ${send.created_at} · ${Number(send.progress_percentage).toFixed(1)} %` }),
    progress(send, titleId),
  );
  return card;
}

// ---- one send -------------------------------------------------------------------------

async function selectSend(id) {
  if (state.sendStream) state.sendStream.close();
  state.selected = id;
  state.samples = [];
  state.failedShown = -1;
  $("control-result").textContent = "";
  location.hash = `#send/${id}`;
  document.querySelectorAll(".card.selected").forEach((c) => c.classList.remove("selected"));
  const card = document.querySelector(`[data-send="${id}"]`);
  if (card) card.classList.add("selected");
  $("detail").hidden = false;
  try {
    showDetail(await api(`/meta-templates/bulk-sends/${id}/`));
  } catch (err) {
    $("control-result").textContent = `Could not load the send: ${err.message}`;
    return;
  }
  $("detail-title").focus();
  const follow = (send) => {
    if (state.selected !== id) return;
    upsertSend(send);
  };
  state.sendStream = liveStream(`/meta-templates/bulk-sends/${id}/events/`, {
    status: follow,
    finished: (send) => {
      follow(send);
      if (state.sendStream) state.sendStream.close();
    },
  });
}

function closeDetail() {
  if (state.sendStream) state.sendStream.close();
  state.sendStream = null;
  const id = state.selected;
  state.selected = null;
  $("detail").hidden = true;
  history.replaceState(null, "", location.pathname);
  document.querySelectorAll(".card.selected").forEach((c) => c.classList.remove("selected"));
  const back = id && document.getElementById(`send-title-${id}`);
  if (back) back.focus();
}

function showDetail(send) {
  if (send.id !== state.selected) return;
  $("detail-title").textContent = `Send ${send.template.template_name} (${send.template.language})`;
  $("detail-meta").textContent =
    `From ${send.phone_number.display_phone_number} (${send.phone_number.verified_name}) · ` +
    `${fmt(send.total_recipients)} recipients · id ${send.id}`;
  $("detail-status").textContent = send.status;
  $("detail-status").className = `badge ${send.status}`;
  $("detail-paused").textContent =
    send.paused && !FINISHED.has(send.status) ? `Paused${send.pause_reason ? `: ${send.pause_reason}` : ""}` : "";
  $("detail").dataset.status = send.status;
  $("detail").dataset.paused = String(Boolean(send.paused));
  $("detail").dataset.sent = String(send.sent_count);
  const box = $("detail-progress");
  box.replaceChildren(progress(send, "detail-title"));
  const finished = FINISHED.has(send.status);
  $("pause").disabled = finished || send.paused;
  $("resume").disabled = finished || !send.paused;
  $("cancel").disabled = finished;
  addSample(send);
  if (send.failed_count !== state.failedShown) {
    state.failedShown = send.failed_count;
    loadFailed(send.id).catch(() => {});
  }
}

function addSample(send) {
  const last = state.samples[state.samples.length - 1];
  const sample = {
    t: Date.now(),
    sent: send.sent_count,
    delivered: send.delivered_count,
    read: send.read_count,
    failed: send.failed_count,
    total: send.total_recipients,
  };
  if (last && ["sent", "delivered", "read", "failed"].every((k) => last[k] === sample[k])) return;
  state.samples.push(sample);
  if (state.samples.length > MAX_SAMPLES) state.samples.shift();
  drawChart();
}

function drawChart() {
  const chart = $("chart");
  const samples = state.samples;
  const w = 600;
  const h = 220;
  chart.replaceChildren(svg("line", { class: "axis", x1: 0, y1: h - 1, x2: w, y2: h - 1 }));
  if (samples.length === 0) return;
  const t0 = samples[0].t;
  const span = Math.max(1, samples[samples.length - 1].t - t0);
  const total = Math.max(1, samples[samples.length - 1].total);
  for (const key of ["sent", "delivered", "read", "failed"]) {
    const points = samples
      .map((s) => `${((s.t - t0) / span) * w},${h - 2 - (s[key] / total) * (h - 6)}`)
      .join(" ");
    // One sample: the state at that moment, as a flat line.
    const line = samples.length === 1 ? `0,${points.split(",")[1]} ${w},${points.split(",")[1]}` : points;
    chart.append(svg("polyline", { class: key, points: line }));
  }
  const s = samples[samples.length - 1];
  $("chart-summary").textContent =
    `Of ${fmt(s.total)} recipients: ${fmt(s.sent)} sent, ${fmt(s.delivered)} delivered, ` +
    `${fmt(s.read)} read, ${fmt(s.failed)} failed, over ${Math.round(span / 1000)} s followed here.`;
}

async function loadFailed(id) {
  const page = await api(`/meta-templates/bulk-sends/${id}/messages/?status=failed&page_size=100`);
  if (state.selected !== id) return;
  const rows = page.results.map((m) =>
    el(
      "tr",
      {},
      el("td", { text: m.recipient_phone }),
      el("td", { text: m.error_code === null ? "" : String(m.error_code) }),
      el("td", { text: m.error_message || "" }),
      el("td", { text: m.failed_at || "" }),
    ),
  );
  $("failed-rows").replaceChildren(...rows);
  $("failed-table").hidden = rows.length === 0;
  $("failed-empty").hidden = rows.length > 0;
  $("failed-empty").textContent = "None.";
  if (page.count > rows.length) {
    $("failed-empty").hidden = false;
    $("failed-empty").textContent = `Showing ${rows.length} of ${fmt(page.count)}; the CSV export has them all.`;
  }
}

async function control(action) {
  const id = state.selected;
  if (!id) return;
  if (action === "cancel" && !window.confirm("Cancel this send? Pending messages will not be sent.")) return;
  const result = $("control-result");
  result.textContent = `${action}…`;
  try {
    const send = await api(`/meta-templates/bulk-sends/${id}/${action}/`, { method: "POST" });
    upsertSend(send);
    const done = { pause: "Paused.", resume: "Resumed.", cancel: "Cancelled." };
    result.textContent = done[action];
  } catch (err) {
    result.textContent = `Could not ${action}: ${err.message}`;
  }
}

// ---- numbers ------------------------------------------------------------------------

async function loadNumbers() {
  const body = await api("/business-accounts/");
  const items = [];
  for (const account of body.businessAccounts) {
    for (const n of account.phoneNumbers) items.push(numberCard(account, n));
  }
  $("number-list").replaceChildren(...items);
  setConnection(undefined, `${body.companyName}, key “${body.apiKeyName}”`);
}

function gauge(quota) {
  const pct = quota.dailyLimit === null ? 0 : Math.min(100, quota.usagePercentage);
  const arc = (fraction) => {
    const angle = Math.PI * (1 - fraction);
    const x = 50 + 40 * Math.cos(angle);
    const y = 50 - 40 * Math.sin(angle);
    return `M10,50 A40,40 0 0 1 ${x.toFixed(2)},${y.toFixed(2)}`;
  };
  const icon = svg("svg", { viewBox: "0 0 100 56", "aria-hidden": "true", focusable: "false" });
  icon.append(svg("path", { class: "track", d: arc(1) }));
  if (pct > 0) icon.append(svg("path", { class: `level${pct >= 90 ? " high" : ""}`, d: arc(pct / 100) }));
  const text =
    quota.dailyLimit === null
      ? `${fmt(quota.uniqueNumbersSent24h)} unique recipients in 24 h (no limit)`
      : `${fmt(quota.uniqueNumbersSent24h)} of ${fmt(quota.dailyLimit)} in 24 h (${quota.usagePercentage.toFixed(1)} %), ${fmt(quota.remaining)} left`;
  const meter = el("div", {
    class: "gauge",
    role: "meter",
    "aria-valuemin": "0",
    "aria-valuemax": "100",
    "aria-valuenow": pct.toFixed(1),
    "aria-valuetext": text,
    "aria-label": "Moving 24 h quota",
  });
  meter.append(icon, el("span", { text }));
  return meter;
}

function numberCard(account, n) {
  const facts = el("dl", { class: "facts" });
  for (const [k, v] of [
    ["Account", account.businessName],
    ["Tier", n.messagingLimitTier],
    ["Quality", n.qualityRating],
    ["Throughput", `${fmt(n.throughputMps)} msg/s`],
  ]) {
    facts.append(el("dt", { text: k }), el("dd", { text: v }));
  }
  return el(
    "li",
    { class: "card", "data-number": n.phoneNumberId },
    el("div", { class: "card-head" }, el("span", { class: "title", text: n.displayPhoneNumber }), el("span", { class: "help", text: n.verifiedName })),
    facts,
    gauge(n.quota),
  );
}

// ---- start ----------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    $("key-error").textContent = "";
    openWithKey($("api-key").value.trim());
  });
  $("forget").addEventListener("click", forget);
  $("pause").addEventListener("click", () => control("pause"));
  $("resume").addEventListener("click", () => control("resume"));
  $("cancel").addEventListener("click", () => control("cancel"));
  $("close-detail").addEventListener("click", closeDetail);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && state.selected) closeDetail();
  });
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) openWithKey(saved);
  else $("api-key").focus();
});
