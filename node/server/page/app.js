// The node's status page: it polls the node's JSON API (docs/protocol.md)
// and draws what it answers. Every part renders on its own: a part whose
// endpoint fails says so and keeps what it last showed.
"use strict";

const API = "/api/v0";
const TOKEN_KEY = "mycel-api-token";

// The API token, where the node needs one: given as the page's fragment
// (#token=...), which browsers never send, then kept in this tab only.
let token = sessionStorage.getItem(TOKEN_KEY) || "";
{
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    token = decodeURIComponent(m[1]);
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", location.pathname + location.search);
  }
}

class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, opts = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(API + path, {
      method: opts.method || "GET",
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (e) {
    throw new APIError(0, "the node does not answer (" + e.message + ")");
  }
  let body = null;
  try {
    body = await resp.json();
  } catch (e) {
    if (resp.ok) throw new APIError(resp.status, "the node's answer is not JSON");
  }
  if (!resp.ok) {
    const msg = body && body.error ? body.error : "HTTP " + resp.status;
    if (resp.status === 401) needToken(msg);
    throw new APIError(resp.status, msg);
  }
  return body;
}

// --- DOM helpers -------------------------------------------------------

const $ = (sel) => document.querySelector(sel);

// h builds an element; strings become text nodes, never markup.
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}

const SVGNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVGNS, tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") el.textContent = v;
    // Through the CSSOM: the page's policy refuses style attributes.
    else if (k === "style") el.style.cssText = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === undefined || k === null || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}

function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function pill(text, kind) {
  return h("span", { class: "pill " + (kind || "") }, text);
}

function meter(frac, kind) {
  const f = Math.max(0, Math.min(1, frac || 0));
  return h("div", { class: "meter " + (kind || (f > 0.95 ? "bad" : f > 0.8 ? "warn" : "")), role: "meter",
    "aria-valuenow": (f * 100).toFixed(0), "aria-valuemin": 0, "aria-valuemax": 100 },
    h("span", { style: "width:" + (f * 100).toFixed(1) + "%" }));
}

function stat(label, value, sub, id) {
  return h("div", { class: "stat" }, h("div", { class: "label" }, label),
    h("div", { class: "big", id }, value), sub ? h("div", { class: "sub" }, sub) : null);
}

// --- Formats -----------------------------------------------------------

function fmtBytes(n) {
  if (n === undefined || n === null || isNaN(n)) return "–";
  const a = Math.abs(n);
  if (a >= 1e12) return (n / 1e12).toFixed(2) + " TB";
  if (a >= 1e9) return (n / 1e9).toFixed(1) + " GB";
  if (a >= 1e6) return (n / 1e6).toFixed(1) + " MB";
  if (a >= 1e3) return (n / 1e3).toFixed(1) + " kB";
  return Math.round(n) + " B";
}
const fmtRate = (n) => fmtBytes(n) + "/s";

function fmtNum(n, digits = 1) {
  if (n === undefined || n === null || isNaN(n)) return "–";
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(digits) + "G";
  if (a >= 1e6) return (n / 1e6).toFixed(digits) + "M";
  if (a >= 1e4) return (n / 1e3).toFixed(digits) + "k";
  if (Number.isInteger(n)) return String(n);
  return n.toFixed(a >= 100 ? 0 : digits);
}

function fmtDur(sec) {
  sec = Math.max(0, Math.round(sec));
  const d = Math.floor(sec / 86400), hh = Math.floor(sec / 3600) % 24, m = Math.floor(sec / 60) % 60;
  if (d) return d + "d " + hh + "h";
  if (hh) return hh + "h " + m + "m";
  if (m) return m + "m " + (sec % 60) + "s";
  return sec + "s";
}

function fmtTime(t) {
  const d = new Date(t);
  return isNaN(d) ? "" : d.toLocaleTimeString([], { hour12: false });
}

function ago(t) {
  const d = new Date(t);
  if (isNaN(d) || d.getFullYear() < 2000) return "";
  return fmtDur((Date.now() - d) / 1000) + " ago";
}

