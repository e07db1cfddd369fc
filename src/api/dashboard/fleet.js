// roller's dashboard: the machine list, trouble first. Each machine with its health,
// power, Taskcluster activity, newest job and lock, breaker; filters kept in the
// URL (a reload or a shared link keeps them); and the bulk action: machines → a task,
// behind the CLI's confirmation rail (`roller jobs enqueue --select …`: more than
// safety.confirm_above machines need a typed "yes"), sent with the CLI's bound on
// requests in flight, each machine's progress shown and a summary at the end.
// Loaded after app.js and health.js, whose helpers it uses.
"use strict";

const FAILED_JOB = new Set(["failed", "timed_out"]);
const JOB_FINAL = new Set(["succeeded", "failed", "timed_out", "cancelled"]);

// Why a machine is in trouble, in words; empty for none.
function troubles(m) {
  const out = [];
  const st = m.health.state;
  if (m.breaker_open_until) out.push("breaker open");
  if (m.last_job && FAILED_JOB.has(m.last_job.state)) out.push(`last job ${m.last_job.state.replace("_", " ")}`);
  if (!["ok", "busy", "idle"].includes(st)) out.push(st.replace("_", " "));
  return out;
}

// Failed, hung, without a path, breaker open or held first; then down, off,
// quarantined; then not yet known; then the healthy ones.
function rank(m) {
  const st = m.health.state;
  if (["no_path", "hung"].includes(st) || m.breaker_open_until || (m.last_job && FAILED_JOB.has(m.last_job.state))) {
    return 0;
  }
  if (st === "held") return 1;
  if (["down", "off", "quarantined"].includes(st)) return 2;
  return st === "unknown" ? 3 : 4;
}

function byTrouble(a, b) {
  return rank(a) - rank(b) || STATES.indexOf(a.health.state) - STATES.indexOf(b.health.state) ||
    a.worker_id.localeCompare(b.worker_id);
}

function powerCell(m) {
  const p = m.health.observations.power;
  if (!p) return el("span", { class: "hint" }, "—");
  return [el("span", { class: `power power-${p.value.state}` }, p.value.state), " ",
    el("span", { class: "hint" }, rel(p.at))];
}

function activityCell(m) {
  const w = m.health.observations.worker;
  if (!w) return el("span", { class: "hint" }, m.health.pool ? "not read yet" : "—");
  if (!w.value.known) return "not listed";
  return w.value.last_active ? ["active ", rel(w.value.last_active)] : "no activity yet";
}

function lastJobCell(m) {
  const j = m.last_job;
  if (!j) return el("span", { class: "hint" }, "none");
  return [jobLink(j), " ", stateBadge(j.state), " ", el("span", { class: "hint" }, rel(j.finished_at || j.created_at)),
    m.lock && m.lock.task_id !== j.task_id ? el("div", { class: "hint" }, "locked by ", jobLink(m.lock)) : ""];
}

