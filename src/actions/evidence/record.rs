//! The evidence as the job keeps it (`evidence` in its result, OpenAPI `Evidence`),
//! and as people read it: the job log's summary and the bug's excerpt.
//!
//! Every piece is bounded where it is taken (console bytes, entries, field lengths);
//! what was cut says so (`truncated`). Text from a device went through
//! `drivers::scrub` with its password before it got here.

use serde::Serialize;
use utoipa::ToSchema;

use crate::task::Task;

/// What roller saw of the machine right before the first step that cut its power
/// (once per job: after a power cut the state it would show is gone).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Evidence {
    /// The step it was taken before.
    #[schema(value_type = String, example = "ipmi_reset")]
    pub before: Task,
    /// When the capture started (RFC 3339).
    pub taken_at: String,
    /// How long it took; never more than `budget_secs`.
    pub seconds: f64,
    pub budget_secs: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<Probes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sel: Option<SelEvidence>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redfish_log: Option<RedfishLogEvidence>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console: Option<ConsoleEvidence>,
    /// Each piece not captured, and why.
    pub missing: Vec<Missing>,
}

/// The pieces of evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Piece {
    Probes,
    Sel,
    RedfishLog,
    Console,
}

impl Piece {
    pub const ALL: [Piece; 4] = [Piece::Probes, Piece::Sel, Piece::RedfishLog, Piece::Console];

    pub fn name(self) -> &'static str {
        match self {
            Piece::Probes => "probes",
            Piece::Sel => "SEL",
            Piece::RedfishLog => "Redfish log",
            Piece::Console => "console",
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Missing {
    pub piece: Piece,
    #[schema(example = "BMC bmc1 did not answer within 3s")]
    pub why: String,
}

/// Whether the machine answers: ICMP, and TCP to its ssh port (with the banner) and
/// to the class's TCP probe. "Ping answers but ssh does not" points at userspace.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Probes {
    pub address: String,
    /// `answers`, `silent`, or `not probed: <why>`.
    #[schema(example = "answers")]
    pub icmp: String,
    pub tcp: Vec<TcpProbe>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TcpProbe {
    pub port: u16,
    /// `accepted`, `refused` or `silent`.
    #[schema(example = "accepted")]
    pub answer: &'static str,
    /// The first line the service sent (an ssh server's version).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "SSH-2.0-OpenSSH_9.2p1")]
    pub banner: Option<String>,
}

/// The newest IPMI SEL records, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SelEvidence {
    pub bmc: String,
    pub entries: Vec<SelRecord>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SelRecord {
    pub id: String,
    pub date: String,
    pub time: String,
    pub sensor: String,
    pub event: String,
    pub direction: String,
}

/// The newest Redfish log entries over the system's and managers' log services, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RedfishLogEvidence {
    pub bmc: String,
    pub entries: Vec<RedfishLogRecord>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RedfishLogRecord {
    pub service: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    pub message: String,
}

/// The console's newest output over IPMI Serial-over-LAN.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsoleEvidence {
    pub bmc: String,
    /// The console text, newest last (CRLF made LF, control bytes dropped).
    pub text: String,
    /// Console bytes read, and for how long.
    pub bytes: usize,
    pub seconds: f64,
    /// What was cut to keep it bounded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<String>,
    /// A SOL session (a person's, or an earlier capture's) was active and was ended first.
    pub ended_a_session: bool,
    /// How the capture's own session ended: `cleanly`, `by the BMC`, `killed, then deactivated`
    /// or `killed; deactivating failed`.
    pub session_end: &'static str,
}

/// Lines of console quoted in a bug, and characters at most.
const BUG_CONSOLE_LINES: usize = 40;
const BUG_CONSOLE_CHARS: usize = 4000;

impl Evidence {
    pub fn has(&self, piece: Piece) -> bool {
        match piece {
            Piece::Probes => self.probes.is_some(),
            Piece::Sel => self.sel.is_some(),
            Piece::RedfishLog => self.redfish_log.is_some(),
            Piece::Console => self.console.is_some(),
        }
    }