// shortPeer is how the command line shows a peer: its last characters.
const shortPeer = (id) => (id && id.length > 6 ? "…" + id.slice(-6) : id || "");
const shortCID = (c) => (c && c.length > 14 ? c.slice(0, 6) + "…" + c.slice(-6) : c || "");

// --- Sections ----------------------------------------------------------

// A section renders into its body; a failure shows in its error line and
// leaves the last rendering in place.
function section(id) {
  const el = document.getElementById(id);
  return {
    body: el.querySelector(".body"),
    err: el.querySelector(".err"),
    show(...kids) {
      this.body.replaceChildren(...kids.flat().filter(Boolean));
      this.err.textContent = "";
    },
    fail(what, e) {
      this.err.textContent = what + ": " + (e && e.message ? e.message : String(e));
    },
  };
}

const secs = {
  node: section("sec-node"),
  throughput: section("sec-throughput"),
  serving: section("sec-serving"),
  caps: section("sec-caps"),
  swarm: section("sec-swarm"),
  network: section("sec-network"),
  credit: section("sec-credit"),
  models: section("sec-models"),
  train: section("sec-train"),
  logs: section("sec-logs"),
};

// --- Status: the header, identity, throughput, serving, caps, network ---

let status = null; // the last status answered
const history_ = []; // {t, tokens, rx, tx}: for rates and the sparklines
const HISTORY = 120;

async function pollStatus() {
  let st;
  try {
    st = await api("/status");
  } catch (e) {
    setConn(false, e.message);
    for (const k of ["node", "throughput", "serving", "caps", "network"]) secs[k].fail("status", e);
    return;
  }
  status = st;
  setConn(true);
  const c = st.counters || {};
  history_.push({ t: Date.now() / 1000, tokens: c.swarm_tokens || 0, rx: c.bytes_received || 0, tx: c.bytes_sent || 0 });
  if (history_.length > HISTORY) history_.shift();
  renderHeader(st);
  for (const [k, f] of [["node", renderNode], ["throughput", renderThroughput], ["serving", renderServing],
    ["caps", renderCaps], ["network", renderNetwork]]) {
    try {
      f(st);
    } catch (e) {
      secs[k].fail("drawing", e);
    }
  }
}

let lastOK = 0;
function setConn(ok, msg) {
  const el = $("#conn");
  if (ok) lastOK = Date.now();
  el.classList.toggle("down", !ok);
  el.textContent = ok ? "live" : "node not answering: " + msg;
}

function renderHeader(st) {
  $("#short-id").textContent = shortPeer(st.id);
  document.title = "Mycel node " + shortPeer(st.id) + (st.state && st.state !== "working" ? " (" + st.state + ")" : "");
  const badge = $("#state");
  const hasState = typeof st.state === "string" && st.state !== "";
  badge.hidden = !hasState;
  badge.textContent = hasState ? st.state : "";
  badge.dataset.state = st.state || "";
  badge.classList.toggle("suspended", hasState && st.state !== "working");
  let reason = st.reason || "";
  if (hasState && st.state_since) {
    const a = ago(st.state_since);
    if (a) reason += (reason ? " " : "") + "(since " + a + ")";
  }
  $("#reason").textContent = reason;
  const paused = (st.suspensions || []).some((x) => x.word === "paused") || st.state === "paused";
  $("#pause").hidden = !hasState || paused;
  $("#pause-for").hidden = !hasState || paused;
  $("#resume").hidden = !hasState || !paused;
}

function reachView(r) {
  if (!r) return [pill("not reported")];
  const relays = (r.relay_addrs || []).length;
  let main;
  switch (r.reachability) {
    case "public":
      main = pill("reachable directly", "good");
      break;
    case "private":
      main = relays
        ? pill("behind NAT, reachable through " + relays + (relays === 1 ? " relay" : " relays"), "warn")
        : pill("behind NAT, no relay yet: peers reach it only when it dials them", "bad");
      break;
    default:
      main = r.autonat ? pill("not known yet (AutoNAT asks peers to dial back)") : pill("not checked (--no-nat)");
  }
  return [main];
}

