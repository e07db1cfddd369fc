//! The web dashboard and the endpoints it reads: `whoami`, `machines`, and the
//! job event stream, over real HTTP; then the page itself in Debian's headless
//! Chromium driven through chromedriver (WebDriver), signing its own requests
//! with WebCrypto: sign in, trigger a ping, watch it finish live, and see the
//! 403 for a task outside the scopes; the home view's fleet health from a real
//! sweep and from records seeded as the sweep and the medic write them.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use roller_testkit::inventory::{Class, Inventory, Machine};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::procs::free_port;

/// Three machines on loopback in two groups and two classes.
fn inventory(dir: &Path) -> String {
    let mut inv = Inventory::new().class(Class::new("mini")).class(Class::new("moonshot"));
    for (name, group, class) in [("dash-1", "mdc1", "mini"), ("dash-2", "mdc1", "moonshot"), ("dash-3", "mdc2", "mini")]
    {
        inv = inv.machine(Machine::new(name).group(group).class(class).address("127.0.0.1"));
    }
    inv.write(dir)
}

/// Pings slow enough (8 × 500 ms) that a page can be seen following a running job.
const SLOW_PING: &str = "[ping]\ncount = 8\ninterval_ms = 500\ntimeout_ms = 1000\n";

async fn app_with_inventory(extra: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path());
    (spawn_app_with(extra, &[("ROLLER_INVENTORY", &inv)]).await, dir)
}

async fn json_of(res: reqwest::Response, status: u16) -> Value {
    let got = res.status().as_u16();
    let body = res.text().await.unwrap();
    assert_eq!(got, status, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

#[tokio::test]
async fn whoami_tells_a_client_its_scopes_and_which_tasks_they_allow() {
    let app = spawn_app().await;
    let me = json_of(app.signed(Method::GET, "/api/v1/whoami", PINGER).await, 200).await;
    assert_eq!(me["client_id"], "pinger");
    assert_eq!(me["can_read_jobs"], true);
    assert_eq!(me["scopes"], json!(PINGER.2));
    let task = |name: &str| me["tasks"].as_array().unwrap().iter().find(|t| t["name"] == name).cloned().unwrap();
    assert_eq!(task("ping")["allowed"], true);
    assert_eq!(task("ping")["scope"], "project:releng:roller:ping");
    assert_eq!(task("reboot")["allowed"], false);
    assert_eq!(task("reboot")["restarts_machine"], true);
    assert_eq!(task("ping")["restarts_machine"], false);

    let me = json_of(app.signed(Method::GET, "/api/v1/whoami", REBOOTER).await, 200).await;
    assert_eq!(me["can_read_jobs"], false, "rebooter holds no read scope");

    let res = app.http.get(app.url("/api/v1/whoami")).send().await.unwrap();
    let body = json_of(res, 403).await;
    assert!(body["detail"].as_str().unwrap().contains("credentials were not provided"), "{body}");
}

#[tokio::test]
async fn machines_lists_the_inventory_with_last_job_and_lock_for_readers_only() {
    let (app, _dir) = app_with_inventory(SLOW_PING).await;
    let done = app.post_job("dash-1", "mdc1", "ping").await.json::<Value>().await.unwrap();
    app.wait_final(done["task_id"].as_str().unwrap()).await;
    let running = app.post_job("dash-3", "mdc2", "ping").await.json::<Value>().await.unwrap();
    let running_id = running["task_id"].as_str().unwrap().to_string();
    // The slow ping holds dash-3's lock for a couple of seconds.
    let list = wait_for(Duration::from_secs(30), || async {
        let v = json_of(app.signed(Method::GET, "/api/v1/machines", READER).await, 200).await;
        (v["machines"][2]["lock"]["task_id"] == running_id.as_str()).then_some(v)
    })
    .await
    .expect("dash-3's running ping shows as its lock");
    assert_eq!(list["inventory"], true);
    let names: Vec<&str> =
        list["machines"].as_array().unwrap().iter().map(|m| m["worker_id"].as_str().unwrap()).collect();
    assert_eq!(names, ["dash-1", "dash-2", "dash-3"], "by group, then name");
    let m1 = &list["machines"][0];
    assert_eq!((m1["group"].as_str(), m1["class"].as_str()), (Some("mdc1"), Some("mini")));
    assert_eq!(m1["last_job"]["task_id"], done["task_id"]);
    assert_eq!(m1["last_job"]["state"], "succeeded");
    assert!(m1["lock"].is_null(), "a finished job holds nothing");
    assert!(list["machines"][1]["last_job"].is_null(), "dash-2 never ran anything");
    assert_eq!(list["machines"][2]["last_job"]["state"], "running");

    // Without the read scope: the shared scope refusal, not the fleet.
    let body = json_of(app.signed(Method::GET, "/api/v1/machines", REBOOTER).await, 403).await;
    assert!(body["detail"].as_str().unwrap().contains("lacks the scope 'project:releng:roller:jobs:read'"), "{body}");
    app.wait_final(&running_id).await;
}

#[tokio::test]
async fn machines_without_an_inventory_says_so() {
    let app = spawn_app().await;
    let v = json_of(app.signed(Method::GET, "/api/v1/machines", READER).await, 200).await;
    assert_eq!(v, json!({"inventory": false, "confirm_above": 10, "fleet_in_flight": 16, "machines": []}));
}

/// The events of a `text/event-stream` body: (event, data).
fn events(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter_map(|frame| {
            let mut event = None;
            let mut data = Vec::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                }
            }
            event.map(|e| (e, data.join("\n")))
        })
        .collect()
}

#[tokio::test]
async fn a_job_stream_sends_the_job_then_its_log_lines_as_written_then_end() {
    let (app, _dir) = app_with_inventory(SLOW_PING).await;
    let job = app.post_job("dash-2", "mdc1", "ping").await.json::<Value>().await.unwrap();
    let id = job["task_id"].as_str().unwrap();
    let res = app.signed(Method::GET, &format!("/api/v1/jobs/{id}/events"), READER).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let body =
        tokio::time::timeout(Duration::from_secs(60), res.text()).await.expect("the stream ends with the job").unwrap();
    let evs = events(&body);
    assert_eq!(evs.first().map(|e| e.0.as_str()), Some("job"), "{body}");
    assert_eq!(evs.last().map(|e| (e.0.as_str(), e.1.as_str())), Some(("end", "succeeded")), "{body}");
    let last_job: Value = serde_json::from_str(&evs.iter().rev().find(|e| e.0 == "job").unwrap().1).unwrap();
    assert_eq!(last_job["state"], "succeeded");
    // Every line of the final log arrived exactly once: in a `job` snapshot or as a `log` event after it.
    let final_log: Vec<String> =
        app.get_job(id).await["log"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap().into()).collect();
    let mut seen: Vec<String> = Vec::new();
    for (event, data) in &evs {
        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        match event.as_str() {
            "job" => seen = v["log"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap().into()).collect(),
            "log" => seen.push(v["line"].as_str().unwrap().into()),
            _ => {}
        }
    }
    assert_eq!(seen, final_log, "{body}");
    assert!(evs.len() >= 3, "a running job's stream carries more than its final state: {body}");

    // Refusals come before any stream starts, as the usual JSON errors.
    let res = app.signed(Method::GET, &format!("/api/v1/jobs/{id}/events"), REBOOTER).await;
    let refused = json_of(res, 403).await;
    assert!(
        refused["detail"].as_str().unwrap().contains("lacks the scope 'project:releng:roller:jobs:read'"),
        "{refused}"
    );
    let res = app.signed(Method::GET, "/api/v1/jobs/3f0c9d1e-8a7b-4c6d-9e0f-1a2b3c4d5e6f/events", READER).await;
    json_of(res, 404).await;
    let res = app.signed(Method::GET, "/api/v1/jobs/not-a-job/events", READER).await;
    assert!(json_of(res, 400).await["detail"].is_string());
}