    /// One line for the job log: what each piece found, without the console text.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.probes {
            parts.push(format!("probes: {}", probes_line(p)));
        }
        if let Some(s) = &self.sel {
            parts.push(format!("SEL: {} entries from {}", s.entries.len(), s.bmc));
        }
        if let Some(r) = &self.redfish_log {
            parts.push(format!("Redfish log: {} entries from {}", r.entries.len(), r.bmc));
        }
        if let Some(c) = &self.console {
            parts.push(format!("console: {} bytes over {:.1}s from {}", c.bytes, c.seconds, c.bmc));
        }
        for m in &self.missing {
            parts.push(format!("no {}: {}", m.piece.name(), m.why));
        }
        format!(
            "evidence before {} ({:.1}s of a {}s budget): {}",
            self.before,
            self.seconds,
            self.budget_secs,
            parts.join("; ")
        )
    }

    /// For a bug: the summary, the records, and the console's last lines, bounded.
    pub fn excerpt(&self, job: Option<&str>) -> String {
        let mut out = format!(
            "Evidence taken before {} at {} ({:.1}s){}:\n",
            self.before,
            self.taken_at,
            self.seconds,
            job.map(|j| format!("; all of it is in roller job {j}")).unwrap_or_default()
        );
        if let Some(p) = &self.probes {
            out.push_str(&format!("- probes: {}\n", probes_line(p)));
        }
        if let Some(s) = &self.sel {
            out.push_str(&format!("- SEL of {}, newest {}:\n", s.bmc, s.entries.len()));
            for e in &s.entries {
                let line = [&e.id, &e.date, &e.time, &e.sensor, &e.event, &e.direction].map(|s| s.as_str()).join(" | ");
                out.push_str(&format!("    {line}\n"));
            }
        }
        if let Some(r) = &self.redfish_log {
            out.push_str(&format!("- Redfish log of {}, newest {}:\n", r.bmc, r.entries.len()));
            for e in &r.entries {
                let when = e.created.as_deref().unwrap_or("-");
                let severity = e.severity.as_deref().unwrap_or("-");
                out.push_str(&format!("    {when} {severity} {}: {}\n", e.id, e.message));
            }
        }
        if let Some(c) = &self.console {
            let (tail, cut) = last_lines(&c.text, BUG_CONSOLE_LINES, BUG_CONSOLE_CHARS);
            out.push_str(&format!(
                "- console (SOL on {}, {} bytes over {:.1}s{}):\n",
                c.bmc,
                c.bytes,
                c.seconds,
                if cut { format!("; its last {} lines", tail.lines().count()) } else { String::new() }
            ));
            for l in tail.lines() {
                out.push_str(&format!("    {l}\n"));
            }
        }
        for m in &self.missing {
            out.push_str(&format!("- no {}: {}\n", m.piece.name(), m.why));
        }
        out
    }
}

fn probes_line(p: &Probes) -> String {
    let mut parts = vec![format!("{} icmp {}", p.address, p.icmp)];
    for t in &p.tcp {
        let banner = t.banner.as_deref().map(|b| format!(" ({b})")).unwrap_or_default();
        parts.push(format!("tcp:{} {}{banner}", t.port, t.answer));
    }
    parts.join(", ")
}

