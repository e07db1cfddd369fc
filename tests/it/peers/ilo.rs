//! An HP iLO stand-in (no installable iLO firmware exists): RIBCL over TLS on
//! loopback with a fresh self-signed certificate, answering `POST /ribcl` the
//! way iLO 4 does: an HTTP head, then a generic `RESPONSE` document followed by
//! the command's own, back to back. It checks the login (XML-unescaped user and
//! password), keeps the host power, records each command, and can refuse
//! `RESET_SERVER` as some firmware does in some states.

use std::sync::{Arc, Mutex};

use quick_xml::events::Event;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const USER: &str = "roller";
/// With characters that must be escaped in XML.
pub const PASSWORD: &str = "ilo<&>\"pw-canary";

#[derive(Default)]
struct State {
    power_on: bool,
    refuse_reset: bool,
    commands: Vec<String>,
}

pub struct FakeIlo {
    pub port: u16,
    state: Arc<Mutex<State>>,
    _dir: tempfile::TempDir,
}

const GENERIC_OK: &str = "<?xml version=\"1.0\"?>\r\n<RIBCL VERSION=\"2.23\">\r\n<RESPONSE\r\n    STATUS=\"0x0000\"\r\n    MESSAGE='No error'\r\n     />\r\n</RIBCL>\r\n";

fn document(status: &str, message: &str, extra: &str) -> String {
    format!(
        "{GENERIC_OK}<?xml version=\"1.0\"?>\r\n<RIBCL VERSION=\"2.23\">\r\n<RESPONSE\r\n    STATUS=\"{status}\"\r\n    \
         MESSAGE='{message}'\r\n     />\r\n{extra}</RIBCL>\r\n"
    )
}

/// The LOGIN attributes and the command element (with its HOST_POWER, if any).
fn parse(body: &str) -> Option<(String, String, String, Option<String>)> {
    let xml = body.split_once("?>").map(|(_, b)| b).unwrap_or(body);
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut user, mut password, mut command, mut host_power) = (None, None, None, None);
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) | Event::Empty(e) => {
                let attr = |k: &str| {
                    e.attributes().flatten().find(|a| a.key.as_ref() == k).and_then(|a| {
                        a.normalized_value(quick_xml::XmlVersion::Implicit1_0).ok().map(|v| v.into_owned())
                    })
                };
                match e.name().as_ref() {
                    "RIBCL" | "SERVER_INFO" => {}
                    "LOGIN" => {
                        user = attr("USER_LOGIN");
                        password = attr("PASSWORD");
                    }
                    other => {
                        command = Some(other.to_string());
                        host_power = attr("HOST_POWER");
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Some((user?, password?, command?, host_power))
}

impl FakeIlo {
    pub async fn start() -> FakeIlo {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = crate::peers::redfish::self_signed(dir.path());
        let certs = vec![CertificateDer::from_pem_file(&cert).unwrap()];
        let key = PrivateKeyDer::from_pem_file(&key).unwrap();
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State { power_on: true, ..Default::default() }));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, st) = (acceptor.clone(), st.clone());
                tokio::spawn(async move {
                    // A client that refuses our certificate ends here; that is its answer.
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut raw = Vec::new();
                    let mut buf = [0u8; 4096];
                    let body = loop {
                        let Ok(n) = tls.read(&mut buf).await else { return };
                        if n == 0 {
                            return;
                        }
                        raw.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&raw).into_owned();
                        if let Some((head, body)) = text.split_once("\r\n\r\n") {
                            let len = head
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                                })
                                .and_then(|v| v.parse::<usize>().ok());
                            if len.is_some_and(|len| body.len() >= len) {
                                break body.to_string();
                            }
                        }
                    };
                    let answer = FakeIlo::answer(&st, &body);
                    let reply =
                        format!("HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nConnection: close\r\n\r\n{answer}");
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        FakeIlo { port, state, _dir: dir }
    }

    fn answer(st: &Mutex<State>, body: &str) -> String {
        let Some((user, password, command, host_power)) = parse(body) else {
            return document("0x0001", "Syntax error.", "");
        };
        let mut s = st.lock().unwrap();
        s.commands.push(command.clone());
        if user != USER || password != PASSWORD {
            return document("0x005F", "Login failed.", "");
        }
        match (command.as_str(), host_power.as_deref()) {
            ("GET_HOST_POWER_STATUS", _) => {
                let p = if s.power_on { "ON" } else { "OFF" };
                document("0x0000", "No error", &format!("<GET_HOST_POWER\r\n    HOST_POWER=\"{p}\"\r\n    />\r\n"))
            }
            ("RESET_SERVER", _) if s.refuse_reset || !s.power_on => {
                document("0x0004", "Server reset is not supported in this state.", "")
            }
            ("RESET_SERVER", _) => document("0x0000", "No error", ""),
            ("SET_HOST_POWER", Some(v)) if v.eq_ignore_ascii_case("yes") || v.eq_ignore_ascii_case("no") => {
                s.power_on = v.eq_ignore_ascii_case("yes");
                document("0x0000", "No error", "")
            }
            _ => document("0x0001", "Syntax error.", ""),
        }
    }

    pub fn commands(&self) -> Vec<String> {
        self.state.lock().unwrap().commands.clone()
    }

    pub fn power_on(&self) -> bool {
        self.state.lock().unwrap().power_on
    }

    pub fn set_power(&self, on: bool) {
        self.state.lock().unwrap().power_on = on;
    }

    pub fn refuse_reset(&self, refuse: bool) {
        self.state.lock().unwrap().refuse_reset = refuse;
    }
}