#[tokio::test]
async fn the_dashboard_assets_are_in_the_binary_and_load_nothing_from_elsewhere() {
    let app = spawn_app().await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/health.js", "text/javascript"),
        ("/ui/fleet.js", "text/javascript"),
        ("/ui/machine.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let res = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers().clone();
        assert!(h["content-type"].to_str().unwrap().starts_with(kind), "{path}: {h:?}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        let body = res.text().await.unwrap();
        for external in ["http://", "https://", "//cdn"] {
            assert!(!body.contains(external), "{path} refers to {external}");
        }
    }
    let res = app.http.post(app.url("/")).send().await.unwrap();
    assert_eq!(json_of(res, 405).await["detail"], "Method \"POST\" not allowed.");
    let res = app.http.get(app.url("/ui/nothing.js")).send().await.unwrap();
    json_of(res, 404).await;
}

/// chromedriver on a free loopback port, killed with the test.
struct Driver {
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
}

async fn browser() -> (Client, Driver) {
    let port = free_port();
    let child = tokio::process::Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver (Debian's chromium-driver; `cargo xtask deps` installs it)");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_for(Duration::from_secs(30), || async {
        let r = http.get(format!("{url}/status")).send().await.ok()?;
        let v: Value = r.json().await.ok()?;
        (v["value"]["ready"] == true).then_some(())
    })
    .await
    .expect("chromedriver answers /status");
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", format!("--user-data-dir={}", profile.path().display())],
        }
    });
    let caps = caps.as_object().unwrap().clone().into_iter().collect();
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&url)
        .await
        .expect("a headless Chromium session");
    (client, Driver { _child: child, _profile: profile })
}

/// Poll `script` (a JS expression) in the page until it is truthy; its value.
async fn until(page: &Client, what: &str, script: &str) -> Value {
    let js = format!("return ({script});");
    let got = wait_for(Duration::from_secs(30), || async {
        let v = page.execute(&js, vec![]).await.ok()?;
        let truthy = !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0));
        truthy.then_some(v)
    })
    .await;
    match got {
        Some(v) => v,
        None => {
            let text = page.execute("return document.body.innerText;", vec![]).await.unwrap_or_default();
            panic!("the page never showed {what} ({script}); it shows: {text}");
        }
    }
}

/// Every form control has a label and every button a name: what a screen reader announces.
async fn assert_labelled(page: &Client, view: &str) {
    let unlabelled = page
        .execute(
            "return [...document.querySelectorAll('input, select, textarea, button')]
               .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                            && !(e.tagName === 'BUTTON' && e.textContent.trim()))
               .map(e => e.outerHTML);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unlabelled, json!([]), "{view}: controls without a label");
}

#[tokio::test]
async fn an_operator_signs_in_pings_a_machine_watches_it_finish_and_is_refused_a_reboot() {
    let (app, _dir) = app_with_inventory(SLOW_PING).await;
    let (page, driver) = browser().await;
    let base = app.url("/");

    // Wrong token: the server's refusal is shown, nothing is stored.
    page.goto(&base).await.unwrap();
    until(&page, "the sign-in form", "document.activeElement && document.activeElement.id === 'client-id'").await;
    assert_labelled(&page, "sign-in").await;
    let search =
        page.execute("return getComputedStyle(document.getElementById('goto')).display;", vec![]).await.unwrap();
    assert_eq!(search, json!("none"), "no search box before sign-in");
    page.find(Locator::Id("client-id")).await.unwrap().send_keys(PINGER.0).await.unwrap();
    page.find(Locator::Id("access-token")).await.unwrap().send_keys("not-the-token").await.unwrap();
    page.find(Locator::Css("#signin button[type=submit]")).await.unwrap().click().await.unwrap();
    until(&page, "a sign-in refusal", "document.getElementById('alert').textContent.includes('Sign-in failed')").await;
    let stored = page.execute("return sessionStorage.getItem('roller.credentials');", vec![]).await.unwrap();
    assert_eq!(stored, Value::Null, "refused credentials are not kept");

    // The right token, by keyboard only: the focus starts in the form; Tab, type, Enter.
    page.goto(&base).await.unwrap();
    until(&page, "the sign-in form", "document.activeElement && document.activeElement.id === 'client-id'").await;
    let focused = page.active_element().await.unwrap();
    focused.send_keys(&format!("{}{}", PINGER.0, Key::Tab)).await.unwrap();
    let focused = page.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("access-token"));
    focused.send_keys(&format!("{}{}", PINGER.1, Key::Enter)).await.unwrap();
    until(&page, "who is signed in", "document.getElementById('who').textContent === 'Signed in as pinger'").await;
    let search =
        page.execute("return getComputedStyle(document.getElementById('goto')).display;", vec![]).await.unwrap();
    assert_ne!(search, json!("none"), "the search box once signed in");

    // The home view is fleet health (tested below); the inventory is one link away.
    page.find(Locator::LinkText("Machines")).await.unwrap().click().await.unwrap();
    // The inventory, by group; filters narrow it.
    until(&page, "three machines", "document.querySelectorAll('#fleet tbody tr[data-worker]').length === 3").await;
    assert_labelled(&page, "machines").await;
    let groups = page
        .execute("return [...document.querySelectorAll('#fleet tbody tr th .hint')].map(td => td.textContent);", vec![])
        .await
        .unwrap();
    assert_eq!(groups, json!(["mdc1 · mini", "mdc1 · moonshot", "mdc2 · mini"]));
    page.find(Locator::Id("filter-class")).await.unwrap().select_by_value("moonshot").await.unwrap();
    until(
        &page,
        "only the moonshot",
        "[...document.querySelectorAll('#fleet tbody tr')].map(tr => tr.dataset.worker).join() === 'dash-2'",
    )
    .await;

    // The machine page: a button for ping; reboot (not in the scopes) only under its own heading.
    page.find(Locator::LinkText("dash-2")).await.unwrap().click().await.unwrap();
    until(&page, "dash-2's task buttons", "document.querySelector('.task-group button[data-task=ping]')").await;
    assert_labelled(&page, "machine").await;
    let buttons = page
        .execute(
            "return [...document.querySelectorAll('.task-group button[data-task]')].map(b => b.dataset.task);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(buttons, json!(["ping"]), "only what pinger's scopes allow");
    assert_eq!(
        page.find(Locator::Id("worker-group")).await.unwrap().prop("value").await.unwrap().as_deref(),
        Some("mdc1")
    );

    // Ping: the job page follows it live from running to succeeded, without a reload.
    page.find(Locator::Css("button[data-task=ping]")).await.unwrap().click().await.unwrap();
    until(&page, "the job page", "location.hash.startsWith('#/job/')").await;
    page.execute("window.__sameDocument = true;", vec![]).await.unwrap();
    until(&page, "the job running", "document.querySelector('#job-facts .state-running')").await;
    until(&page, "the job succeeded", "document.querySelector('#job-facts .state-succeeded')").await;
    until(&page, "the stream's end", "document.getElementById('job-live').textContent === 'Finished.'").await;
    let still = page.execute("return window.__sameDocument === true;", vec![]).await.unwrap();
    assert_eq!(still, json!(true), "the page updated in place");
    let hash = page.execute("return location.hash;", vec![]).await.unwrap();
    let job_id = hash.as_str().unwrap().trim_start_matches("#/job/").to_string();
    let job = app.get_job(&job_id).await;
    assert_eq!(
        (job["task_name"].as_str(), job["worker_id"].as_str(), job["requester"].as_str()),
        (Some("ping"), Some("dash-2"), Some("pinger"))
    );
    let shown = page
        .execute("return [...document.querySelectorAll('#job-log li')].map(li => li.lastChild.textContent);", vec![])
        .await
        .unwrap();
    let logged: Vec<Value> = job["log"].as_array().unwrap().iter().map(|l| l["line"].clone()).collect();
    assert_eq!(shown, Value::Array(logged), "the page shows the job's whole log");
    let facts = page.find(Locator::Id("job-facts")).await.unwrap().text().await.unwrap();
    for want in ["ping", "dash-2", "pinger", "1 of 3", "succeeded"] {
        assert!(facts.contains(want), "job facts lack {want:?}: {facts}");
    }

    // How the page shows a reboot's outcome: the step that worked, or the bug it filed
    // (the chain's own results are tested in `reboot`; this is the page's reading of them).
    let shown = page
        .execute(
            "const base = {task_name: 'reboot', worker_id: 'm', worker_group: 'g', requester: 'r', attempts: 1,
                           max_attempts: 1, created_at: '2026-11-24T10:00:00.000Z', log: []};
             const worked = jobFacts({...base, state: 'succeeded',
                 result: {worked: 'ipmi_reset', proof: 'down after 3s, up after 40s'}});
             const filed = jobFacts({...base, state: 'failed', result: null,
                 error: 'no reboot step worked for m after 900s: ssh_reboot: failed. Filed https://bugzilla.example/show_bug.cgi?id=7.'});
             const sneaky = jobFacts({...base, state: 'succeeded', result: {url: 'javascript:alert(1)'}});
             return [worked.textContent, filed.querySelector('a[href^=\"https:\"]')?.href, sneaky.querySelectorAll('a').length];",
            vec![],
        )
        .await
        .unwrap();
    assert!(shown[0].as_str().unwrap().contains("Workedipmi_reset (down after 3s, up after 40s)"), "{shown}");
    assert_eq!(shown[1], "https://bugzilla.example/show_bug.cgi?id=7");
    assert_eq!(shown[2], 1, "only the machine link: a non-http URL is never a link");

    // A reboot from "Not in your scopes": confirmed, sent, and refused by roller; its detail shown as it said it.
    page.goto(&format!("{base}#/machine/dash-2")).await.unwrap();
    until(&page, "the machine page", "document.getElementById('outside-scopes')").await;
    page.find(Locator::Css("#outside-scopes summary")).await.unwrap().click().await.unwrap();
    page.find(Locator::Css("#outside-scopes button[data-task=reboot]")).await.unwrap().click().await.unwrap();
    let confirm =
        until(&page, "the confirmation", "document.activeElement && document.activeElement.textContent").await;
    assert_eq!(confirm, json!("Cancel"), "the confirmation takes the focus, on the harmless answer");
    let asked = page.find(Locator::Id("confirm-text")).await.unwrap().text().await.unwrap();
    assert_eq!(asked, "Restart dash-2?");
    page.find(Locator::Id("confirm-yes")).await.unwrap().click().await.unwrap();
    let alert = until(&page, "the refusal", "document.getElementById('alert').textContent").await;
    let said = app.signed(Method::POST, "/api/v1/workers/dash-2/group/mdc1/jobs?task_name=reboot", PINGER).await;
    let detail = json_of(said, 403).await["detail"].as_str().unwrap().to_string();
    assert_eq!(alert, json!(format!("reboot on dash-2 was refused (403): {detail}")));
    assert!(detail.contains("Client 'pinger' lacks the scope 'project:releng:roller:reboot'"), "{detail}");
    let history = app.signed(Method::GET, "/api/v1/workers/dash-2/jobs", ADMIN).await.json::<Value>().await.unwrap();
    assert_eq!(history["jobs"].as_array().unwrap().len(), 1, "nothing but the ping was queued");

    // A phone's width: nothing wider than the screen.
    page.set_window_size(390, 844).await.unwrap();
    for view in ["#/", "#/machines", "#/machine/dash-2", &format!("#/job/{job_id}")] {
        page.goto(&format!("{base}{view}")).await.unwrap();
        until(&page, "the view", "document.querySelector('main h1')").await;
        let fits =
            page.execute("return document.documentElement.scrollWidth <= window.innerWidth;", vec![]).await.unwrap();
        assert_eq!(fits, json!(true), "{view} scrolls sideways on a phone");
    }
    // Nothing was fetched from anywhere but roller.
    let foreign = page
        .execute("return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin));", vec![])
        .await
        .unwrap();
    assert_eq!(foreign, json!([]));
    page.close().await.unwrap();
    drop(driver);
}

