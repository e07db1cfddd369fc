//! The closed set of tasks roller can run, and one record per task.
//!
//! Everything the rest of roller asks about a task (its name, its help, how often
//! the queue may hand it out, whether it restarts the machine, whether a reboot
//! chain may use it, what it needs from the inventory) comes from one exhaustive
//! match in [`Task::spec`]: a new variant does not compile until every answer is
//! given, so a new restarting task cannot slip past the reboot-loop breaker.
//!
//! A leaf: it imports nothing from the rest of the crate, so the API, the queue,
//! the inventory and the actions can all name tasks without importing each other.

use std::fmt;

/// Every task roller knows. Adding one means a variant, its [`TaskSpec`] in
/// [`Task::spec`], a row in [`Task::ALL`] (a test checks it) and its action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(test, derive(strum::EnumIter))]
pub enum Task {
    Ping,
    Status,
    IpmiStatus,
    IpmiOn,
    IpmiOff,
    IpmiCycle,
    IpmiReset,
    IpmiList,
    RedfishStatus,
    RedfishOn,
    RedfishOff,
    RedfishRestart,
    RedfishReset,
    SshReboot,
    SnmpReboot,
    SnmpRebootDelay,
    Reboot,
    FileBugzillaBug,
    Reimage,
    XenapiReboot,
    IloReboot,
    MoonshotReset,
    MdmRestart,
    Loan,
    ReturnLoan,
    /// Does nothing and succeeds, so the benchmarks measure roller (API, queue, runner)
    /// rather than a driver. Outside [`Task::ALL`]: enabled only when `tasks.enabled` /
    /// `TASK_NAMES` names it, never by default.
    Noop,
}

/// What a task needs from the machine's inventory entry before it can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Runs on any worker id (an IP address, or a name DNS knows).
    Nothing,
    /// The machine must be in the inventory.
    Inventory,
    Ipmi,
    Redfish,
    /// `[ipmi]`, `[redfish]` or `[moonshot]`: something that can set the next boot device.
    BootControl,
    Ssh,
    Pdu,
    /// `[xen] vm_uuid`.
    Xen,
    Ilo,
    /// `[moonshot]`: a node behind an HP Moonshot chassis manager.
    Moonshot,
    /// `[mdm]`: the Mac's device in an MDM service.
    Mdm,
}

/// Where a task belongs on a machine's page: what a person looks for first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskGroup {
    /// Reads and reports; changes nothing.
    Inspect,
    /// Switches power on or off, and nothing more.
    Power,
    /// Restarts the machine, one way or the reboot chain.
    Reboot,
    /// Reimages, loans, and tells people (the bug).
    Provisioning,
}

impl TaskGroup {
    pub const ALL: [TaskGroup; 4] = [TaskGroup::Inspect, TaskGroup::Power, TaskGroup::Reboot, TaskGroup::Provisioning];

    pub const fn name(self) -> &'static str {
        match self {
            TaskGroup::Inspect => "inspect",
            TaskGroup::Power => "power",
            TaskGroup::Reboot => "reboot",
            TaskGroup::Provisioning => "provisioning",
        }
    }
}

/// Everything roller knows about a task, in one place.
#[derive(Debug, Clone, Copy)]
pub struct TaskSpec {
    pub name: &'static str,
    /// One line, for `roller tasks` and API error messages.
    pub help: &'static str,
    /// How many times the queue may hand the job out. Read-only tasks can be retried
    /// after a lost runner; tasks that change hardware must not be re-run blindly.
    pub max_attempts: u32,
    /// Restarts the machine (or may): what the reboot-loop breaker counts.
    pub restarts_machine: bool,
    /// May be a step of a hardware class's reboot chain (inventory `reboot = [...]`).
    pub reboot_step: bool,
    /// Cuts the machine's power or resets it, which destroys what a person would look at
    /// (the console, the kernel's state): roller takes the evidence first
    /// (`actions::evidence`). A task that cuts power without declaring it is refused
    /// at the cut (`ActionContext::touch`), so a new power path cannot skip the evidence.
    /// A chain (`reboot`) does not cut power itself; its steps do, and declare it.
    pub cuts_power: bool,
    /// For the benchmarks only: parsed, never in the default set.
    pub benchmark_only: bool,
    pub needs: Needs,
    /// Its place on a machine's page (the dashboard groups tasks by it).
    pub group: TaskGroup,
}

/// Read-only tasks: retried after a lost runner.
const READ_ONLY: u32 = 3;
/// Tasks that change the hardware: never re-run after a runner died mid-way.
const CHANGES_HARDWARE: u32 = 1;

