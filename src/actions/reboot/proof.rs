//! The proof that one step of the reboot chain rebooted the machine, from what
//! probes of the machine saw from the step's command on.
//!
//! # What counts as proof
//!
//! A step is credited only with a reboot of the shape a reboot has: **a down period
//! that follows the command, then the machine answering again no sooner than the
//! class's `min_boot_secs` after the command.** Probing starts when the command is
//! sent and goes on while the step runs (a host can go down, and even come back,
//! while `ssh_reboot` waits on a silent session or a BMC's power is read back) and
//! after it:
//!
//! * **Down:** `down_after` probes in a row without an answer, after the command. A
//!   machine that did not answer the probe just before the command counts as down
//!   from before the step. It must be down by `DOWN_TIMEOUT` after the step ended.
//! * **Back:** the first answer after that down period. It counts only if it comes
//!   at least `min_boot` after the command: no machine reboots faster than its class
//!   can boot, so an earlier answer is not this step's doing (a network blip, or a
//!   reboot that was already under way: a slow reboot from the step before that
//!   outlasted `UP_TIMEOUT` comes back on its own shortly after the next step's
//!   command). Such an answer does not end the watch: it is logged, and the machine
//!   must go down again (by `DOWN_TIMEOUT` after the step) and come back in time,
//!   so a blip before a real shutdown does not escalate to a harder step mid-reboot.
//!   It must answer within `UP_TIMEOUT` of the later of the step's end and the down.
//!
//! The device's own observation of the power going off and on (`Report::power_cycled`)
//! is named in the proof, but it is not a proof on its own, and it does not excuse
//! the down period or the minimum boot time: a real power cycle keeps the machine
//! down from the power-off until it has booted, which the probes see, and it
//! cannot answer sooner than `min_boot` after a command that came before the
//! power-on. A machine that keeps answering through a power cycle the BMC or PDU
//! reports is not on that power (a wrong outlet), or the device's reading is not
//! the machine's (a BMC that accepts a command and does nothing, or reports a
//! state it does not control); either way the step did not reboot it.
//!
//! What this cannot tell apart: a machine that was already down before the step
//! (no answer to the probe before the command) and comes back no sooner than
//! `min_boot` after the command could have been rebooted by this step or by
//! whatever was under way before it. Nothing roller can observe separates the two
//! (the step's own report does when the device saw the power cycle), so it is
//! credited, and the proof says "it was not answering before the step" so whoever
//! reads the job can weigh it. A `min_boot_secs` close to the class's real boot
//! time makes the window for a wrong credit smallest.

use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::super::ActionContext;
use crate::drivers::reachability::{self, Probe, ProbeError, ProbeSettings};

/// How long the watch may go on.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// From the step's end: the machine must have gone down by then (`DOWN_TIMEOUT`).
    pub down: Duration,
    /// From the later of the step's end and the down: it must answer by then (`UP_TIMEOUT`).
    pub up: Duration,
    /// The step's share of the time before the soft limit, from the command.
    pub hard: Option<Duration>,
}

/// What the probes have established. Times are since the command.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Answering: since the command, or again after a return that came too soon.
    Up,
    /// Not answering since `since` (`None`: since before the step), established at `seen`.
    Down { since: Option<Duration>, seen: Duration },
    /// Answered again at `up`, no sooner than the minimum boot time: proven.
    Back { since: Option<Duration>, up: Duration },
}

/// The rules of the module docs, apart from the probing.
#[derive(Debug)]
pub(super) struct Watch {
    min_boot: Duration,
    down_after: u32,
    state: State,
    /// Unanswered probes in a row while `Up`, and when the first of them was sent.
    misses: u32,
    first_miss: Option<Duration>,
    /// The latest return that came sooner than the class can boot.
    too_fast: Option<Duration>,
}

impl Watch {
    pub fn new(answered_before: bool, min_boot: Duration, down_after: u32) -> Watch {
        let state = if answered_before { State::Up } else { State::Down { since: None, seen: Duration::ZERO } };
        Watch { min_boot, down_after: down_after.max(1), state, misses: 0, first_miss: None, too_fast: None }
    }

    /// A probe sent `at` after the command was (`answered`) or was not answered.
    /// Returns a line for the job log when it changed what is known.
    pub fn observe(&mut self, answered: bool, at: Duration) -> Option<String> {
        match (self.state, answered) {
            (State::Back { .. }, _) | (State::Down { .. }, false) => None,
            (State::Up, true) => {
                self.misses = 0;
                self.first_miss = None;
                None
            }
            (State::Up, false) => {
                self.misses += 1;
                let first = *self.first_miss.get_or_insert(at);
                if self.misses < self.down_after {
                    return None;
                }
                self.state = State::Down { since: Some(first), seen: at };
                Some(format!("stopped answering {:.1}s after the command", first.as_secs_f64()))
            }
            (State::Down { since, .. }, true) => {
                self.misses = 0;
                self.first_miss = None;
                if at >= self.min_boot {
                    self.state = State::Back { since, up: at };
                    return Some(format!("answered again {:.1}s after the command", at.as_secs_f64()));
                }
                self.state = State::Up;
                self.too_fast = Some(at);
                Some(format!("{}; watching for it to go down", self.too_fast_text(at)))
            }
        }
    }

