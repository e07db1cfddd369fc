//! Hawk signing for the requests roller makes: the roller CLI's calls to roller, and
//! roller's own calls to Taskcluster. (Verifying what roller receives is `auth`'s.)

use secrecy::{ExposeSecret, SecretString};

/// The `Authorization: Hawk …` value for a request (no payload hash, no ext), over
/// host, port, and path with query (Taskcluster's own crate signs the path only).
pub fn sign(method: &reqwest::Method, url: &reqwest::Url, id: &str, token: &SecretString) -> anyhow::Result<String> {
    let Some(host) = url.host_str() else { anyhow::bail!("URL {url} has no host") };
    let port = url.port_or_known_default().unwrap_or(80);
    let resource = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let creds =
        hawk::Credentials { id: id.to_string(), key: hawk::Key::new(token.expose_secret().as_bytes(), hawk::SHA256)? };
    let header = hawk::RequestBuilder::new(method.as_str(), host, port, &resource).request().make_header(&creds)?;
    Ok(format!("Hawk {header}"))
}