async function machinesView(params) {
  const status = el("p", { class: "hint", "aria-live": "polite" }, "Loading machines…");
  const filter = el("input", { id: "filter", type: "search", autocomplete: "off", value: params.get("q") || "" });
  const group = el("select", { id: "filter-group" }, el("option", { value: "" }, "All groups"));
  const klass = el("select", { id: "filter-class" }, el("option", { value: "" }, "All classes"));
  const show = el("select", { id: "filter-show" },
    el("option", { value: "" }, "Every machine"), el("option", { value: "trouble" }, "Only trouble"));
  show.value = params.get("show") || "";
  const body = el("tbody", {});
  const all = el("input", { type: "checkbox", id: "select-all" });
  const taskSelect = el("select", { id: "bulk-task" });
  const runButton = el("button", { type: "button", id: "bulk-run", disabled: true }, "Run…");
  const selectedText = el("span", { id: "bulk-count", "aria-live": "polite" }, "None selected.");
  const bulkBox = el("div", { id: "bulk-box" });
  const bulk = el("section", { id: "bulk", "aria-labelledby": "bulk-title" },
    el("h2", { id: "bulk-title", class: "sr-only" }, "Run a task on the selected machines"),
    el("div", { class: "row" },
      el("label", { class: "check" }, all, " Select all shown"), selectedText,
      el("div", { class: "field" }, el("label", { for: "bulk-task" }, "Task for the selected"), taskSelect),
      el("div", { class: "field" }, runButton)),
    bulkBox);
  const drawn = setView("Machines",
    el("h1", {}, "Machines"),
    el("div", { class: "filters", role: "search", "aria-label": "Filter the machines" },
      el("div", { class: "field" }, el("label", { for: "filter" }, "Name"), filter),
      el("div", { class: "field" }, el("label", { for: "filter-group" }, "Group"), group),
      el("div", { class: "field" }, el("label", { for: "filter-class" }, "Class"), klass),
      el("div", { class: "field" }, el("label", { for: "filter-show" }, "Show"), show)),
    status, bulk,
    el("table", { id: "fleet", class: "stack" },
      el("caption", {}, "Trouble first: failed, hung, no path, breaker open, held; then the rest"),
      el("thead", {}, el("tr", {}, el("th", { scope: "col", class: "pick" }, el("span", { class: "sr-only" }, "Selected")),
        ["Machine", "State", "Power", "Taskcluster", "Last job"].map((c) => el("th", { scope: "col" }, c)))),
      body));
  let machines = [];
  let limits = { confirm_above: 10, fleet_in_flight: 16 };
  const selected = new Set();
  let shown = [];
  // The filters live in the hash's query, replaced in place (no history entry per keystroke).
  const remember = () => {
    const q = new URLSearchParams();
    if (filter.value.trim()) q.set("q", filter.value.trim());
    if (group.value) q.set("group", group.value);
    if (klass.value) q.set("class", klass.value);
    if (show.value) q.set("show", show.value);
    const hash = `#/machines${q.toString() ? `?${q}` : ""}`;
    if (location.hash !== hash) history.replaceState(null, "", hash);
  };
  // Tasks every selected machine can run and the scopes allow; a task that asks first stays marked.
  const offer = () => {
    const picked = machines.filter((m) => selected.has(m.worker_id));
    const keep = taskSelect.value;
    const tasks = whoami.tasks.filter((t) => t.allowed && picked.length && picked.every((m) => m.tasks.includes(t.name)));
    taskSelect.replaceChildren(...tasks.map((t) =>
      el("option", { value: t.name }, t.needs_confirmation ? `${t.name} (asks first)` : t.name)));
    if (tasks.some((t) => t.name === keep)) taskSelect.value = keep;
    runButton.disabled = !tasks.length;
    runButton.textContent = picked.length ? `Run on ${picked.length} machine${picked.length > 1 ? "s" : ""}…` : "Run…";
    selectedText.textContent = !picked.length ? "None selected."
      : tasks.length ? `${picked.length} selected.` : `${picked.length} selected; no task they can all run is in your scopes.`;
  };
  const draw = () => {
    const text = filter.value.trim().toLowerCase();
    shown = machines.filter((m) =>
      (!text || m.worker_id.toLowerCase().includes(text)) &&
      (!group.value || (m.group || "") === group.value) &&
      (!klass.value || m.class === klass.value) &&
      (show.value !== "trouble" || rank(m) < 3)).sort(byTrouble);
    body.replaceChildren(...shown.map((m) => {
      const box = el("input", { type: "checkbox", "data-worker": m.worker_id, "aria-label": `Select ${m.worker_id}` });
      box.checked = selected.has(m.worker_id);
      box.addEventListener("change", () => {
        if (box.checked) selected.add(m.worker_id);
        else selected.delete(m.worker_id);
        offer();
      });
      const why = troubles(m);
      return el("tr", { "data-worker": m.worker_id, class: rank(m) === 0 ? "bad" : "" },
        el("td", { class: "pick" }, box),
        el("th", { scope: "row" }, machineLink(m.worker_id),
          el("div", { class: "hint" }, [m.group, m.class].filter(Boolean).join(" · "))),
        el("td", { "data-label": "State" }, healthBadge(m.health.state),
          m.breaker_open_until ? [" ", el("span", { class: "flag" }, "breaker open")] : "",
          why.length && rank(m) === 0 && !["no_path", "hung"].includes(m.health.state) && !m.breaker_open_until
            ? [" ", el("span", { class: "flag" }, why[0])] : "",
          el("div", { class: "hint reason" }, m.health.reason)),
        el("td", { "data-label": "Power" }, powerCell(m)),
        el("td", { "data-label": "Taskcluster" }, activityCell(m)),
        el("td", { "data-label": "Last job" }, lastJobCell(m)));
    }));
    if (!shown.length) body.replaceChildren(el("tr", {}, el("td", { colspan: 6 }, "No machine matches the filters.")));
    all.checked = shown.length > 0 && shown.every((m) => selected.has(m.worker_id));
    offer();
  };
  const fill = (select, values, wanted) => {
    select.replaceChildren(select.options[0], ...[...new Set(values)].sort().map((v) => el("option", { value: v }, v)));
    select.value = wanted;
    if (select.value !== wanted) select.value = "";
  };
  let first = true;
  const load = async () => {
    try {
      const res = await api("GET", "/api/v1/machines");
      machines = res.machines;
      limits = res;
      const known = new Set(machines.map((m) => m.worker_id));
      for (const id of [...selected]) if (!known.has(id)) selected.delete(id);
      // The URL's filters on the first load; the operator's choices after.
      fill(group, machines.map((m) => m.group || "").filter(Boolean), first ? params.get("group") || "" : group.value);
      fill(klass, machines.map((m) => m.class), first ? params.get("class") || "" : klass.value);
      first = false;
      const trouble = machines.filter((m) => rank(m) < 3).length;
      const unknown = machines.filter((m) => rank(m) === 3).length;
      status.textContent = res.inventory
        ? `${machines.length} machines; ${trouble} in trouble${unknown ? `, ${unknown} not known yet` : ""}; ` +
          `updated ${new Date().toLocaleTimeString()}.`
        : "roller runs without an inventory: open a machine by its name with the box above.";
      draw();
    } catch (e) {
      handleError(e, status);
    }
  };
  for (const c of [filter, group, klass, show]) {
    c.addEventListener("input", () => {
      remember();
      draw();
    });
  }
  all.addEventListener("change", () => {
    for (const m of shown) {
      if (all.checked) selected.add(m.worker_id);
      else selected.delete(m.worker_id);
    }
    draw();
  });
  runButton.addEventListener("click", () => {
    const task = whoami.tasks.find((t) => t.name === taskSelect.value);
    const targets = machines.filter((m) => selected.has(m.worker_id)).sort(byTrouble);
    if (task && targets.length) confirmBulk(task, targets, limits, bulkBox, load);
  });
  if (!whoami.can_read_jobs) {
    status.textContent = "Your scopes do not include reading machines; open a machine by its name with the box above.";
    bulk.hidden = true;
    return;
  }
  await load();
  // Navigated away meanwhile: no timer for a page that is gone.
  if (drawn === generation) every(10000, load);
}

