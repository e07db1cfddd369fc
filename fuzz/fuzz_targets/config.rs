//! The configuration file (src/config.rs, `Settings::parse` with an empty environment):
//! refusals are `Err`, and accepted settings keep the invariants the runner and queue rely on.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use roller::config::Settings;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // `*_file` keys read the file they name; a fuzzer that reaches /dev/zero or a FIFO
    // would hang on I/O, not find a parser bug.
    if text.contains("_file") {
        return;
    }
    let no_env = |_: &str| None;
    let s = match Settings::parse(Path::new("/etc/roller/roller.toml"), &text, &no_env) {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let r = &s.runner;
    assert!(!r.soft_time_limit.is_zero() && r.soft_time_limit <= r.hard_time_limit, "{r:?}");
    assert!(r.lease() > r.hard_time_limit, "the lease must outlast the hard limit");
    assert!(r.concurrency >= 1);
    assert!((1..=10_000).contains(&s.history_cap) && (1..=s.history_cap).contains(&s.history_limit));
    assert!(!s.retention.is_zero());
    assert!(usize::try_from(s.safety.max_restarts).is_ok_and(|m| m <= s.history_cap));
    assert!(!s.enabled_tasks.is_empty());
    for (i, t) in s.enabled_tasks.iter().enumerate() {
        assert!(!s.enabled_tasks[..i].contains(t), "task listed twice");
        assert!(s.task_scope(*t).starts_with(&s.scope_prefix));
    }
    for scope in [&s.scope_prefix, &s.read_scope] {
        assert!(scope.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{scope:?}");
    }
    assert!(s.cors_origin == "*" || s.cors_origin.starts_with("http://") || s.cors_origin.starts_with("https://"));
});