#[tokio::test]
async fn live_job_streams_are_bounded_and_freed_when_their_job_ends() {
    // A ping of about 10 s, so every stream below is still open when the next one asks.
    let (app, _dir) = app_with_inventory("[ping]\ncount = 20\ninterval_ms = 500\ntimeout_ms = 1000\n").await;
    let job = app.post_job("dash-1", "mdc1", "ping").await.json::<Value>().await.unwrap();
    let id = job["task_id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/jobs/{id}/events");
    let mut open = Vec::new();
    for _ in 0..roller::api::MAX_STREAMS {
        let r = app.signed(Method::GET, &path, READER).await;
        assert_eq!(r.status(), 200);
        open.push(r);
    }
    let refused = json_of(app.signed(Method::GET, &path, READER).await, 503).await;
    assert_eq!(
        refused["detail"],
        format!("{} job streams are open already; try again later", roller::api::MAX_STREAMS)
    );
    // The job ends, so does every stream, and their permits come back.
    let last = open.pop().unwrap().text().await.unwrap();
    assert!(last.trim_end().ends_with("data: succeeded"), "{last}");
    drop(open);
    let again = wait_for(Duration::from_secs(30), || async {
        let r = app.signed(Method::GET, &path, READER).await;
        (r.status() == 200).then_some(r)
    })
    .await
    .expect("a stream can be opened again");
    assert!(again.text().await.unwrap().contains("event: end"));
}

/// Sign in through the form as `who`; the home view (fleet health) follows.
async fn sign_in(page: &Client, base: &str, who: (&str, &str, &[&str])) {
    page.goto(base).await.unwrap();
    until(page, "the sign-in form", "document.activeElement && document.activeElement.id === 'client-id'").await;
    page.find(Locator::Id("client-id")).await.unwrap().send_keys(who.0).await.unwrap();
    page.find(Locator::Id("access-token")).await.unwrap().send_keys(&format!("{}{}", who.1, Key::Enter)).await.unwrap();
    until(
        page,
        "who is signed in",
        &format!("document.getElementById('who').textContent === 'Signed in as {}'", who.0),
    )
    .await;
}

/// The visible text of the fleet view's row for `worker` (empty until it is drawn).
fn row(worker: &str) -> String {
    format!("(document.querySelector('#trouble tr[data-worker=\"{worker}\"]') || {{}}).innerText || ''")
}

/// `[state, count]` pairs of a group's row in the `by` (pool or class) counts table.
async fn counts(page: &Client, by: &str, group: &str) -> Value {
    let js = format!(
        "return [...document.querySelectorAll('#counts-{by} tr[data-group=\"{group}\"] .chip')]
           .map(c => [c.dataset.state, c.textContent]);"
    );
    page.execute(&js, vec![]).await.unwrap()
}

/// Nothing on the page is wider than a phone's screen.
async fn assert_fits_a_phone(page: &Client, view: &str) {
    page.set_window_size(390, 844).await.unwrap();
    let fits = page.execute("return document.documentElement.scrollWidth <= window.innerWidth;", vec![]).await.unwrap();
    assert_eq!(fits, json!(true), "{view} scrolls sideways on a phone");
    page.set_window_size(1280, 900).await.unwrap();
}

