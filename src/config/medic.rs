//! `[medic]` plus `ROLLER_MEDIC` / `ROLLER_MEDIC_DRY_RUN`: whether the medic runs,
//! whether it acts, and its gates. Off by default; once on, dry-run until an operator
//! says otherwise.

use std::time::Duration;

use super::file::MedicFile;
use super::sections::Layer;
use super::{ConfigError, HealthSettings, err};
use crate::medic::MedicSettings;
use crate::task::Task;

pub(super) fn medic(
    l: &Layer,
    m: MedicFile,
    health: &HealthSettings,
    enabled_tasks: &[Task],
) -> Result<MedicSettings, ConfigError> {
    let d = MedicSettings::default();
    let at = |key: &str| l.at(&format!("medic.{key}"));
    let range = |key: &str, v: Option<u64>, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
        let n = v.unwrap_or(default);
        if !(min..=max).contains(&n) {
            return Err(err(format!("{} must be between {min} and {max}", at(key))));
        }
        Ok(n)
    };
    let percent = |key: &str, v: Option<f64>, default: f64| -> Result<f64, ConfigError> {
        let p = v.unwrap_or(default * 100.0);
        if !(p.is_finite() && p > 0.0 && p <= 100.0) {
            return Err(err(format!("{} must be a percentage above 0 and at most 100", at(key))));
        }
        Ok(p / 100.0)
    };
    let every = Duration::from_secs(range("every_secs", m.every_secs, d.every.as_secs(), 1, 3600)?);
    // Observed within the cycle: the last two sweeps, by default.
    let probe_default = (health.sweep.probe_every * 2).as_secs();
    let worker_default = (health.sweep.taskcluster_every * 2).as_secs();
    let remediation = match m.remediation.as_deref() {
        None => d.remediation,
        Some(name) => Task::parse(name).filter(|t| t.restarts_machine()).ok_or_else(|| {
            let known: Vec<_> = Task::ALL.iter().filter(|t| t.restarts_machine()).map(|t| t.name()).collect();
            err(format!(
                "{}: {name:?} is not a task that restarts a machine; one of: {}",
                at("remediation"),
                known.join(", ")
            ))
        })?,
    };
    let enabled = l.bool("ROLLER_MEDIC", m.enabled, false)?;
    if enabled && !health.enabled {
        return Err(err(format!(
            "{} needs the health sweep: the medic acts only on what it observes; set [health] enabled = true \
             (or ROLLER_HEALTH=1)",
            at("enabled")
        )));
    }
    if enabled && !enabled_tasks.contains(&remediation) {
        return Err(err(format!(
            "{}: {remediation} is not among the enabled tasks ([tasks] enabled); the medic could not queue it",
            at("remediation")
        )));
    }
    Ok(MedicSettings {
        enabled,
        dry_run: l.bool("ROLLER_MEDIC_DRY_RUN", m.dry_run, true)?,
        every,
        fresh_within: Duration::from_secs(range("fresh_within_secs", m.fresh_within_secs, probe_default, 1, 86_400)?),
        worker_fresh_within: Duration::from_secs(range(
            "worker_fresh_within_secs",
            m.worker_fresh_within_secs,
            worker_default,
            1,
            86_400,
        )?),
        min_fresh: percent("min_fresh_percent", m.min_fresh_percent, d.min_fresh)?,
        max_fraction: percent("max_percent", m.max_percent, d.max_fraction)?,
        max_per_chassis: range("max_per_chassis", m.max_per_chassis, d.max_per_chassis as u64, 1, 10_000)? as usize,
        max_per_pdu: range("max_per_pdu", m.max_per_pdu, d.max_per_pdu as u64, 1, 10_000)? as usize,
        hold_after: range("hold_after_failures", m.hold_after_failures, u64::from(d.hold_after), 1, 100)? as u32,
        hold_for: Duration::from_secs(3600 * range("hold_hours", m.hold_hours, 6, 1, 24 * 30)?),
        service_within: Duration::from_secs(60 * range("service_within_mins", m.service_within_mins, 45, 1, 24 * 60)?),
        remediation,
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
    fn the_medic_is_off_and_then_dry_run_by_default() {
        let s = load("", &[]).unwrap();
        assert!(!s.medic.enabled);
        let s = load("[health]\nenabled = true\n[medic]\nenabled = true\n", &[]).unwrap();
        assert!(s.medic.enabled && s.medic.dry_run, "on, and acting on nothing until told");
        assert_eq!((s.medic.min_fresh, s.medic.max_fraction, s.medic.hold_after), (0.65, 0.10, 3));
        assert_eq!(s.medic.fresh_within.as_secs(), 240, "two sweeps of the default 120 s");
        let s = load(
            "[health]\nenabled = true\nprobe_every_secs = 30\n",
            &[("ROLLER_MEDIC", "1"), ("ROLLER_MEDIC_DRY_RUN", "0")],
        )
        .unwrap();
        assert!(s.medic.enabled && !s.medic.dry_run);
        assert_eq!(s.medic.fresh_within.as_secs(), 60);
    }

    #[test]
    fn a_medic_that_could_not_work_is_refused_with_the_fix() {
        let e = load("[medic]\nenabled = true\n", &[]).unwrap_err();
        assert!(e.contains("medic.enabled") && e.contains("[health] enabled = true"), "{e}");
        let e = load("[health]\nenabled = true\n[tasks]\nenabled = [\"ping\"]\n[medic]\nenabled = true\n", &[])
            .unwrap_err();
        assert!(e.contains("reboot is not among the enabled tasks"), "{e}");
        let e = load("[medic]\nremediation = \"ping\"\n", &[]).unwrap_err();
        assert!(e.contains("medic.remediation") && e.contains("restarts a machine"), "{e}");
        let e = load("[medic]\nmax_percent = 0\n", &[]).unwrap_err();
        assert!(e.contains("medic.max_percent") && e.contains("percentage"), "{e}");
        let e = load("[medic]\nhold_after_failures = 0\n", &[]).unwrap_err();
        assert!(e.contains("medic.hold_after_failures"), "{e}");
        let e = load("[medic]\nhold_hour = 6\n", &[]).unwrap_err();
        assert!(e.contains("hold_hour"), "unknown keys are named: {e}");
    }
}
