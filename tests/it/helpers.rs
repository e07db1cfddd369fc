//! The harness: `spawn_app()` starts roller in-process on a free port with a
//! fresh data directory and known clients; requests are Hawk-signed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use roller::config::Settings;
use roller::startup::Application;

/// Clients every test app knows: (id, token, scopes).
pub const ADMIN: (&str, &str, &[&str]) = ("admin", "admin-token-0123456789", &["project:releng:roller:*"]);
pub const PINGER: (&str, &str, &[&str]) =
    ("pinger", "pinger-token-0123456789", &["project:releng:roller:ping", "project:releng:roller:jobs:read"]);
/// Holds a roller scope, but for another task: the original let this run every task.
pub const REBOOTER: (&str, &str, &[&str]) =
    ("rebooter", "rebooter-token-0123456789", &["project:releng:roller:reboot"]);
pub const READER: (&str, &str, &[&str]) = ("reader", "reader-token-0123456789", &["project:releng:roller:jobs:read"]);
/// May create temporary credentials (it holds what it hands out).
pub const ISSUER: (&str, &str, &[&str]) =
    ("issuer", "issuer-token-0123456789", &["project:releng:roller:*", "auth:create-client:tmp-*"]);

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub http: reqwest::Client,
    /// Kept so the directory lives as long as the app.
    data_dir: Option<tempfile::TempDir>,
    pub settings: Settings,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn client_toml(c: (&str, &str, &[&str])) -> String {
    format!(
        "[[auth.clients]]\nclient_id = {:?}\naccess_token = {:?}\nscopes = {:?}\n",
        c.0,
        c.1,
        c.2.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    )
}

/// The config file every test app starts from; `extra` is appended (TOML).
pub fn base_config(extra: &str) -> String {
    let mut s = String::new();
    if !extra.contains("[runner]") {
        s.push_str("[runner]\npoll_interval_ms = 50\nshutdown_grace_secs = 1\n\n");
    }
    // The standing path checks are on by default; a test opts in by naming `[paths]`, so
    // the checker's reads never meet a test that counts a peer's calls.
    if !extra.contains("[paths]") {
        s.push_str("[paths]\nenabled = false\n\n");
    }
    if !extra.contains("[ping]") {
        s.push_str("[ping]\ncount = 2\ninterval_ms = 200\ntimeout_ms = 500\n\n");
    }
    for c in [ADMIN, PINGER, REBOOTER, READER, ISSUER] {
        s.push_str(&client_toml(c));
    }
    s.push_str(extra);
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with("", &[]).await
}

/// Start roller with `base_config(extra)` plus environment overrides `env`.
pub async fn spawn_app_with(extra: &str, env: &[(&str, &str)]) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    let cfg = data_dir.path().join("roller.toml");
    std::fs::write(&cfg, base_config(extra)).unwrap();
    spawn_app_from(data_dir, &cfg, env).await
}

pub async fn spawn_app_from(data_dir: tempfile::TempDir, cfg: &std::path::Path, env: &[(&str, &str)]) -> TestApp {
    let dir = data_dir.path().to_path_buf();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let lookup = move |k: &str| -> Option<String> {
        if let Some((_, v)) = env.iter().find(|(ek, _)| ek == k) {
            return Some(v.clone());
        }
        match k {
            "ROLLER_DATA_DIR" => Some(dir.display().to_string()),
            "ROLLER_BIND" => Some("127.0.0.1:0".into()),
            "CORS_ORIGIN" => Some("https://tc.example.com".into()),
            _ => None,
        }
    };
    let settings = Settings::load(Some(cfg), &lookup).expect("test settings load");
    let app = Application::build(settings.clone()).await.expect("app builds");
    let addr = app.local_addr().expect("serve has an API");
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        addr,
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
        data_dir: Some(data_dir),
        settings,
        shutdown,
        handle: Some(handle),
    }
}