function natName(t) {
  switch (t) {
    case "endpoint-independent":
      return "cone: hole punching works";
    case "endpoint-dependent":
      return "symmetric: relays only";
  }
  return "unknown";
}

function renderNode(st) {
  const r = st.reach || {};
  const addrs = (st.addrs || []).map((a) => a.replace(/\/p2p\/[^/]+$/, ""));
  secs.node.show(kv([
    ["peer ID", h("span", { class: "mono", id: "peer-id" }, st.id)],
    st.version ? ["version", st.version] : null,
    st.started ? ["up", fmtDur((Date.now() - new Date(st.started)) / 1000)] : null,
    ["reach", reachView(st.reach)],
    r.reachability === "private" ? ["NAT", "TCP " + natName(r.nat_tcp) + "; UDP " + natName(r.nat_udp)] : null,
    (r.reachable || []).length ? ["dialable", h("ul", { class: "plain mono" }, r.reachable.map((a) => h("li", {}, a)))] : null,
    (r.unreachable || []).length ? ["not dialable", h("ul", { class: "plain mono" }, r.unreachable.map((a) => h("li", {}, a)))] : null,
    ["addresses", addrs.length ? h("ul", { class: "plain mono" }, addrs.map((a) => h("li", {}, a))) : h("span", { class: "empty" }, "none")],
    (r.relay_addrs || []).length ? ["through relays", h("ul", { class: "plain mono" }, r.relay_addrs.map((a) => h("li", {}, a)))] : null,
    ["data", h("span", { class: "mono" }, st.data_dir)],
  ]));
}

// rate is the per-second change of field over the last window seconds.
function rate(field, window = 10) {
  if (history_.length < 2) return 0;
  const last = history_[history_.length - 1];
  let first = history_[0];
  for (let i = history_.length - 2; i >= 0; i--) {
    first = history_[i];
    if (last.t - first.t >= window) break;
  }
  const dt = last.t - first.t;
  return dt > 0 ? Math.max(0, (last[field] - first[field]) / dt) : 0;
}

// sparkline draws the per-second rate of field over the history.
function sparkline(field, label, fmt) {
  const W = 300, H = 44;
  const pts = [];
  for (let i = 1; i < history_.length; i++) {
    const a = history_[i - 1], b = history_[i];
    const dt = b.t - a.t;
    pts.push([b.t, dt > 0 ? Math.max(0, (b[field] - a[field]) / dt) : 0]);
  }
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, preserveAspectRatio: "none", height: H });
  if (pts.length < 2) return svg;
  const t0 = pts[0][0], t1 = pts[pts.length - 1][0];
  const max = Math.max(...pts.map((p) => p[1]), 1e-9);
  const xy = pts.map(([t, v]) => [((t - t0) / Math.max(t1 - t0, 1e-9)) * W, H - 2 - (v / max) * (H - 14)]);
  const line = xy.map(([x, y]) => x.toFixed(1) + "," + y.toFixed(1)).join(" ");
  append(svg, [
    s("polygon", { class: "area", points: `0,${H} ${line} ${W},${H}` }),
    s("polyline", { class: "line", points: line }),
    s("text", { x: 2, y: 10 }, label + " · peak " + fmt(max)),
  ]);
  return svg;
}

