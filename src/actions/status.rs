//! `status`: what state is the machine in? The power state from its BMC
//! (IPMI) when the inventory has one, and whether the machine answers, by the
//! probe its hardware class uses. It reports; it changes nothing, and a BMC
//! that cannot be asked is part of the report, not a failure.

use serde_json::json;

use super::{ActionContext, ActionError, Target, ipmi, machine, resolve};
use crate::drivers::ipmi as ipmi_driver;
use crate::drivers::reachability::{self, Probe, ProbeError, ProbeSettings};

pub async fn run(target: &Target, cx: &ActionContext) -> Result<serde_json::Value, ActionError> {
    let m = machine(target, cx)?;
    let power = match &m.ipmi {
        None => json!(null),
        Some(_) => {
            let bmc = ipmi::ipmi_target(&m)?;
            match ipmi_driver::power_status(&bmc, &cx.cancel).await {
                Ok(state) => {
                    cx.log(format!("BMC {} reports power {}", bmc.host, ipmi::name(state)));
                    json!({ "source": "ipmi", "state": ipmi::name(state) })
                }
                Err(ipmi_driver::IpmiError::Cancelled) => return Err(ActionError::Cancelled),
                Err(e) => {
                    cx.log(format!("cannot read the power state: {e}"));
                    json!({ "source": "ipmi", "error": e.to_string() })
                }
            }
        }
    };
    let probe = m.class.reachability;
    let probe_name = match probe {
        Probe::Icmp => "icmp".to_string(),
        Probe::Tcp(port) => format!("tcp:{port}"),
    };
    let addr = resolve(&m.address).await?;
    let settings = ProbeSettings { icmp: cx.settings.ping.clone(), ..ProbeSettings::default() };
    let answers = match reachability::answers(addr, probe, &settings, &cx.cancel).await {
        Ok(a) => a,
        Err(ProbeError::Cancelled) => return Err(ActionError::Cancelled),
        Err(ProbeError::Ping(e)) => return Err(ActionError::Config(e.to_string())),
    };
    cx.log(format!("{} ({addr}) {} to {probe_name}", m.address, if answers { "answers" } else { "does not answer" }));
    Ok(json!({
        "address": m.address,
        "ip": addr.to_string(),
        "probe": probe_name,
        "answers": answers,
        "power": power,
    }))
}