// The bulk action's confirmation: the task, how many machines and which; more than
// safety.confirm_above machines need "yes" typed, as the CLI asks. Cancel sends nothing.
function confirmBulk(task, targets, limits, box, done) {
  showAlert("");
  const n = targets.length;
  const names = targets.map((m) => m.worker_id);
  const typed = n > limits.confirm_above;
  const yes = el("button", { type: "button", class: "danger solid", id: "bulk-yes", disabled: typed },
    `Yes, ${task.name} on ${n} machine${n > 1 ? "s" : ""}`);
  const cancel = el("button", { type: "button" }, "Cancel");
  const word = el("input", { id: "bulk-typed", autocomplete: "off", spellcheck: "false" });
  word.addEventListener("input", () => {
    yes.disabled = word.value.trim() !== "yes";
  });
  yes.addEventListener("click", () => runBulk(task, targets, limits, box, done));
  const verb = task.restarts_machine ? "Restart" : task.cuts_power ? "Power off" : `Run ${task.name} on`;
  const dialog = el("dialog", { class: "confirm", id: "bulk-dialog", "aria-labelledby": "bulk-question" },
    el("h3", { id: "bulk-question" }, `${verb} ${n} machine${n > 1 ? "s" : ""}?`),
    el("p", {}, `${task.name}: ${task.help}.`),
    el("p", { class: "names" }, names.slice(0, 30).join(", "), n > 30 ? ` and ${n - 30} more` : ""),
    typed ? el("div", { class: "field" },
      el("label", { for: "bulk-typed" },
        `More than ${limits.confirm_above} machines (safety.confirm_above): type yes to go ahead`), word) : "",
    el("div", { class: "row" }, yes, cancel));
  cancel.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    if (box.contains(dialog)) box.replaceChildren();
  });
  box.replaceChildren(dialog);
  dialog.showModal();
  (typed ? word : cancel).focus();
}