function renderThroughput(st) {
  const c = st.counters || {};
  const tokRate = rate("tokens"), rx = rate("rx"), tx = rate("tx");
  const protos = (c.protocols || []).slice(0, 6);
  secs.throughput.show(
    h("div", { class: "stats two" },
      stat("tokens served", fmtNum(tokRate) + "/s", fmtNum(c.swarm_tokens || 0) + " in all", "tok-rate"),
      stat("sessions", fmtNum(c.sessions_open || 0), fmtNum(c.sessions || 0) + " opened" +
        (c.sessions_refused ? ", " + fmtNum(c.sessions_refused) + " refused" : "")),
      stat("received", fmtRate(rx), fmtBytes(c.bytes_received || 0) + " in all"),
      stat("sent", fmtRate(tx), fmtBytes(c.bytes_sent || 0) + " in all")),
    sparkline("tokens", "tokens/s", (v) => fmtNum(v) + "/s"),
    sparkline("tx", "sent", fmtRate),
    kv([
      ["completions", fmtNum(c.completion_tokens || 0) + " tokens generated for " + fmtNum(c.prompt_tokens || 0) + " of prompts"],
      ["blocks", fmtBytes(c.block_bytes_sent || 0) + " sent, " + fmtBytes(c.block_bytes_received || 0) + " received"],
    ]),
    protos.length ? h("div", { class: "scroll" }, h("table", {},
      h("tr", {}, h("th", {}, "protocol"), h("th", { class: "num" }, "received"), h("th", { class: "num" }, "sent")),
      protos.map((p) => h("tr", {}, h("td", { class: "mono" }, p.protocol),
        h("td", { class: "num" }, fmtBytes(p.received)), h("td", { class: "num" }, fmtBytes(p.sent)))))) : null,
  );
}

function modelLabel(cid, name) {
  return name ? name + " (" + shortCID(cid) + ")" : cid;
}

// spanBar draws a span of layers within a model's.
function spanBar(first, last, layers) {
  const W = 300, H = 10;
  const x = (first / layers) * W, w = Math.max(((last - first) / layers) * W, 1);
  return s("svg", { viewBox: `0 0 ${W} ${H}`, height: H, preserveAspectRatio: "none", role: "img",
    "aria-label": `layers ${first}:${last} of ${layers}` },
    s("rect", { class: "axis", x: 0, y: 3, width: W, height: 4, fill: "currentColor", opacity: 0.15 }),
    s("rect", { class: "bar", x, y: 0, width: w, height: H, rx: 2 }));
}

function renderServing(st) {
  const sv = st.serving || [];
  if (!sv.length) {
    secs.serving.show(h("p", { class: "empty" }, "No layers served. Start the node with --serve MODEL to lend this machine to the swarm."));
    return;
  }
  secs.serving.show(sv.map((x) => h("div", { class: "span-item", "data-model": x.model },
    h("div", { class: "title" }, modelLabel(x.model, x.name)),
    h("div", {}, h("span", { class: "span-layers" }, `layers ${x.first}:${x.last}`), ` of ${x.layers} · ${fmtNum(x.throughput)} tok/s · `,
      `${x.sessions} session${x.sessions === 1 ? "" : "s"} open · ${fmtNum(x.steps)} steps`),
    spanBar(x.first, x.last, x.layers),
    x.memory_budget ? [h("div", { class: "dim" }, `KV cache ${fmtBytes(x.reserved_bytes)} of ${fmtBytes(x.memory_budget)}`),
      meter(x.reserved_bytes / x.memory_budget)] : null,
  )));
}

// capRows are the caps of the status (api.Caps) as rows; 0 is no cap.
function capRows(c) {
  const none = "no cap";
  const rows = [
    ["threads", c.threads ? `${c.threads} of ${c.cores} cores` : `all ${c.cores || ""} cores`.replace("  ", " ")],
    ["serve memory", c.serve_memory ? fmtBytes(c.serve_memory) : none],
    ["train memory", c.train_memory ? fmtBytes(c.train_memory) : none],
    ["upload", c.max_upload ? fmtRate(c.max_upload) : none],
    ["download", c.max_download ? fmtRate(c.max_download) : none],
  ];
  const today = fmtBytes(c.transfer_today || 0);
  const resets = c.transfer_resets ? " · resets " + new Date(c.transfer_resets).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false }) : "";
  rows.push(["transfer today", c.daily_transfer
    ? [today + " of " + fmtBytes(c.daily_transfer) + resets, meter(c.transfer_today / c.daily_transfer)]
    : today + " (no daily cap)"]);
  return rows;
}

