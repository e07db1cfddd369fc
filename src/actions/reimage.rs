//! `reimage`: set the machine's next boot to the network (PXE), then reboot it
//! through its reboot chain, so it comes back into the installer.
//!
//! The boot device is set through the BMC the class names (`network_boot`), or
//! IPMI when the machine has it, else Redfish, else its Moonshot chassis manager. Roller proves the reboot; what
//! the installer then does is the deployment system's business, and the result
//! says so rather than claiming a finished install.

use super::report::{ReimageReport, Report};
use super::{ActionContext, ActionError, Subject, ipmi, moonshot, reboot, redfish};
use crate::drivers::ipmi as ipmi_driver;
use crate::drivers::redfish as redfish_driver;
use crate::inventory::{Machine, NetworkBoot};

pub async fn run(on: &Subject, cx: &ActionContext) -> Result<Report, ActionError> {
    Ok(reimage(on, cx).await?.into())
}

/// `reimage`, typed (`return_loan` reports it inside its own result).
pub(crate) async fn reimage(on: &Subject, cx: &ActionContext) -> Result<ReimageReport, ActionError> {
    let m = on.machine()?;
    let via = match (m.class.network_boot, &m.ipmi, &m.redfish) {
        (Some(v), _, _) => v,
        (None, Some(_), _) => NetworkBoot::Ipmi,
        (None, None, Some(_)) => NetworkBoot::Redfish,
        (None, None, None) if m.moonshot.is_some() => NetworkBoot::Moonshot,
        (None, None, None) => {
            return Err(ActionError::Config(format!(
                "reimage: {} has neither [ipmi] nor [redfish] nor [moonshot] to set a network boot with",
                m.id
            )));
        }
    };
    let network_boot = set_network_boot(m, via, cx).await?;
    cx.log(format!("next boot: network ({network_boot}); rebooting"));
    let renew = match via {
        NetworkBoot::Ipmi => Some(ipmi::ipmi_target(m, cx)?),
        // A Redfish or Moonshot one-time override lasts until the next boot.
        NetworkBoot::Redfish | NetworkBoot::Moonshot => None,
    };
    match reboot::chain(on, cx, renew.as_ref()).await {
        Ok(chain) => Ok(ReimageReport {
            evidence: None,
            network_boot,
            reboot: chain,
            note: "the machine rebooted into its network boot; the install itself is not watched by roller",
        }),
        Err(e @ (ActionError::Config(_) | ActionError::Cancelled)) => Err(e),
        Err(e) => Err(e.map_text(|why| format!("reimage: network boot set ({network_boot}), but {why}"))),
    }
}

async fn set_network_boot(m: &Machine, via: NetworkBoot, cx: &ActionContext) -> Result<String, ActionError> {
    match via {
        NetworkBoot::Ipmi => {
            let bmc = ipmi::ipmi_target(m, cx)?;
            cx.log(format!("sending chassis bootdev pxe to {}", bmc.host));
            ipmi_driver::boot_pxe(&bmc, &cx.cancel).await.map_err(|e| ipmi::map_error("reimage", e))?;
            Ok(format!("IPMI chassis bootdev pxe on {}", bmc.host))
        }
        NetworkBoot::Redfish => {
            let bmc = redfish::redfish_target(m)?;
            cx.log(format!("setting a one-time Pxe boot override on {}", bmc.base_url));
            redfish_driver::boot_pxe_once(&bmc, &cx.cancel).await.map_err(|e| redfish::map_error("reimage", e))?;
            Ok(format!("Redfish BootSourceOverrideTarget Pxe (once) on {}", bmc.base_url))
        }
        NetworkBoot::Moonshot => moonshot::pxe_once(m, cx).await,
    }
}
