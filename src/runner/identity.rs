//! Who a runner is (`host:pid:random`) and whether a holder's process is still
//! alive on this host: what lets a starting runner end the leases of a dead one.

/// host:pid:random, unique per runner process.
pub(super) fn consumer_id() -> String {
    let rand: u32 = rand::random();
    format!("{}:{}:{rand:08x}", hostname(), std::process::id())
}

pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The host and pid of a holder id (`host:pid:random#n`).
pub(super) fn holder_process(holder: &str) -> Option<(&str, u32)> {
    let mut parts = holder.rsplitn(3, ':');
    let _random = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    Some((parts.next()?, pid))
}

/// Whether `pid` is a live roller process on this host: it exists and runs the same
/// program as this one (a recycled pid running something else does not count).
pub(super) fn roller_alive(pid: u32) -> bool {
    let comm = |p: &str| std::fs::read_to_string(format!("/proc/{p}/comm")).ok();
    match (comm(&pid.to_string()), comm("self")) {
        (Some(theirs), Some(ours)) => theirs == ours,
        _ => false,
    }
}