function renderCaps(st) {
  const rows = [];
  if (st.store_cap > 0) {
    const f = st.store_bytes / st.store_cap;
    rows.push(["block store", [fmtBytes(st.store_bytes) + " of " + fmtBytes(st.store_cap), meter(f)]]);
  } else {
    rows.push(["block store", fmtBytes(st.store_bytes) + " (no cap)"]);
  }
  if (st.unreferenced_bytes > 0) rows.push(["unused", fmtBytes(st.unreferenced_bytes) + " (mycel store gc removes it)"]);
  if (st.caps && typeof st.caps === "object") rows.push(...capRows(st.caps));
  const sus = st.suspensions || [];
  secs.caps.show(kv(rows), sus.length ? [h("h3", { class: "sub-h" }, "Not working because"),
    h("ul", { class: "plain", id: "suspensions" }, sus.map((x) => h("li", {}, pill(x.word, "warn"), " ", x.reason,
      x.until ? h("span", { class: "dim" }, " (until " + new Date(x.until).toLocaleString() + ")") : null)))] : null);
}

function renderNetwork(st) {
  const peers = st.peers || [];
  const d = st.dht || { lan: {}, wan: {} };
  secs.network.show(
    h("div", { class: "stats" }, stat("peers", String(peers.length), "connected", "peer-count"),
      stat("LAN DHT", String(d.lan.peers ?? "–"), d.lan.mode || ""), stat("WAN DHT", String(d.wan.peers ?? "–"), d.wan.mode || "")),
    kv([["DHT mode", d.setting || ""],
      ["swarm", st.private_swarm ? "private " + st.private_swarm + " (only nodes with the same key)" : "public"]]),
    peers.length ? h("ul", { class: "plain mono", style: "margin-top:.5em;max-height:10em;overflow-y:auto" },
      peers.slice(0, 50).map((p) => h("li", { title: p }, p))) : h("p", { class: "empty" }, "No peers connected."),
    peers.length > 50 ? h("p", { class: "dim" }, "and " + (peers.length - 50) + " more") : null,
  );
}

// --- Credit: the ledger of signed receipts --------------------------------

async function pollCredit() {
  let cr;
  try {
    cr = await api("/credit");
  } catch (e) {
    secs.credit.fail("credit", e);
    return;
  }
  const share = (part, all) => (all ? Math.round((100 * part) / all) + "% countersigned" : "none yet");
  const rows = (cr.rows || []).slice(0, 5);
  secs.credit.show(
    h("div", { class: "stats" },
      stat("tokens served", fmtNum(cr.served_tokens), share(cr.served_countersigned, cr.served_tokens), "credit-served"),
      stat("examples trained", fmtNum(cr.trained_examples), share(cr.trained_countersigned, cr.trained_examples), "credit-trained"),
      stat("tokens used", fmtNum(cr.used_tokens), "served to this node")),
    rows.length ? h("div", { class: "scroll" }, h("table", { id: "credit-rows" },
      h("tr", {}, h("th", {}, "day"), h("th", {}, "work"), h("th", {}, "with"), h("th", { class: "num" }, "units")),
      rows.map((r) => h("tr", {},
        h("td", {}, r.day),
        h("td", {}, r.kind, " ", h("span", { class: "mono dim", title: r.subject }, shortCID(r.subject))),
        h("td", { class: "mono", title: r.peer || "" }, r.peer ? shortPeer(r.peer) : "round"),
        h("td", { class: "num" }, fmtNum(r.units), r.countersigned === r.units ? [" ", pill("signed", "good")] : null))))) :
      h("p", { class: "empty" }, "No receipts yet: serving layers and training earn them."),
    h("p", { class: "dim" }, `${cr.receipts} receipts, ${cr.rounds} rounds; mycel node credit --export copies the ledger for others to check.`),
  );
}

// --- Models kept ---------------------------------------------------------

