// roller's dashboard: a client of roller's own API, like the CLI.
//
// Every request is Hawk-signed here with WebCrypto, with the credentials the
// operator typed (kept in sessionStorage: gone when the tab closes), so the
// page can do exactly what those credentials' scopes allow. Everything drawn
// from the API goes in as text (never as HTML), and the page loads nothing but
// its own scripts and style sheet (the Content-Security-Policy says so too).
// Fleet health, the home view, is in health.js; the machine list in fleet.js; a
// machine's page in machine.js: each uses the helpers here.
"use strict";

const CREDS_KEY = "roller.credentials";
const FINAL = new Set(["succeeded", "failed", "cancelled"]);

// ---- small DOM helpers ------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const $ = (id) => document.getElementById(id);

function showAlert(text) {
  $("alert").textContent = text || "";
}

// "3 min ago", the exact time on hover (`rel`, health.js: measured on roller's clock).
function when(ts) {
  return ts ? rel(ts) : "—";
}

function stateBadge(state) {
  return el("span", { class: `state state-${state}` }, state);
}

function jobLink(job) {
  return el("a", { href: `#/job/${encodeURIComponent(job.task_id)}` }, job.task_name);
}

function machineLink(id) {
  return el("a", { href: `#/machine/${encodeURIComponent(id)}` }, id);
}

// ---- credentials and Hawk ---------------------------------------------------

function loadCreds() {
  try {
    return JSON.parse(sessionStorage.getItem(CREDS_KEY) || "null");
  } catch {
    return null;
  }
}

function b64(bytes) {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s);
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Taskcluster's Hawk: a MAC over ts, nonce, method, path with query, host and
// port (no payload hash), with temporary credentials' certificate in `ext`.
async function hawkHeader(method, url, creds) {
  if (!window.crypto || !crypto.subtle) {
    throw new Error("This browser cannot sign requests here: open the dashboard over HTTPS (or on localhost).");
  }
  const ts = Math.floor(Date.now() / 1000);
  const nonce = hex(crypto.getRandomValues(new Uint8Array(12)));
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  const ext = creds.certificate ? btoa(JSON.stringify({ certificate: creds.certificate })) : "";
  const normalized = ["hawk.1.header", ts, nonce, method, url.pathname + url.search, host, port, "", ext, ""].join("\n");
  const key = await crypto.subtle.importKey(
    "raw", new TextEncoder().encode(creds.accessToken), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = b64(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(normalized)));
  let header = `Hawk id="${creds.clientId}", ts="${ts}", nonce="${nonce}", mac="${mac}"`;
  if (ext) header += `, ext="${ext}"`;
  return header;
}

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// A signed request to roller; resolves to the JSON body, or throws ApiError with the server's detail.
async function api(method, path, creds = loadCreds(), init = {}) {
  if (!creds) throw new ApiError(403, "not signed in");
  const url = new URL(path, location.origin);
  let authorization;
  try {
    authorization = await hawkHeader(method, url, creds);
  } catch (e) {
    throw new ApiError(0, e.message);
  }
  let res;
  try {
    res = await fetch(url, { method, ...init, headers: { Authorization: authorization, ...(init.headers || {}) } });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "roller is unreachable: " + e.message);
  }
  if (init.raw && res.ok) return res;
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  if (!res.ok) throw new ApiError(res.status, (body && body.detail) || `HTTP ${res.status}`);
  return body;
}

// ---- views ------------------------------------------------------------------

let cleanup = [];
let whoami = null;
// Which view is current: a view that awaited something checks it is still wanted before drawing.
let generation = 0;

function setView(title, ...children) {
  for (const f of cleanup) f();
  cleanup = [];
  generation += 1;
  document.title = title ? `${title} · roller` : "roller";
  const view = $("view");
  view.replaceChildren(...children);
  return generation;
}

function every(ms, f) {
  const t = setInterval(f, ms);
  cleanup.push(() => clearInterval(t));
}

// Run `f` now, then `ms` after each run has ended: never two at once however slowly
// roller answers, nothing while the tab is hidden, and nothing once the view is gone.
// `f` returning false stops it.
function poll(ms, f) {
  const mine = generation;
  let timer = null;
  const tick = async () => {
    timer = null;
    if (mine !== generation) return;
    let again = true;
    if (!document.hidden) {
      try {
        again = (await f()) !== false;
      } catch (e) {
        showAlert(e.message);
      }
    }
    if (again && mine === generation) timer = setTimeout(tick, ms);
  };
  cleanup.push(() => clearTimeout(timer));
  tick();
}

