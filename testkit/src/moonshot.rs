//! An HP Moonshot iLO Chassis Manager stand-in (no chassis manager firmware is
//! installable): the part of its REST API RelOps calls (reference/fleet-health.md §3),
//! over HTTPS on loopback with a certificate from a throwaway CA.
//!
//! `/rest/v1/Systems/c<N>n1` (the HP data model's `GET, PATCH, POST`):
//!
//! * every request must carry `Authorization: Basic` with the chassis's user and
//!   password, or it is a 401 with an `ExtendedError` body;
//! * `GET` answers the node resource, its power in `Power` (or `PowerState`, or
//!   neither: the field is not verified on real firmware, so tests choose);
//! * `POST` must be exactly `{"Action": "Reset", "ResetType": "ColdReset"}` as JSON;
//!   an unknown `ResetType` is a 400 `ExtendedError` naming it in `MessageArgs`, as is
//!   any other body. A ColdReset powers the node off at once and on again after the
//!   chassis's `outage`; a node that is off is powered on after it too;
//! * `PATCH` must be exactly the one-time PXE boot override
//!   `{"Boot": {"BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "PXE"}}`;
//!   it is recorded and used up by the next power-on.
//!
//! Each node can have a simulated host ([`ChassisBuilder::hosts`]): a loopback TCP
//! listener that is closed while the node is off and open while it is on, so roller's
//! `tcp:<port>` probes see a reset really take the machine down and bring it back.
//! Every request is recorded in order, and the most requests ever in flight at once is
//! kept (each can be held for a while, [`ChassisBuilder::hold`], so a limit shows).

mod tls;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use crate::Serving;

pub const USER: &str = "Administrator";
pub const PASSWORD: &str = "moonshot-pw-canary-45";
/// What RelOps sends and the only reset this stand-in takes.
pub const COLD_RESET: &str = "ColdReset";

/// Where the node resource carries its power (real firmware: not verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerField {
    Power,
    PowerState,
    /// The resource has no power field at all.
    Absent,
}

/// One request as the chassis manager received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    /// The node as the path named it (`c5n1`).
    pub node: String,
    /// The body, when it was JSON.
    pub body: Option<Value>,
    pub status: u16,
}

/// A scripted refusal of every reset: the status and the `ExtendedError` it carries.
#[derive(Debug, Clone)]
struct Refusal {
    status: StatusCode,
    message_id: String,
    args: Vec<String>,
}

struct NodeState {
    on: bool,
    /// Bumped by every reset, so only the latest one's power-on happens.
    generation: u64,
    /// The one-time boot override, until a power-on uses it.
    boot_once: Option<String>,
    /// Power-ons that booted from the network.
    pxe_boots: u32,
    host: Option<Host>,
}

#[derive(Default)]
struct Inner {
    nodes: BTreeMap<u8, NodeState>,
    requests: Vec<Request>,
    refuse_resets: Option<Refusal>,
}

struct Shared {
    user: String,
    password: String,
    power_field: PowerField,
    outage: Duration,
    hold: Duration,
    inner: Mutex<Inner>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A chassis: its credentials, cartridges and how its nodes behave.
pub struct ChassisBuilder {
    user: String,
    password: String,
    cartridges: u8,
    power_field: PowerField,
    outage: Duration,
    hold: Duration,
    hosts: bool,
}

impl Default for ChassisBuilder {
    fn default() -> Self {
        ChassisBuilder {
            user: USER.into(),
            password: PASSWORD.into(),
            cartridges: 45,
            power_field: PowerField::Power,
            outage: Duration::from_secs(4),
            hold: Duration::ZERO,
            hosts: false,
        }
    }
}

impl ChassisBuilder {
    /// Cartridges `1..=n` are installed (a full chassis has 45); others answer 404.
    pub fn cartridges(mut self, n: u8) -> Self {
        self.cartridges = n;
        self
    }

    pub fn power_field(mut self, field: PowerField) -> Self {
        self.power_field = field;
        self
    }

