//! `[paths]` plus `ROLLER_PATHS` (on/off): the standing path checks' schedule and bounds.
//! On by default, daily and gentle (10 checks a minute, 4 at once, at background priority
//! on the per-device gates): a broken path must be found before the incident that needs it.
//! `enabled = false` / `ROLLER_PATHS=0` turns the schedule off; checks asked for
//! (`roller paths check`) run either way.

use std::time::Duration;

use super::file::PathsFile;
use super::sections::Layer;
use super::{ConfigError, err};
use crate::paths::PathSettings;

pub(super) fn paths(l: &Layer, p: PathsFile) -> Result<PathSettings, ConfigError> {
    let d = PathSettings::default();
    let range = |key: &str, v: Option<u64>, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
        let n = v.unwrap_or(default);
        if !(min..=max).contains(&n) {
            return Err(err(format!("{} must be between {min} and {max}", l.at(&format!("paths.{key}")))));
        }
        Ok(n)
    };
    Ok(PathSettings {
        enabled: l.bool("ROLLER_PATHS", p.enabled, d.enabled)?,
        // A minute at least (tests), thirty days at most: a path unchecked for longer
        // is not standing guard.
        interval: Duration::from_secs(range("interval_secs", p.interval_secs, d.interval.as_secs(), 60, 30 * 86_400)?),
        max_per_minute: range("max_per_minute", p.max_per_minute, d.max_per_minute as u64, 1, 600)? as usize,
        concurrency: range("concurrency", p.concurrency, d.concurrency as u64, 1, 64)? as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Settings;

    fn load(toml_text: &str, env: &[(&str, &str)]) -> Result<Settings, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roller.toml");
        std::fs::write(&path, toml_text).unwrap();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |k: &str| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.clone());
        Settings::load(Some(&path), &lookup).map_err(|e| e.to_string())
    }

    #[test]
    fn path_checks_are_on_daily_and_gentle_by_default() {
        let s = load("", &[]).unwrap();
        assert!(s.paths.enabled);
        assert!(!load("", &[("ROLLER_PATHS", "0")]).unwrap().paths.enabled);
        assert!(!load("[paths]\nenabled = false\n", &[]).unwrap().paths.enabled);
        assert_eq!((s.paths.interval.as_secs(), s.paths.max_per_minute, s.paths.concurrency), (86_400, 10, 4));
        let s = load("[paths]\ninterval_secs = 3600\nmax_per_minute = 2\nconcurrency = 1\n", &[("ROLLER_PATHS", "1")])
            .unwrap();
        assert!(s.paths.enabled);
        assert_eq!((s.paths.interval.as_secs(), s.paths.max_per_minute, s.paths.concurrency), (3600, 2, 1));
    }

    #[test]
    fn out_of_range_path_settings_are_refused_by_name() {
        let e = load("[paths]\nmax_per_minute = 0\n", &[]).unwrap_err();
        assert!(e.contains("paths.max_per_minute") && e.contains("between 1 and 600"), "{e}");
        let e = load("[paths]\ninterval_secs = 10\n", &[]).unwrap_err();
        assert!(e.contains("paths.interval_secs"), "{e}");
        let e = load("[paths]\nevery = 1\n", &[]).unwrap_err();
        assert!(e.contains("every"), "unknown keys are named: {e}");
    }
}