    /// The verdict once it is known: `Ok(proof)` as soon as the machine is back,
    /// `Err(why)` when no probe sent at `next` (after the command) could count any
    /// more. `step_end` is when the step returned, after the command.
    pub fn verdict(
        &self,
        next: Duration,
        step_end: Duration,
        limits: &Limits,
        cycled: bool,
    ) -> Option<Result<String, String>> {
        let (natural, from) = match self.state {
            State::Back { since, up } => {
                let mut proof = self.story(since, cycled);
                proof.push(format!("it answered again {:.1}s after the command", up.as_secs_f64()));
                return Some(Ok(proof.join(", ")));
            }
            State::Up => (step_end + limits.down, step_end),
            State::Down { seen, .. } => (seen.max(step_end) + limits.up, seen.max(step_end)),
        };
        let deadline = limits.hard.map_or(natural, |h| natural.min(h));
        if next <= deadline {
            return None;
        }
        let within = deadline.saturating_sub(from).as_secs();
        Some(Err(match (self.state, self.too_fast) {
            (State::Down { since, .. }, _) => {
                format!("{}; it did not answer again within {within}s", self.story(since, cycled).join(", "))
            }
            (_, Some(fast)) => format!("{}; it did not go down again within {within}s", self.too_fast_text(fast)),
            (_, None) if cycled => format!(
                "still answering {within}s later: it did not go down, although the power was seen going off and \
                 on (so that power, or that reading, is not this machine's)"
            ),
            (_, None) => format!("still answering {within}s later: it did not go down"),
        }))
    }

    /// What was seen, in order, for the proof or the reason.
    fn story(&self, since: Option<Duration>, cycled: bool) -> Vec<String> {
        let mut parts = Vec::new();
        if cycled {
            parts.push("the power was seen going off and on".to_string());
        }
        parts.push(match since {
            None => "it was not answering before the step".to_string(),
            Some(t) => format!("it stopped answering {:.1}s after the command", t.as_secs_f64()),
        });
        parts
    }

    fn too_fast_text(&self, at: Duration) -> String {
        format!(
            "answered again {:.1}s after the command: faster than this class can boot (min_boot_secs = {}), so it \
             was not this step's doing",
            at.as_secs_f64(),
            self.min_boot.as_secs()
        )
    }
}

/// The watch on one machine for one step: started just before the command.
pub(super) struct Proof {
    addr: IpAddr,
    probe: Probe,
    settings: ProbeSettings,
    command_at: Instant,
    watch: Watch,
    /// A probe that could not be made while the step ran; reported once the step is done.
    broken: Option<ProbeError>,
}

impl Proof {
    /// Call just before the step's command: its times count from now.
    pub fn start(addr: IpAddr, probe: Probe, s: &ProbeSettings, answered_before: bool, min_boot: Duration) -> Proof {
        Proof {
            addr,
            probe,
            settings: s.clone(),
            command_at: Instant::now(),
            watch: Watch::new(answered_before, min_boot, s.down_after),
            broken: None,
        }
    }

    /// When the watch started.
    pub fn command_at(&self) -> Instant {
        self.command_at
    }

    /// Run `step` to its end, probing the machine meanwhile. The probing never cuts
    /// the step short (dropping a step mid-way could leave an outlet off): a probe
    /// that cannot be made stops the probing, and [`Proof::settle`] reports it.
    pub async fn during<T>(&mut self, step: impl Future<Output = T>, cx: &ActionContext) -> T {
        let mut step = std::pin::pin!(step);
        while self.broken.is_none() {
            let at = self.command_at.elapsed();
            let probed = tokio::select! {
                biased;
                out = &mut step => return out,
                r = reachability::answers(self.addr, self.probe, &self.settings, &cx.cancel) => r,
            };
            match probed {
                Ok(answered) => self.note(answered, at, cx),
                Err(e) => self.broken = Some(e),
            }
            tokio::select! {
                biased;
                out = &mut step => return out,
                _ = tokio::time::sleep(self.settings.interval) => {}
            }
        }
        step.await
    }

    /// After the step returned: probe until the proof is decided. `Ok(Ok(proof))`
    /// when the reboot is proven, `Ok(Err(why))` when it is not.
    pub async fn settle(
        mut self,
        limits: Limits,
        cycled: bool,
        cx: &ActionContext,
    ) -> Result<Result<String, String>, ProbeError> {
        if let Some(e) = self.broken.take() {
            return Err(e);
        }
        let step_end = self.command_at.elapsed();
        let interval = self.settings.interval;
        loop {
            let at = self.command_at.elapsed();
            if let Some(v) = self.watch.verdict(at, step_end, &limits, cycled) {
                return Ok(v);
            }
            let answered = reachability::answers(self.addr, self.probe, &self.settings, &cx.cancel).await?;
            self.note(answered, at, cx);
            if let Some(v) = self.watch.verdict(self.command_at.elapsed() + interval, step_end, &limits, cycled) {
                return Ok(v);
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = cx.cancel.cancelled() => return Err(ProbeError::Cancelled),
            }
        }
    }