    /// How long a ColdReset keeps the node off (default 4 s).
    pub fn outage(mut self, outage: Duration) -> Self {
        self.outage = outage;
        self
    }

    /// Hold every request this long before answering it.
    pub fn hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }

    /// Give every node a simulated host: a loopback listener open while the node is on.
    pub fn hosts(mut self) -> Self {
        self.hosts = true;
        self
    }

    /// Serve it on a free loopback port (in the current tokio runtime), every node on.
    pub async fn start(self) -> FakeChassis {
        let dir = tempfile::tempdir().expect("a temp dir for the chassis's certificates");
        let certs = tls::certificates(dir.path());
        let mut nodes = BTreeMap::new();
        for n in 1..=self.cartridges {
            let host = if self.hosts { Some(Host::start().await) } else { None };
            nodes.insert(n, NodeState { on: true, generation: 0, boot_once: None, pxe_boots: 0, host });
        }
        let shared = Arc::new(Shared {
            user: self.user,
            password: self.password,
            power_field: self.power_field,
            outage: self.outage,
            hold: self.hold,
            inner: Mutex::new(Inner { nodes, ..Default::default() }),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let listener = tls::TlsListener::bind(&certs).await;
        let port = listener.port();
        let app = axum::Router::new()
            .route("/rest/v1/Systems/{node}", axum::routing::any(system))
            .fallback(|| async { extended_error(StatusCode::NOT_FOUND, "Base.0.10.ResourceMissingAtURI", &[]) })
            .with_state(shared.clone());
        let serving = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the chassis manager stand-in serves");
        });
        FakeChassis { port, ca_file: certs.ca, shared, _dir: Arc::new(dir), _serving: Arc::new(Serving(serving)) }
    }
}

#[derive(Clone)]
pub struct FakeChassis {
    pub port: u16,
    /// The CA that signed the chassis's certificate, for roller's `ca_file`.
    pub ca_file: std::path::PathBuf,
    shared: Arc<Shared>,
    _dir: Arc<tempfile::TempDir>,
    _serving: Arc<Serving>,
}

impl FakeChassis {
    /// A full chassis (45 cartridges) with the default credentials, every node on.
    pub async fn start() -> FakeChassis {
        ChassisBuilder::default().start().await
    }

    pub fn builder() -> ChassisBuilder {
        ChassisBuilder::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn requests(&self) -> Vec<Request> {
        self.inner().requests.clone()
    }

    /// `METHOD node` of every request, in order (`GET c5n1`).
    pub fn calls(&self) -> Vec<String> {
        self.inner().requests.iter().map(|r| format!("{} {}", r.method, r.node)).collect()
    }

    /// The most requests it was ever answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn power_on(&self, cartridge: u8) -> bool {
        self.inner().nodes.get(&cartridge).is_some_and(|n| n.on)
    }

    /// Power the node off (as the chassis's own `set node power off` would): it stays off,
    /// its host silent, until a reset.
    pub fn power_off(&self, cartridge: u8) {
        let mut inner = self.inner();
        let node = inner.nodes.get_mut(&cartridge).expect("an installed cartridge");
        node.on = false;
        node.generation += 1;
        if let Some(h) = &mut node.host {
            h.down();
        }
    }

    /// Power-ons of the node that booted from the network (its one-time override).
    pub fn pxe_boots(&self, cartridge: u8) -> u32 {
        self.inner().nodes.get(&cartridge).map_or(0, |n| n.pxe_boots)
    }

    /// The loopback port of the node's simulated host, if it has one ([`ChassisBuilder::hosts`]).
    pub fn host_port(&self, cartridge: u8) -> Option<u16> {
        self.inner().nodes.get(&cartridge).and_then(|n| n.host.as_ref()).map(|h| h.port)
    }

    /// Answer every reset with `status` and an `ExtendedError` of `message_id` and `args`
    /// (the node is left as it is); `None` takes resets again.
    pub fn refuse_resets(&self, refusal: Option<(u16, &str, &[&str])>) {
        self.inner().refuse_resets = refusal.map(|(status, id, args)| Refusal {
            status: StatusCode::from_u16(status).expect("an HTTP status"),
            message_id: id.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
        });
    }
}