/// The last `lines` lines of `text`, at most `chars` characters (cut at a line);
/// whether anything was left out.
pub fn last_lines(text: &str, lines: usize, chars: usize) -> (String, bool) {
    let all: Vec<&str> = text.lines().collect();
    let mut kept: Vec<String> = Vec::new();
    let mut size = 0;
    for l in all.iter().rev().take(lines) {
        let l = crate::drivers::bounded(l, chars);
        if !kept.is_empty() && size + l.len() > chars {
            break;
        }
        size += l.len() + 1;
        kept.push(l);
    }
    kept.reverse();
    let cut = kept.len() < all.len();
    (kept.join("\n"), cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(console: &str, sel: usize) -> Evidence {
        let record = |i: usize| SelRecord {
            id: format!("{i:x}"),
            date: "04/01/2026".into(),
            time: "10:00:00".into(),
            sensor: "Memory #0x02".into(),
            event: "Uncorrectable ECC".into(),
            direction: "Asserted".into(),
        };
        Evidence {
            before: Task::IpmiCycle,
            taken_at: "2026-04-01T10:00:00.000Z".into(),
            seconds: 6.2,
            budget_secs: 10.0,
            probes: Some(Probes {
                address: "10.0.0.10".into(),
                icmp: "answers".into(),
                tcp: vec![TcpProbe { port: 22, answer: "accepted", banner: Some("SSH-2.0-OpenSSH_9.2p1".into()) }],
            }),
            sel: Some(SelEvidence { bmc: "bmc1".into(), entries: (1..=sel).map(record).collect() }),
            redfish_log: None,
            console: Some(ConsoleEvidence {
                bmc: "bmc1".into(),
                text: console.into(),
                bytes: console.len(),
                seconds: 5.0,
                truncated: None,
                ended_a_session: false,
                session_end: "cleanly",
            }),
            missing: vec![Missing { piece: Piece::RedfishLog, why: "no [redfish] for this machine".into() }],
        }
    }

    #[test]
    fn the_summary_names_every_piece_and_every_missing_one_with_why() {
        let s = evidence("BUG: soft lockup\n", 2).summary();
        assert_eq!(
            s,
            "evidence before ipmi_cycle (6.2s of a 10s budget): probes: 10.0.0.10 icmp answers, tcp:22 accepted \
             (SSH-2.0-OpenSSH_9.2p1); SEL: 2 entries from bmc1; console: 17 bytes over 5.0s from bmc1; no Redfish \
             log: no [redfish] for this machine"
        );
    }

    #[test]
    fn the_bug_excerpt_is_bounded_and_ends_with_the_consoles_last_lines() {
        let console: String = (0..5000).map(|i| format!("[{i:5}] BUG: soft lockup - CPU#3 stuck\n")).collect();
        let e = evidence(&console, 200);
        let x = e.excerpt(Some("job-1"));
        assert!(x.starts_with("Evidence taken before ipmi_cycle at 2026-04-01T10:00:00.000Z (6.2s); all of it is in roller job job-1:\n"), "{x}");
        assert!(x.contains("    c8 | 04/01/2026 | 10:00:00 | Memory #0x02 | Uncorrectable ECC | Asserted\n"), "{x}");
        assert!(x.contains("its last 40 lines") && x.contains("[ 4999] BUG") && !x.contains("[ 4959] BUG"), "{x}");
        assert!(x.ends_with("- no Redfish log: no [redfish] for this machine\n"), "{x}");
        // 200 SEL lines and 40 console lines, whatever the console held.
        assert!(x.len() < 20_000 && console.len() > 100_000, "{}", x.len());
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["missing"][0]["piece"], "redfish_log");
        assert_eq!(json["before"], "ipmi_cycle");
    }

    #[test]
    fn last_lines_keeps_the_end_within_both_bounds() {
        assert_eq!(last_lines("a\nb\nc", 2, 100), ("b\nc".to_string(), true));
        assert_eq!(last_lines("a\nb", 5, 100), ("a\nb".to_string(), false));
        let (t, cut) = last_lines("xxxx\nyyyy\nzzzz", 10, 9);
        assert_eq!((t.as_str(), cut), ("yyyy\nzzzz", true));
        // One line longer than the bound is cut, not dropped.
        let (t, _) = last_lines(&"q".repeat(50), 3, 10);
        assert_eq!(t.chars().count(), 11);
    }
}
