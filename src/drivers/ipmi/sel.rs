//! The System Event Log as evidence: `ipmitool -c sel list last N`, parsed into records.
//!
//! `sel list`, not `sel elist`: the extended list looks sensor names up in the SDR
//! repository, and when the BMC reports an empty one ipmitool "rebuilds" it, which
//! issues Clear SDR Repository and re-adds records (ipmitool `lib/ipmi_sdr.c`
//! `ipmi_sdr_start`): reading evidence must not change the BMC. The rebuild also
//! prints `SDRR successfully erased` and `Err in cmd get sensor sdr info` on stdout
//! among the records, and other ipmitool versions print other notes there, so the
//! parser keeps only lines shaped like a record.

use tokio_util::sync::CancellationToken;

use super::{IpmiError, IpmiTarget, run};

/// Characters kept of each field: a record's fields are words, not essays.
const FIELD_MAX: usize = 200;

/// One SEL record as ipmitool prints it (`-c`: comma-separated, or `|`-separated
/// without it): the record id (hex), date and time (or `Pre-Init` and the raw
/// timestamp), sensor, event, and whether it was asserted or deasserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelEntry {
    pub id: String,
    pub date: String,
    pub time: String,
    pub sensor: String,
    pub event: String,
    pub direction: String,
}

/// The newest `last` SEL records, oldest first, without side effects on the BMC
/// (see the module's notes). Fields are scrubbed of the password and bounded.
pub async fn sel_entries(
    target: &IpmiTarget,
    last: u32,
    cancel: &CancellationToken,
) -> Result<Vec<SelEntry>, IpmiError> {
    if last == 0 {
        target.validate()?;
        return Ok(Vec::new());
    }
    let n = last.to_string();
    // `-c` is an option: getopt takes it after `-E`, before the command word.
    let out = run(target, &["-c", "sel", "list", "last", &n], false, cancel).await?;
    let secret = secrecy::ExposeSecret::expose_secret(&target.password).to_string();
    let mut entries = parse_sel(&out);
    for e in &mut entries {
        for f in [&mut e.id, &mut e.date, &mut e.time, &mut e.sensor, &mut e.event, &mut e.direction] {
            *f = crate::drivers::scrub(f, &secret, FIELD_MAX);
        }
    }
    // `last N` may give more on some versions; the newest N are the last ones printed.
    let extra = entries.len().saturating_sub(last as usize);
    entries.drain(..extra);
    Ok(entries)
}

/// Records from `sel list` output, CSV (`-c`) or `|`-separated; anything else
/// (`SDRR successfully erased`, `SEL has no entries`, warnings) is dropped.
pub fn parse_sel(stdout: &str) -> Vec<SelEntry> {
    stdout.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<SelEntry> {
    let sep = if line.contains('|') { '|' } else { ',' };
    let fields: Vec<&str> = line.split(sep).map(str::trim).collect();
    // bmclib's rule for `sel list`: at least six fields. OEM records print fewer
    // meaningful ones but still six columns.
    if fields.len() < 6 {
        return None;
    }
    let id = fields[0];
    if id.is_empty() || id.len() > 8 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let last = fields.len() - 1;
    Some(SelEntry {
        id: id.to_string(),
        date: fields[1].to_string(),
        time: fields[2].to_string(),
        sensor: fields[3].to_string(),
        // An event description with the separator in it is rejoined.
        event: fields[4..last].join(&format!("{sep} ")),
        direction: fields[last].to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, date: &str, time: &str, sensor: &str, event: &str, direction: &str) -> SelEntry {
        SelEntry {
            id: id.into(),
            date: date.into(),
            time: time.into(),
            sensor: sensor.into(),
            event: event.into(),
            direction: direction.into(),
        }
    }

    #[test]
    fn parses_csv_records_and_drops_the_sdr_rebuild_lines_among_them() {
        // As ipmitool 1.8.19 prints `-c sel elist` against an ipmi_sim whose SDR
        // repository is empty: the rebuild's lines come first, on stdout.
        let out = "SDRR successfully erased\nErr in cmd get sensor sdr info\n\
                   1, Pre-Init ,0000000656,Temperature #0x01,Lower Non-critical going high,Asserted\n\
                   2,04/01/2026,10:15:02,Memory #0x02,Uncorrectable ECC,Asserted\n\n";
        assert_eq!(
            parse_sel(out),
            [
                entry("1", "Pre-Init", "0000000656", "Temperature #0x01", "Lower Non-critical going high", "Asserted"),
                entry("2", "04/01/2026", "10:15:02", "Memory #0x02", "Uncorrectable ECC", "Asserted"),
            ]
        );
    }

    #[test]
    fn parses_the_table_form_and_rejoins_events_with_the_separator() {
        let out = "   a | 04/01/2026 | 10:15:02 | Power Supply #0x51 | Failure detected | Deasserted\n\
                   SEL has no entries\n\
                   1f,04/01/2026,10:16:00,Processor #0x03,IERR, thermal trip,Asserted\n";
        let got = parse_sel(out);
        assert_eq!(
            got[0],
            entry("a", "04/01/2026", "10:15:02", "Power Supply #0x51", "Failure detected", "Deasserted")
        );
        assert_eq!(got[1].event, "IERR, thermal trip");
        assert_eq!(got[1].direction, "Asserted");
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn lines_not_shaped_like_a_record_are_not_records() {
        for junk in [
            "SDRR successfully erased",
            "Err in cmd get sensor sdr info",
            "Get SDR 0000 command failed: Requested sensor, data, or record not found",
            "Loading IANA PEN Registry...",
            "x, a, b, c, d, e",
            "1,2,3",
            "",
        ] {
            assert_eq!(parse_sel(junk), [], "{junk:?}");
        }
    }
}
