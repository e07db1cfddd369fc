//! `[simplemdm]` plus `SIMPLEMDM_API_URL` and `SIMPLEMDM_API_KEY`: the SimpleMDM account
//! `mdm_restart` asks. On when an API key is given (the URL defaults to SimpleMDM's);
//! without one the step is skipped, as Bugzilla's and Xen's are without theirs.

use std::time::Duration;

use secrecy::SecretString;

use super::file::SimpleMdmFile;
use super::sections::Layer;
use super::{ConfigError, err};
use crate::drivers::simplemdm::{self, DEFAULT_API_URL, Limits};

/// The account (the URL already checked) and how hard roller may lean on it.
#[derive(Debug, Clone)]
pub struct SimpleMdmConfig {
    pub api_url: String,
    pub api_key: SecretString,
    pub limits: Limits,
}

pub(super) fn simplemdm(l: &Layer, f: SimpleMdmFile) -> Result<Option<SimpleMdmConfig>, ConfigError> {
    let at = |key: &str| l.at(&format!("simplemdm.{key}"));
    let api_url = l.env("SIMPLEMDM_API_URL").or(f.api_url);
    let Some(api_key) = l.secret("SIMPLEMDM_API_KEY", "simplemdm.api_key", &f.api_key_env, &f.api_key_file)? else {
        let set = api_url.is_some()
            || f.max_concurrent.is_some()
            || f.timeout_secs.is_some()
            || f.retry_within_secs.is_some();
        if set {
            return Err(err(
                "[simplemdm] is configured but no API key is: set SIMPLEMDM_API_KEY, simplemdm.api_key_env or \
                 simplemdm.api_key_file (or remove the [simplemdm] settings to skip mdm_restart)",
            ));
        }
        return Ok(None);
    };
    let api_url = api_url.unwrap_or_else(|| DEFAULT_API_URL.to_string());
    simplemdm::base_url(&api_url).map_err(|e| err(format!("SIMPLEMDM_API_URL / {}: {e}", at("api_url"))))?;
    let range = |key: &str, v: Option<u64>, default: u64, max: u64, why: &str| -> Result<u64, ConfigError> {
        match v.unwrap_or(default) {
            n if (1..=max).contains(&n) => Ok(n),
            n => Err(err(format!("{} must be between 1 and {max} (got {n}){why}", at(key)))),
        }
    };
    let d = Limits::default();
    let limits = Limits {
        max_concurrent: range(
            "max_concurrent",
            f.max_concurrent,
            d.max_concurrent as u64,
            16,
            "; SimpleMDM rate-limits the whole account (a 429 was seen at 3 concurrent calls), so keep it at 2",
        )? as usize,
        timeout: Duration::from_secs(range("timeout_secs", f.timeout_secs, d.timeout.as_secs(), 300, "")?),
        retry_within: Duration::from_secs(range(
            "retry_within_secs",
            f.retry_within_secs,
            d.retry_within.as_secs(),
            3600,
            "",
        )?),
    };
    Ok(Some(SimpleMdmConfig { api_url, api_key, limits }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use secrecy::ExposeSecret;

    use super::super::Settings;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Settings, String> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |k: &str| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.clone());
        Settings::parse(Path::new("/etc/roller/roller.toml"), text, &lookup).map_err(|e| e.to_string())
    }

    #[test]
    fn off_without_a_key_and_on_with_the_documented_defaults() {
        assert!(load("", &[]).unwrap().simplemdm.is_none());
        let s = load("", &[("SIMPLEMDM_API_KEY", "k-123")]).unwrap().simplemdm.unwrap();
        assert_eq!(s.api_url, "https://a.simplemdm.com/api/v1");
        assert_eq!(s.api_key.expose_secret(), "k-123");
        assert_eq!(
            (s.limits.max_concurrent, s.limits.timeout.as_secs(), s.limits.retry_within.as_secs()),
            (2, 30, 120)
        );
        let text = "[simplemdm]\napi_url = \"http://127.0.0.1:9/api/v1\"\napi_key_env = \"MDM_KEY\"\n\
                    max_concurrent = 1\ntimeout_secs = 5\nretry_within_secs = 20\n";
        let s = load(text, &[("MDM_KEY", "k-456")]).unwrap().simplemdm.unwrap();
        assert_eq!((s.api_url.as_str(), s.api_key.expose_secret()), ("http://127.0.0.1:9/api/v1", "k-456"));
        assert_eq!((s.limits.max_concurrent, s.limits.timeout.as_secs(), s.limits.retry_within.as_secs()), (1, 5, 20));
        assert!(!format!("{s:?}").contains("k-456"), "the key is redacted");
    }

    #[test]
    fn mistakes_are_refused_naming_the_fix() {
        for (text, env, want) in [
            ("[simplemdm]\nmax_concurrent = 2\n", vec![], "SIMPLEMDM_API_KEY, simplemdm.api_key_env"),
            ("", vec![("SIMPLEMDM_API_URL", "https://mdm.example/api/v1")], "no API key"),
            ("[simplemdm]\napi_key_env = \"UNSET_MDM_KEY\"\n", vec![], "UNSET_MDM_KEY is not set"),
            (
                "[simplemdm]\napi_key_env = \"K\"\napi_key_file = \"/k\"\n",
                vec![("K", "k")],
                "give simplemdm.api_key_env or simplemdm.api_key_file, not both",
            ),
            ("[simplemdm]\napi_url = \"http://mdm.example/api/v1\"\n", vec![("SIMPLEMDM_API_KEY", "k")], "https"),
            ("[simplemdm]\nmax_concurrent = 0\n", vec![("SIMPLEMDM_API_KEY", "k")], "simplemdm.max_concurrent"),
            ("[simplemdm]\nmax_concurrent = 50\n", vec![("SIMPLEMDM_API_KEY", "k")], "keep it at 2"),
            ("[simplemdm]\ntimeout_secs = 0\n", vec![("SIMPLEMDM_API_KEY", "k")], "simplemdm.timeout_secs"),
            ("[simplemdm]\nretry_within_secs = 0\n", vec![("SIMPLEMDM_API_KEY", "k")], "retry_within_secs"),
            ("[simplemdm]\napi_token = \"k\"\n", vec![], "api_token"),
        ] {
            let e = load(text, &env).unwrap_err();
            assert!(e.contains(want), "want {want:?} in {e:?}");
        }
    }
}