#[tokio::test]
async fn the_home_page_is_fleet_health_problems_first_with_reasons_ages_holds_and_counts() {
    // The sweep probes each class's TCP port: one listens, one does not.
    let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let pool = ("releng-hardware", "gecko-t-linux");
    let m = |name: &str, class: &str| {
        Machine::new(name).group("mdc1").class(class).address("127.0.0.1").pool(pool.0, pool.1)
    };
    let inv = Inventory::new()
        .class(Class::new("up").reachability(&format!("tcp:{}", live.local_addr().unwrap().port())))
        .class(Class::new("silent").reachability(&format!("tcp:{dead}")))
        .machine(m("dash-ok", "up"))
        .machine(m("dash-down", "silent"))
        .machine(m("dash-held", "up"))
        .write(dir.path());
    let app = spawn_app_with(
        "[health]\nenabled = true\nprobe_every_secs = 5\n\n[medic]\nenabled = true\n",
        &[("ROLLER_INVENTORY", &inv)],
    )
    .await;
    // An operator holds a machine (the reason is theirs: shown as text, never as markup).
    let reason = "bench <b>test</b> for bug 42";
    let q = reqwest::Url::parse_with_params("http://x/", &[("reason", reason)]).unwrap();
    let res = app.signed(Method::POST, &format!("/api/v1/machines/dash-held/hold?{}", q.query().unwrap()), ADMIN).await;
    json_of(res, 200).await;
    // The sweep has looked before the page does (it refreshes every 30 s).
    wait_for(Duration::from_secs(30), || async {
        let v = json_of(app.signed(Method::GET, "/api/v1/health", READER).await, 200).await;
        let probed = v["trouble"].as_array()?.iter().filter(|t| t["ages"]["probe_secs"].is_i64()).count();
        (probed == 2).then_some(())
    })
    .await
    .expect("the sweep probed every machine");
    wait_for(Duration::from_secs(30), || async {
        let v = json_of(app.signed(Method::GET, "/api/v1/medic/decisions", READER).await, 200).await;
        v["last"].is_object().then_some(())
    })
    .await
    .expect("the medic's first cycle");

    let (page, driver) = browser().await;
    let base = app.url("/");
    sign_in(&page, &base, PINGER).await;
    let down = until(&page, "dash-down's problem row", &row("dash-down")).await;
    let down = down.as_str().unwrap();
    assert!(down.contains("not answering its probe"), "{down}");
    let probed = page
        .execute(&format!("return /probed (just now|\\d+ s ago)/.test({});", row("dash-down")), vec![])
        .await
        .unwrap();
    assert_eq!(probed, json!(true), "a relative probe time: {down}");
    assert!(down.contains("releng-hardware/gecko-t-linux"), "its pool: {down}");
    let held = until(&page, "dash-held's row", &row("dash-held")).await;
    assert!(held.as_str().unwrap().contains(&format!("held by admin: {reason}")), "{held}");
    // The state is a word, and the worst comes first; an answering machine is no problem.
    let shown = page
        .execute(
            "return [...document.querySelectorAll('#trouble tbody tr')]
               .map(tr => [tr.dataset.worker, tr.querySelector('.health').textContent, tr.querySelectorAll('b').length]);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(shown, json!([["dash-down", "down", 0], ["dash-held", "held", 0]]));

    // Counts by pool and by class.
    assert_eq!(
        counts(&page, "pool", "releng-hardware/gecko-t-linux").await,
        json!([["down", "down 1"], ["held", "held 1"], ["ok", "ok 1"]])
    );
    assert_eq!(counts(&page, "class", "silent").await, json!([["down", "down 1"]]));
    assert_eq!(counts(&page, "class", "up").await, json!([["held", "held 1"], ["ok", "ok 1"]]));
    // A sweep runs, so no banner; the medic runs in dry run and has looked once.
    let banner = page.execute("return document.getElementById('sweep-off').hidden;", vec![]).await.unwrap();
    assert_eq!(banner, json!(true));
    let medic = until(&page, "the medic's status", "document.getElementById('medic-status').innerText").await;
    let medic = medic.as_str().unwrap();
    assert!(medic.starts_with("Medic: dry run") && medic.contains("last cycle"), "{medic}");
    assert_labelled(&page, "fleet health").await;
    assert_fits_a_phone(&page, "fleet health").await;

    // The machine's own page leads with the same facts.
    page.find(Locator::LinkText("dash-down")).await.unwrap().click().await.unwrap();
    let facts = until(&page, "dash-down's health", "document.querySelector('#health-facts dl')?.innerText").await;
    let facts = facts.as_str().unwrap();
    for want in
        ["down", "not answering its probe", "not answering, probed", "no BMC or PDU reading", "not held", "closed"]
    {
        assert!(facts.contains(want), "dash-down's health lacks {want:?}: {facts}");
    }
    assert!(facts.contains("pool releng-hardware/gecko-t-linux, not read yet"), "{facts}");
    let first = page.execute("return document.querySelector('main section h2').textContent;", vec![]).await.unwrap();
    assert_eq!(first, json!("Health"), "above the tasks and the jobs");
    page.goto(&format!("{base}#/machine/dash-held")).await.unwrap();
    let facts = until(&page, "dash-held's hold", "document.querySelector('#health-facts dl')?.innerText").await;
    let facts = facts.as_str().unwrap();
    assert!(facts.contains("held by admin") && facts.contains(reason) && facts.contains("until released"), "{facts}");
    assert_fits_a_phone(&page, "a machine's health").await;

    // The refresh behind these views: one run at a time however slow the answer,
    // and none once the view is gone (a quick interval here; the views use 30 s).
    let (at_leave, at_end, most) = {
        let v = page
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 const s = { running: 0, most: 0, runs: 0 };
                 poll(5, async () => {
                   s.running += 1; s.runs += 1; s.most = Math.max(s.most, s.running);
                   await new Promise((r) => setTimeout(r, 50));
                   s.running -= 1;
                 });
                 setTimeout(() => {
                   location.hash = '#/machines';
                   setTimeout(() => { const left = s.runs; setTimeout(() => done([left, s.runs, s.most]), 300); }, 100);
                 }, 400);",
                vec![],
            )
            .await
            .unwrap();
        (v[0].as_u64().unwrap(), v[1].as_u64().unwrap(), v[2].as_u64().unwrap())
    };
    assert_eq!(most, 1, "never two runs at once");
    assert!(at_leave >= 3, "it ran again after each run ({at_leave} runs)");
    assert_eq!(at_end, at_leave, "it stopped with its view");
    page.close().await.unwrap();
    drop(driver);
}