// Queue the task on every machine (at most fleet_in_flight requests at once), show each
// machine's answer, then follow each job to its end and sum up.
async function runBulk(task, targets, limits, box, done) {
  const mine = generation;
  const rows = new Map();
  const summary = el("p", { id: "bulk-summary", class: "notice", role: "status" }, `Queueing ${task.name} on ${targets.length}…`);
  const tbody = el("tbody", {}, targets.map((m) => {
    const cells = { state: el("td", { "data-label": "State" }, "waiting"), job: el("td", { "data-label": "Job" }, "—") };
    rows.set(m.worker_id, cells);
    return el("tr", { "data-worker": m.worker_id }, el("th", { scope: "row" }, machineLink(m.worker_id)),
      cells.state, cells.job);
  }));
  box.replaceChildren(summary, el("table", { id: "bulk-progress", class: "stack" },
    el("caption", {}, `${task.name} on ${targets.length} machines`),
    el("thead", {}, el("tr", {}, ["Machine", "State", "Job"].map((c) => el("th", { scope: "col" }, c)))), tbody));
  const results = await eachLimited(targets, limits.fleet_in_flight || 16, async (m) => {
    const cells = rows.get(m.worker_id);
    cells.state.textContent = "sending…";
    const q = new URLSearchParams({ task_name: task.name, worker_group: m.group || "none" });
    try {
      const job = await api("POST", `/api/v1/workers/${encodeURIComponent(m.worker_id)}/jobs?${q}`);
      cells.state.replaceChildren(stateBadge(job.state), job.coalesced ? " (already queued: following it)" : "");
      cells.job.replaceChildren(el("a", { href: `#/job/${encodeURIComponent(job.task_id)}` }, job.task_id.slice(0, 8) + "…"));
      return { m, job, state: job.state };
    } catch (e) {
      // roller's words, as it said them.
      cells.state.replaceChildren(el("span", { class: "state state-failed" }, `refused (${e.status})`), `: ${e.message}`);
      return { m, refused: e.message };
    }
  });
  const queued = results.filter((r) => r.job);
  const refused = results.length - queued.length;
  const head = `${task.name} on ${targets.length} machines: ${queued.length} queued, ${refused} refused`;
  summary.textContent = `${head}.` + (queued.length ? " Following the jobs…" : "");
  // Follow to the end, a few at a time, while this view stays.
  const counts = () => {
    const c = {};
    for (const r of results) c[r.job ? r.state : "refused"] = (c[r.job ? r.state : "refused"] || 0) + 1;
    return Object.entries(c).map(([k, v]) => `${v} ${k.replace("_", " ")}`).join(", ");
  };
  let open = queued;
  while (open.length && mine === generation) {
    await new Promise((r) => setTimeout(r, 2000));
    if (mine !== generation) return;
    await eachLimited(open, limits.fleet_in_flight || 16, async (r) => {
      try {
        const job = await api("GET", `/api/v1/jobs/${encodeURIComponent(r.job.task_id)}`);
        r.state = job.state;
        rows.get(r.m.worker_id).state.replaceChildren(stateBadge(job.state),
          job.error ? el("div", { class: "hint" }, job.error) : "");
      } catch (e) {
        r.state = r.state || "unknown";
      }
    });
    open = open.filter((r) => !JOB_FINAL.has(r.state));
    summary.textContent = `${head}; now ${counts()}` + (open.length ? ` (${open.length} still going).` : ". Done.");
  }
  // The list shows the new jobs at once, not at its next refresh.
  if (mine === generation) done();
}
