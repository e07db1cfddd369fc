//! One job in words: the one summariser behind `jobs list`, the fleet table, `follow`,
//! `enqueue --wait` and `jobs get`. A reboot says the step that worked and its proof, a
//! status the power state, a ping its replies; any other result becomes a short
//! `key=value` rendering. Text is never cut inside a word (a cut JSON token at 3 a.m.
//! reads as a bug): whole words up to the width, then "…".

use serde::Deserialize;
use serde_json::Value;

use super::record::JobRecord;

/// Width of a summary in a table row.
pub const TABLE: usize = 100;
/// Width of the outcome line that ends `follow` and `enqueue --wait`, and of `get`'s.
pub const OUTCOME: usize = 400;

/// The job in at most `width` characters (a first word longer than that is kept whole).
pub fn summarise(job: &JobRecord, width: usize) -> String {
    let text = match (&job.error, &job.result) {
        // What went wrong first; what the job found (its evidence) after it.
        (Some(e), Some(r)) if !e.is_empty() => format!("{}; {}", first_line(e), result_words(r)),
        (Some(e), _) if !e.is_empty() => first_line(e).to_string(),
        (_, Some(r)) => result_words(r),
        _ => String::new(),
    };
    fit(&text, width)
}

/// `summarise` over an API answer (or `roller run`'s outcome JSON).
pub fn summarise_value(job: &Value, width: usize) -> String {
    summarise(&JobRecord::from_value(job), width)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[derive(Deserialize)]
struct Reboot {
    worked: String,
    proof: String,
}

#[derive(Deserialize)]
struct Reimage {
    network_boot: String,
    reboot: Reboot,
}

#[derive(Deserialize)]
struct LoanReturn {
    quarantine_lifted: bool,
    reimage: Reimage,
}

#[derive(Deserialize)]
struct Status {
    probe: String,
    answers: bool,
    power: Option<PowerReading>,
}

#[derive(Deserialize)]
struct PowerReading {
    source: String,
    state: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Ping {
    address: String,
    sent: u32,
    received: u32,
    rtt_ms: Option<Rtt>,
}

#[derive(Deserialize)]
struct Rtt {
    avg: f64,
}

#[derive(Deserialize)]
struct Bug {
    bug: u64,
    url: String,
    filed: bool,
}

/// A power command or read (BMC, PDU, iLO, Moonshot): at least one of these is there.
#[derive(Deserialize)]
struct Power {
    sent: Option<String>,
    power_before: Option<String>,
    power: Option<String>,
}

#[derive(Deserialize)]
struct Ssh {
    command: String,
    session: String,
}

#[derive(Deserialize)]
struct Mdm {
    device_name: String,
    restart: String,
}

#[derive(Deserialize)]
struct Loan {
    loaned_to: String,
    loaned_until: String,
}

fn shape<T: serde::de::DeserializeOwned>(r: &Value) -> Option<T> {
    T::deserialize(r).ok()
}

/// A result in words: the known shapes (the API's `JobResult`) first, else key=value.
fn result_words(r: &Value) -> String {
    let reboot = |b: &Reboot| format!("{} worked: {}", b.worked, b.proof);
    if let Some(b) = shape::<Reboot>(r) {
        return reboot(&b);
    }
    if let Some(i) = shape::<Reimage>(r) {
        return format!("network boot {}; {}", i.network_boot, reboot(&i.reboot));
    }
    if let Some(l) = shape::<LoanReturn>(r) {
        let lifted = if l.quarantine_lifted { "quarantine lifted" } else { "quarantine not lifted" };
        return format!("{lifted}; network boot {}; {}", l.reimage.network_boot, reboot(&l.reimage.reboot));
    }
    if let Some(s) = shape::<Status>(r) {
        let power = match s.power {
            Some(PowerReading { source, state: Some(state), .. }) => format!("power {state} ({source})"),
            Some(PowerReading { source, error, .. }) => {
                format!("power unknown ({source}: {})", error.as_deref().unwrap_or("no reading"))
            }
            None => "power unknown (no BMC)".into(),
        };
        let answers = if s.answers { "answers" } else { "does not answer" };
        return format!("{power}; {answers} {}", s.probe);
    }
    if let Some(p) = shape::<Ping>(r) {
        let rtt = p.rtt_ms.map(|t| format!(", avg {:.2} ms", t.avg)).unwrap_or_default();
        return format!("{}/{} replies from {}{rtt}", p.received, p.sent, p.address);
    }
    if let Some(b) = shape::<Bug>(r) {
        let how = if b.filed { "filed" } else { "commented on" };
        return format!("bug {} {how}: {}", b.bug, b.url);
    }
    if let Some(s) = shape::<Ssh>(r) {
        return format!("ssh {:?}: session {}", s.command, s.session);
    }
    if let Some(m) = shape::<Mdm>(r) {
        return format!("restart {} for {} (in-band)", m.restart, m.device_name);
    }
    if let Some(l) = shape::<Loan>(r) {
        return format!("loaned to {} until {}", l.loaned_to, l.loaned_until);
    }
    if let Some(p) = shape::<Power>(r).filter(|p| p.sent.is_some() || p.power.is_some() || p.power_before.is_some()) {
        let mut words = Vec::new();
        if let Some(s) = p.sent {
            words.push(format!("sent {s}"));
        }
        match (p.power_before, p.power) {
            (Some(b), Some(a)) => words.push(format!("power {b} → {a}")),
            (None, Some(a)) => words.push(format!("power {a}")),
            (Some(b), None) => words.push(format!("power was {b}")),
            (None, None) => {}
        }
        return words.join("; ");
    }
    match r {
        Value::Object(o) if o.len() == 1 && o.contains_key("evidence") => "evidence taken before the power cut".into(),
        _ => key_values(r),
    }
}

/// `key=value …` of an object's fields: scalars as they are, nested objects and lists
/// by their size, the evidence by its presence.
fn key_values(r: &Value) -> String {
    let Value::Object(o) = r else { return scalar(r) };
    o.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            Value::Object(_) if k == "evidence" => "evidence=taken".to_string(),
            Value::Object(inner) => format!("{k}={{{} fields}}", inner.len()),
            Value::Array(a) => format!("{k}=[{} items]", a.len()),
            v => format!("{k}={}", scalar(v)),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().any(char::is_whitespace) || s.is_empty() => format!("{s:?}"),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Whole words while they fit in `width` characters, then "…" (one line).
pub fn fit(text: &str, width: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= width {
        return text;
    }
    let mut out = String::new();
    for word in text.split(' ') {
        let len = out.chars().count() + usize::from(!out.is_empty()) + word.chars().count();
        // Room for the "…" too; a first word is kept whole whatever its length.
        if !out.is_empty() && len + 1 > width {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job(state: &str, result: Value, error: Option<&str>) -> JobRecord {
        JobRecord {
            state: state.into(),
            result: (!result.is_null()).then_some(result),
            error: error.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn a_reboot_says_the_step_that_worked_and_its_proof() {
        let r = json!({"worked": "ipmi_reset", "proof": "down at 12:00:03, back at 12:01:10 (67 s)",
            "seconds": 70.2, "chain_seconds": 95.0,
            "attempts": [{"step": "ssh_reboot", "outcome": "not proven", "reason": "still up after 30 s"}]});
        assert_eq!(
            summarise(&job("succeeded", r, None), TABLE),
            "ipmi_reset worked: down at 12:00:03, back at 12:01:10 (67 s)"
        );
        let reimage = json!({"network_boot": "set", "note": "n", "reboot": {"worked": "ipmi_cycle", "proof": "p",
            "seconds": 1.0, "chain_seconds": 1.0, "attempts": []}});
        assert_eq!(summarise(&job("succeeded", reimage, None), TABLE), "network boot set; ipmi_cycle worked: p");
    }

    #[test]
    fn status_and_ping_in_words() {
        let s = json!({"address": "m1", "ip": "10.0.0.1", "probe": "icmp", "answers": true,
            "power": {"source": "ipmi", "state": "on"}});
        assert_eq!(summarise(&job("succeeded", s, None), TABLE), "power on (ipmi); answers icmp");
        let s = json!({"address": "m1", "ip": "10.0.0.1", "probe": "tcp:22", "answers": false, "power": null});
        assert_eq!(summarise(&job("succeeded", s, None), TABLE), "power unknown (no BMC); does not answer tcp:22");
        let p = json!({"host": "h", "address": "127.0.0.1", "method": "socket", "sent": 2, "received": 2,
            "rtt_ms": {"min": 0.01, "avg": 0.04, "max": 0.05}});
        assert_eq!(summarise(&job("succeeded", p, None), TABLE), "2/2 replies from 127.0.0.1, avg 0.04 ms");
    }

    #[test]
    fn a_failure_says_why_first() {
        let j = job("failed", Value::Null, Some("no step could run: ipmi_reset skipped (no [ipmi])\nmore"));
        assert_eq!(summarise(&j, TABLE), "no step could run: ipmi_reset skipped (no [ipmi])");
        let j = job("failed", json!({"evidence": {"before": "ipmi_reset"}}), Some("BMC refused"));
        assert_eq!(summarise(&j, TABLE), "BMC refused; evidence taken before the power cut");
    }

    #[test]
    fn anything_else_is_key_values_cut_between_words() {
        let r = json!({"steps": [{"name": "a"}, {"name": "b"}], "detail": {"x": 1},
            "note": "a long sentence that goes on and on and on well past the width of one table cell in a terminal"});
        let full = summarise(&job("succeeded", r.clone(), None), OUTCOME);
        assert!(full.contains("steps=[2 items]") && full.contains("detail={1 fields}"), "{full}");
        assert!(!full.contains("[{"), "no JSON: {full}");
        let s = summarise(&job("succeeded", r, None), 60);
        assert!(s.chars().count() <= 60 && s.ends_with('…'), "{s}");
        // Every word shown is a whole word of the full rendering.
        let words: Vec<&str> = full.split(' ').collect();
        assert!(s.trim_end_matches('…').split(' ').all(|w| words.contains(&w)), "{s} from {full}");
    }

    #[test]
    fn fit_never_cuts_inside_a_word() {
        assert_eq!(fit("alpha beta gamma", 100), "alpha beta gamma");
        assert_eq!(fit("alpha beta gamma", 12), "alpha beta…");
        assert_eq!(fit("https://example.com/a/very/long/url", 10), "https://example.com/a/very/long/url…");
        let words: Vec<String> = (0..50).map(|n| format!("w{n}")).collect();
        let s = fit(&words.join(" "), 40);
        let shown: Vec<&str> = s.trim_end_matches('…').split(' ').collect();
        assert!(shown.iter().all(|w| words.iter().any(|x| x == w)), "{s}");
        assert!(s.chars().count() <= 40);
    }
}
