//! The web dashboard: one page, its scripts and its style sheet, compiled into
//! the binary (no CDN, nothing to deploy beside roller). The page is a client
//! like any other: it signs every API request with Hawk in the browser
//! (WebCrypto) with the credentials the operator typed, so it can do exactly
//! what those credentials' scopes allow and nothing more.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
/// Fleet health (the home view) and a machine's health facts; uses `app.js`'s helpers.
const HEALTH_SCRIPT: &str = include_str!("dashboard/health.js");
/// The machine list (trouble first, filters in the URL, the bulk action).
const FLEET_SCRIPT: &str = include_str!("dashboard/fleet.js");
/// One machine's page (facts, paths, plan, its tasks with the confirmation rail).
const MACHINE_SCRIPT: &str = include_str!("dashboard/machine.js");
const STYLE: &str = include_str!("dashboard/app.css");

/// Only our own script, style and API: an injected `<script>` or a stray
/// third-party request would run with the operator's credentials in reach.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The assets change with the binary; revalidating is cheap and never serves a stale script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    res
}

pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn health_script() -> Response {
    asset("text/javascript; charset=utf-8", HEALTH_SCRIPT)
}

pub async fn fleet_script() -> Response {
    asset("text/javascript; charset=utf-8", FLEET_SCRIPT)
}

pub async fn machine_script() -> Response {
    asset("text/javascript; charset=utf-8", MACHINE_SCRIPT)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}
