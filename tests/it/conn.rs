//! Connections on real sockets: the header read timeout (a client that sends nothing, half
//! a request or trickles its headers), the idle timeout of a kept-alive connection, the
//! connection cap (a clear 503 beyond it, never a locked-out client, never an fd per
//! stranger), and a SIGTERM that a slowloris client cannot hold up.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::procs::*;

/// Read (and discard) until the server closes the connection; how long that took, or
/// `None` if it was still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let eof = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    eof.await.ok().map(|()| start.elapsed())
}

/// One complete response (headers and a `content-length` body) from a kept-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the response: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    return text;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("a response within 10 s")
}

async fn heartbeat_on(stream: &mut TcpStream, host: &str) -> String {
    let req = format!("GET /__lbheartbeat__ HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    read_response(stream).await
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout_not_the_header_timeout() {
    let app = spawn_app_with("[server]\nheader_read_timeout_secs = 1\nidle_timeout_secs = 3\n", &[]).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let first = heartbeat_on(&mut s, &app.addr.to_string()).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let idle_since = Instant::now();
    // Idle is not reading headers: the 1 s header timeout does not apply.
    assert_eq!(closed_within(&mut s, Duration::from_millis(2000)).await, None, "closed before the idle timeout");
    let again = heartbeat_on(&mut s, &app.addr.to_string()).await;
    assert!(again.starts_with("HTTP/1.1 200"), "still usable within the idle timeout: {again}");
    let idle_since2 = Instant::now();
    let closed = closed_within(&mut s, Duration::from_secs(15)).await;
    assert!(closed.is_some(), "an idle connection stayed open 15 s (idle timeout 3 s)");
    let idle = idle_since2.elapsed();
    assert!(idle >= Duration::from_millis(2800), "closed after {idle:?} idle, before the idle timeout");
    assert!(idle_since.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn a_client_that_sends_nothing_half_a_request_or_trickles_headers_is_closed_after_the_header_timeout() {
    let app = spawn_app_with("[server]\nheader_read_timeout_secs = 1\nidle_timeout_secs = 60\n", &[]).await;
    let start = Instant::now();
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let mut half = TcpStream::connect(app.addr).await.unwrap();
    half.write_all(format!("GET /api/v1/whoami HTTP/1.1\r\nHost: {}\r\nAuthoriz", app.addr).as_bytes()).await.unwrap();
    // Slowloris: a header line that never ends, one byte every 200 ms, each in time.
    let (mut trickle_read, mut trickle_write) = TcpStream::connect(app.addr).await.unwrap().into_split();
    let trickler = tokio::spawn(async move {
        let _ = trickle_write.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").await;
        while trickle_write.write_all(b"a").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let limit = Duration::from_secs(10);
    for (name, s) in [("silent", &mut silent), ("half a request", &mut half)] {
        let closed = closed_within(s, limit).await;
        assert!(closed.is_some(), "{name}: still open after {limit:?} (header timeout 1 s)");
    }
    let mut buf = [0u8; 64];
    let trickle_closed = tokio::time::timeout(limit, async {
        loop {
            match trickle_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(trickle_closed.is_ok(), "a trickling client was never cut off (header timeout 1 s)");
    assert!(start.elapsed() >= Duration::from_millis(900), "closed before the header timeout: {:?}", start.elapsed());
    trickler.abort();
    // Nobody else noticed.
    let r = app.http.get(app.url("/__lbheartbeat__")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// A client with its own connection (no pool shared with the test's other requests).
async fn whoami_fresh(url: &str) -> Result<(u16, Value, Option<String>), reqwest::Error> {
    let full = format!("{url}/api/v1/whoami");
    let h = hawk_header(&Method::GET, &full, ADMIN.0, ADMIN.1, None, now());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).pool_max_idle_per_host(0).build().unwrap();
    let r = client.get(&full).header("Authorization", h).send().await?;
    let status = r.status().as_u16();
    let cors = r.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_string());
    Ok((status, r.json().await.unwrap_or(Value::Null), cors))
}

#[tokio::test]
async fn beyond_the_cap_a_signed_client_is_answered_503_and_served_once_the_idle_ones_time_out() {
    let app =
        spawn_app_with("[server]\nmax_connections = 4\nheader_read_timeout_secs = 2\nidle_timeout_secs = 4\n", &[])
            .await;
    let host = app.addr.to_string();
    // Four served connections, kept alive and idle: the cap.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        assert!(heartbeat_on(&mut s, &host).await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let url = format!("http://{}", app.addr);
    let (status, body, cors) = whoami_fresh(&url).await.expect("an answer, not a dropped connection");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error_code"], "too_many_connections", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("too many connections"), "{body}");
    assert_eq!(cors.as_deref(), Some("https://tc.example.com"), "roller's CORS headers on the refusal");

    // Strangers beyond the cap hold nothing: the first few (the overflow) are answered
    // after their header timeout, the rest closed at once.
    let mut strangers = Vec::new();
    for _ in 0..20 {
        strangers.push(TcpStream::connect(app.addr).await.unwrap());
    }
    let mut quick = 0;
    for s in &mut strangers {
        let closed = closed_within(s, Duration::from_secs(8)).await.expect("a connection beyond the cap stayed open");
        if closed < Duration::from_millis(1500) {
            quick += 1;
        }
    }
    assert!(quick >= 12, "only {quick} of 20 connections beyond the cap were closed at once");

    // The idle ones time out (4 s); then the same client is served.
    let served = wait_for(Duration::from_secs(20), || async {
        match whoami_fresh(&url).await {
            Ok((200, body, _)) => Some(body),
            _ => None,
        }
    })
    .await
    .expect("served once the idle connections timed out");
    assert_eq!(served["client_id"], "admin");
    for s in &mut held {
        assert!(closed_within(s, Duration::from_secs(1)).await.is_some(), "an idle connection outlived its timeout");
    }
}

/// Open file descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn soft_nofile(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_string();
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[3].to_string(), words[4].to_string())
}

#[tokio::test]
async fn a_flood_of_idle_connections_cannot_exhaust_roller_s_descriptors_or_lock_out_a_signed_client() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("roller.toml");
    std::fs::write(
        &cfg,
        base_config("[server]\nmax_connections = 32\nheader_read_timeout_secs = 3\nidle_timeout_secs = 3\n"),
    )
    .unwrap();
    let (c, d) = (cfg.display().to_string(), dir.path().display().to_string());
    // Started as under a 256-descriptor soft limit: the flood below would exhaust it.
    let env = [("ROLLER_CONFIG", c.as_str()), ("ROLLER_DATA_DIR", d.as_str())];
    let roller = start_roller_with("serve", dir.path(), &env, "flood.log", false, Some(256));
    let (soft, hard) = soft_nofile(roller.pid());
    assert_eq!(soft, hard, "the soft open-file limit is raised to the hard one at start");
    let log = std::fs::read_to_string(&roller.log).unwrap();
    assert!(log.contains("open file limit raised to the hard limit"), "{log}");
    let url = roller.url().to_string();
    assert_eq!(whoami_fresh(&url).await.unwrap().0, 200);
    let before = open_fds(roller.pid());

    // 300 connections that never send a byte: more than the cap, and more than the 256
    // descriptors roller was started with.
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let mut flood = Vec::new();
    for _ in 0..300 {
        flood.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = open_fds(roller.pid());
    let bound = before + 32 + 4 + 16;
    assert!(during <= bound, "{during} descriptors open during the flood (before: {before}, bound {bound})");
    // A signed client gets a clear answer or is served; never a hang or a reset.
    let served = wait_for(Duration::from_secs(30), || async {
        match whoami_fresh(&url).await {
            Ok((200, body, _)) => Some(body),
            Ok((503, body, _)) => {
                assert_eq!(body["error_code"], "too_many_connections", "{body}");
                None
            }
            Ok((status, body, _)) => panic!("{status} {body}"),
            Err(_) => None,
        }
    })
    .await;
    assert_eq!(served.expect("served within 30 s of a flood")["client_id"], "admin");
    drop(flood);
    let log = std::fs::read_to_string(&roller.log).unwrap();
    assert!(log.contains("too many connections"), "the refusals are logged: {log}");
    assert!(!log.contains("Too many open files"), "roller ran out of descriptors: {log}");
}

#[tokio::test]
async fn sigterm_completes_within_the_grace_while_a_slowloris_client_holds_a_partial_request() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("roller.toml");
    // Header and idle timeouts far beyond the test: only the shutdown grace can end it.
    std::fs::write(
        &cfg,
        base_config("[server]\nheader_read_timeout_secs = 300\nidle_timeout_secs = 300\nshutdown_grace_secs = 2\n"),
    )
    .unwrap();
    let (c, d) = (cfg.display().to_string(), dir.path().display().to_string());
    let mut roller =
        start_roller("serve", dir.path(), &[("ROLLER_CONFIG", &c), ("ROLLER_DATA_DIR", &d)], "slowloris.log", false);
    let addr: std::net::SocketAddr = roller.url().trim_start_matches("http://").parse().unwrap();
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(format!("POST /api/v1/workers/w1/group/g/jobs HTTP/1.1\r\nHost: {addr}\r\nX-").as_bytes())
        .await
        .unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // Served (so roller is up and has read the partial one's bytes by now).
    assert_eq!(whoami_fresh(roller.url()).await.unwrap().0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let start = Instant::now();
    roller.signal("TERM");
    let status = wait_for(Duration::from_secs(20), || {
        let exited = roller.child.try_wait().unwrap();
        async move { exited }
    })
    .await;
    let took = start.elapsed();
    let status = status.unwrap_or_else(|| panic!("roller still running {took:?} after SIGTERM (grace 2 s)"));
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?} (grace 2 s)");
    for s in [&mut partial, &mut silent] {
        assert!(closed_within(s, Duration::from_secs(1)).await.is_some(), "a connection outlived the process");
    }
    let log = std::fs::read_to_string(&roller.log).unwrap();
    assert!(log.contains("connections still open after the shutdown grace"), "{log}");
}
