// roller's dashboard: one machine's page. What the machine is (its inventory facts
// and every path roller has to it, with the last check), how it is (health, power,
// lock and breaker, with the audited override), what `reboot` would do to it, its
// recent jobs, and only the tasks it can run, grouped, where anything that restarts
// it or cuts its power asks first, naming it. Roller decides what a machine can run
// (`GET /api/v1/machines/{id}`, the rule the reboot chain skips by); this page only
// draws it. Loaded after app.js and health.js, whose helpers it uses.
"use strict";

const GROUPS = [
  ["inspect", "Inspect", "Reads and reports; changes nothing."],
  ["power", "Power", "Switches the power; off asks first."],
  ["reboot", "Reboot", "Restarts the machine; each asks first."],
  ["provisioning", "Provisioning", "Reimage, loan, the bug."],
];

// "Power off ms1-10?", "Restart ms1-10?": the question names the machine and what happens.
function question(task, id) {
  if (task.restarts_machine) return `Restart ${id}?`;
  if (task.cuts_power) return `Power off ${id}?`;
  return `Run ${task.name} on ${id}?`;
}

// One path: what it talks to and how its last check went.
function pathItem(p) {
  const last = p.last;
  const verdict = !last ? el("span", { class: "hint" }, "not checked yet")
    : last.outcome === "ok" ? [el("span", { class: "path-ok" }, "ok"), ` (checked `, rel(last.checked_at), ")"]
      : [el("span", { class: "path-failed" }, "FAILED"), `: ${last.reason} (checked `, rel(last.checked_at),
        last.failing_since && last.failing_since !== last.checked_at ? [", failing since ", rel(last.failing_since)] : "",
        ")"];
  return el("li", { "data-path": p.kind }, el("strong", {}, p.kind), " ", verdict,
    p.target ? el("div", { class: "hint target" }, p.target) : "");
}

function machineFacts(page) {
  const rows = [
    ["Class", page.class],
    ["Group", page.group || "—"],
    ["Address", page.address],
    ["Pool", page.pool || "—"],
  ];
  if (page.chassis) rows.push(["Chassis", page.chassis]);
  rows.push(["Paths", page.paths.length ? el("ul", { class: "paths" }, page.paths.map(pathItem))
    : "none in the inventory"]);
  if (page.no_path) rows.push(["No path", el("strong", { class: "path-failed" }, page.no_path)]);
  return el("dl", { class: "facts" }, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function planView(plan) {
  return [
    plan.runnable ? "" : el("p", { class: "notice warn" }, "Nothing in this chain can run: reboot will fail at once."),
    el("ol", { class: "plan" }, plan.steps.map((s) => el("li", { "data-step": s.task, class: s.runs ? "" : "skipped" },
      el("strong", {}, s.task), s.runs ? " runs" : " skipped",
      s.runs ? (s.what ? `: ${s.what}` : "") : `: ${s.skip}`,
      s.evidence ? el("div", { class: "hint" }, `Before it: ${s.evidence}`) : ""))),
    el("p", { class: "hint" },
      `Proof: stops answering (${plan.probe}) within ${plan.down_timeout_secs} s and answers again within ` +
      `${plan.up_timeout_secs} s, no sooner than ${plan.min_boot_secs} s after the step's command.`),
  ];
}

function breakerView(id, b, redraw) {
  if (!b) return el("p", { class: "hint" }, "The breaker could not be read.");
  if (!b.max_restarts) return el("p", {}, "Off (safety.max_restarts = 0).");
  const counted = `${b.restarts.length} of ${b.max_restarts} restarts in the last ${b.window_hours} h`;
  if (!b.open) return el("p", { id: "breaker-state" }, `Closed: ${counted}.`);
  const reason = el("input", { id: "breaker-reason", autocomplete: "off", maxlength: 500, required: true });
  const form = el("form", { class: "row", "aria-label": `Reset the breaker of ${id}` },
    el("div", { class: "field" }, el("label", { for: "breaker-reason" }, "Why it may be restarted again"), reason),
    el("div", { class: "field" }, el("button", { type: "submit", class: "danger" }, `Reset the breaker of ${id}`)));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showAlert("");
    try {
      await api("POST", `/api/v1/workers/${encodeURIComponent(id)}/breaker/reset?` +
        new URLSearchParams({ reason: reason.value.trim() }));
      redraw();
    } catch (e) {
      handleError(e);
    }
  });
  return el("div", { id: "breaker-state" },
    el("p", {}, el("strong", { class: "path-failed" }, "Open: "), "refuses restarts; closes ", rel(b.open_until),
      ` (${counted}).`),
    form);
}

