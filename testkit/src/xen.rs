//! A XenAPI stand-in (xapi is not installable here; test-peers.md §5): a pool master's
//! XML-RPC endpoint on loopback that answers the calls `xenapi_reboot` makes, as the XenAPI
//! reference describes them, every answer wrapped in `{Status, Value}` or
//! `{Status: "Failure", ErrorDescription}`.
//!
//! It checks what it gets: the user and password, that every VM call carries a live
//! session, that the VM reference is one it handed out, that `VM.start` gets its two
//! booleans and a halted VM. It records the calls and open sessions, so tests see the
//! whole conversation and that every path logged out.
//!
//! One VM ([`FakeXen::start`]) for the tests; any number ([`XenBuilder`]) for the
//! benchmark's thousands of concurrent reboots, with a hook called on every `VM.start`
//! (there, the simulated host comes back a minute later).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::post;
use dxr::{MethodCall, MethodResponse, Value};

use crate::Serving;

pub const USER: &str = "root";
pub const PASSWORD: &str = "xen-pw-canary-81";
/// The one VM of [`FakeXen::start`].
pub const VM_UUID: &str = "2b8f0e2a-7c1d-4d55-9a53-0f1c2d3e4f50";

/// Called with a VM's uuid each time `VM.start` starts it, outside the stand-in's lock and
/// inside the server's tokio runtime (so it may spawn tasks).
pub type OnStart = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
struct Inner {
    /// Live session references.
    sessions: HashSet<String>,
    next_session: u64,
    calls: Vec<String>,
    /// VM uuid → running.
    vms: HashMap<String, bool>,
    /// The guests have no PV tools: `clean_shutdown` fails.
    clean_fails: bool,
    starts: u64,
}

/// The server's state (what its handler sees).
struct Shared {
    inner: Mutex<Inner>,
    user: String,
    password: String,
    on_start: Option<OnStart>,
}

#[derive(Clone)]
pub struct FakeXen {
    pub url: String,
    shared: Arc<Shared>,
    _serving: Arc<Serving>,
}

/// A pool of VMs with their credentials; [`FakeXen::start`] is the one-VM default.
pub struct XenBuilder {
    user: String,
    password: String,
    vms: HashMap<String, bool>,
    on_start: Option<OnStart>,
}

impl Default for XenBuilder {
    fn default() -> Self {
        XenBuilder { user: USER.into(), password: PASSWORD.into(), vms: HashMap::new(), on_start: None }
    }
}

impl XenBuilder {
    /// The only user and password `session.login_with_password` accepts
    /// (default [`USER`], [`PASSWORD`]).
    pub fn credentials(mut self, user: &str, password: &str) -> Self {
        self.user = user.into();
        self.password = password.into();
        self
    }

    /// A VM, running or halted.
    pub fn vm(mut self, uuid: &str, running: bool) -> Self {
        self.vms.insert(uuid.into(), running);
        self
    }

    pub fn on_start(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_start = Some(Arc::new(hook));
        self
    }

    /// Serve it on a free loopback port (in the current tokio runtime).
    pub async fn start(self) -> FakeXen {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner { vms: self.vms, ..Default::default() }),
            user: self.user,
            password: self.password,
            on_start: self.on_start,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port for XenAPI");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let app = axum::Router::new().route("/", post(rpc)).with_state(shared.clone());
        let serving =
            tokio::spawn(async move { axum::serve(listener, app).await.expect("the XenAPI stand-in serves") });
        FakeXen { url, shared, _serving: Arc::new(Serving(serving)) }
    }
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

/// The opaque reference `VM.get_by_uuid` hands out for a VM.
fn vm_ref(uuid: &str) -> String {
    format!("OpaqueRef:vm-{uuid}")
}

async fn rpc(State(x): State<Arc<Shared>>, body: String) -> ([(&'static str, &'static str); 1], String) {
    let (answer, started) = match MethodCall::from_xml(&body) {
        Ok(call) => x.answer(&call.name, &call.params),
        Err(_) => (failure(&["MESSAGE_PARAMETER_COUNT_MISMATCH", "unparseable call"]), None),
    };
    if let (Some(uuid), Some(hook)) = (started, &x.on_start) {
        hook(&uuid);
    }
    let xml = MethodResponse { value: answer }.to_xml().expect("an XML-RPC answer");
    ([("content-type", "text/xml")], format!("<?xml version=\"1.0\"?>\n{xml}"))
}

