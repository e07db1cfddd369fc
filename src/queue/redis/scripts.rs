//! The Lua scripts, one per queue operation, compiled in from the `.lua` files
//! beside this one. Every script starts with `PRELUDE`. `ARGV[1]` = key base
//! `{p}:`, `ARGV[2]` = retention in ms; the script's own arguments follow from
//! `ARGV[3]`. Each file under `redis/` opens with its ARGV contract and what it
//! returns. Apart from the queue operations so the table of what is sent to the
//! server reads in one place.

use redis::Script;

use super::{RESERVE_SCAN, SWEEP_BATCH};
use crate::queue::{BREAKER_RESETS_KEPT, RECOVERY_ATTEMPTS};

pub(super) struct Scripts {
    pub(super) enqueue: Script,
    pub(super) reserve: Script,
    pub(super) reclaim: Script,
    pub(super) finish: Script,
    pub(super) release: Script,
    pub(super) append_log: Script,
    pub(super) mark: Script,
    pub(super) running: Script,
    pub(super) expire: Script,
    pub(super) reset_breaker: Script,
    pub(super) breaker_resets: Script,
    pub(super) get: Script,
    pub(super) history: Script,
    pub(super) stats: Script,
}

/// `redis/prelude.lua`: the helpers every script starts with.
const PRELUDE: &str = include_str!("prelude.lua");

/// `redis/enqueue.lua`: coalesce into the active job or create a new one.
const ENQUEUE: &str = include_str!("enqueue.lua");

/// `redis/reserve.lua`: hand out waiting jobs of free machines, one per holder id.
const RESERVE: &str = include_str!("reserve.lua");

/// `redis/finish.lua`: record final states for the holders that still hold their jobs.
const FINISH: &str = include_str!("finish.lua");

/// `redis/release.lua`: hand a job back (requeued, or failed on its last attempt).
const RELEASE: &str = include_str!("release.lua");

/// `redis/append_log.lua`: add a line to a job's log, fenced by its holder.
const APPEND_LOG: &str = include_str!("append_log.lua");

/// `redis/mark.lua`: record what a held job did to the hardware (touched, a restore).
const MARK: &str = include_str!("mark.lua");

/// `redis/running.lua`: every running job and its holder.
const RUNNING: &str = include_str!("running.lua");

/// `redis/expire.lua`: end a holder's lease now.
const EXPIRE: &str = include_str!("expire.lua");

/// `redis/reset_breaker.lua`: keep an override of a machine's reboot-loop breaker.
const RESET_BREAKER: &str = include_str!("reset_breaker.lua");

/// `redis/breaker_resets.lua`: a machine's breaker overrides, newest first.
const BREAKER_RESETS: &str = include_str!("breaker_resets.lua");

/// `redis/reclaim.lua`: find the job a holder was handed and renew its lease.
const RECLAIM: &str = include_str!("reclaim.lua");

/// `redis/get.lua`: one job with its log.
const GET: &str = include_str!("get.lua");

/// `redis/history.lua`: a machine's jobs, newest first.
const HISTORY: &str = include_str!("history.lua");

/// `redis/stats.lua`: the queue gauges.
const STATS: &str = include_str!("stats.lua");

/// Every placeholder in the prelude or a body replaced by its value: the limits live
/// in Rust, where the trait and the tests see them too.
fn fill(text: &str) -> String {
    text.replace("__SWEEP_BATCH__", &SWEEP_BATCH.to_string())
        .replace("__RESERVE_SCAN__", &RESERVE_SCAN.to_string())
        .replace("__RECOVERY_ATTEMPTS__", &RECOVERY_ATTEMPTS.to_string())
        .replace("__BREAKER_RESETS_KEPT__", &BREAKER_RESETS_KEPT.to_string())
}

impl Scripts {
    pub(super) fn new() -> Self {
        let prelude = fill(PRELUDE);
        let script = |body: &str| Script::new(&format!("{prelude}{}", fill(body)));
        Scripts {
            enqueue: script(ENQUEUE),
            reserve: script(RESERVE),
            reclaim: script(RECLAIM),
            finish: script(FINISH),
            release: script(RELEASE),
            append_log: script(APPEND_LOG),
            mark: script(MARK),
            running: script(RUNNING),
            expire: script(EXPIRE),
            reset_breaker: script(RESET_BREAKER),
            breaker_resets: script(BREAKER_RESETS),
            get: script(GET),
            history: script(HISTORY),
            stats: script(STATS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled() {
        // A misspelt placeholder is a Lua error only on the path that reads it: a
        // breaker reset, say, failing in production while every other call works.
        let all = [
            PRELUDE,
            ENQUEUE,
            RESERVE,
            FINISH,
            RELEASE,
            APPEND_LOG,
            MARK,
            RUNNING,
            EXPIRE,
            RESET_BREAKER,
            BREAKER_RESETS,
            RECLAIM,
            GET,
            HISTORY,
            STATS,
        ];
        for text in all {
            let filled = fill(text);
            assert!(!filled.contains("__"), "a placeholder is left in:\n{filled}");
        }
    }
}