    fn note(&mut self, answered: bool, at: Duration, cx: &ActionContext) {
        if let Some(line) = self.watch.observe(answered, at) {
            cx.log(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(f64) -> Duration = Duration::from_secs_f64;
    const LIMITS: Limits = Limits { down: Duration::from_secs(60), up: Duration::from_secs(300), hard: None };

    /// Feed `(seconds after the command, answered)` probes; the verdict once the step
    /// ended at `end` and the next probe would come at `next`.
    fn run(answered_before: bool, probes: &[(f64, bool)], end: f64, next: f64) -> Option<Result<String, String>> {
        let mut w = Watch::new(answered_before, S(20.0), 2);
        for &(at, answered) in probes {
            w.observe(answered, S(at));
        }
        w.verdict(S(next), S(end), &LIMITS, false)
    }

    #[test]
    fn down_then_back_after_the_minimum_boot_time_is_proven() {
        let probes = [(0.0, true), (3.0, false), (4.0, false), (30.0, false), (41.0, true)];
        let v = run(true, &probes, 1.0, 42.0).unwrap().unwrap();
        assert_eq!(v, "it stopped answering 3.0s after the command, it answered again 41.0s after the command");
    }

    #[test]
    fn a_machine_down_before_the_step_is_credited_only_after_the_minimum_boot_time() {
        // The slow reboot of the step before comes back 1 s into this one.
        let probes = [(0.0, false), (1.0, true), (2.0, true)];
        assert_eq!(run(false, &probes, 0.5, 3.0), None, "still watching for a down until DOWN_TIMEOUT");
        let why = run(false, &probes, 0.5, 61.0).unwrap().unwrap_err();
        assert!(why.starts_with("answered again 1.0s after the command: faster than this class can boot (min_boot_secs = 20), so it was not this step's doing"), "{why}");
        assert!(why.ends_with("it did not go down again within 60s"), "{why}");
        // Staying down and coming back late enough counts.
        let probes = [(0.0, false), (10.0, false), (25.0, true)];
        let v = run(false, &probes, 0.5, 26.0).unwrap().unwrap();
        assert_eq!(v, "it was not answering before the step, it answered again 25.0s after the command");
    }

    #[test]
    fn a_blip_before_the_real_shutdown_does_not_end_the_watch() {
        let probes = [(0.0, true), (1.0, false), (2.0, false), (3.0, true), (9.0, false), (10.0, false), (45.0, true)];
        let v = run(true, &probes, 0.5, 46.0).unwrap().unwrap();
        assert!(v.contains("stopped answering 9.0s") && v.contains("answered again 45.0s"), "{v}");
    }

    #[test]
    fn one_lost_probe_is_not_down_and_a_machine_that_never_goes_down_is_not_proven() {
        let probes = [(0.0, true), (1.0, false), (2.0, true), (3.0, true)];
        assert_eq!(run(true, &probes, 0.5, 60.0), None);
        let why = run(true, &probes, 0.5, 61.0).unwrap().unwrap_err();
        assert_eq!(why, "still answering 60s later: it did not go down");
    }

    #[test]
    fn a_device_observed_cycle_excuses_neither_the_down_nor_the_boot_time() {
        // The BMC reports off then on; the machine never stopped answering.
        let mut w = Watch::new(true, S(20.0), 2);
        for at in [0.0, 1.0, 2.0, 30.0] {
            w.observe(true, S(at));
        }
        let why = w.verdict(S(62.0), S(1.0), &LIMITS, true).unwrap().unwrap_err();
        assert!(why.contains("did not go down") && why.contains("power was seen going off and on"), "{why}");
        // Powered on from off: it must still take the time a boot takes.
        let mut w = Watch::new(false, S(20.0), 2);
        w.observe(false, S(0.0));
        w.observe(true, S(2.0));
        assert!(w.verdict(S(61.5), S(1.0), &LIMITS, true).unwrap().is_err());
    }

    #[test]
    fn up_is_timed_from_the_later_of_the_down_and_the_steps_end_and_the_soft_limit_cuts_both() {
        let probes = [(0.0, true), (1.0, false), (2.0, false)];
        // Down at 2 s during a step that ended at 10 s: UP_TIMEOUT counts from 10 s.
        assert_eq!(run(true, &probes, 10.0, 310.0), None);
        let why = run(true, &probes, 10.0, 311.0).unwrap().unwrap_err();
        assert_eq!(why, "it stopped answering 1.0s after the command; it did not answer again within 300s");
        let mut w = Watch::new(true, S(20.0), 2);
        w.observe(true, S(0.0));
        let hard = Limits { hard: Some(S(25.0)), ..LIMITS };
        let why = w.verdict(S(26.0), S(5.0), &hard, false).unwrap().unwrap_err();
        assert_eq!(why, "still answering 20s later: it did not go down");
    }
}