/// The HP data model's error body.
fn extended_error(status: StatusCode, message_id: &str, args: &[String]) -> Response {
    let body = json!({
        "Messages": [{ "MessageArgs": args, "MessageID": message_id }],
        "Name": "Extended Error Information",
        "Type": "ExtendedError.1.0.0",
    });
    (status, axum::Json(body)).into_response()
}

/// `c5n1` or `C5N1` → cartridge 5; node 1 is the only node of the cartridges RelOps runs.
fn cartridge(node: &str) -> Option<u8> {
    let rest = node.strip_prefix(['c', 'C'])?;
    let (c, n) = rest.split_once(['n', 'N'])?;
    (n == "1").then(|| c.parse().ok()).flatten()
}

/// Counts the requests in flight while it lives.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(s: &'a Shared) -> Self {
        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        s.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(s)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn system(
    State(s): State<Arc<Shared>>,
    method: Method,
    Path(node): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _counted = InFlight::enter(&s);
    if !s.hold.is_zero() {
        tokio::time::sleep(s.hold).await;
    }
    let json_body = serde_json::from_slice::<Value>(&body).ok();
    let response = s.answer(&method, &node, &headers, json_body.as_ref(), body.is_empty());
    s.inner.lock().unwrap_or_else(|p| p.into_inner()).requests.push(Request {
        method: method.to_string(),
        node,
        body: json_body,
        status: response.status().as_u16(),
    });
    response
}

