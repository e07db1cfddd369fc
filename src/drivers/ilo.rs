//! HP iLO power control over RIBCL: XML over TLS to `POST /ribcl` (iLO 3 and
//! later), as python-hpilo speaks it. No Rust crate exists (ARCHITECTURE.md).
//!
//! * One connection per command (`Connection: close`), bounded by a timeout and
//!   cancellable. The XML declaration and the body go out in two writes: iLO
//!   firmware mis-parses them otherwise (python-hpilo's observation).
//! * The answer is several `<?xml?>` documents back to back; every `RESPONSE`
//!   in them must have `STATUS="0x0000"`, else its `MESSAGE` is the error.
//! * The user name and password are XML-escaped into the `LOGIN` element and
//!   never appear anywhere else: not in errors (which quote only iLO's
//!   `STATUS`/`MESSAGE`, scrubbed of the password), not in logs.
//! * TLS is rustls: TLS 1.2 and 1.3. iLO 2 (TLS 1.0) is out of reach on purpose.
//!   Certificate checks use the platform verifier; `verify_tls = false` skips
//!   them (iLOs ship self-signed certificates) but still checks the handshake.

use std::sync::Arc;
use std::time::Duration;

use quick_xml::XmlVersion;
use quick_xml::events::Event;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// A RIBCL answer is a few KiB.
const MAX_ANSWER: usize = 256 * 1024;

#[derive(Clone)]
pub struct IloTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: SecretString,
    pub verify_tls: bool,
    /// Bounds one whole command: connect, handshake, request and answer.
    pub timeout: Duration,
}

impl std::fmt::Debug for IloTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IloTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPower {
    On,
    Off,
}

#[derive(Debug, thiserror::Error)]
pub enum IloError {
    #[error("iLO {host}:{port}: cannot connect: {detail}")]
    Connect { host: String, port: u16, detail: String },
    #[error("iLO {host}:{port}: TLS: {detail}")]
    Tls { host: String, port: u16, detail: String },
    #[error("iLO {host}:{port}: no answer within {after:?}")]
    Timeout { host: String, port: u16, after: Duration },
    /// iLO refused the command: its status code and message (`0x005F` "Login failed." …).
    #[error("iLO {host} refused {command}: {message} (status {status})")]
    Refused { host: String, command: &'static str, status: String, message: String },
    #[error("iLO {host}: unexpected answer to {command}: {detail}")]
    Protocol { host: String, command: &'static str, detail: String },
    #[error("cancelled")]
    Cancelled,
}

pub async fn host_power(t: &IloTarget, cancel: &CancellationToken) -> Result<HostPower, IloError> {
    let answer = command(t, "GET_HOST_POWER_STATUS", "read", "<GET_HOST_POWER_STATUS/>", cancel).await?;
    match answer.host_power.as_deref() {
        Some(p) if p.eq_ignore_ascii_case("ON") => Ok(HostPower::On),
        Some(p) if p.eq_ignore_ascii_case("OFF") => Ok(HostPower::Off),
        other => Err(IloError::Protocol {
            host: t.host.clone(),
            command: "GET_HOST_POWER_STATUS",
            detail: format!("HOST_POWER is {other:?}"),
        }),
    }
}

/// `RESET_SERVER`: a warm reset of a running server.
pub async fn reset_server(t: &IloTarget, cancel: &CancellationToken) -> Result<(), IloError> {
    command(t, "RESET_SERVER", "write", "<RESET_SERVER/>", cancel).await.map(|_| ())
}

pub async fn set_host_power(t: &IloTarget, on: bool, cancel: &CancellationToken) -> Result<(), IloError> {
    let body = format!("<SET_HOST_POWER HOST_POWER=\"{}\"/>", if on { "Yes" } else { "No" });
    command(t, "SET_HOST_POWER", "write", &body, cancel).await.map(|_| ())
}

#[derive(Debug, Default)]
struct Answer {
    host_power: Option<String>,
}

async fn command(
    t: &IloTarget,
    name: &'static str,
    mode: &str,
    inner: &str,
    cancel: &CancellationToken,
) -> Result<Answer, IloError> {
    let body = format!(
        "<RIBCL VERSION=\"2.0\"><LOGIN USER_LOGIN=\"{}\" PASSWORD=\"{}\"><SERVER_INFO MODE=\"{mode}\">{inner}\
         </SERVER_INFO></LOGIN></RIBCL>\r\n",
        escape(&t.user),
        escape(t.password.expose_secret())
    );
    let exchange = exchange(t, &body);
    let text = tokio::select! {
        biased;
        _ = cancel.cancelled() => return Err(IloError::Cancelled),
        r = tokio::time::timeout(t.timeout, exchange) => match r {
            Ok(r) => r?,
            Err(_) => return Err(IloError::Timeout { host: t.host.clone(), port: t.port, after: t.timeout }),
        },
    };
    parse(t, name, &text)
}

const DECLARATION: &str = "<?xml version=\"1.0\"?>\r\n";

async fn exchange(t: &IloTarget, body: &str) -> Result<String, IloError> {
    let connect_err = |detail: String| IloError::Connect { host: t.host.clone(), port: t.port, detail };
    let tls_err = |detail: String| IloError::Tls { host: t.host.clone(), port: t.port, detail };
    let tcp =
        tokio::net::TcpStream::connect((t.host.as_str(), t.port)).await.map_err(|e| connect_err(e.to_string()))?;
    let name = ServerName::try_from(t.host.clone()).map_err(|e| tls_err(e.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(t.verify_tls).map_err(tls_err)?));
    let mut tls = connector.connect(name, tcp).await.map_err(|e| tls_err(e.to_string()))?;
    let head = format!(
        "POST /ribcl HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nContent-Type: text/xml\r\nConnection: close\r\n\r\n",
        t.host,
        DECLARATION.len() + body.len()
    );
    let io = |e: std::io::Error| connect_err(e.to_string());
    tls.write_all(head.as_bytes()).await.map_err(io)?;
    tls.write_all(DECLARATION.as_bytes()).await.map_err(io)?;
    tls.flush().await.map_err(io)?;
    tls.write_all(body.as_bytes()).await.map_err(io)?;
    tls.flush().await.map_err(io)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tls.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_ANSWER {
                    break;
                }
            }
            // iLOs close without a TLS close_notify; what arrived is the answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io(e)),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    // Past the HTTP head (iLO 3+ answers over HTTP); a raw-XML answer has none.
    Ok(match text.split_once("\r\n\r\n") {
        Some((head, rest)) if head.starts_with("HTTP/") => rest.to_string(),
        _ => text,
    })
}

fn parse(t: &IloTarget, command: &'static str, text: &str) -> Result<Answer, IloError> {
    let scrub = |s: String| super::scrub(&s, t.password.expose_secret(), 200);
    let protocol = |detail: String| IloError::Protocol { host: t.host.clone(), command, detail: scrub(detail) };
    let mut answer = Answer::default();
    let mut responses = 0;
    // Several documents back to back: each parsed on its own.
    for doc in text.split("<?xml").filter(|d| d.contains('<')) {
        let doc = doc.split_once("?>").map(|(_, rest)| rest).unwrap_or(doc);
        let mut reader = quick_xml::Reader::from_str(doc);
        reader.config_mut().check_end_names = false;
        loop {
            match reader.read_event() {
                Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                    let attr = |key: &str| {
                        e.attributes().flatten().find(|a| a.key.as_ref() == key).map(|a| {
                            a.normalized_value(XmlVersion::Implicit1_0)
                                .map(|v| v.into_owned())
                                .unwrap_or_else(|_| a.value.clone().into_owned())
                        })
                    };
                    match e.name().as_ref() {
                        "RESPONSE" => {
                            responses += 1;
                            let status = attr("STATUS").unwrap_or_default();
                            if u32::from_str_radix(status.trim_start_matches("0x"), 16).ok() != Some(0) {
                                let message = attr("MESSAGE").unwrap_or_else(|| "(no message)".into());
                                return Err(IloError::Refused {
                                    host: t.host.clone(),
                                    command,
                                    status,
                                    message: scrub(message),
                                });
                            }
                        }
                        "GET_HOST_POWER" => answer.host_power = attr("HOST_POWER"),
                        _ => {}
                    }
                }
                Ok(Event::Eof) => break,
                Ok(_) => {}
                Err(e) => return Err(protocol(format!("not RIBCL XML: {e}"))),
            }
        }
    }
    if responses == 0 {
        return Err(protocol(format!("no RESPONSE in {:?}", text.chars().take(120).collect::<String>())));
    }
    Ok(answer)
}

fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

fn tls_config(verify: bool) -> Result<ClientConfig, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    if verify {
        return Ok(builder.with_platform_verifier().map_err(|e| e.to_string())?.with_no_client_auth());
    }
    Ok(builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))).with_no_client_auth())
}

/// `verify_tls = false`: any certificate, but the handshake signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> IloTarget {
        IloTarget {
            host: "ilo1".into(),
            port: 443,
            user: "admin".into(),
            password: SecretString::from("pw-123".to_string()),
            verify_tls: true,
            timeout: Duration::from_secs(1),
        }
    }

    const OK: &str = "<?xml version=\"1.0\"?>\r\n<RIBCL VERSION=\"2.23\">\r\n<RESPONSE\r\n    STATUS=\"0x0000\"\r\n    MESSAGE='No error'\r\n     />\r\n</RIBCL>\r\n";

    #[test]
    fn parses_concatenated_documents_and_the_power_state() {
        let text = format!(
            "{OK}<?xml version=\"1.0\"?>\r\n<RIBCL VERSION=\"2.23\">\r\n<RESPONSE STATUS=\"0x0000\" MESSAGE='No error' />\r\n<GET_HOST_POWER\r\n HOST_POWER=\"OFF\"\r\n />\r\n</RIBCL>\r\n"
        );
        let a = parse(&target(), "GET_HOST_POWER_STATUS", &text).unwrap();
        assert_eq!(a.host_power.as_deref(), Some("OFF"));
    }

    #[test]
    fn a_non_zero_status_is_the_error_and_never_echoes_the_password() {
        let text = format!(
            "{OK}<?xml version=\"1.0\"?>\r\n<RIBCL VERSION=\"2.23\">\r\n<RESPONSE STATUS=\"0x005F\" MESSAGE='Login failed for pw-123.' />\r\n</RIBCL>\r\n"
        );
        match parse(&target(), "RESET_SERVER", &text) {
            Err(IloError::Refused { status, message, .. }) => {
                assert_eq!(status, "0x005F");
                assert_eq!(message, "Login failed for [redacted].");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        assert!(matches!(parse(&target(), "RESET_SERVER", "HTTP/1.1 500 oops"), Err(IloError::Protocol { .. })));
    }

    #[test]
    fn credentials_are_escaped_into_the_login_element() {
        assert_eq!(escape("a\"b<c>&'"), "a&quot;b&lt;c&gt;&amp;&apos;");
    }
}
