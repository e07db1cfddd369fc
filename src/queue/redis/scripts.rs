//! The Lua scripts, one per queue operation, compiled in from the `.lua` files
//! beside this one. Every script starts with `PRELUDE`. `ARGV[1]` = key base
//! `{p}:`, `ARGV[2]` = retention in ms; the script's own arguments follow from
//! `ARGV[3]`. Each file under `redis/` opens with its ARGV contract and what it
//! returns. Apart from the queue operations so the table of what is sent to the
//! server reads in one place.

use redis::Script;

use super::{RESERVE_SCAN, SWEEP_BATCH};

pub(super) struct Scripts {
    pub(super) enqueue: Script,
    pub(super) reserve: Script,
    pub(super) reclaim: Script,
    pub(super) finish: Script,
    pub(super) release: Script,
    pub(super) append_log: Script,
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

/// `redis/append_log.lua`: add a line to a job's log.
const APPEND_LOG: &str = include_str!("append_log.lua");

/// `redis/reclaim.lua`: find the job a holder was handed and renew its lease.
const RECLAIM: &str = include_str!("reclaim.lua");

/// `redis/get.lua`: one job with its log.
const GET: &str = include_str!("get.lua");

/// `redis/history.lua`: a machine's jobs, newest first.
const HISTORY: &str = include_str!("history.lua");

/// `redis/stats.lua`: the queue gauges.
const STATS: &str = include_str!("stats.lua");

impl Scripts {
    pub(super) fn new() -> Self {
        let prelude = PRELUDE
            .replace("__SWEEP_BATCH__", &SWEEP_BATCH.to_string())
            .replace("__RESERVE_SCAN__", &RESERVE_SCAN.to_string());
        let script = |body: &str| {
            Script::new(&format!("{prelude}{}", body.replace("__RESERVE_SCAN__", &RESERVE_SCAN.to_string())))
        };
        Scripts {
            enqueue: script(ENQUEUE),
            reserve: script(RESERVE),
            reclaim: script(RECLAIM),
            finish: script(FINISH),
            release: script(RELEASE),
            append_log: script(APPEND_LOG),
            get: script(GET),
            history: script(HISTORY),
            stats: script(STATS),
        }
    }
}