impl Shared {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let expected = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.user, self.password));
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .is_some_and(|v| v == expected)
    }

    fn answer(
        self: &Arc<Self>,
        method: &Method,
        node: &str,
        headers: &HeaderMap,
        body: Option<&Value>,
        empty: bool,
    ) -> Response {
        if !self.authorized(headers) {
            let mut r = extended_error(StatusCode::UNAUTHORIZED, "Base.0.10.AccessDenied", &[]);
            r.headers_mut().insert("www-authenticate", "Basic realm=\"iLO Chassis Manager\"".parse().unwrap());
            return r;
        }
        let path = format!("/rest/v1/Systems/{node}");
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = cartridge(node).filter(|c| inner.nodes.contains_key(c)) else {
            return extended_error(StatusCode::NOT_FOUND, "Base.0.10.ResourceMissingAtURI", &[path]);
        };
        let json_sent = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
        if *method != Method::GET && (!json_sent || body.is_none()) {
            return extended_error(StatusCode::BAD_REQUEST, "Base.0.10.MalformedJSON", &[]);
        }
        if *method == Method::GET {
            if !empty {
                return extended_error(StatusCode::BAD_REQUEST, "Base.0.10.UnrecognizedRequestBody", &[]);
            }
            return axum::Json(self.resource(node, &inner.nodes[&c])).into_response();
        }
        let body = body.expect("checked above");
        if *method == Method::PATCH {
            let want = json!({"Boot": {"BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "PXE"}});
            if *body != want {
                return bad_value(body, &["Boot"], &want);
            }
            inner.nodes.get_mut(&c).expect("checked above").boot_once = Some("PXE".into());
            return success();
        }
        if *method != Method::POST {
            return extended_error(StatusCode::METHOD_NOT_ALLOWED, "Base.0.10.OperationNotAllowed", &[]);
        }
        let want = json!({"Action": "Reset", "ResetType": COLD_RESET});
        if *body != want {
            return bad_value(body, &["Action", "ResetType"], &want);
        }
        if let Some(r) = &inner.refuse_resets {
            return extended_error(r.status, &r.message_id, &r.args);
        }
        let state = inner.nodes.get_mut(&c).expect("checked above");
        state.on = false;
        state.generation += 1;
        if let Some(h) = &mut state.host {
            h.down();
        }
        let (generation, me) = (state.generation, self.clone());
        tokio::spawn(async move {
            tokio::time::sleep(me.outage).await;
            me.power_on(c, generation).await;
        });
        success()
    }

    async fn power_on(&self, c: u8, generation: u64) {
        let host_port = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let Some(state) = inner.nodes.get_mut(&c).filter(|s| s.generation == generation) else { return };
            state.on = true;
            if state.boot_once.take().is_some() {
                state.pxe_boots += 1;
            }
            state.host.as_ref().map(|h| h.port)
        };
        // Bound outside the lock; a later reset may have taken the node down again meanwhile.
        if let Some(port) = host_port {
            let serving = Host::listen(port).await;
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(state) = inner.nodes.get_mut(&c).filter(|s| s.generation == generation && s.on)
                && let Some(h) = &mut state.host
            {
                h.serving = Some(serving);
            }
        }
    }

    fn resource(&self, node: &str, state: &NodeState) -> Value {
        let power = if state.on { "On" } else { "Off" };
        let mut v = json!({
            "Id": node,
            "Type": "ComputerSystem.0.9.5",
            "Name": format!("Cartridge {}", node.to_ascii_lowercase()),
            "Boot": {
                "BootSourceOverrideEnabled": if state.boot_once.is_some() { "Once" } else { "Disabled" },
                "BootSourceOverrideTarget": state.boot_once.as_deref().unwrap_or("None"),
            },
            "links": { "self": { "href": format!("/rest/v1/Systems/{node}") } },
        });
        match self.power_field {
            PowerField::Power => v["Power"] = json!(power),
            PowerField::PowerState => v["PowerState"] = json!(power),
            PowerField::Absent => {}
        }
        v
    }
}

fn success() -> Response {
    axum::Json(json!({"Messages": [{"MessageID": "Base.0.10.Success"}], "Type": "ExtendedError.1.0.0"})).into_response()
}

/// A 400 naming what is wrong with `body` against `want`: an unknown property, or a
/// value not in the list (`MessageArgs`: the value, the property).
fn bad_value(body: &Value, known: &[&str], want: &Value) -> Response {
    let Some(fields) = body.as_object() else {
        return extended_error(StatusCode::BAD_REQUEST, "Base.0.10.MalformedJSON", &[]);
    };
    if let Some(unknown) = fields.keys().find(|k| !known.contains(&k.as_str())) {
        return extended_error(StatusCode::BAD_REQUEST, "Base.0.10.PropertyUnknown", std::slice::from_ref(unknown));
    }
    for k in known {
        if fields.get(*k) != want.get(*k) {
            let value = fields.get(*k).map_or_else(|| "(missing)".to_string(), |v| v.to_string());
            return extended_error(
                StatusCode::BAD_REQUEST,
                "Base.0.10.PropertyValueNotInList",
                &[value, k.to_string()],
            );
        }
    }
    extended_error(StatusCode::BAD_REQUEST, "Base.0.10.MalformedJSON", &[])
}

/// A node's simulated host: a loopback listener that accepts and drops connections
/// while the node is on, closed (connections refused) while it is off.
struct Host {
    port: u16,
    serving: Option<Serving>,
}

impl Host {
    async fn start() -> Host {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port for a node's host");
        let port = listener.local_addr().expect("its address").port();
        Host { port, serving: Some(Self::serve(listener)) }
    }

    /// Listen on `port` again. Tokio sets SO_REUSEADDR, so the port is free at once; a
    /// failed bind (someone else took it meanwhile) is tried again, boundedly.
    async fn listen(port: u16) -> Serving {
        for _ in 0..100 {
            if let Ok(l) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                return Self::serve(l);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the node's host port {port} stayed taken");
    }

    fn serve(listener: tokio::net::TcpListener) -> Serving {
        Serving(tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                drop(conn);
            }
        }))
    }

    /// Closed: dropping the task drops the listener.
    fn down(&mut self) {
        self.serving = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_read_as_relops_and_hp_write_them() {
        assert_eq!(cartridge("c5n1"), Some(5));
        assert_eq!(cartridge("C45N1"), Some(45));
        assert_eq!(cartridge("c5n2"), None);
        assert_eq!(cartridge("5"), None);
    }
}
