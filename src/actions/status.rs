//! `status`: what state is the machine in? The power state from its BMC
//! (IPMI, else Redfish, else a Moonshot chassis manager) when the inventory has one, and whether the machine answers, by the
//! probe its hardware class uses. It reports; it changes nothing, and a BMC
//! that cannot be asked is part of the report, not a failure.

use super::report::{PowerReading, Report, StatusReport};
use super::{ActionContext, ActionError, Subject, ipmi, moonshot, redfish, resolve};
use crate::drivers::counted;
use crate::drivers::ipmi as ipmi_driver;
use crate::drivers::reachability::{self, ProbeError, ProbeSettings};
use crate::drivers::redfish as redfish_driver;

pub async fn run(on: &Subject, cx: &ActionContext) -> Result<Report, ActionError> {
    let m = on.machine()?;
    let power = match (&m.ipmi, &m.redfish) {
        (None, None) if m.moonshot.is_some() => Some(moonshot::reading(m, cx).await?),
        (None, None) => None,
        (None, Some(_)) => {
            let bmc = redfish::redfish_target(m)?;
            Some(match redfish_driver::power_state(&bmc, &cx.cancel).await.map_err(counted) {
                Ok(state) => {
                    cx.log(format!("Redfish service {} reports power {}", bmc.base_url, redfish::name(&state)));
                    PowerReading { source: "redfish", state: Some(redfish::power(&state)), error: None }
                }
                Err(redfish_driver::RedfishError::Cancelled) => return Err(ActionError::Cancelled),
                Err(e) => {
                    cx.log(format!("cannot read the power state: {e}"));
                    PowerReading { source: "redfish", state: None, error: Some(e.to_string()) }
                }
            })
        }
        (Some(_), _) => {
            let bmc = ipmi::ipmi_target(m, cx)?;
            Some(match ipmi_driver::power_status(&bmc, &cx.cancel).await.map_err(counted) {
                Ok(state) => {
                    cx.log(format!("BMC {} reports power {}", bmc.host, ipmi::name(state)));
                    PowerReading { source: "ipmi", state: Some(ipmi::power(state)), error: None }
                }
                Err(ipmi_driver::IpmiError::Cancelled) => return Err(ActionError::Cancelled),
                Err(e) => {
                    cx.log(format!("cannot read the power state: {e}"));
                    PowerReading { source: "ipmi", state: None, error: Some(e.to_string()) }
                }
            })
        }
    };
    let probe = m.class.reachability;
    let probe_name = probe.to_string();
    let addr = resolve(&m.address, cx).await?.addr;
    let settings = ProbeSettings { icmp: cx.settings.ping.clone(), ..ProbeSettings::default() };
    let answers = match reachability::answers(addr, probe, &settings, &cx.cancel).await {
        Ok(a) => a,
        Err(ProbeError::Cancelled) => return Err(ActionError::Cancelled),
        Err(ProbeError::Ping(e)) => return Err(ActionError::Config(e.to_string())),
    };
    cx.log(format!("{} ({addr}) {} to {probe_name}", m.address, if answers { "answers" } else { "does not answer" }));
    Ok(StatusReport { address: m.address.clone(), ip: addr.to_string(), probe: probe_name, answers, power }.into())
}