#[tokio::test]
async fn without_a_sweep_the_page_says_so_and_reads_power_taskcluster_and_the_medic_from_the_records() {
    use roller::health::{Observations, Power, PowerObs, Seen, State, TaskObs, WorkerObs};
    use roller::medic::memory::{Memory, Remediation};
    use roller::medic::{Cycle, Decision, Gate, Remedy, Verdict, keys};
    use roller::queue::records::{RecordKind, Records};

    let (app, _dir) = app_with_inventory("").await;
    // What a sweep and the medic would have written, straight into the app's records.
    let records = roller::queue::sqlite::SqliteQueue::open(&app.settings.sqlite_path).unwrap();
    let now = chrono::Utc::now();
    let ago = |mins: i64| now - chrono::Duration::minutes(mins);
    let hung = Observations {
        probe: Some(Seen::new(now - chrono::Duration::seconds(150), false)),
        power: Some(Seen::new(ago(4), PowerObs { source: "ipmi".into(), state: Power::On, error: None })),
        worker: Some(Seen::new(
            ago(2),
            WorkerObs {
                pool: "releng-hardware/gecko-t-linux".into(),
                known: true,
                last_active: Some(ago(185)),
                quarantine_until: None,
                latest_task: Some(TaskObs {
                    task_id: "fHx3kQ2yTgOh0bWzH0mF2w".into(),
                    run_id: 0,
                    state: Some("completed".into()),
                    started: Some(ago(200)),
                    resolved: Some(ago(185)),
                    reason_resolved: Some("completed".into()),
                }),
                pending: Some(7),
            },
        )),
    };
    records.put_record(RecordKind::Observations, "dash-1", &hung.to_record()).await.unwrap();
    let memory = Memory {
        failures: 1,
        last: Some(Remediation {
            job_id: "3f0c9d1e-8a7b-4c6d-9e0f-1a2b3c4d5e6f".into(),
            task_name: "reboot".into(),
            at: ago(130),
            reason: "not answering its probe".into(),
            outcome: Some(Remedy::NotTakingWork),
            detail: Some("no task taken within 45 min".into()),
            ended_at: Some(ago(70)),
        }),
        held_at: None,
    };
    records.put_record(RecordKind::Medic, "dash-1", &memory.to_record()).await.unwrap();
    let decision = |worker: &str, verdict, gate, job: Option<&str>| Decision {
        worker_id: worker.into(),
        state: State::Hung,
        reason: "not answering its probe".into(),
        verdict,
        gate,
        detail: if gate.is_some() { "Taskcluster shows it running a task".into() } else { String::new() },
        task_name: "reboot".into(),
        job_id: job.map(Into::into),
    };
    let cycle = |at, mode: &str, decisions: Vec<Decision>, alerts: Vec<String>| Cycle {
        at,
        mode: mode.into(),
        machines: 3,
        candidates: decisions.len(),
        gates: vec![],
        decisions,
        follow_ups: vec![],
        alerts,
    };
    let older = cycle(
        ago(30),
        "act",
        vec![
            decision("dash-2", Verdict::Skipped, Some(Gate::Busy), None),
            decision("dash-3", Verdict::Enqueued, None, Some("9a1b2c3d-0000-4000-8000-000000000001")),
        ],
        vec![],
    );
    let alert = "2 of 3 machines of class mini are hung: more than 10 % at once, acting on none";
    let newest =
        cycle(ago(1), "dry_run", vec![decision("dash-1", Verdict::WouldEnqueue, None, None)], vec![alert.to_string()]);
    for c in [&older, &newest] {
        records.append_event(keys::CYCLES, &serde_json::to_string(c).unwrap(), keys::CYCLES_KEPT).await.unwrap();
    }
    records.put_record(RecordKind::Medic, keys::LAST_CYCLE, &serde_json::to_string(&newest).unwrap()).await.unwrap();

    let (page, driver) = browser().await;
    let base = app.url("/");
    sign_in(&page, &base, READER).await;
    let banner = until(
        &page,
        "the sweep-off banner",
        "!document.getElementById('sweep-off').hidden && document.getElementById('sweep-off').innerText",
    )
    .await;
    assert!(banner.as_str().unwrap().contains("health sweep is off: set [health] enabled"), "{banner}");
    let medic = page.execute("return document.getElementById('medic-status').innerText;", vec![]).await.unwrap();
    assert!(medic.as_str().unwrap().starts_with("Medic: off · last cycle 1 min ago: 1 hung of 3 machines"), "{medic}");
    let alerts = page.execute("return document.getElementById('medic-alerts').innerText;", vec![]).await.unwrap();
    assert!(alerts.as_str().unwrap().contains(alert), "the last cycle's alerts stand out: {alerts}");

    // The hung machine: why, how old each fact is, power, Taskcluster, and what the medic would do.
    let one =
        until(&page, "dash-1's power", &format!("{}.includes('on (ipmi)') && {}", row("dash-1"), row("dash-1"))).await;
    let one = one.as_str().unwrap();
    for want in [
        "hung",
        "its latest task ended 3 h ago while 7 tasks wait in releng-hardware/gecko-t-linux",
        "probed 2 min ago",
        "on (ipmi), read 4 min ago",
        "last task completed 3 h ago",
        "last active 3 h ago",
        "7 pending in its pool",
        "medic would reboot (dry run) · 1 min ago",
    ] {
        assert!(one.contains(want), "dash-1's row lacks {want:?}: {one}");
    }
    // Never probed: unknown, and the medic's older decisions about them.
    let two = page.execute(&format!("return {};", row("dash-2")), vec![]).await.unwrap();
    for want in [
        "unknown",
        "not probed yet",
        "never probed",
        "medic: skipped — busy (Taskcluster shows it running a task) · 30 min ago",
    ] {
        assert!(two.as_str().unwrap().contains(want), "dash-2's row lacks {want:?}: {two}");
    }
    let three = page.execute(&format!("return {};", row("dash-3")), vec![]).await.unwrap();
    assert!(three.as_str().unwrap().contains("medic: queued reboot (job 9a1b2c3d…)"), "{three}");
    let job = page.execute("return document.querySelector('#trouble tr[data-worker=\"dash-3\"] a[href^=\"#/job/\"]').getAttribute('href');", vec![]).await.unwrap();
    assert_eq!(job, json!("#/job/9a1b2c3d-0000-4000-8000-000000000001"));
    assert_eq!(counts(&page, "class", "mini").await, json!([["hung", "hung 1"], ["unknown", "unknown 1"]]));
    assert_eq!(counts(&page, "class", "moonshot").await, json!([["unknown", "unknown 1"]]));
    assert_fits_a_phone(&page, "fleet health with every fact").await;

    // Its machine page: the whole worker, and the medic's memory of it.
    page.find(Locator::LinkText("dash-1")).await.unwrap().click().await.unwrap();
    let facts = until(&page, "dash-1's health", "document.querySelector('#health-facts dl')?.innerText").await;
    let facts = facts.as_str().unwrap();
    for want in [
        "not answering, probed 2 min ago",
        "on (ipmi), read 4 min ago",
        "pool releng-hardware/gecko-t-linux",
        "latest task fHx3kQ2yTgOh0bWzH0mF2w (run 0) completed 3 h ago",
        "read 2 min ago",
        "not held",
        "Active job\nnone",
        "last remediation: reboot (job 3f0c9d1e…) queued 2 h ago for “not answering its probe”: rebooted, but not taking work (no task taken within 45 min), ended 70 min ago",
        "1 failed in a row",
    ] {
        assert!(facts.contains(want), "dash-1's health lacks {want:?}: {facts}");
    }
    page.close().await.unwrap();
    drop(driver);
}

#[tokio::test]
async fn a_machine_roller_cannot_restart_shows_as_no_path_with_its_failed_paths() {
    use roller::paths::{Outcome, PathKind, PathRecord, PathResult};
    use roller::queue::records::{RecordKind, Records};

    // With path checks on, a machine whose chain has nothing configured has no path.
    let (app, _dir) = app_with_inventory("[paths]\nenabled = true\n").await;
    let reader = |path: &'static str| {
        let app = &app;
        async move { json_of(app.signed(Method::GET, path, READER).await, 200).await }
    };
    wait_for(Duration::from_secs(60), || async { (!reader("/api/v1/paths").await["checker"].is_null()).then_some(()) })
        .await
        .expect("the checker looked");
    // What a failed check of its BMC would have written.
    let records = roller::queue::sqlite::SqliteQueue::open(&app.settings.sqlite_path).unwrap();
    let now = chrono::Utc::now();
    let failed = PathRecord {
        checked_at: Some(now),
        paths: vec![PathResult {
            kind: PathKind::Ipmi,
            outcome: Outcome::Failed,
            reason: "IPMI session to bmc1 refused: wrong user name or password".into(),
            checked_at: now,
            failing_since: Some(now - chrono::Duration::hours(3)),
        }],
    };
    records.put_record(RecordKind::Paths, "dash-1", &failed.to_record()).await.unwrap();

    let (page, driver) = browser().await;
    sign_in(&page, &app.url("/"), READER).await;
    let one =
        until(&page, "dash-1's row", &format!("{}.includes('no_path') && {}", row("dash-1"), row("dash-1"))).await;
    assert!(one.as_str().unwrap().contains("no remediation path: nothing reboot could use is configured"), "{one}");
    let badge = page
        .execute("return document.querySelector('#trouble tr[data-worker=\"dash-1\"] .health').dataset.state;", vec![])
        .await
        .unwrap();
    assert_eq!(badge, json!("no_path"));
    page.find(Locator::LinkText("dash-1")).await.unwrap().click().await.unwrap();
    let facts = until(&page, "dash-1's paths", "document.querySelector('#health-facts dl')?.innerText").await;
    let facts = facts.as_str().unwrap();
    for want in [
        "no_path",
        "Paths",
        "ipmi FAILED: IPMI session to bmc1 refused: wrong user name or password",
        "failing since 3 h ago",
    ] {
        assert!(facts.contains(want), "dash-1's health lacks {want:?}: {facts}");
    }
    page.close().await.unwrap();
    drop(driver);
}