let models = [];
async function pollModels() {
  try {
    models = (await api("/models")) || [];
  } catch (e) {
    secs.models.fail("models", e);
    return;
  }
  if (!models.length) {
    secs.models.show(h("p", { class: "empty" }, "No models kept. mycel models pull or import adds one."));
    return;
  }
  secs.models.show(h("div", { class: "scroll" }, h("table", {},
    h("tr", {}, h("th", {}, "model"), h("th", { class: "num" }, "parts here"), h("th", { class: "num" }, "size")),
    models.map((m) => h("tr", {},
      h("td", {}, h("div", {}, m.name || shortCID(m.cid)), h("div", { class: "mono dim", title: m.cid }, shortCID(m.cid))),
      h("td", { class: "num" }, `${m.local_parts}/${m.total_parts}`, m.whole ? [" ", pill("whole", "good")] : null),
      h("td", { class: "num" }, fmtBytes(m.bytes)))))));
}

// --- Swarm map -----------------------------------------------------------

// The models the map shows: those served, else those kept (a few).
function swarmModels() {
  const served = (status && status.serving) || [];
  const seen = new Map();
  for (const x of served) seen.set(x.model, x.name);
  if (!seen.size) for (const m of models.slice(0, 3)) seen.set(m.cid, m.name);
  return [...seen.keys()];
}

const swarmViews = new Map(); // model → {el, err}
async function pollSwarm() {
  const want = swarmModels();
  if (!want.length) {
    swarmViews.clear();
    secs.swarm.show(h("p", { class: "empty" }, "No model served or kept: nothing to map."));
    return;
  }
  const answers = await Promise.all(want.map((m) => api("/swarm/" + encodeURIComponent(m)).then((v) => ({ m, v }), (e) => ({ m, e }))));
  const kids = [];
  for (const { m, v, e } of answers) {
    if (e) {
      const old = swarmViews.get(m);
      kids.push(h("div", { class: "swarm-model" }, old ? old.cloneNode(true) : h("div", { class: "title" }, shortCID(m)),
        h("p", { class: "err" }, "swarm of " + shortCID(m) + ": " + e.message)));
      continue;
    }
    const el = swarmMap(v);
    swarmViews.set(m, el);
    kids.push(h("div", { class: "swarm-model" }, el));
  }
  secs.swarm.show(kids, h("div", { class: "legend" },
    h("span", {}, h("i", { style: "background:var(--bar)" }), "throughput of a layer's servers"),
    h("span", {}, h("i", { style: "background:var(--bar-weak)" }), "weak: under a third of the median"),
    h("span", {}, h("i", { style: "background:var(--bad)" }), "no server"),
    h("span", {}, h("i", { style: "border:2px solid var(--self)" }), "this node"),
    h("span", {}, "the number over a bar: its servers")));
}

function swarmMap(st) {
  const L = st.layers || 0;
  const servers = st.servers || [];
  const count = new Array(L).fill(0);
  const mine = [];
  for (const sv of servers) {
    for (let i = Math.max(0, sv.first); i < Math.min(L, sv.last); i++) count[i]++;
    if (sv.self) mine.push(sv);
  }
  const cov = st.coverage || new Array(L).fill(0);
  const weak = new Set(st.weak || []);
  const maxCov = Math.max(...cov, 1e-9);
  const step = Math.max(8, Math.min(40, 720 / Math.max(L, 1)));
  const W = Math.max(L * step, 120), top = 14, H = 90, base = top + H;
  const svg = s("svg", { viewBox: `0 0 ${W} ${base + 16}`, role: "img", class: "swarm",
    "aria-label": `coverage of ${L} layers by ${servers.length} servers`, style: `max-width:${Math.max(W, 320)}px` });
  for (let i = 0; i < L; i++) {
    const c = cov[i] || 0;
    const hgt = count[i] ? Math.max(3, (c / maxCov) * H) : 4;
    const cls = count[i] === 0 ? "bar missing" : weak.has(i) ? "bar weak" : "bar";
    append(svg, [s("rect", { class: cls, x: i * step + 1, y: base - hgt, width: step - 2, height: hgt, rx: 1.5 },
      s("title", {}, `layer ${i}: ${count[i]} server${count[i] === 1 ? "" : "s"}, ${fmtNum(c)} tok/s`))]);
    if (step >= 12) append(svg, [s("text", { x: i * step + step / 2, y: base - hgt - 3, "text-anchor": "middle" }, String(count[i]))]);
    const every = Math.ceil(L / 16);
    if (i % every === 0) append(svg, [s("text", { x: i * step + step / 2, y: base + 12, "text-anchor": "middle" }, String(i))]);
  }
  for (const sv of mine) {
    append(svg, [s("rect", { class: "mine", x: sv.first * step, y: top - 2, width: (sv.last - sv.first) * step, height: H + 4, rx: 3 })]);
  }
  append(svg, [s("line", { class: "axis", x1: 0, x2: W, y1: base + 0.5, y2: base + 0.5 })]);
  const missing = (st.missing || []).map((m) => `${m.first}:${m.last}`);
  const summary = missing.length
    ? pill("no server for layers " + missing.join(", "), "bad")
    : servers.length ? pill("every layer served; weakest " + fmtNum(Math.min(...cov)) + " tok/s", "good") : pill("no servers", "bad");
  return h("div", {},
    h("div", { class: "title" }, modelLabel(st.model, st.name), " ",
      h("span", { class: "dim" }, `${L} layers, ${servers.length} server${servers.length === 1 ? "" : "s"}`), " ", summary),
    h("div", { class: "scroll" }, svg));
}