async function machineView(id) {
  const loading = setView(id, el("h1", {}, id), el("p", { class: "hint" }, "Loading…"));
  const enc = encodeURIComponent(id);
  let page = null;
  if (whoami.can_read_jobs) {
    try {
      page = await api("GET", `/api/v1/machines/${enc}`);
    } catch (e) {
      if (loading !== generation) return;
      // Not in the inventory: said below. Anything else: roller's words, and the page without its facts.
      if (e.status !== 404) handleError(e);
    }
  }
  if (loading !== generation) return;
  const status = el("p", { class: "hint", "aria-live": "polite" },
    whoami.can_read_jobs && !page ? `${id} is not in the inventory: roller can ping it by name, nothing more.` : "");
  const groupInput = el("input", { id: "worker-group", value: (page && page.group) || "", autocomplete: "off",
    spellcheck: "false", "aria-describedby": "worker-group-hint" });
  const confirmBox = el("div", { id: "confirm-box" });
  const run = async (task) => {
    confirmBox.replaceChildren();
    showAlert("");
    const q = new URLSearchParams({ task_name: task.name, worker_group: groupInput.value.trim() || "none" });
    try {
      const job = await api("POST", `/api/v1/workers/${enc}/jobs?${q}`);
      location.hash = `#/job/${encodeURIComponent(job.task_id)}`;
    } catch (e) {
      handleError(e, null, `${task.name} on ${id} was refused (${e.status}): `);
    }
  };
  // What cannot be undone is asked about first, naming the machine, in a modal dialog:
  // two deliberate clicks, the focus starts on Cancel (a stray Enter sends nothing), Esc cancels.
  const ask = (task) => {
    showAlert("");
    if (!task.needs_confirmation) return run(task);
    const dialog = el("dialog", { class: "confirm", id: "confirm-dialog", "aria-labelledby": "confirm-text",
      "aria-describedby": "confirm-help" });
    const cancel = el("button", { type: "button", onclick: () => dialog.close() }, "Cancel");
    dialog.append(
      el("h3", { id: "confirm-text" }, question(task, id)),
      el("p", { id: "confirm-help" }, `${task.name}: ${task.help}.`,
        task.restarts_machine ? " The reboot-loop breaker counts it." : "",
        task.cuts_power ? " Evidence (console, event log) is taken first." : ""),
      el("div", { class: "row" },
        el("button", { type: "button", class: "danger solid", id: "confirm-yes", onclick: () => run(task) },
          `Yes, ${task.name} ${id}`),
        cancel));
    dialog.addEventListener("close", () => confirmBox.replaceChildren());
    confirmBox.replaceChildren(dialog);
    dialog.showModal();
    cancel.focus();
  };
  // Without the read scope roller cannot say what the machine supports: the scopes decide.
  const tasks = page ? page.tasks : whoami.can_read_jobs ? whoami.tasks.filter((t) => t.name === "ping") : whoami.tasks;
  const allowed = tasks.filter((t) => t.allowed);
  const outside = tasks.filter((t) => !t.allowed);
  const button = (t) => el("button", { type: "button", "data-task": t.name, title: t.help,
    class: t.needs_confirmation ? "danger" : "", onclick: () => ask(t) }, t.name);
  const grouped = GROUPS.map(([g, title, hint]) => {
    const mine = allowed.filter((t) => (t.group || "inspect") === g);
    return mine.length ? el("div", { class: "task-group", "data-group": g },
      el("h3", {}, title, el("span", { class: "hint" }, ` ${hint}`)),
      el("div", { class: "tasks", role: "group", "aria-label": `${title} tasks` }, mine.map(button))) : null;
  }).filter(Boolean);
  const health = whoami.can_read_jobs && page ? machineHealth(id) : null;
  const breaker = el("div", { id: "breaker" });
  const history = el("tbody", {});
  const drawn = setView(id,
    el("h1", {}, id, page ? el("span", { class: "subtitle" }, ` ${page.class}${page.group ? ` · ${page.group}` : ""}`) : ""),
    status,
    el("div", { class: "machine-top" }, health && health.node, el("section", { "aria-labelledby": "run-title" },
      el("h2", { id: "run-title" }, "Tasks"),
      grouped.length ? grouped : el("p", { class: "notice" }, "Your scopes allow no task this machine can run."),
      confirmBox,
      outside.length ? el("details", { id: "outside-scopes" }, el("summary", {}, `Not in your scopes (${outside.length})`),
        el("p", { class: "hint" }, "Roller refuses these for you and says which scope is missing."),
        el("div", { class: "tasks" }, outside.map(button))) : "",
      page && page.unavailable.length ? el("details", { id: "unavailable" },
        el("summary", {}, `Not possible on this machine (${page.unavailable.length})`),
        el("ul", {}, page.unavailable.map((u) => el("li", {}, el("code", {}, u.name), `: ${u.why}`)))) : "",
      el("details", {}, el("summary", {}, "Worker group"),
        el("div", { class: "field" },
          el("label", { for: "worker-group" }, "Worker group"), groupInput,
          el("span", { id: "worker-group-hint", class: "hint" }, "From the inventory when the machine is in it."))))),
    page && el("section", { "aria-labelledby": "breaker-title" },
      el("h2", { id: "breaker-title" }, "Reboot-loop breaker"), breaker),
    page && el("section", { "aria-labelledby": "machine-title" },
      el("h2", { id: "machine-title" }, "Machine"), el("div", { id: "machine-facts" }, machineFacts(page))),
    page && el("section", { "aria-labelledby": "plan-title" },
      el("h2", { id: "plan-title" }, "What reboot would do"), el("div", { id: "plan" }, planView(page.plan))),
    el("section", { "aria-labelledby": "history-title" },
      el("h2", { id: "history-title" }, "Recent jobs"),
      el("table", { class: "stack", id: "history" },
        el("thead", {}, el("tr", {},
          ["Task", "State", "Asked", "Finished", "By"].map((c) => el("th", { scope: "col" }, c)))),
        history)));
  const loadBreaker = async () => {
    const b = await api("GET", `/api/v1/workers/${enc}/breaker`).catch(() => null);
    if (drawn === generation) breaker.replaceChildren(breakerView(id, b, loadBreaker));
  };
  const load = async () => {
    if (!whoami.can_read_jobs) {
      status.textContent = "Your scopes do not include reading jobs, so the machine's facts and history are hidden.";
      return false;
    }
    try {
      const res = await api("GET", `/api/v1/workers/${enc}/jobs?limit=25`);
      history.replaceChildren(...res.jobs.map((j) => el("tr", { "data-job": j.task_id },
        el("th", { scope: "row" }, jobLink(j)),
        el("td", { "data-label": "State" }, stateBadge(j.state)),
        el("td", { "data-label": "Asked" }, rel(j.created_at)),
        el("td", { "data-label": "Finished" }, j.finished_at ? rel(j.finished_at) : "—"),
        el("td", { "data-label": "By" }, j.requester))));
      if (!res.jobs.length) history.replaceChildren(el("tr", {}, el("td", { colspan: 5 }, "No jobs yet.")));
    } catch (e) {
      handleError(e, status);
    }
    return true;
  };
  if (health) poll(HEALTH_EVERY_MS, health.load);
  if (page) poll(HEALTH_EVERY_MS, loadBreaker);
  poll(5000, load);
}