function signInView(message) {
  $("goto").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  const form = el("form", { id: "signin", "aria-labelledby": "signin-title" },
    el("h1", { id: "signin-title" }, "Sign in"),
    el("p", { class: "hint" },
      "Use Taskcluster or roller client credentials. They stay in this browser tab and sign each request; ",
      "roller never sees the access token."),
    el("div", { class: "field" },
      el("label", { for: "client-id" }, "Client ID"),
      el("input", { id: "client-id", name: "clientId", autocomplete: "username", required: true, spellcheck: "false" })),
    el("div", { class: "field" },
      el("label", { for: "access-token" }, "Access token"),
      el("input", { id: "access-token", name: "accessToken", type: "password", autocomplete: "current-password",
        required: true })),
    el("details", {},
      el("summary", {}, "Temporary credentials"),
      el("div", { class: "field" },
        el("label", { for: "certificate" }, "Certificate (JSON)"),
        el("textarea", { id: "certificate", name: "certificate", spellcheck: "false",
          "aria-describedby": "certificate-hint" }),
        el("span", { id: "certificate-hint", class: "hint" }, "Only for temporary credentials; leave empty otherwise."))),
    el("button", { type: "submit", class: "primary" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showAlert("");
    const creds = { clientId: $("client-id").value.trim(), accessToken: $("access-token").value };
    const cert = $("certificate").value.trim();
    if (cert) {
      try {
        creds.certificate = JSON.parse(cert);
      } catch {
        showAlert("The certificate is not valid JSON.");
        return;
      }
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      whoami = await api("GET", "/api/v1/whoami", creds);
      sessionStorage.setItem(CREDS_KEY, JSON.stringify(creds));
      route();
    } catch (e) {
      showAlert(`Sign-in failed: ${e.message}`);
      button.disabled = false;
    }
  });
  setView("Sign in", form);
  if (message) showAlert(message);
  $("client-id").focus();
}

function signedInChrome() {
  $("goto").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = `Signed in as ${whoami.client_id}`;
}

// The first http(s) link a job names for its bug: the bug task's result, a
// reboot chain's "filed" step, or the chain's failure message.
function bugUrl(job) {
  const r = job.result || {};
  const candidates = [r.url];
  for (const a of r.attempts || []) if (a.outcome === "filed") candidates.push(a.reason);
  const m = /Filed (https?:\/\/\S+?)\.?$/.exec(job.error || "");
  if (m) candidates.push(m[1]);
  return candidates.find((u) => typeof u === "string" && /^https?:\/\//.test(u));
}

// What the job took before its first power cut, in a line; the whole record is in the Result.
function evidenceLine(e) {
  const got = [];
  if (e.probes) got.push(`probes (icmp ${e.probes.icmp})`);
  if (e.sel) got.push(`SEL ${e.sel.entries.length}`);
  if (e.redfish_log) got.push(`Redfish log ${e.redfish_log.entries.length}`);
  if (e.console) got.push(`console ${e.console.bytes} bytes`);
  const missing = (e.missing || []).length;
  return `before ${e.before}: ${got.join(", ") || "nothing"}${missing ? `; ${missing} not taken (see Result)` : ""}`;
}

function jobFacts(job) {
  const rows = [
    ["Task", job.task_name],
    ["Machine", machineLink(job.worker_id)],
    ["Group", job.worker_group],
    ["State", stateBadge(job.state)],
    ["Requested by", job.requester],
    ["Attempts", `${job.attempts} of ${job.max_attempts}`],
    ["Created", when(job.created_at)],
    ["Started", when(job.started_at)],
    ["Finished", when(job.finished_at)],
  ];
  const r = job.result || {};
  if (r.worked) rows.push(["Worked", `${r.worked}${r.proof ? ` (${r.proof})` : ""}`]);
  if (r.evidence) rows.push(["Evidence", evidenceLine(r.evidence)]);
  const bug = bugUrl(job);
  if (bug) rows.push(["Bug", el("a", { href: bug, rel: "noreferrer", target: "_blank" }, bug)]);
  if (job.error) rows.push(["Error", job.error]);
  return el("dl", { class: "facts" }, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function logLine(l) {
  return el("li", {}, el("time", { datetime: l.at }, new Date(l.at).toLocaleTimeString()), l.line);
}

async function jobView(id) {
  const facts = el("div", { id: "job-facts" });
  const log = el("ol", { class: "log", id: "job-log", role: "log", "aria-live": "polite", "aria-label": "Job log" });
  const live = el("p", { class: "hint", id: "job-live", "aria-live": "polite" }, "Connecting…");
  const result = el("div", {});
  const heading = el("h1", {}, "Job");
  setView("Job", heading, facts, el("h2", {}, "Log"), live, log, result);
  const abort = new AbortController();
  cleanup.push(() => abort.abort());
  const drawJob = (job) => {
    heading.textContent = `${job.task_name} on ${job.worker_id}`;
    document.title = `${job.task_name} on ${job.worker_id} · roller`;
    facts.replaceChildren(jobFacts(job));
    log.replaceChildren(...job.log.map(logLine));
    result.replaceChildren(job.result
      ? el("details", {}, el("summary", {}, "Result"), el("pre", {}, JSON.stringify(job.result, null, 2)))
      : "");
  };
  let ended = false;
  // The stream ends when the job does, or after a while (then we connect again, signing anew).
  while (!ended && !abort.signal.aborted) {
    try {
      const res = await api("GET", `/api/v1/jobs/${encodeURIComponent(id)}/events`, loadCreds(),
        { raw: true, signal: abort.signal, headers: { Accept: "text/event-stream" } });
      live.textContent = "Live: the log updates as the job runs.";
      for await (const ev of sse(res.body)) {
        if (ev.event === "job") drawJob(JSON.parse(ev.data));
        else if (ev.event === "log") log.append(logLine(JSON.parse(ev.data)));
        else if (ev.event === "end") ended = true;
        else if (ev.event === "error") throw new ApiError(503, ev.data);
      }
    } catch (e) {
      if (abort.signal.aborted) return;
      if (e instanceof ApiError && [400, 403, 404].includes(e.status)) {
        live.textContent = "";
        handleError(e, null, e.status === 404 ? `No job ${id} (it may have expired): ` : "");
        return;
      }
      live.textContent = `Connection lost (${e.message}); trying again…`;
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  if (ended) live.textContent = "Finished.";
}

// Server-sent events from a fetch body (EventSource cannot send an Authorization header).
async function* sse(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n?/g, "\n");
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const ev = { event: "message", data: [] };
      for (const line of frame.split("\n")) {
        if (line.startsWith(":")) continue;
        const [k, ...rest] = line.split(":");
        const v = rest.join(":").replace(/^ /, "");
        if (k === "event") ev.event = v;
        else if (k === "data") ev.data.push(v);
      }
      if (ev.data.length || ev.event !== "message") yield { event: ev.event, data: ev.data.join("\n") };
    }
  }
}

// Errors go where the operator is looking; a credential gone bad is shown, not
// acted on (the Sign out button is there).
function handleError(e, where, prefix = "") {
  const text = `${prefix}${e.message}`;
  if (where) where.textContent = text;
  else showAlert(text);
}

// ---- routing ----------------------------------------------------------------

async function route() {
  showAlert("");
  const creds = loadCreds();
  if (!creds) return signInView();
  if (!whoami) {
    try {
      whoami = await api("GET", "/api/v1/whoami", creds);
    } catch (e) {
      sessionStorage.removeItem(CREDS_KEY);
      return signInView(`Sign-in failed: ${e.message}`);
    }
  }
  signedInChrome();
  const [, kind, raw] = /^#\/(machine|job)\/(.+)$/.exec(location.hash) || [];
  // The machine list keeps its filters in the hash's query: a reload or a shared link keeps them.
  const [path, query] = location.hash.split("?");
  const page = kind || (path === "#/machines" ? "machines" : "health");
  for (const a of document.querySelectorAll("nav a[data-nav]")) {
    if (a.dataset.nav === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  let arg;
  try {
    arg = raw && decodeURIComponent(raw);
  } catch {
    showAlert(`Not a machine or job id: ${raw}`);
    return;
  }
  // Each view draws itself at once and then keeps loading (a job's stream runs until
  // it ends), so it is not awaited; focus moves to the new content for screen readers.
  const view = kind === "machine" ? machineView(arg) : kind === "job" ? jobView(arg)
    : page === "machines" ? machinesView(new URLSearchParams(query || "")) : healthView();
  view.catch((e) => showAlert(e.message));
  $("main").focus({ preventScroll: true });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

document.addEventListener("DOMContentLoaded", () => {
  $("goto").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = $("goto-input").value.trim();
    if (!v) return;
    location.hash = UUID.test(v) ? `#/job/${v}` : `#/machine/${encodeURIComponent(v)}`;
  });
  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(CREDS_KEY);
    whoami = null;
    location.hash = "#/";
    signInView();
  });
  window.addEventListener("hashchange", route);
  route();
});