// --- Training jobs -------------------------------------------------------

const jobStatus = new Map(); // id → {v, at}
async function pollTrain() {
  let jobs;
  try {
    jobs = (await api("/train/jobs")) || [];
  } catch (e) {
    secs.train.fail("training jobs", e);
    return;
  }
  jobs.sort((a, b) => new Date(b.created) - new Date(a.created));
  const shown = jobs.slice(0, 6);
  // A job's status asks its members: fetched less often, and only for
  // jobs that move or were never seen.
  await Promise.all(shown.map(async (j) => {
    const old = jobStatus.get(j.id);
    const live = j.state === "training" || j.state === "waiting";
    if (old && (!live || Date.now() - old.at < 10000)) return;
    try {
      jobStatus.set(j.id, { v: await api("/train/jobs/" + encodeURIComponent(j.id)), at: Date.now() });
    } catch (e) {
      jobStatus.set(j.id, { v: old && old.v, err: e, at: Date.now() });
    }
  }));
  if (!jobs.length) {
    secs.train.show(h("p", { class: "empty" }, "No training jobs known on the swarm."));
    return;
  }
  secs.train.show(h("div", { class: "jobs" }, shown.map((j) => jobView(j, jobStatus.get(j.id)))),
    jobs.length > shown.length ? h("p", { class: "dim" }, `and ${jobs.length - shown.length} older jobs`) : null);
}

function jobView(j, js) {
  const st = js && js.v;
  const kind = j.state === "training" ? "good" : j.state === "stopped" ? "bad" : "";
  const loss = (st && st.loss) || [];
  return h("div", { class: "job" },
    h("div", { class: "title" }, h("span", { class: "mono" }, shortCID(j.id)), " ", pill(j.state, kind)),
    h("div", { class: "dim" }, `${j.method} of ${shortCID(j.model)} · ${j.averaging} · ${j.peers} member${j.peers === 1 ? "" : "s"}`),
    h("div", {}, `step ${j.step} of ${j.steps}`, st && st.tokens_per_second ? ` · ${fmtNum(st.tokens_per_second)} tok/s` : ""),
    meter(j.steps ? j.step / j.steps : 0, "ok"),
    lossChart(loss),
    js && js.err ? h("p", { class: "err" }, "status: " + js.err.message) : null);
}