impl Shared {
    /// The answer to one call, and the uuid of the VM it started, if it started one.
    fn answer(&self, method: &str, p: &[Value]) -> (Value, Option<String>) {
        let mut s = self.inner.lock().expect("the stand-in's lock");
        s.calls.push(method.to_string());
        if method == "session.login_with_password" {
            let answer = match (text(p.first()), text(p.get(1))) {
                (Some(u), Some(pw)) if u == self.user && pw == self.password => {
                    s.next_session += 1;
                    let session = format!("OpaqueRef:session-{}", s.next_session);
                    s.sessions.insert(session.clone());
                    success(Value::String(session))
                }
                (Some(u), Some(_)) => failure(&["SESSION_AUTHENTICATION_FAILED", u, "Authentication failure"]),
                _ => failure(&["MESSAGE_PARAMETER_COUNT_MISMATCH", method, "2", "0"]),
            };
            return (answer, None);
        }
        let Some(session) = text(p.first()).map(str::to_string) else {
            return (failure(&["MESSAGE_PARAMETER_COUNT_MISMATCH", method]), None);
        };
        if !s.sessions.contains(&session) {
            return (failure(&["SESSION_INVALID", &session]), None);
        }
        // The VM a VM call names by reference, if it is one this pool handed out.
        let vm = text(p.get(1))
            .and_then(|r| r.strip_prefix("OpaqueRef:vm-"))
            .filter(|uuid| s.vms.contains_key(*uuid))
            .map(str::to_string);
        let answer = match (method, vm) {
            ("session.logout", _) => {
                s.sessions.remove(&session);
                success(Value::String(String::new()))
            }
            ("VM.get_by_uuid", _) => match text(p.get(1)) {
                Some(uuid) if s.vms.contains_key(uuid) => success(Value::String(vm_ref(uuid))),
                Some(other) => failure(&["UUID_INVALID", "VM", other]),
                None => failure(&["MESSAGE_PARAMETER_COUNT_MISMATCH", method, "2", "1"]),
            },
            ("VM.get_power_state" | "VM.clean_shutdown" | "VM.hard_shutdown" | "VM.start", None) => {
                failure(&["HANDLE_INVALID", "VM"])
            }
            ("VM.get_power_state", Some(vm)) => {
                success(Value::String(if s.vms[&vm] { "Running" } else { "Halted" }.into()))
            }
            ("VM.clean_shutdown", Some(vm)) if s.clean_fails => failure(&["VM_MISSING_PV_DRIVERS", &vm_ref(&vm)]),
            ("VM.clean_shutdown" | "VM.hard_shutdown", Some(vm)) if !s.vms[&vm] => {
                failure(&["VM_BAD_POWER_STATE", &vm_ref(&vm), "running", "halted"])
            }
            ("VM.clean_shutdown" | "VM.hard_shutdown", Some(vm)) => {
                s.vms.insert(vm, false);
                success(Value::String(String::new()))
            }
            ("VM.start", Some(vm)) => match (p.get(2), p.get(3)) {
                // start_paused = false, force = false: what a reboot must ask for.
                (Some(Value::Boolean(false)), Some(Value::Boolean(false))) if !s.vms[&vm] => {
                    s.vms.insert(vm.clone(), true);
                    s.starts += 1;
                    return (success(Value::String(String::new())), Some(vm));
                }
                (Some(Value::Boolean(_)), Some(Value::Boolean(_))) if s.vms[&vm] => {
                    failure(&["VM_BAD_POWER_STATE", &vm_ref(&vm), "halted", "running"])
                }
                _ => failure(&["MESSAGE_PARAMETER_COUNT_MISMATCH", method, "4"]),
            },
            _ => failure(&["MESSAGE_METHOD_UNKNOWN", method]),
        };
        (answer, None)
    }
}

impl FakeXen {
    /// One running VM, [`VM_UUID`], behind [`USER`] and [`PASSWORD`].
    pub async fn start() -> FakeXen {
        Self::builder().vm(VM_UUID, true).start().await
    }

    pub fn builder() -> XenBuilder {
        XenBuilder::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().expect("the stand-in's lock")
    }

    pub fn set_clean_fails(&self, fails: bool) {
        self.inner().clean_fails = fails;
    }

    /// [`VM_UUID`] halted behind roller's back.
    pub fn halt(&self) {
        self.set_vm_running(VM_UUID, false);
    }

    /// Whether [`VM_UUID`] runs.
    pub fn running(&self) -> bool {
        self.vm_running(VM_UUID)
    }

    /// Set a VM's power behind roller's back.
    pub fn set_vm_running(&self, uuid: &str, running: bool) {
        let mut s = self.inner();
        let vm = s.vms.get_mut(uuid).unwrap_or_else(|| panic!("no VM {uuid} in this pool"));
        *vm = running;
    }

    pub fn vm_running(&self, uuid: &str) -> bool {
        *self.inner().vms.get(uuid).unwrap_or_else(|| panic!("no VM {uuid} in this pool"))
    }

    /// Every method called, in order.
    pub fn calls(&self) -> Vec<String> {
        self.inner().calls.clone()
    }

    /// Sessions opened and not closed.
    pub fn open_sessions(&self) -> usize {
        self.inner().sessions.len()
    }

    /// How many times `VM.start` started a VM.
    pub fn starts(&self) -> u64 {
        self.inner().starts
    }
}
