//! Bug templates: where a bug goes, its summary and its first comment, with
//! placeholders filled from the machine and the job.

/// Where a bug goes, its summary and its first comment. Placeholders
/// ([`BugTemplate::PLACEHOLDERS`]) are filled from [`BugFields`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BugTemplate {
    pub product: String,
    pub component: String,
    pub summary: String,
    pub description: String,
}

/// What a bug template can say about the machine and the job.
pub struct BugFields<'a> {
    pub host: &'a str,
    pub alias: &'a str,
    pub dc: &'a str,
    pub ip: &'a str,
    pub requester: &'a str,
    pub job: &'a str,
    pub log: &'a str,
}

impl BugTemplate {
    pub const PLACEHOLDERS: [&'static str; 7] = ["host", "alias", "dc", "ip", "requester", "job", "log"];

    /// The original's tracker template.
    pub fn default_tracker() -> Self {
        Self {
            product: "Infrastructure & Operations".into(),
            component: "CIDuty".into(),
            summary: "[{dc}] {alias} problem tracking".into(),
            description: "Problem tracking for {host}. Filed by roller.".into(),
        }
    }

    /// The original's reboot-bug template.
    pub fn default_reboot() -> Self {
        Self {
            product: "Infrastructure & Operations".into(),
            component: "DCOps".into(),
            summary: "{host} is unreachable".into(),
            description: "Reboot {host} {ip}\nRequested by {requester} (roller job {job})\n\
                          Relops controller action failed:\n{log}"
                .into(),
        }
    }

    pub fn summary_for(&self, f: &BugFields) -> String {
        fill(&self.summary, f)
    }

    pub fn description_for(&self, f: &BugFields) -> String {
        fill(&self.description, f)
    }

    /// The first `{name}` in `s` that is not a known placeholder.
    pub fn unknown_placeholder(s: &str) -> Option<String> {
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let close = after.find('}')?;
            let name = &after[..close];
            if !Self::PLACEHOLDERS.contains(&name) {
                return Some(name.to_string());
            }
            rest = &after[close + 1..];
        }
        None
    }
}

/// One pass over the template, so a value that itself contains `{log}` is not
/// expanded again. The bug bodies are JSON built by serde: no value can break
/// the request (the original's string-built JSON could).
fn fill(template: &str, f: &BugFields) -> String {
    let mut out = String::with_capacity(template.len() + f.log.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after.find('}').and_then(|close| {
            let v = match &after[..close] {
                "host" => f.host,
                "alias" => f.alias,
                "dc" => f.dc,
                "ip" => f.ip,
                "requester" => f.requester,
                "job" => f.job,
                "log" => f.log,
                _ => return None,
            };
            Some((v, close))
        });
        match value {
            Some((v, close)) => {
                out.push_str(v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bug_templates_fill_each_placeholder_once() {
        let f = BugFields {
            host: "ms1.example",
            alias: "ms1",
            dc: "MDC1",
            ip: "10.0.0.1",
            requester: "jdoe",
            job: "j-1",
            log: "ssh_reboot failed: {host} \"quoted\"",
        };
        assert_eq!(BugTemplate::default_tracker().summary_for(&f), "[MDC1] ms1 problem tracking");
        let d = BugTemplate::default_reboot().description_for(&f);
        assert_eq!(
            d,
            "Reboot ms1.example 10.0.0.1\nRequested by jdoe (roller job j-1)\nRelops controller action failed:\n\
             ssh_reboot failed: {host} \"quoted\""
        );
        assert_eq!(fill("{nope} {host", &f), "{nope} {host");
        assert_eq!(BugTemplate::unknown_placeholder("{host} {hots}").as_deref(), Some("hots"));
        assert_eq!(BugTemplate::unknown_placeholder("{log} {ip} {requester}"), None);
    }
}