/// `ROLLER_SCREENSHOTS=dir`: the page as it is now, saved as `dir/<name>.png` (how
/// docs/screenshots/ is made: `ROLLER_SCREENSHOTS=docs/screenshots cargo test --test it dashboard::`).
async fn screenshot(page: &Client, name: &str) {
    let Some(dir) = std::env::var_os("ROLLER_SCREENSHOTS") else { return };
    // Let a relative time or a late answer settle into the picture.
    until(
        page,
        "a drawn page",
        "document.querySelector('main h1') && !document.querySelector('main')?.innerText.includes('Loading')",
    )
    .await;
    // The whole page, not only what the window shows: the window grows to it for the picture.
    let (w, h) = page.get_window_size().await.unwrap();
    let (w, h) = (w as u32, h as u32);
    let size = page
        .execute(
            "window.scrollTo(0, 0); return [window.innerWidth, window.innerHeight, document.scrollingElement.scrollHeight];",
            vec![],
        )
        .await
        .unwrap();
    let [inner_w, inner_h, full] = [0, 1, 2].map(|i| size[i].as_u64().unwrap() as u32);
    assert!(inner_w <= w, "the viewport ({inner_w}) is within the window ({w})");
    page.set_window_size(w, (h - inner_h.min(h) + full).clamp(h, 6000)).await.unwrap();
    let png = page.screenshot().await.unwrap();
    page.set_window_size(w, h).await.unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
}

/// Desktop and phone, as the operator at 3 a.m. has them.
const WIDTHS: [(&str, u32, u32); 2] = [("desktop", 1280, 800), ("phone", 390, 844)];

async fn fits(page: &Client) -> bool {
    page.execute("return document.scrollingElement.scrollWidth <= window.innerWidth;", vec![]).await.unwrap()
        == json!(true)
}

/// A machine with a BMC over IPMI in its own class, beside the three without one.
fn inventory_with_a_bmc(dir: &Path) -> String {
    use roller_testkit::inventory::Ipmi;
    let mut inv = Inventory::new()
        .class(Class::new("mini"))
        .class(Class::new("moonshot"))
        .class(Class::new("bmc").reboot(&["ipmi_reset", "ipmi_cycle"]));
    for (name, group, class) in [("dash-1", "mdc1", "mini"), ("dash-2", "mdc1", "moonshot"), ("dash-3", "mdc2", "mini")]
    {
        inv = inv.machine(Machine::new(name).group(group).class(class).address("127.0.0.1"));
    }
    inv = inv.machine(
        Machine::new("dash-bmc")
            .group("mdc1")
            .class("bmc")
            .address("127.0.0.1")
            .ipmi(Ipmi::new("127.0.0.1", "admin").port(free_port()).password_env("DASH_BMC_PASSWORD")),
    );
    inv.write(dir)
}

