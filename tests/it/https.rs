//! roller serving HTTPS itself (`[server] tls_cert_file` / `tls_key_file`), judged by real
//! TLS clients: reqwest trusting only the test CA, curl and `openssl s_client` (OpenSSL,
//! nothing of roller's), and roller's own CLI with `--ca-file`. Certificates come from
//! testkit's PKI (rcgen); the SIGHUP reload is tested on the real binary.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use roller_testkit::tls::{Issued, Pki};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::procs::*;

fn tls_config(cert: &Issued) -> String {
    format!(
        "[server]\ntls_cert_file = {:?}\ntls_key_file = {:?}\nheader_read_timeout_secs = 1\n",
        cert.cert.display().to_string(),
        cert.key.display().to_string()
    )
}

/// A client that trusts only `ca` (no system roots) and reports the server's certificate.
fn https_client(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).unwrap())
        .tls_info(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn signed_https(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    client: (&str, &str, &[&str]),
) -> (u16, Value) {
    let url = format!("{base}{path}");
    let h = hawk_header(&method, &url, client.0, client.1, None, now());
    let r = http.request(method, &url).header("Authorization", h).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Read until the server closes the connection (bounded): `true` if it did.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// `curl` over HTTPS trusting `ca`: (HTTP status, body), or curl's complaint. Async: the
/// in-process roller shares the test's runtime.
async fn curl(ca: &Path, url: &str) -> Result<(u16, String), String> {
    curl_with(ca, url, &[]).await
}

/// [`curl`], sending these extra header lines (`-H`).
async fn curl_with(ca: &Path, url: &str, headers: &[&str]) -> Result<(u16, String), String> {
    let out = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(headers.iter().flat_map(|h| ["-H", h]))
        .arg("--cacert")
        .arg(ca)
        .args(["--write-out", "\n%{http_code}", url])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("curl runs (apt-get install curl)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    Ok((code.trim().parse().unwrap(), body.to_string()))
}

/// The subject `openssl s_client` sees from `addr`, trusting `ca`.
async fn openssl_subject(ca: &Path, addr: &str) -> String {
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", addr, "-verify_return_error", "-CAfile"])
        .arg(ca)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("openssl runs (apt-get install openssl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("Verify return code: 0 (ok)"), "openssl did not verify the server: {text}");
    text.lines().find(|l| l.starts_with("subject=")).unwrap_or_default().to_string()
}

#[tokio::test]
async fn hawk_signed_requests_work_over_https_and_independent_clients_agree() {
    let pki = Pki::new("roller test CA");
    let cert = pki.server("roller");
    let app = spawn_app_with(&tls_config(&cert), &[]).await;
    let base = format!("https://{}", app.addr);
    let http = https_client(pki.ca());

    // The MAC covers host and port, not the scheme: a request signed for https://host:port verifies.
    let (s, who) = signed_https(&http, &base, Method::GET, "/api/v1/whoami", PINGER).await;
    assert_eq!(s, 200, "{who}");
    assert_eq!(who["client_id"], "pinger");
    let (s, job) =
        signed_https(&http, &base, Method::POST, "/api/v1/workers/127.0.0.1/group/g/jobs?task_name=ping", ADMIN).await;
    assert_eq!(s, 201, "{job}");
    let id = job["task_id"].as_str().unwrap().to_string();
    let done = wait_for(Duration::from_secs(60), || async {
        let (_, j) = signed_https(&http, &base, Method::GET, &format!("/api/v1/jobs/{id}"), ADMIN).await;
        (j["state"] == "succeeded").then_some(j)
    })
    .await;
    assert!(done.is_some(), "the ping job over HTTPS never succeeded");
    // A bad signature is still a 403 over TLS: the MAC is checked, not skipped.
    let (s, _) = signed_https(&http, &base, Method::GET, "/api/v1/whoami", ("pinger", "not-the-token", &[])).await;
    assert_eq!(s, 403);

    // curl (OpenSSL) trusts the same CA and is served; without the CA it refuses the server.
    let (code, body) = curl(pki.ca(), &format!("{base}/__lbheartbeat__")).await.expect("curl over HTTPS");
    assert_eq!(code, 200, "{body}");
    let foreign = Pki::new("some other CA");
    let refused = curl(foreign.ca(), &format!("{base}/__lbheartbeat__")).await.expect_err("curl trusts a foreign CA");
    assert!(refused.contains("certificate"), "{refused}");
    // A control byte in a header: roller's JSON 400 over TLS too, naming the header.
    let (code, body) = curl_with(pki.ca(), &format!("{base}/__lbheartbeat__"), &["X-Trace: a\x01b"])
        .await
        .expect("curl sends a control byte in a header");
    assert_eq!(code, 400, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(body["error_code"], "invalid_header", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("header 'X-Trace'"), "{body}");
    assert!(openssl_subject(pki.ca(), &app.addr.to_string()).await.contains(&cert.common_name));
    // The certificate reqwest was shown is the configured one, byte for byte.
    let r = http.get(format!("{base}/__lbheartbeat__")).send().await.unwrap();
    let info = r.extensions().get::<reqwest::tls::TlsInfo>().expect("tls info");
    assert_eq!(info.peer_certificate(), Some(leaf_der(&cert.cert).as_slice()));
}

fn leaf_der(pem: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(pem).unwrap().next().unwrap().unwrap().to_vec()
}

#[tokio::test]
async fn plain_http_to_the_https_port_is_answered_400_and_the_server_keeps_serving() {
    let pki = Pki::new("roller test CA");
    let app = spawn_app_with(&tls_config(&pki.server("roller")), &[]).await;
    // reqwest speaking plain HTTP: a clean 400 with roller's error body, not a reset.
    let r = reqwest::Client::new().get(format!("http://{}/__heartbeat__", app.addr)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_code"], "https_required", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("https://"), "{body}");
    // Bytes that are neither TLS nor HTTP: closed, and nothing else notices.
    let mut junk = TcpStream::connect(app.addr).await.unwrap();
    junk.write_all(b"\x00\x01\x02 hello?\r\n\r\n").await.unwrap();
    assert!(closed_within(&mut junk, Duration::from_secs(15)).await, "junk left open");
    let (code, _) = curl(pki.ca(), &format!("https://{}/__lbheartbeat__", app.addr)).await.expect("still serving");
    assert_eq!(code, 200);
}

#[tokio::test]
async fn a_handshake_that_stalls_is_closed_by_the_header_read_timeout_without_holding_anyone_up() {
    let pki = Pki::new("roller test CA");
    let app = spawn_app_with(&tls_config(&pki.server("roller")), &[]).await;
    // One connection sends nothing; another starts a ClientHello (record header and a few
    // bytes of a 512-byte body) and stops.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let mut half = TcpStream::connect(app.addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]).await.unwrap();
    // Both are pending in their own tasks: the accept loop serves everyone else meanwhile.
    let http = https_client(pki.ca());
    let r = http.get(format!("https://{}/__lbheartbeat__", app.addr)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Both are closed by the 1 s header read timeout (bounded wait, no timing claim).
    assert!(closed_within(&mut silent, Duration::from_secs(15)).await, "a silent TLS client was never closed");
    assert!(closed_within(&mut half, Duration::from_secs(15)).await, "a stalled handshake was never closed");
    let r = http.get(format!("https://{}/__lbheartbeat__", app.addr)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Overwrite the pair roller was started with by `next` (what an operator's renewal does).
fn install(from: &Issued, to: &Issued) {
    std::fs::copy(&from.cert, &to.cert).unwrap();
    std::fs::copy(&from.key, &to.key).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_a_bad_pair_is_refused_keeping_the_old_one() {
    let pki = Pki::new("roller test CA");
    let first = pki.server("live");
    let second = pki.server("renewed");
    let dir = tempfile::tempdir().unwrap();
    let env =
        [("ROLLER_TLS_CERT_FILE", first.cert.to_str().unwrap()), ("ROLLER_TLS_KEY_FILE", first.key.to_str().unwrap())];
    let roller = start_roller("serve", dir.path(), &env, "serve.log", true);
    let url = roller.url().to_string();
    assert!(url.starts_with("https://"), "the banner says https: {:?}", roller.banner);
    let addr = url.trim_start_matches("https://").to_string();
    let ca = pki.ca().to_path_buf();
    let served = |url: String| {
        // A new client each time: a full handshake (a resumed TLS session would carry the
        // certificate of the session it resumes).
        let http = https_client(&ca);
        async move {
            let r = http.get(format!("{url}/__lbheartbeat__")).send().await.ok()?;
            r.extensions().get::<reqwest::tls::TlsInfo>()?.peer_certificate().map(<[u8]>::to_vec)
        }
    };
    assert_eq!(served(url.clone()).await, Some(leaf_der(&first.cert)));

    install(&second, &first);
    roller.signal("HUP");
    let want = leaf_der(&second.cert);
    let renewed = wait_for(Duration::from_secs(30), || {
        let (probe, want) = (served(url.clone()), want.clone());
        async move { (probe.await == Some(want)).then_some(()) }
    })
    .await;
    assert!(renewed.is_some(), "new connections never saw the renewed certificate");
    assert!(openssl_subject(pki.ca(), &addr).await.contains(&second.common_name));

    // A key that is not the certificate's: refused, named in the log, the renewed pair kept.
    let stranger = pki.server("stranger");
    std::fs::copy(&stranger.key, &first.key).unwrap();
    roller.signal("HUP");
    let logged = wait_for(Duration::from_secs(30), || async {
        let log = std::fs::read_to_string(&roller.log).unwrap_or_default();
        log.lines().find(|l| l.contains("TLS certificate reload failed")).map(str::to_string)
    })
    .await
    .expect("the failed reload is logged");
    assert!(logged.contains(&first.key.display().to_string()), "the error names the key file: {logged}");
    assert_eq!(served(url.clone()).await, Some(leaf_der(&second.cert)), "the good pair stays");
    // And a missing file is the same: refused, old pair kept.
    std::fs::remove_file(&first.cert).unwrap();
    roller.signal("HUP");
    let missing = wait_for(Duration::from_secs(30), || async {
        let log = std::fs::read_to_string(&roller.log).unwrap_or_default();
        log.lines().find(|l| l.contains("cannot read")).map(str::to_string)
    })
    .await
    .expect("the missing file is logged");
    assert!(missing.contains(&first.cert.display().to_string()), "{missing}");
    assert_eq!(served(url.clone()).await, Some(leaf_der(&second.cert)));
}

/// `roller jobs` with its arguments, as a process: (exit code, stdout, stderr).
fn roller_cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_roller"));
    cmd.args(args).env_remove("ROLLER_CA_FILE").env_remove("SSL_CERT_FILE").stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("roller runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_talks_to_an_https_roller_through_its_ca_file() {
    let pki = Pki::new("roller test CA");
    let cert = pki.server("roller");
    let dir = tempfile::tempdir().unwrap();
    let env =
        [("ROLLER_TLS_CERT_FILE", cert.cert.to_str().unwrap()), ("ROLLER_TLS_KEY_FILE", cert.key.to_str().unwrap())];
    let roller = start_roller("serve", dir.path(), &env, "serve.log", true);
    let url = roller.url().to_string();
    let creds = dir.path().join(".local/share/roller/admin-credentials.json");
    let creds = creds.to_str().unwrap();
    // The banner's own commands use https://.
    assert!(roller.banner.iter().any(|l| l.contains(&format!("--url {url}"))), "{:?}", roller.banner);
    let ca = pki.ca().to_str().unwrap();

    let (code, out, err) = roller_cli(
        &["jobs", "--url", &url, "--credentials", creds, "--ca-file", ca, "enqueue", "ping", "127.0.0.1", "--wait"],
        &[],
    );
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert!(out.contains("succeeded"), "{out}");
    // ROLLER_CA_FILE does the same.
    let (code, out, err) =
        roller_cli(&["jobs", "--url", &url, "--credentials", creds, "list", "127.0.0.1"], &[("ROLLER_CA_FILE", ca)]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert!(out.contains("ping"), "{out}");
    // Without it the private CA is not trusted: a clear failure, exit 2.
    let (code, _, err) = roller_cli(&["jobs", "--url", &url, "--credentials", creds, "list", "127.0.0.1"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot reach roller") && err.to_lowercase().contains("certificate"), "{err}");
    // A CA file that is not one: said plainly.
    let (code, _, err) = roller_cli(
        &["jobs", "--url", &url, "--credentials", creds, "--ca-file", cert.key.to_str().unwrap(), "list", "127.0.0.1"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("holds no PEM certificate"), "{err}");
}

#[tokio::test]
async fn beyond_the_connection_cap_an_https_client_gets_the_503_over_tls() {
    let pki = Pki::new("roller test CA");
    let extra = format!(
        "{}max_connections = 1\n",
        tls_config(&pki.server("roller")).replace("header_read_timeout_secs = 1\n", "")
    );
    let app = spawn_app_with(&extra, &[]).await;
    let url = format!("https://{}/__lbheartbeat__", app.addr);
    // The one served connection, kept alive in this client's pool.
    let holder = https_client(pki.ca());
    assert_eq!(holder.get(&url).send().await.unwrap().status(), 200);
    // Another client: handshake, then roller's JSON 503, over TLS.
    let r = https_client(pki.ca()).get(&url).send().await.expect("an answer, not a reset");
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_code"], "too_many_connections", "{body}");
}
