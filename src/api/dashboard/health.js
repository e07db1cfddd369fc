// roller's dashboard, part two: fleet health (the home view) and a machine's health
// facts (on its page). Loaded after app.js, whose helpers it uses (el, api, setView,
// poll, machineLink, handleError). Like app.js, everything from the API goes in as
// text, never as HTML.
"use strict";

// The home view reads the fleet this often (one refresh at a time: see `poll`).
const HEALTH_EVERY_MS = 30000;

// Health states from worst to best, as roller orders them.
const STATES = ["no_path", "hung", "down", "off", "held", "quarantined", "unknown", "idle", "busy", "ok"];
const OUTCOMES = {
  back_in_service: "back in service",
  not_taking_work: "rebooted, but not taking work",
  job_failed: "the job failed",
};

// ---- times, as roller's clock sees them ---------------------------------------

// roller's clock minus this browser's, learned from its answers: "3 min ago" is
// measured against roller's clock, which stamped the observations.
let skewMs = 0;

function span(secs) {
  const s = Math.max(0, Math.round(secs));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m} min`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h} h` : `${Math.floor(h / 24)} d`;
}

function ago(secs) {
  return secs < 5 ? "just now" : `${span(secs)} ago`;
}

// A timestamp as "3 min ago" or "in 2 h", its exact time on hover.
function rel(ts) {
  const secs = (Date.now() + skewMs - Date.parse(ts)) / 1000;
  return el("time", { datetime: ts, title: new Date(ts).toLocaleString() }, secs >= -5 ? ago(secs) : `in ${span(-secs)}`);
}

// Parts of a sentence joined by "; " (each part text or nodes).
function parts(list) {
  const out = [];
  for (const p of list.filter(Boolean)) {
    if (out.length) out.push("; ");
    out.push(p);
  }
  return out.length ? out : ["—"];
}

// ---- pieces -------------------------------------------------------------------

// The state as a word (never colour alone); the style sheet gives each its own look.
function healthBadge(state) {
  return el("span", { class: `health health-${state}`, "data-state": state }, state);
}

function jobRef(id) {
  return el("a", { href: `#/job/${encodeURIComponent(id)}`, title: id }, `${id.slice(0, 8)}…`);
}

function probeText(h) {
  const p = h.observations && h.observations.probe;
  if (p) return [p.value ? "answering, probed " : "not answering, probed ", rel(p.at)];
  return h.ages.probe_secs == null ? "never probed" : `probed ${ago(h.ages.probe_secs)}`;
}

// "off (ipmi), read 4 min ago"; from the ages alone when only those are known.
function powerText(h) {
  const p = h.observations && h.observations.power;
  if (p) {
    const v = p.value;
    return [`${v.state} (${v.source}${v.error ? `: ${v.error}` : ""}), read `, rel(p.at)];
  }
  return h.ages.power_secs == null ? "—" : `read ${ago(h.ages.power_secs)}`;
}

// The worker as Taskcluster last showed it: listed, quarantined, its latest task, last activity.
function taskclusterText(h, long) {
  const w = h.observations && h.observations.worker;
  if (!w) {
    if (h.ages.taskcluster_secs != null) return `read ${ago(h.ages.taskcluster_secs)}`;
    return long ? (h.pool ? `pool ${h.pool}, not read yet` : "no Taskcluster pool in the inventory") : "—";
  }
  const v = w.value;
  const t = v.latest_task;
  const task = t && [
    long ? ["latest task ", el("code", {}, t.task_id), ` (run ${t.run_id}) `] : "last task ",
    t.state || "without a run",
    t.resolved ? [" ", rel(t.resolved)] : t.started ? [", started ", rel(t.started)] : "",
    long && t.reason_resolved && t.reason_resolved !== t.state ? ` (${t.reason_resolved})` : "",
  ];
  const quarantined = v.quarantine_until && Date.parse(v.quarantine_until) > Date.now() + skewMs;
  return parts([
    long && `pool ${v.pool}`,
    !v.known && "not listed by Taskcluster",
    quarantined && ["quarantined (lifts ", rel(v.quarantine_until), ")"],
    task || (v.known && "no task yet"),
    v.last_active && ["last active ", rel(v.last_active)],
    v.pending != null && `${v.pending} pending in its pool`,
    long && ["read ", rel(w.at)],
  ]);
}

function gateName(gate) {
  return gate ? gate.replace(/_/g, " ") : "a gate";
}