#[tokio::test]
async fn the_machine_page_api_offers_only_what_the_machine_can_run_and_explains_its_reboot_as_the_cli_does() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/inventory.example.toml");
    let app = spawn_app_with("", &[("ROLLER_INVENTORY", example)]).await;
    let get = |path: String, who| {
        let app = &app;
        async move { app.signed(Method::GET, &path, who).await }
    };
    let page = json_of(get("/api/v1/machines/t-linux64-ms-001".into(), READER).await, 200).await;
    assert_eq!((page["class"].as_str(), page["group"].as_str()), (Some("moonshot"), Some("mdc1")), "{page}");
    let task = |name: &str| page["tasks"].as_array().unwrap().iter().find(|t| t["name"] == name).cloned();
    let ipmi_off = task("ipmi_off").expect("it has a BMC over IPMI");
    assert_eq!((ipmi_off["group"].as_str(), ipmi_off["needs_confirmation"].as_bool()), (Some("power"), Some(true)));
    assert_eq!(ipmi_off["allowed"], false, "the reader holds no task scope");
    let ping = task("ping").unwrap();
    assert_eq!((ping["group"].as_str(), ping["needs_confirmation"].as_bool()), (Some("inspect"), Some(false)));
    assert_eq!(task("ipmi_cycle").unwrap()["group"], "reboot");
    assert_eq!(task("ipmi_on").unwrap()["needs_confirmation"], false, "switching on asks nothing");
    for absent in ["xenapi_reboot", "ilo_reboot", "redfish_off", "moonshot_reset", "mdm_restart", "snmp_reboot"] {
        assert!(task(absent).is_none(), "{absent} cannot run on it: {page}");
    }
    let why = |name: &str| {
        page["unavailable"].as_array().unwrap().iter().find(|u| u["name"] == name).map(|u| u["why"].clone())
    };
    assert_eq!(why("xenapi_reboot"), Some(json!("no [xen] for this machine")));
    assert_eq!(why("ilo_reboot"), Some(json!("no [ilo] for this machine")));
    // Its paths, with what they talk to (references to secrets, never a secret) and no check yet.
    let paths: Vec<&str> = page["paths"].as_array().unwrap().iter().map(|p| p["kind"].as_str().unwrap()).collect();
    assert_eq!(paths, ["ipmi", "ssh"]);
    let ipmi = &page["paths"][0];
    assert!(ipmi["target"].as_str().unwrap().contains("$MOONSHOT_IPMI_PASSWORD"), "{ipmi}");
    assert!(ipmi["last"].is_null());
    // The plan is what `roller explain` prints, line for line.
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_roller"))
        .args(["explain", "t-linux64-ms-001", "--inventory", example])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ROLLER_DATA_DIR", app.settings.data_dir.as_os_str())
        .env("ROLLER_URL", app.url(""))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&cli.stdout);
    let text: Vec<&str> = page["plan"]["text"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    let printed: Vec<&str> = out.lines().take(text.len()).collect();
    assert_eq!(printed, text, "{out}");
    let steps: Vec<(&str, bool)> = page["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["task"].as_str().unwrap(), s["runs"].as_bool().unwrap()))
        .collect();
    assert_eq!(steps, [("ssh_reboot", true), ("ipmi_reset", true), ("ipmi_cycle", true), ("file_bugzilla_bug", false)]);
    assert_eq!(page["plan"]["runnable"], true);

    // The machine list offers the same tasks, with the fleet limits the bulk action keeps.
    let list = json_of(get("/api/v1/machines".into(), READER).await, 200).await;
    assert_eq!((list["confirm_above"].as_u64(), list["fleet_in_flight"].as_u64()), (Some(10), Some(16)));
    let listed = list["machines"].as_array().unwrap().iter().find(|m| m["worker_id"] == "t-linux64-ms-001").unwrap();
    let names: Vec<&Value> = page["tasks"].as_array().unwrap().iter().map(|t| &t["name"]).collect();
    assert_eq!(listed["tasks"].as_array().unwrap().iter().collect::<Vec<_>>(), names);
    assert_eq!(listed["health"]["state"], "unknown");
    assert!(listed["breaker_open_until"].is_null());
    // A Xen VM: nothing in its chain can run without XenAPI configured.
    let xen = json_of(get("/api/v1/machines/t-linux-xen-05".into(), ADMIN).await, 200).await;
    assert_eq!(xen["plan"]["runnable"], false);
    assert!(xen["tasks"].as_array().unwrap().iter().all(|t| t["name"] != "xenapi_reboot"), "no XenAPI: {xen}");
    assert_eq!(xen["tasks"][0]["allowed"], true, "the admin holds every scope");

    // Refusals: JSON with detail and error_code.
    let body = json_of(get("/api/v1/machines/nobody-here".into(), READER).await, 404).await;
    assert_eq!(body["error_code"], "not_found", "{body}");
    assert!(body["detail"].as_str().unwrap().starts_with("nobody-here is not in the inventory"), "{body}");
    let body = json_of(get("/api/v1/machines/not%20a%20name".into(), READER).await, 400).await;
    assert!(body["detail"].is_string() && body["error_code"] == "invalid_path", "{body}");
    let body = json_of(get("/api/v1/machines/t-linux64-ms-001".into(), REBOOTER).await, 403).await;
    assert_eq!(body["error_code"], "insufficient_scope", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("lacks the scope 'project:releng:roller:jobs:read'"), "{body}");
    let res = app.http.get(app.url("/api/v1/machines/t-linux64-ms-001")).send().await.unwrap();
    json_of(res, 403).await;
    // whoami says which tasks ask first and where they sit.
    let me = json_of(get("/api/v1/whoami".into(), READER).await, 200).await;
    let off = me["tasks"].as_array().unwrap().iter().find(|t| t["name"] == "redfish_off").unwrap();
    assert_eq!((off["needs_confirmation"].as_bool(), off["group"].as_str()), (Some(true), Some("power")));
}

#[tokio::test]
async fn a_machine_page_offers_only_its_tasks_and_asks_naming_the_machine_before_cutting_power() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory_with_a_bmc(dir.path());
    let app = spawn_app_with(SLOW_PING, &[("ROLLER_INVENTORY", &inv)]).await;
    let jobs = |id: &'static str| {
        let app = &app;
        async move {
            let h = json_of(app.signed(Method::GET, &format!("/api/v1/workers/{id}/jobs"), ADMIN).await, 200).await;
            h["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["task_name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let (page, driver) = browser().await;
    let base = app.url("/");
    sign_in(&page, &base, ADMIN).await;
    let api = json_of(app.signed(Method::GET, "/api/v1/machines/dash-bmc", ADMIN).await, 200).await;
    let mut offered: Vec<String> =
        api["tasks"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect();
    offered.sort();
    for (width, w, h) in WIDTHS {
        page.set_window_size(w, h).await.unwrap();
        page.goto(&format!("{base}#/machine/dash-bmc")).await.unwrap();
        until(&page, "dash-bmc's tasks", "document.querySelector('.task-group button[data-task=ipmi_off]')").await;
        until(&page, "its plan", "document.querySelector('#plan li[data-step=ipmi_reset]')").await;
        until(&page, "its breaker", "document.getElementById('breaker-state')").await;
        // Only what it can run: roller's list, nothing else.
        let buttons = page
            .execute(
                "return [...document.querySelectorAll('button[data-task]')].map(b => b.dataset.task).sort();",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(buttons, json!(offered), "{width}: the buttons are roller's list (in groups)");
        for absent in ["xenapi_reboot", "ilo_reboot", "redfish_off", "snmp_reboot", "ssh_reboot", "moonshot_reset"] {
            assert!(!buttons.as_array().unwrap().contains(&json!(absent)), "{width}: {absent} is offered");
        }
        let power = page
            .execute("return [...document.querySelectorAll('.task-group[data-group=power] button')].map(b => b.dataset.task);", vec![])
            .await
            .unwrap();
        assert_eq!(power, json!(["ipmi_on", "ipmi_off"]), "{width}");
        let facts = page.find(Locator::Id("machine-facts")).await.unwrap().text().await.unwrap();
        assert!(
            facts.contains("ipmi") && facts.contains("not checked yet") && facts.contains("$DASH_BMC_PASSWORD"),
            "{facts}"
        );
        assert_labelled(&page, "a machine with a BMC").await;
        assert!(fits(&page).await, "{width}: the machine page scrolls sideways");
        screenshot(&page, &format!("machine-{width}")).await;

        // Power off asks, naming the machine; cancelling sends nothing.
        page.find(Locator::Css(".task-group button[data-task=ipmi_off]")).await.unwrap().click().await.unwrap();
        let asked = until(&page, "the question", "document.getElementById('confirm-text')?.textContent").await;
        assert_eq!(asked, json!("Power off dash-bmc?"), "{width}");
        let focus = page.execute("return document.activeElement.textContent;", vec![]).await.unwrap();
        assert_eq!(focus, json!("Cancel"), "{width}: a stray Enter cancels");
        assert!(fits(&page).await, "{width}: the confirmation scrolls sideways");
        screenshot(&page, &format!("confirm-{width}")).await;
        page.active_element().await.unwrap().click().await.unwrap();
        until(&page, "the question gone", "!document.getElementById('confirm-text')").await;
        assert_eq!(jobs("dash-bmc").await, Vec::<String>::new(), "{width}: cancelled, nothing queued");
    }

    // An open breaker, as the page draws it (opening one takes restarts that reached a device,
    // tested in `breaker`): its override asks why and goes to roller, audited.
    let open = page
        .execute(
            "const b = {max_restarts: 3, window_hours: 6, open: true, open_until: new Date(Date.now() + 3600e3).toISOString(),
                        restarts: [{}, {}, {}], resets: []};
             document.getElementById('breaker').replaceChildren(breakerView('dash-bmc', b, () => {}));
             return document.getElementById('breaker').innerText;",
            vec![],
        )
        .await
        .unwrap();
    let open = open.as_str().unwrap();
    assert!(open.contains("Open: refuses restarts; closes in 60 min (3 of 3 restarts in the last 6 h)"), "{open}");
    page.find(Locator::Id("breaker-reason")).await.unwrap().send_keys("replaced the PSU").await.unwrap();
    page.find(Locator::Css("#breaker button[type=submit]")).await.unwrap().click().await.unwrap();
    let reset = wait_for(Duration::from_secs(30), || async {
        let b = json_of(app.signed(Method::GET, "/api/v1/workers/dash-bmc/breaker", ADMIN).await, 200).await;
        (b["resets"][0]["reason"] == "replaced the PSU").then_some(b)
    })
    .await
    .expect("the reset reached roller");
    assert_eq!(reset["resets"][0]["by"], "admin");

    // Confirmed: exactly one job, and the job page follows it.
    page.find(Locator::Css(".task-group button[data-task=ipmi_cycle]")).await.unwrap().click().await.unwrap();
    let asked = until(&page, "the question", "document.getElementById('confirm-text')?.textContent").await;
    assert_eq!(asked, json!("Restart dash-bmc?"));
    page.find(Locator::Id("confirm-yes")).await.unwrap().click().await.unwrap();
    until(&page, "the job page", "location.hash.startsWith('#/job/')").await;
    assert_eq!(jobs("dash-bmc").await, ["ipmi_cycle"]);
    // A task that changes nothing goes at once.
    page.goto(&format!("{base}#/machine/dash-1")).await.unwrap();
    until(&page, "dash-1's ping", "document.querySelector('.task-group button[data-task=ping]')").await;
    let none = page.execute("return !!document.querySelector('button[data-task^=ipmi]');", vec![]).await.unwrap();
    assert_eq!(none, json!(false), "dash-1 has no BMC");
    page.find(Locator::Css("button[data-task=ping]")).await.unwrap().click().await.unwrap();
    until(&page, "the job page", "location.hash.startsWith('#/job/') && document.querySelector('#job-facts dl')").await;
    for (width, w, h) in WIDTHS {
        page.set_window_size(w, h).await.unwrap();
        until(&page, "the job's log", "document.querySelector('#job-log li')").await;
        assert!(fits(&page).await, "{width}: the job page scrolls sideways");
        screenshot(&page, &format!("job-{width}")).await;
    }
    assert_eq!(jobs("dash-1").await, ["ping"]);
    page.close().await.unwrap();
    drop(driver);
}

#[tokio::test]
async fn the_fleet_list_puts_trouble_first_keeps_its_filters_in_the_url_and_runs_a_bulk_action_behind_the_rail() {
    use roller::health::{Observations, Seen};
    use roller::queue::records::{RecordKind, Records};

    let dir = tempfile::tempdir().unwrap();
    let inv = inventory_with_a_bmc(dir.path());
    let app = spawn_app_with("[safety]\nconfirm_above = 2\n", &[("ROLLER_INVENTORY", &inv)]).await;
    // dash-3 is not answering and was last seen a while ago: what a sweep writes for a hung machine.
    let records = roller::queue::sqlite::SqliteQueue::open(&app.settings.sqlite_path).unwrap();
    let now = chrono::Utc::now();
    let down =
        Observations { probe: Some(Seen::new(now - chrono::Duration::seconds(90), false)), power: None, worker: None };
    records.put_record(RecordKind::Observations, "dash-3", &down.to_record()).await.unwrap();
    let jobs = |id: &'static str| {
        let app = &app;
        async move {
            let h = json_of(app.signed(Method::GET, &format!("/api/v1/workers/{id}/jobs"), ADMIN).await, 200).await;
            h["jobs"].as_array().unwrap().len()
        }
    };
    let (page, driver) = browser().await;
    let base = app.url("/");
    sign_in(&page, &base, PINGER).await;
    page.goto(&format!("{base}#/machines")).await.unwrap();
    let order = "[...document.querySelectorAll('#fleet tbody tr[data-worker]')].map(tr => tr.dataset.worker).join()";
    let first = until(&page, "the list", &format!("{order}.split(',').length === 4 && {order}")).await;
    assert!(first.as_str().unwrap().starts_with("dash-3,"), "trouble first: {first}");
    let state = page.execute("return document.querySelector('#fleet tbody tr').innerText;", vec![]).await.unwrap();
    assert!(state.as_str().unwrap().contains("not answering"), "{state}");
    assert_labelled(&page, "the fleet list").await;

    // The order, for every kind of trouble (the page's rule on rows as roller sends them).
    let sorted = page
        .execute(
            "const m = (worker_id, state, more) => ({worker_id, health: {state}, last_job: null, ...more});
             return [m('a-ok', 'ok'), m('b-unknown', 'unknown'), m('c-down', 'down'), m('d-held', 'held'),
                     m('e-failed', 'ok', {last_job: {state: 'failed'}}), m('f-breaker', 'idle', {breaker_open_until: 'x'}),
                     m('g-hung', 'hung'), m('h-nopath', 'no_path'), m('i-off', 'off')]
               .sort(byTrouble).map(x => x.worker_id);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        sorted,
        json!(["h-nopath", "g-hung", "f-breaker", "e-failed", "d-held", "c-down", "i-off", "b-unknown", "a-ok"])
    );

    // Filters go into the URL and survive a reload.
    page.find(Locator::Id("filter-group")).await.unwrap().select_by_value("mdc1").await.unwrap();
    page.find(Locator::Id("filter")).await.unwrap().send_keys("dash-").await.unwrap();
    until(&page, "the filtered list", &format!("{order} === 'dash-1,dash-2,dash-bmc'")).await;
    let hash = page.execute("return location.hash;", vec![]).await.unwrap();
    assert_eq!(hash, json!("#/machines?q=dash-&group=mdc1"));
    page.refresh().await.unwrap();
    until(&page, "the filters after a reload", &format!("{order} === 'dash-1,dash-2,dash-bmc'")).await;
    let kept = page
        .execute(
            "return [document.getElementById('filter').value, document.getElementById('filter-group').value];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(kept, json!(["dash-", "mdc1"]));

    // Every machine of mdc2 and dash-1, dash-2: a bulk ping. Three is above confirm_above (2).
    page.goto(&format!("{base}#/machines?show=")).await.unwrap();
    page.refresh().await.unwrap();
    until(&page, "the whole list", &format!("{order}.split(',').length === 4")).await;
    for w in ["dash-1", "dash-2", "dash-3"] {
        page.find(Locator::Css(&format!("input[data-worker='{w}']"))).await.unwrap().click().await.unwrap();
    }
    until(&page, "three selected", "document.getElementById('bulk-count').textContent === '3 selected.'").await;
    let offered = page
        .execute("return [...document.querySelectorAll('#bulk-task option')].map(o => o.value);", vec![])
        .await
        .unwrap();
    assert_eq!(offered, json!(["ping"]), "what all three can run and pinger may");
    page.find(Locator::Id("bulk-run")).await.unwrap().click().await.unwrap();
    let asked = until(&page, "the bulk question", "document.getElementById('bulk-question')?.textContent").await;
    assert_eq!(asked, json!("Run ping on 3 machines?"));
    let names = page.execute("return document.querySelector('#bulk-box .names').textContent;", vec![]).await.unwrap();
    assert_eq!(names, json!("dash-3, dash-1, dash-2"));
    let locked = page.execute("return document.getElementById('bulk-yes').disabled;", vec![]).await.unwrap();
    assert_eq!(locked, json!(true), "above confirm_above, a typed yes first");
    for (width, w, h) in WIDTHS {
        page.set_window_size(w, h).await.unwrap();
        assert!(fits(&page).await, "{width}: the fleet list scrolls sideways");
        screenshot(&page, &format!("fleet-bulk-confirm-{width}")).await;
    }
    page.set_window_size(1280, 800).await.unwrap();
    page.find(Locator::Css("#bulk-box button:not(.danger)")).await.unwrap().click().await.unwrap();
    until(&page, "the question gone", "!document.getElementById('bulk-question')").await;
    for w in ["dash-1", "dash-2", "dash-3"] {
        assert_eq!(jobs(w).await, 0, "cancelled: nothing queued for {w}");
    }
    page.find(Locator::Id("bulk-run")).await.unwrap().click().await.unwrap();
    page.find(Locator::Id("bulk-typed")).await.unwrap().send_keys("yes").await.unwrap();
    page.find(Locator::Id("bulk-yes")).await.unwrap().click().await.unwrap();
    let summary = until(
        &page,
        "the summary",
        "document.getElementById('bulk-summary')?.textContent.endsWith('Done.') && document.getElementById('bulk-summary').textContent",
    )
    .await;
    assert!(summary.as_str().unwrap().starts_with("ping on 3 machines: 3 queued, 0 refused; now 3 "), "{summary}");
    let rows = page
        .execute("return [...document.querySelectorAll('#bulk-progress tbody tr')].map(tr => [tr.dataset.worker, !!tr.querySelector('a[href^=\"#/job/\"]')]);", vec![])
        .await
        .unwrap();
    assert_eq!(rows, json!([["dash-3", true], ["dash-1", true], ["dash-2", true]]));
    for w in ["dash-1", "dash-2", "dash-3"] {
        assert_eq!(jobs(w).await, 1, "one job each: {w}");
    }
    assert_eq!(jobs("dash-bmc").await, 0, "not selected");
    for (width, w, h) in WIDTHS {
        page.set_window_size(w, h).await.unwrap();
        assert!(fits(&page).await, "{width}: the summary scrolls sideways");
        screenshot(&page, &format!("fleet-bulk-done-{width}")).await;
    }
    for (width, w, h) in WIDTHS {
        page.set_window_size(w, h).await.unwrap();
        page.goto(&format!("{base}#/machines")).await.unwrap();
        until(&page, "the whole list", &format!("{order}.split(',').length === 4")).await;
        assert!(fits(&page).await, "{width}: the fleet list scrolls sideways");
        screenshot(&page, &format!("fleet-{width}")).await;
        page.goto(&format!("{base}#/")).await.unwrap();
        until(&page, "fleet health", "document.querySelector('#trouble tr[data-worker=\"dash-3\"]')").await;
        screenshot(&page, &format!("health-{width}")).await;
    }
    page.close().await.unwrap();
    drop(driver);
}