impl Task {
    /// The tasks roller offers by default, in `roller tasks` order.
    pub const ALL: &'static [Task] = &[
        Task::Ping,
        Task::Status,
        Task::IpmiStatus,
        Task::IpmiOn,
        Task::IpmiOff,
        Task::IpmiCycle,
        Task::IpmiReset,
        Task::IpmiList,
        Task::RedfishStatus,
        Task::RedfishOn,
        Task::RedfishOff,
        Task::RedfishRestart,
        Task::RedfishReset,
        Task::SshReboot,
        Task::SnmpReboot,
        Task::SnmpRebootDelay,
        Task::Reboot,
        Task::FileBugzillaBug,
        Task::Reimage,
        Task::XenapiReboot,
        Task::IloReboot,
        Task::MoonshotReset,
        Task::MdmRestart,
        Task::Loan,
        Task::ReturnLoan,
    ];

    /// Tasks that exist for benchmarking only: parsed, but never in the default set.
    pub const BENCHMARK: &'static [Task] = &[Task::Noop];

    /// The one record per task. Every field is spelled out for every task: no default
    /// can quietly decide whether a task restarts the machine.
    pub const fn spec(self) -> TaskSpec {
        // One argument per column, so each task below is one row that names every answer;
        // a struct literal per task would spread the table over three times the lines.
        #[allow(clippy::too_many_arguments)]
        const fn s(
            name: &'static str,
            help: &'static str,
            max_attempts: u32,
            restarts_machine: bool,
            reboot_step: bool,
            cuts_power: bool,
            needs: Needs,
            group: TaskGroup,
        ) -> TaskSpec {
            TaskSpec {
                name,
                help,
                max_attempts,
                restarts_machine,
                reboot_step,
                cuts_power,
                benchmark_only: false,
                needs,
                group,
            }
        }
        // Columns: name, help, attempts, restarts the machine, reboot-chain step, cuts power, needs, group.
        match self {
            Task::Ping => s(
                "ping",
                "ICMP echo the machine and report packets sent/received and round-trip times",
                READ_ONLY,
                false,
                false,
                false,
                Needs::Nothing,
                TaskGroup::Inspect,
            ),
            Task::Status => s(
                "status",
                "the machine's power state from its BMC (when it has one) and whether it answers",
                READ_ONLY,
                false,
                false,
                false,
                Needs::Inventory,
                TaskGroup::Inspect,
            ),
            Task::IpmiStatus => s(
                "ipmi_status",
                "the chassis power state, from the BMC over IPMI",
                READ_ONLY,
                false,
                false,
                false,
                Needs::Ipmi,
                TaskGroup::Inspect,
            ),
            Task::IpmiOn => s(
                "ipmi_on",
                "power the machine on over IPMI and confirm the BMC reports it on",
                CHANGES_HARDWARE,
                false,
                true,
                false,
                Needs::Ipmi,
                TaskGroup::Power,
            ),
            Task::IpmiOff => s(
                "ipmi_off",
                "power the machine off over IPMI and confirm the BMC reports it off",
                CHANGES_HARDWARE,
                false,
                false,
                true,
                Needs::Ipmi,
                TaskGroup::Power,
            ),
            Task::IpmiCycle => s(
                "ipmi_cycle",
                "power-cycle over IPMI (a machine that is off is powered on instead)",
                CHANGES_HARDWARE,
                true,
                true,
                true,
                Needs::Ipmi,
                TaskGroup::Reboot,
            ),
            Task::IpmiReset => s(
                "ipmi_reset",
                "hard-reset over IPMI (a machine that is off is powered on instead)",
                CHANGES_HARDWARE,
                true,
                true,
                true,
                Needs::Ipmi,
                TaskGroup::Reboot,
            ),
            Task::IpmiList => s(
                "ipmi_list",
                "the BMC's 15 most recent system event log (SEL) entries",
                READ_ONLY,
                false,
                false,
                false,
                Needs::Ipmi,
                TaskGroup::Inspect,
            ),
            Task::RedfishStatus => s(
                "redfish_status",
                "the system's power state, from its Redfish service",
                READ_ONLY,
                false,
                false,
                false,
                Needs::Redfish,
                TaskGroup::Inspect,
            ),
            Task::RedfishOn => s(
                "redfish_on",
                "power on through Redfish and confirm the service reports it on",
                CHANGES_HARDWARE,
                false,
                false,
                false,
                Needs::Redfish,
                TaskGroup::Power,
            ),
            Task::RedfishOff => s(
                "redfish_off",
                "force off through Redfish and confirm the service reports it off",
                CHANGES_HARDWARE,
                false,
                false,
                true,
                Needs::Redfish,
                TaskGroup::Power,
            ),
            Task::RedfishRestart => s(
                "redfish_restart",
                "graceful restart through Redfish (a machine that is off is powered on instead)",
                CHANGES_HARDWARE,
                true,
                true,
                true,
                Needs::Redfish,
                TaskGroup::Reboot,
            ),
            Task::RedfishReset => s(
                "redfish_reset",
                "forced restart through Redfish (a machine that is off is powered on instead)",
                CHANGES_HARDWARE,
                true,
                false,
                true,
                Needs::Redfish,
                TaskGroup::Reboot,
            ),
            Task::SshReboot => s(
                "ssh_reboot",
                "ask the machine to reboot itself over ssh (`reboot`, then `shutdown -f -t 3 -r`)",
                CHANGES_HARDWARE,
                true,
                true,
                false,
                Needs::Ssh,
                TaskGroup::Reboot,
            ),
            Task::SnmpReboot => s(
                "snmp_reboot",
                "power-cycle the machine's PDU outlet (the PDU's own reboot) and watch it come back on",
                CHANGES_HARDWARE,
                true,
                true,
                true,
                Needs::Pdu,
                TaskGroup::Reboot,
            ),
            Task::SnmpRebootDelay => s(
                "snmp_rebootdelay",
                "switch the PDU outlet off, wait the class's delay, switch it on",
                CHANGES_HARDWARE,
                true,
                true,
                true,
                Needs::Pdu,
                TaskGroup::Reboot,
            ),
            Task::Reboot => s(
                "reboot",
                "the class's reboot chain, gentlest first, each step proven by the machine going down and coming back",
                CHANGES_HARDWARE,
                true,
                false,
                false,
                Needs::Inventory,
                TaskGroup::Reboot,
            ),
            // Filing is deduplicated (a retry comments on the bug the lost attempt filed).
            Task::FileBugzillaBug => s(
                "file_bugzilla_bug",
                "file (or comment on) the machine's \"is unreachable\" bug, blocking its problem-tracking bug",
                READ_ONLY,
                false,
                true,
                false,
                Needs::Inventory,
                TaskGroup::Provisioning,
            ),
            Task::Reimage => s(
                "reimage",
                "set the next boot to the network (PXE) through the BMC, then run the reboot chain",
                CHANGES_HARDWARE,
                true,
                false,
                false,
                Needs::BootControl,
                TaskGroup::Provisioning,
            ),
            Task::XenapiReboot => s(
                "xenapi_reboot",
                "shut the Xen VM down (clean, else hard) and start it again, through XenAPI",
                CHANGES_HARDWARE,
                true,
                true,
                true,
                Needs::Xen,
                TaskGroup::Reboot,
            ),
            Task::IloReboot => s(
                "ilo_reboot",
                "reset the server through its HP iLO (RIBCL); power off and on when the reset is refused",
                CHANGES_HARDWARE,
                true,
                true,
                true,
                Needs::Ilo,
                TaskGroup::Reboot,
            ),
            Task::MoonshotReset => s(
                "moonshot_reset",
                "cold-reset the machine's node through its HP Moonshot chassis manager (REST)",
                CHANGES_HARDWARE,
                true,
                true,
                true,
                Needs::Moonshot,
                TaskGroup::Reboot,
            ),
            // In-band: delivered at the Mac's next MDM check-in, and never a power cut.
            Task::MdmRestart => s(
                "mdm_restart",
                "ask the Mac's MDM (SimpleMDM) to restart it: in-band, run at its next MDM check-in; no power cut",
                CHANGES_HARDWARE,
                true,
                true,
                false,
                Needs::Mdm,
                TaskGroup::Reboot,
            ),
            Task::Loan => s(
                "loan",
                "quarantine the worker in Taskcluster for the loan period, recording who has it until when",
                CHANGES_HARDWARE,
                false,
                false,
                false,
                Needs::Inventory,
                TaskGroup::Provisioning,
            ),
            Task::ReturnLoan => s(
                "return_loan",
                "lift the worker's Taskcluster quarantine, then reimage it",
                CHANGES_HARDWARE,
                true,
                false,
                false,
                Needs::BootControl,
                TaskGroup::Provisioning,
            ),
            Task::Noop => TaskSpec {
                benchmark_only: true,
                ..s(
                    "noop",
                    "do nothing and succeed (benchmarks; only when tasks.enabled names it)",
                    READ_ONLY,
                    false,
                    false,
                    false,
                    Needs::Nothing,
                    TaskGroup::Inspect,
                )
            },
        }
    }

    pub const fn name(self) -> &'static str {
        self.spec().name
    }

    pub const fn help(self) -> &'static str {
        self.spec().help
    }

    pub const fn max_attempts(self) -> u32 {
        self.spec().max_attempts
    }

    pub const fn restarts_machine(self) -> bool {
        self.spec().restarts_machine
    }

    pub const fn is_reboot_step(self) -> bool {
        self.spec().reboot_step
    }

    pub const fn cuts_power(self) -> bool {
        self.spec().cuts_power
    }

    /// A person must confirm it, naming the machine, before it is sent from a page:
    /// it restarts the machine or cuts its power (what a slip of the finger cannot undo).
    pub const fn needs_confirmation(self) -> bool {
        let s = self.spec();
        s.restarts_machine || s.cuts_power
    }

    pub const fn group(self) -> TaskGroup {
        self.spec().group
    }

    /// The tasks a reboot chain may name, in [`Task::ALL`] order.
    pub fn reboot_steps() -> impl Iterator<Item = Task> {
        Task::ALL.iter().copied().filter(|t| t.is_reboot_step())
    }

    /// "a, b, c": task names for messages that list what is allowed.
    pub fn list(tasks: &[Task]) -> String {
        tasks.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
    }

    pub fn parse(s: &str) -> Option<Task> {
        Task::ALL.iter().chain(Task::BENCHMARK).copied().find(|t| t.name() == s)
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A task is its name on the wire and in job records.
impl serde::Serialize for Task {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn all_and_benchmark_together_list_every_variant_once() {
        let every: Vec<Task> = Task::iter().collect();
        let mut listed: Vec<Task> = Task::ALL.iter().chain(Task::BENCHMARK).copied().collect();
        listed.sort();
        let mut sorted = every.clone();
        sorted.sort();
        assert_eq!(listed, sorted, "Task::ALL + Task::BENCHMARK must name every variant exactly once");
        for t in every {
            assert_eq!(Task::BENCHMARK.contains(&t), t.spec().benchmark_only, "{t}");
        }
    }

    #[test]
    fn names_are_unique_and_parse_back() {
        let mut names: Vec<&str> = Task::iter().map(Task::name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Task::iter().count());
        for t in Task::iter() {
            assert_eq!(Task::parse(t.name()), Some(t));
            assert_eq!(t.to_string(), t.name());
            assert!(!t.help().is_empty());
        }
        assert_eq!(Task::parse("rebot"), None);
    }

    #[test]
    fn whatever_restarts_the_machine_is_never_retried_blindly() {
        for t in Task::iter().filter(|t| t.restarts_machine()) {
            assert_eq!(t.max_attempts(), 1, "{t}");
        }
        // A reboot-chain step that changes power is a restart, except switching on,
        // which the chain uses on a machine that is off.
        for t in Task::reboot_steps() {
            assert!(t.restarts_machine() || matches!(t, Task::IpmiOn | Task::FileBugzillaBug), "{t}");
        }
    }

    #[test]
    fn what_cuts_power_changes_hardware_and_every_hard_reboot_step_declares_it() {
        for t in Task::iter().filter(|t| t.cuts_power()) {
            assert_eq!(t.max_attempts(), 1, "{t}");
            assert!(t.spec().needs != Needs::Nothing && t.spec().needs != Needs::Inventory, "{t} names its device");
        }
        // Every chain step that restarts the machine cuts power, except asking the OS
        // (directly, or through the Mac's MDM at its next check-in).
        for t in Task::reboot_steps().filter(|t| t.restarts_machine()) {
            assert_eq!(t.cuts_power(), !matches!(t, Task::SshReboot | Task::MdmRestart), "{t}");
        }
        let cutting: Vec<&str> = Task::ALL.iter().filter(|t| t.cuts_power()).map(|t| t.name()).collect();
        assert_eq!(
            cutting,
            [
                "ipmi_off",
                "ipmi_cycle",
                "ipmi_reset",
                "redfish_off",
                "redfish_restart",
                "redfish_reset",
                "snmp_reboot",
                "snmp_rebootdelay",
                "xenapi_reboot",
                "ilo_reboot",
                "moonshot_reset"
            ]
        );
    }

    #[test]
    fn whatever_cuts_power_or_restarts_asks_first_and_only_reads_sit_under_inspect() {
        for t in Task::iter() {
            assert_eq!(t.needs_confirmation(), t.restarts_machine() || t.cuts_power(), "{t}");
            if t.group() == TaskGroup::Inspect {
                assert!(!t.needs_confirmation() && t.max_attempts() == READ_ONLY, "{t} only reads");
            }
            if t.group() == TaskGroup::Reboot {
                assert!(t.restarts_machine(), "{t}");
            }
        }
        assert!(Task::IpmiOff.needs_confirmation() && Task::RedfishOff.needs_confirmation());
        assert!(!Task::IpmiOn.needs_confirmation());
    }

    #[test]
    fn the_benchmark_noop_is_parsed_but_not_offered() {
        assert_eq!(Task::parse("noop"), Some(Task::Noop));
        assert!(!Task::ALL.contains(&Task::Noop));
        assert!(!Task::Noop.restarts_machine());
    }
}