// What the medic did or would do for a machine, from a cycle's decision.
function medicNote(d, cycle) {
  let what;
  if (d.verdict === "enqueued") {
    what = [`medic: queued ${d.task_name}`, d.job_id ? [" (job ", jobRef(d.job_id), ")"] : ""];
  } else if (d.verdict === "would_enqueue") {
    what = `medic would ${d.task_name} (${cycle.mode === "plan" ? "plan" : "dry run"})`;
  } else {
    what = [`medic: skipped — ${gateName(d.gate)}`, d.detail ? el("span", { class: "hint" }, ` (${d.detail})`) : ""];
  }
  return el("span", { class: "medic-note" }, what, " · ", rel(cycle.at));
}

// worker id → the newest decision about it and its cycle.
function decisionsByMachine(medic) {
  const out = new Map();
  if (!medic) return out;
  for (const c of [medic.last, ...medic.cycles].filter(Boolean)) {
    for (const d of c.decisions) if (!out.has(d.worker_id)) out.set(d.worker_id, { d, cycle: c });
  }
  return out;
}

// "Medic: dry run · last cycle 2 min ago: 1 hung of 40"; its alerts go beside it.
function medicStatus(m) {
  if (!m) return "Medic: its decisions could not be read.";
  const mode = !m.enabled ? "off" : m.dry_run ? "dry run (decides and records, acts on nothing)"
    : "acting (queues remediations)";
  const last = m.last
    ? [" · last cycle ", rel(m.last.at), `: ${m.last.candidates} hung of ${m.last.machines} machines`]
    : m.enabled ? " · no cycle yet" : "";
  const batch = m.pending_batch ? ` · a batch of ${m.pending_batch.batch} allowed once by ${m.pending_batch.by}` : "";
  return [`Medic: ${mode}`, last, batch];
}

async function eachLimited(items, limit, f) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

// ---- the home view: fleet health ----------------------------------------------

function countsTable(kind, groups) {
  const rows = groups.filter((g) => g.by === kind);
  if (!rows.length) return null;
  const title = kind === "pool" ? "Pool" : "Class";
  return el("section", { "aria-labelledby": `counts-${kind}-title` },
    el("h2", { id: `counts-${kind}-title` }, `By ${kind}`),
    el("table", { id: `counts-${kind}`, class: "counts" },
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, title), el("th", { scope: "col" }, "Machines"), el("th", { scope: "col" }, "States"))),
      el("tbody", {}, rows.map((g) => el("tr", { "data-group": g.name },
        el("th", { scope: "row" }, g.name),
        el("td", {}, Object.values(g.counts).reduce((a, b) => a + b, 0)),
        el("td", {}, el("span", { class: "chips" }, STATES.filter((s) => g.counts[s]).map((s) =>
          el("span", { class: "chip", "data-state": s }, healthBadge(s), ` ${g.counts[s]}`)))))))));
}

function troubleRow(t, decision) {
  const h = t; // the summary carries the observations
  return el("tr", { "data-worker": t.worker_id },
    el("th", { scope: "row" }, machineLink(t.worker_id), el("div", { class: "hint" }, t.pool || t.class)),
    el("td", { "data-label": "State" }, healthBadge(t.state)),
    el("td", { "data-label": "Why", class: "reason" }, t.reason),
    el("td", { "data-label": "Seen" }, probeText({ ages: t.ages })),
    el("td", { "data-label": "Power" }, powerText(h)),
    el("td", { "data-label": "Taskcluster" }, taskclusterText(h, false)),
    el("td", { "data-label": "Medic" }, decision ? medicNote(decision.d, decision.cycle) : "—"));
}

async function healthView() {
  const banner = el("p", { id: "sweep-off", class: "notice warn", hidden: true },
    "The health sweep is off: set [health] enabled = true in roller's configuration (or ROLLER_HEALTH=1). ",
    "Until a sweep runs, roller has not observed any machine and shows them all as unknown.");
  const medicLine = el("p", { id: "medic-status" });
  const alerts = el("div", { id: "medic-alerts" });
  const status = el("p", { class: "hint", "aria-live": "polite" }, "Loading the fleet's health…");
  const trouble = el("tbody", {});
  const counts = el("div", { id: "counts" });
  setView("Fleet health",
    el("h1", {}, "Fleet health"),
    banner, medicLine, alerts, status,
    el("section", { "aria-labelledby": "trouble-title" },
      el("h2", { id: "trouble-title" }, "Needs attention"),
      el("table", { id: "trouble", class: "stack" },
        el("caption", {}, "Machines not ok, busy or idle, worst first"),
        el("thead", {}, el("tr", {},
          ["Machine", "State", "Why", "Seen", "Power", "Taskcluster", "Medic"].map((c) => el("th", { scope: "col" }, c)))),
        trouble)),
    counts);
  if (!whoami.can_read_jobs) {
    status.textContent = "Your scopes do not include reading jobs and health; open a machine by its name with the box above.";
    return;
  }
  const load = async () => {
    let fleet, medic;
    try {
      [fleet, medic] = await Promise.all([
        api("GET", "/api/v1/health"),
        api("GET", "/api/v1/medic/decisions?limit=20").catch(() => null),
      ]);
    } catch (e) {
      handleError(e, status);
      return;
    }
    skewMs = Date.parse(fleet.at) - Date.now();
    const decided = decisionsByMachine(medic);
    banner.hidden = fleet.sweeping;
    medicLine.replaceChildren(...medicStatus(medic).flat(Infinity));
    const said = (medic && medic.last && medic.last.alerts) || [];
    alerts.replaceChildren(said.length ? el("div", { class: "alerts", role: "group", "aria-label": "Medic alerts" },
      el("strong", {}, "Medic alerts from its last cycle:"), el("ul", {}, said.map((a) => el("li", {}, a)))) : "");
    trouble.replaceChildren(...(fleet.trouble.length
      ? fleet.trouble.map((t) => troubleRow(t, decided.get(t.worker_id)))
      : [el("tr", {}, el("td", { colspan: 7 }, "Every machine is ok, busy or idle."))]));
    counts.replaceChildren(...["pool", "class"].map((k) => countsTable(k, fleet.groups)).filter(Boolean));
    status.textContent = `${fleet.machines} machines; ${fleet.trouble.length} need attention; ` +
      `updated ${new Date().toLocaleTimeString()}.`;
  };
  poll(HEALTH_EVERY_MS, load);
}

