//! A XenAPI stand-in (xapi is not installable here; test-peers.md §5): an
//! XML-RPC server on loopback that answers the calls `xenapi_reboot` makes, as
//! the XenAPI reference describes them, every answer wrapped in `{Status,
//! Value}` or `{Status: "Failure", ErrorDescription}`. It checks what it gets:
//! the user and password, that every VM call carries a live session, that
//! `VM.start` gets its two booleans and a halted VM, and it records the calls
//! and logouts so tests see the whole conversation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::post;
use dxr::{MethodCall, MethodResponse, Value};

pub const USER: &str = "root";
pub const PASSWORD: &str = "xen-pw-canary-81";
pub const VM_UUID: &str = "2b8f0e2a-7c1d-4d55-9a53-0f1c2d3e4f50";
const VM_REF: &str = "OpaqueRef:8d3c0f1e-vm";

#[derive(Default)]
struct Inner {
    sessions: Vec<String>,
    logouts: usize,
    calls: Vec<String>,
    running: bool,
    /// The guest has no PV tools: `clean_shutdown` fails.
    clean_fails: bool,
    logins: usize,
}

#[derive(Clone)]
pub struct FakeXen {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

fn success(v: Value) -> Value {
    Value::Struct(BTreeMap::from([("Status".into(), Value::String("Success".into())), ("Value".into(), v)]))
}

fn failure(description: &[&str]) -> Value {
    Value::Struct(BTreeMap::from([
        ("Status".into(), Value::String("Failure".into())),
        ("ErrorDescription".into(), Value::Array(description.iter().map(|d| Value::String(d.to_string())).collect())),
    ]))
}

fn text(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

async fn rpc(State(x): State<FakeXen>, body: String) -> ([(&'static str, &'static str); 1], String) {
    let answer = match MethodCall::from_xml(&body) {
        Ok(call) => x.answer(&call.name, &call.params),
        Err(_) => failure(&["MESSAGE_PARAMETER_COUNT_MISMATCH", "unparseable call"]),
    };
    let xml = MethodResponse { value: answer }.to_xml().unwrap();
    ([("content-type", "text/xml")], format!("<?xml version=\"1.0\"?>\n{xml}"))
}

impl FakeXen {
    pub async fn start() -> FakeXen {
        let inner = Arc::new(Mutex::new(Inner { running: true, ..Default::default() }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let x = FakeXen { url, inner };
        let app = axum::Router::new().route("/", post(rpc)).with_state(x.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        x
    }

    fn answer(&self, method: &str, p: &[Value]) -> Value {
        let mut s = self.inner.lock().unwrap();
        s.calls.push(method.to_string());
        if method == "session.login_with_password" {
            s.logins += 1;
            return match (text(p.first()), text(p.get(1))) {
                (Some(USER), Some(PASSWORD)) => {
                    let session = format!("OpaqueRef:session-{}", s.logins);
                    s.sessions.push(session.clone());
                    success(Value::String(session))
                }
                (Some(u), Some(_)) => failure(&["SESSION_AUTHENTICATION_FAILED", u, "Authentication failure"]),
                _ => failure(&["MESSAGE_PARAMETER_COUNT_MISMATCH", method, "2", "0"]),
            };
        }
        let Some(session) = text(p.first()).map(str::to_string) else {
            return failure(&["MESSAGE_PARAMETER_COUNT_MISMATCH", method]);
        };
        if !s.sessions.contains(&session) {
            return failure(&["SESSION_INVALID", &session]);
        }
        let vm_ok = |p: &[Value]| text(p.get(1)) == Some(VM_REF);
        match method {
            "session.logout" => {
                s.sessions.retain(|x| *x != session);
                s.logouts += 1;
                success(Value::String(String::new()))
            }
            "VM.get_by_uuid" => match text(p.get(1)) {
                Some(VM_UUID) => success(Value::String(VM_REF.into())),
                Some(other) => failure(&["UUID_INVALID", "VM", other]),
                None => failure(&["MESSAGE_PARAMETER_COUNT_MISMATCH", method, "2", "1"]),
            },
            "VM.get_power_state" if vm_ok(p) => {
                success(Value::String(if s.running { "Running" } else { "Halted" }.into()))
            }
            "VM.clean_shutdown" | "VM.hard_shutdown" | "VM.get_power_state" if !vm_ok(p) => {
                failure(&["HANDLE_INVALID", "VM"])
            }
            "VM.clean_shutdown" if s.clean_fails => failure(&["VM_MISSING_PV_DRIVERS", VM_REF]),
            "VM.clean_shutdown" | "VM.hard_shutdown" if !s.running => {
                failure(&["VM_BAD_POWER_STATE", VM_REF, "running", "halted"])
            }
            "VM.clean_shutdown" | "VM.hard_shutdown" => {
                s.running = false;
                success(Value::String(String::new()))
            }
            "VM.start" => match (vm_ok(p), p.get(2), p.get(3)) {
                (true, Some(Value::Boolean(false)), Some(Value::Boolean(false))) if !s.running => {
                    s.running = true;
                    success(Value::String(String::new()))
                }
                (true, Some(Value::Boolean(_)), Some(Value::Boolean(_))) if s.running => {
                    failure(&["VM_BAD_POWER_STATE", VM_REF, "halted", "running"])
                }
                _ => failure(&["MESSAGE_PARAMETER_COUNT_MISMATCH", method, "4"]),
            },
            _ => failure(&["MESSAGE_METHOD_UNKNOWN", method]),
        }
    }

    pub fn set_clean_fails(&self, fails: bool) {
        self.inner.lock().unwrap().clean_fails = fails;
    }

    /// The VM halted behind roller's back.
    pub fn halt(&self) {
        self.inner.lock().unwrap().running = false;
    }

    pub fn running(&self) -> bool {
        self.inner.lock().unwrap().running
    }

    pub fn calls(&self) -> Vec<String> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// Sessions opened and not closed.
    pub fn open_sessions(&self) -> usize {
        self.inner.lock().unwrap().sessions.len()
    }
}