function lossChart(loss) {
  const W = 320, H = 110, L = 30, B = 16;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "loss", "aria-label": "training loss by step" });
  if (loss.length < 2) {
    append(svg, [s("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, loss.length ? "loss " + loss[0][1].toFixed(3) : "no loss reported yet")]);
    return svg;
  }
  const xs = loss.map((p) => p[0]), ys = loss.map((p) => p[1]).filter((v) => isFinite(v));
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = (x) => L + ((x - x0) / Math.max(x1 - x0, 1e-9)) * (W - L - 4);
  const sy = (y) => 4 + (1 - (y - y0) / Math.max(y1 - y0, 1e-9)) * (H - B - 8);
  const pts = loss.filter((p) => isFinite(p[1])).map(([x, y]) => sx(x).toFixed(1) + "," + sy(y).toFixed(1)).join(" ");
  append(svg, [
    s("line", { class: "axis", x1: L, x2: W, y1: H - B, y2: H - B }),
    s("line", { class: "axis", x1: L, x2: L, y1: 0, y2: H - B }),
    s("text", { x: L - 3, y: 10, "text-anchor": "end" }, y1.toFixed(2)),
    s("text", { x: L - 3, y: H - B - 2, "text-anchor": "end" }, y0.toFixed(2)),
    s("text", { x: L, y: H - 3 }, "step " + x0),
    s("text", { x: W - 2, y: H - 3, "text-anchor": "end" }, "step " + x1 + " · loss " + loss[loss.length - 1][1].toFixed(3)),
    s("polyline", { class: "line", points: pts }),
  ]);
  return svg;
}

// --- Log -----------------------------------------------------------------

let logSeq = 0;
const LOG_KEEP = 300;
async function pollLogs() {
  const level = $("#log-level").value;
  let recs;
  try {
    recs = (await api(`/logs?since=${logSeq}&level=${encodeURIComponent(level)}`)) || [];
  } catch (e) {
    secs.logs.fail("log", e);
    return;
  }
  secs.logs.err.textContent = "";
  const list = $("#log");
  const atEnd = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  for (const r of recs) {
    logSeq = Math.max(logSeq, r.seq);
    const attrs = r.attrs ? Object.entries(r.attrs).map(([k, v]) => k + "=" + (typeof v === "string" ? v : JSON.stringify(v))).join(" ") : "";
    list.append(h("li", {}, h("span", { class: "t" }, fmtTime(r.time)), h("span", { class: "lv lv-" + r.level }, r.level),
      r.sys ? h("span", { class: "sys" }, r.sys) : null, r.msg, attrs ? h("span", { class: "attrs" }, " " + attrs) : null));
  }
  while (list.children.length > LOG_KEEP) list.firstElementChild.remove();
  if (!list.children.length) list.append(h("li", { class: "empty" }, "nothing logged at this level yet"));
  else list.querySelector(".empty")?.remove();
  if (atEnd || recs.length === list.children.length) list.scrollTop = list.scrollHeight;
}

// --- Actions -------------------------------------------------------------

async function act(path, body) {
  const buttons = [$("#pause"), $("#resume")];
  buttons.forEach((b) => (b.disabled = true));
  try {
    await api(path, { method: "POST", body });
    await pollStatus();
  } catch (e) {
    $("#reason").textContent = path.slice(1) + " failed: " + e.message;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

function needToken(msg) {
  $("#login").hidden = false;
  $("#main").hidden = true;
  $("#login-error").textContent = token ? msg : "";
}

// --- Start ----------------------------------------------------------------

// every runs f, then again period ms after it ends, for as long as the page
// is open.
function every(period, f) {
  const run = async () => {
    try {
      await f();
    } finally {
      setTimeout(run, period);
    }
  };
  run();
}

function start() {
  $("#pause").addEventListener("click", () => act("/pause", $("#pause-for").value ? { for: $("#pause-for").value } : {}));
  $("#resume").addEventListener("click", () => act("/resume"));
  $("#log-level").addEventListener("change", () => {
    logSeq = 0;
    $("#log").replaceChildren();
    pollLogs();
  });
  $("#login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("#login-token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    api("/status").then(() => {
      $("#login").hidden = true;
      $("#main").hidden = false;
      pollStatus();
    }, () => {});
  });
  every(1000, pollStatus);
  every(2000, pollLogs);
  every(10000, pollModels);
  every(5000, pollSwarm);
  every(5000, pollTrain);
  every(5000, pollCredit);
  setInterval(() => {
    if (lastOK && Date.now() - lastOK > 5000) $("#conn").textContent = "last answer " + fmtDur((Date.now() - lastOK) / 1000) + " ago";
  }, 1000);
}

start();