// ---- a machine's page: its health facts ---------------------------------------

function medicMemory(m) {
  if (!m) return "has not acted on it";
  const r = m.last;
  return parts([
    r && [`last remediation: ${r.task_name} (job `, jobRef(r.job_id), ") queued ", rel(r.at), ` for “${r.reason}”: `,
      r.outcome ? OUTCOMES[r.outcome] || r.outcome : "in progress", r.detail ? ` (${r.detail})` : "",
      r.ended_at ? [", ended ", rel(r.ended_at)] : ""],
    `${m.failures} failed in a row`,
    m.held_at && ["held it for a person ", rel(m.held_at)],
  ]);
}

// The last path checks: each way in, ok or failed and why, and when it was checked.
function pathsText(r) {
  if (!r || !r.checked_at) return "not checked yet";
  if (!r.paths.length) return ["nothing to check (checked ", rel(r.checked_at), ")"];
  return el("ul", { class: "paths" }, r.paths.map((p) => el("li", {},
    el("span", { class: p.outcome === "ok" ? "path-ok" : "path-failed" }, `${p.kind} ${p.outcome === "ok" ? "ok" : "FAILED"}`),
    `: ${p.reason} (checked `, rel(p.checked_at),
    p.failing_since && p.failing_since !== p.checked_at ? [", failing since ", rel(p.failing_since)] : "", ")")));
}

function healthFacts(h) {
  const hold = h.hold;
  const rows = [
    ["State", healthBadge(h.state)],
    ["Why", h.reason],
    ["Probe", probeText(h)],
    ["Power", h.observations.power ? powerText(h) : "no BMC or PDU reading"],
    ["Taskcluster", taskclusterText(h, true)],
    ["Hold", hold
      ? [`held by ${hold.by} `, rel(hold.at), `: ${hold.reason}`, hold.until ? [" (lifts ", rel(hold.until), ")"] : " (until released)"]
      : "not held"],
    ["Active job", h.active_job ? jobRef(h.active_job) : "none"],
    ["Breaker", h.breaker_open_until ? ["open: refuses restarts; closes ", rel(h.breaker_open_until)] : "closed"],
    ["Medic", medicMemory(h.medic)],
    ["Paths", pathsText(h.paths)],
  ];
  return el("dl", { class: "facts" }, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

// The section and its loader; `load` returns false when there is nothing to follow.
function machineHealth(id) {
  const facts = el("div", { id: "health-facts" }, el("p", { class: "hint" }, "Loading…"));
  const node = el("section", { id: "health", "aria-labelledby": "health-title" },
    el("h2", { id: "health-title" }, "Health"), facts);
  const load = async () => {
    let h;
    try {
      h = await api("GET", `/api/v1/machines/${encodeURIComponent(id)}/health`);
    } catch (e) {
      facts.replaceChildren(el("p", { class: "hint" }, e.status === 404
        ? `${id} is not in the inventory: roller observes only inventory machines.`
        : `Its health could not be read: ${e.message}`));
      return e.status !== 404;
    }
    // The probe's time and age, both from roller: its clock against ours.
    const p = h.observations.probe;
    if (p && h.ages.probe_secs != null) skewMs = Date.parse(p.at) + h.ages.probe_secs * 1000 - Date.now();
    facts.replaceChildren(healthFacts(h));
    return true;
  };
  return { node, load };
}