impl TestApp {
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// Stop the app, wait until it has wound down, and hand over its data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), h).await.expect("app stops").unwrap().unwrap();
        }
        self.data_dir.take().expect("the data directory is still there")
    }

    /// A request signed as `client` with a fresh nonce.
    pub async fn signed(
        &self,
        method: Method,
        path_and_query: &str,
        client: (&str, &str, &[&str]),
    ) -> reqwest::Response {
        let h = hawk_header(&method, &self.url(path_and_query), client.0, client.1, None, now());
        self.http.request(method, self.url(path_and_query)).header("Authorization", h).send().await.unwrap()
    }

    pub async fn post_job(&self, worker_id: &str, group: &str, task: &str) -> reqwest::Response {
        let p = format!("/api/v1/workers/{worker_id}/group/{group}/jobs?task_name={task}");
        self.signed(Method::POST, &p, ADMIN).await
    }

    pub async fn get_job(&self, task_id: &str) -> Value {
        let r = self.signed(Method::GET, &format!("/api/v1/jobs/{task_id}"), ADMIN).await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Poll the job until it is in a final state (bounded).
    pub async fn wait_final(&self, task_id: &str) -> Value {
        wait_for(Duration::from_secs(60), || async {
            let j = self.get_job(task_id).await;
            let s = j["state"].as_str().unwrap().to_string();
            (s != "queued" && s != "running").then_some(j)
        })
        .await
        .unwrap_or_else(|| panic!("job {task_id} did not finish in time"))
    }
}

/// Poll `f` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn now() -> SystemTime {
    SystemTime::now()
}

/// `Hawk …` for `url` with the `hawk` crate, as a Taskcluster client would.
pub fn hawk_header(method: &Method, url: &str, id: &str, token: &str, ext: Option<&str>, ts: SystemTime) -> String {
    let u = reqwest::Url::parse(url).unwrap();
    let resource = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    };
    let creds = hawk::Credentials { id: id.to_string(), key: hawk::Key::new(token.as_bytes(), hawk::SHA256).unwrap() };
    let mut b = hawk::RequestBuilder::new(
        method.as_str(),
        u.host_str().unwrap(),
        u.port_or_known_default().unwrap(),
        &resource,
    );
    if let Some(e) = ext {
        b = b.ext(e);
    }
    let header = b.request().make_header_full(&creds, ts, random_nonce()).unwrap();
    format!("Hawk {header}")
}

pub fn random_nonce() -> String {
    use rand::Rng;
    rand::rng().sample_iter(rand::distr::Alphanumeric).take(10).map(char::from).collect()
}

type HmacSha256 = Hmac<Sha256>;

fn hmac_b64(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// Taskcluster temporary credentials, made independently of roller's verifier
/// (taskcluster.md §2.2): returns (hawk id, temporary token, certificate JSON).
pub fn temp_credentials(
    issuer: (&str, &str, &[&str]),
    name: Option<&str>,
    scopes: &[&str],
    start_ms: i64,
    expiry_ms: i64,
) -> (String, String, Value) {
    let seed = format!("{}{}", "a".repeat(22), "b".repeat(22));
    let mut lines = vec!["version:1".to_string()];
    if let Some(n) = name {
        lines.push(format!("clientId:{n}"));
        lines.push(format!("issuer:{}", issuer.0));
    }
    lines.push(format!("seed:{seed}"));
    lines.push(format!("start:{start_ms}"));
    lines.push(format!("expiry:{expiry_ms}"));
    lines.push("scopes:".into());
    lines.extend(scopes.iter().map(|s| s.to_string()));
    let signature = STANDARD.encode(hmac_b64(issuer.1.as_bytes(), lines.join("\n").as_bytes()));
    let token = URL_SAFE_NO_PAD.encode(hmac_b64(issuer.1.as_bytes(), seed.as_bytes()));
    let mut cert = json!({
        "version": 1, "scopes": scopes, "start": start_ms, "expiry": expiry_ms,
        "seed": seed, "signature": signature,
    });
    let id = match name {
        Some(n) => {
            cert["issuer"] = json!(issuer.0);
            n.to_string()
        }
        None => issuer.0.to_string(),
    };
    (id, token, cert)
}

/// `ext` as the web/Rust clients encode it (standard base64) or as the Python client does (URL-safe).
pub fn ext(value: &Value, url_safe: bool) -> String {
    let bytes = serde_json::to_vec(value).unwrap();
    if url_safe { URL_SAFE.encode(bytes) } else { STANDARD.encode(bytes) }
}

pub fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}
