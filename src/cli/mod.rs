//! The `roller` command line: the clap definitions and the dispatch of each
//! subcommand to its module (`serve`, `run`, `jobs`, `inventory`, `tc_actions`).
//! Commands print through `output`; `jobs` and `run` use `fleet` for many
//! machines, and `jobs` talks to a running roller through `client`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::actions::Task;
use crate::config::{ProcessEnv, Settings};
use crate::domain::{JobId, WorkerGroup, WorkerId};
use crate::startup::{ADMIN_CREDENTIALS_FILE, Mode};

mod breaker;
pub mod client;
pub mod fleet;
mod inventory;
mod jobs;
mod medic;
pub mod output;
mod paths;
mod record;
mod run;
mod serve;
mod summary;
pub mod tc_actions;
mod watch;

use client::Client;
use output::say;
pub use tc_actions::tc_action_definitions;

#[derive(Parser)]
#[command(
    name = "roller",
    version,
    about = "Release Operations Controller: ping, reboot and power-control CI hardware"
)]
pub struct Cli {
    /// Configuration file (TOML). Environment variables override it.
    #[arg(long, global = true, env = "ROLLER_CONFIG")]
    config: Option<PathBuf>,
    /// PEM CA certificate(s) to trust for an https:// roller, besides the system's roots
    /// (a private CA, or a self-signed certificate).
    #[arg(long, global = true, env = "ROLLER_CA_FILE", value_name = "PEM")]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API and the job runner in one process on the embedded queue (the default setup).
    Serve,
    /// Run the API only, on the Redis queue (distributed mode; needs REDIS_URL).
    Api,
    /// Run a job runner only, on the Redis queue (distributed mode; needs REDIS_URL).
    Worker,
    /// Run one task on one machine or many now, in this process, without a queue.
    Run {
        /// Task name (see `roller tasks`).
        task: String,
        #[command(flatten)]
        machines: Machines,
    },
    /// List the tasks roller can run, with one line of help each.
    Tasks,
    /// Load and validate the configuration and print it (secrets redacted), then build what
    /// `serve` builds from it and check the inventory as `inventory check` does, touching no
    /// hardware and no network; every problem is listed (exit 1 when there is one).
    CheckConfig,
    /// Work with an inventory file (machines, hardware classes, reboot chains).
    Inventory {
        #[command(subcommand)]
        command: InventoryCommand,
    },
    /// Explain, without touching hardware, what `reboot` would do for a machine: which
    /// steps of its chain run, which are skipped for missing configuration, and the proof;
    /// then its last path checks, read from a running roller when one answers.
    Explain {
        /// The machine's worker id.
        worker_id: String,
        /// Inventory file [default: the configured one (ROLLER_INVENTORY / inventory)].
        #[arg(long)]
        inventory: Option<PathBuf>,
        /// The roller to read path checks from [default: http://<server.bind>].
        #[arg(long, env = "ROLLER_URL")]
        url: Option<String>,
        /// Credentials file [default: <data_dir>/admin-credentials.json]; TASKCLUSTER_CLIENT_ID and
        /// TASKCLUSTER_ACCESS_TOKEN take precedence when both are set.
        #[arg(long)]
        credentials: Option<PathBuf>,
    },
    /// Standing path checks through a running roller: prove machines' BMC, PDU, ssh, iLO and
    /// Xen paths and roller's shared credentials usable, changing nothing.
    Paths {
        /// The roller to talk to [default: http://<server.bind>].
        #[arg(long, env = "ROLLER_URL", global = true)]
        url: Option<String>,
        /// Credentials file [default: <data_dir>/admin-credentials.json]; TASKCLUSTER_CLIENT_ID and
        /// TASKCLUSTER_ACCESS_TOKEN take precedence when both are set.
        #[arg(long, global = true)]
        credentials: Option<PathBuf>,
        #[command(subcommand)]
        command: PathsCommand,
    },
    /// Print the Taskcluster worker-context action definitions for the enabled tasks, and with
    /// --declare send them with queue.declareProvisioner. Taskcluster v39 and later accept that
    /// call and store nothing: no Taskcluster UI shows these actions today.
    TcActions {
        /// roller's public base URL, e.g. https://roller.example (the actions' URLs start with it).
        base_url: String,
        /// Send them to Taskcluster for this provisioner (needs roller's Taskcluster credentials
        /// and queue:declare-provisioner:<id>#actions).
        #[arg(long, value_name = "PROVISIONER_ID")]
        declare: Option<String>,
    },
    /// Talk to a running roller: enqueue jobs and read them.
    Jobs {
        /// The roller to talk to [default: http://<server.bind>, https:// with server.tls_cert_file].
        #[arg(long, env = "ROLLER_URL", global = true)]
        url: Option<String>,
        /// Credentials file [default: <data_dir>/admin-credentials.json]; TASKCLUSTER_CLIENT_ID and
        /// TASKCLUSTER_ACCESS_TOKEN take precedence when both are set.
        #[arg(long, global = true)]
        credentials: Option<PathBuf>,
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// A machine's reboot-loop breaker, through a running roller: what it counted, and the
    /// audited reset once a person has looked at the machine.
    Breaker {
        /// The roller to talk to [default: http://<server.bind>, https:// with server.tls_cert_file].
        #[arg(long, env = "ROLLER_URL", global = true)]
        url: Option<String>,
        /// Credentials file [default: <data_dir>/admin-credentials.json]; TASKCLUSTER_CLIENT_ID and
        /// TASKCLUSTER_ACCESS_TOKEN take precedence when both are set.
        #[arg(long, global = true)]
        credentials: Option<PathBuf>,
        #[command(subcommand)]
        command: BreakerCommand,
    },
    /// The fleet's health through a running roller: counts per pool and class, and every
    /// machine that needs attention with the reason.
    Health {
        /// The roller to talk to [default: http://<server.bind>, https:// with server.tls_cert_file].
        #[arg(long, env = "ROLLER_URL", global = true)]
        url: Option<String>,
        /// Credentials file [default: <data_dir>/admin-credentials.json]; TASKCLUSTER_CLIENT_ID and
        /// TASKCLUSTER_ACCESS_TOKEN take precedence when both are set.
        #[arg(long, global = true)]
        credentials: Option<PathBuf>,
        /// The API's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The medic through a running roller: what it would do now, holds, releases, and the
    /// one-time batch override of its blast-radius gate.
    Medic {
        /// The roller to talk to [default: http://<server.bind>, https:// with server.tls_cert_file].
        #[arg(long, env = "ROLLER_URL", global = true)]
        url: Option<String>,
        /// Credentials file [default: <data_dir>/admin-credentials.json]; TASKCLUSTER_CLIENT_ID and
        /// TASKCLUSTER_ACCESS_TOKEN take precedence when both are set.
        #[arg(long, global = true)]
        credentials: Option<PathBuf>,
        #[command(subcommand)]
        command: MedicCommand,
    },
}

#[derive(Subcommand)]
enum MedicCommand {
    /// One dry-run cycle now: the gates and what the medic would do, acting on nothing.
    Plan {
        #[arg(long)]
        json: bool,
    },
    /// The medic leaves a machine alone until released (needs <scope_prefix>medic:hold).
    Hold {
        worker_id: String,
        #[arg(long)]
        reason: String,
        /// Lift it by itself after this many hours (1–720) [default: until released].
        #[arg(long)]
        hours: Option<u32>,
    },
    /// Lift a machine's hold (needs <scope_prefix>medic:release).
    Release {
        worker_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Let the next cycle the blast-radius gate would block act on at most N machines, once
    /// (needs <scope_prefix>medic:allow).
    Allow {
        #[arg(long)]
        batch: usize,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum PathsCommand {
    /// Check machines' paths (names, --file, --select) and roller's shared credentials now,
    /// in the server, and print each path's outcome (needs <scope_prefix>paths:check). Exit 0
    /// when every path checked is ok; 1 when one failed, a machine has no path left, or a
    /// result did not come in time.
    Check {
        /// Machines (worker ids); none: the shared credentials only.
        worker_ids: Vec<String>,
        /// Worker ids, one per line (`#` starts a comment); `-` reads standard input.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Machines from the inventory: group=<group> or class=<class> (repeat to narrow).
        #[arg(long)]
        select: Vec<String>,
        /// Inventory for --select [default: the configured one].
        #[arg(long)]
        inventory: Option<PathBuf>,
        /// How long to wait for the results, in seconds.
        #[arg(long, default_value_t = 300)]
        wait_secs: u64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Every machine's last path checks, roller's shared credentials' and the checker's last look.
    Show {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BreakerCommand {
    /// The restarts the breaker counts for a machine, whether it refuses restarts now, its resets.
    Status { worker_id: String },
    /// Let a machine be restarted again: restarts before now stop counting. Recorded with
    /// your client id and the reason (needs the scope <scope_prefix>breaker:reset).
    Reset {
        worker_id: String,
        /// Why the machine may be restarted again (what was found, what was done).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum InventoryCommand {
    /// Validate an inventory, show each machine's reboot chain with the steps that would be
    /// skipped, and list every problem: secrets that do not resolve, ssh key and known_hosts
    /// files that are missing or unusable, values the drivers refuse (touches no hardware).
    Check { file: PathBuf },
}

/// Which machines a command is for, and how it answers: shared by `run` and `jobs enqueue`.
#[derive(clap::Args)]
struct Machines {
    /// Machines (worker ids or IP addresses). --file and --select add more.
    worker_ids: Vec<String>,
    /// Worker group of machines the inventory does not know.
    #[arg(long, default_value = "none")]
    group: String,
    /// Worker ids, one per line (`#` starts a comment); `-` reads standard input.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Machines from the inventory: group=<group> or class=<class> (repeat to narrow).
    #[arg(long)]
    select: Vec<String>,
    /// Go ahead without asking when more than safety.confirm_above machines are named.
    #[arg(long)]
    yes: bool,
    /// Machine-readable output (always a list).
    #[arg(long)]
    json: bool,
}

impl Machines {
    fn targets(&self, inventory: Option<&std::path::Path>) -> anyhow::Result<Vec<(WorkerId, WorkerGroup)>> {
        fleet::targets(&fleet::Selection {
            names: &self.worker_ids,
            file: self.file.as_deref(),
            select: &self.select,
            // Only needed for --select and worker groups; a missing default inventory is no error.
            inventory: inventory.filter(|p| !self.select.is_empty() || p.exists()),
            default_group: &self.group,
        })
    }
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Queue a task for one machine or many (names, --file, --select) and print the job(s).
    Enqueue {
        task: String,
        #[command(flatten)]
        machines: Machines,
        /// Inventory for --select and worker groups [default: the configured one].
        #[arg(long)]
        inventory: Option<PathBuf>,
        /// Wait for the job(s) to finish; exit non-zero unless every one succeeded. One
        /// machine: its task id and state at once, its log live, then the outcome.
        #[arg(long)]
        wait: bool,
    },
    /// Show one job: what, where, its state, when, who asked, the result in words, the log.
    Get {
        task_id: String,
        /// Follow the job live until it ends (as `follow`) and exit non-zero unless it succeeded.
        #[arg(long)]
        wait: bool,
        /// The API's record as it is (machine-readable).
        #[arg(long)]
        json: bool,
    },
    /// Print a job's state and log as they change, until the job ends, then the outcome;
    /// exit non-zero unless it succeeded.
    Follow { task_id: String },
    /// Show a machine's most recent jobs.
    List {
        worker_id: String,
        /// Only jobs in this state (queued, running, succeeded, failed, timed_out, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// Exit status (README, "Using it"): 0 success; 1 the API refused, a job did not
/// succeed, or roller could not be reached; 2 a usage or configuration error.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("roller: {e:#}");
            ExitCode::from(exit_status(&e))
        }
    }
}

/// 1 for an error that is not the operator's input: roller away or refusing; else 2.
fn exit_status(e: &anyhow::Error) -> u8 {
    let runtime = e.chain().any(|c| c.is::<client::Unreachable>() || c.is::<client::Refusal>());
    if runtime { 1 } else { 2 }
}

fn load(cli: &Cli) -> anyhow::Result<Settings> {
    Ok(Settings::load(cli.config.as_deref(), &ProcessEnv)?)
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Tasks => {
            let width = Task::ALL.iter().map(|t| t.name().len()).max().unwrap_or(0);
            for t in Task::ALL {
                say!("{:width$}  {}", t.name(), t.help());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Api => serve::serve(load(&cli)?, Mode::Api).await,
        Command::Worker => serve::serve(load(&cli)?, Mode::Worker).await,
        // Only the Bugzilla/Xen settings matter here (do those steps run?); a config
        // problem must not stop the check of an inventory file, but it is said.
        Command::Inventory { command: InventoryCommand::Check { file } } => {
            let actions = load(&cli).and_then(|s| crate::startup::action_settings(&s));
            let (actions, settings_error) = match actions {
                Ok(a) => (a, None),
                Err(e) => (Default::default(), Some(format!("{e:#}"))),
            };
            inventory::inventory_check(&actions, settings_error, file)
        }
        Command::TcActions { base_url, declare } => {
            tc_actions::tc_actions(load(&cli)?, base_url, declare.as_deref()).await
        }
        Command::Explain { worker_id, inventory, url, credentials } => {
            let code = inventory::explain(load(&cli)?, worker_id, inventory.as_deref())?;
            if code == ExitCode::SUCCESS {
                // What the path checks found, from a running roller; none running is no error.
                match api_client(&cli, url, credentials) {
                    Ok(client) => inventory::explain_paths(&client, &WorkerId::parse(worker_id)?).await,
                    Err(e) => say!("  path checks: cannot ask a running roller ({e:#})"),
                }
            }
            Ok(code)
        }
        Command::Paths { url, credentials, command } => {
            let client = api_client(&cli, url, credentials)?;
            match command {
                PathsCommand::Check { worker_ids, file, select, inventory, wait_secs, json } => {
                    let s = load(&cli)?;
                    let machines = if worker_ids.is_empty() && file.is_none() && select.is_empty() {
                        Vec::new()
                    } else {
                        let inventory = inventory.as_deref().or(s.inventory_path.as_deref());
                        fleet::targets(&fleet::Selection {
                            names: worker_ids,
                            file: file.as_deref(),
                            select,
                            inventory: inventory.filter(|p| !select.is_empty() || p.exists()),
                            default_group: "none",
                        })?
                        .into_iter()
                        .map(|(w, _)| w)
                        .collect()
                    };
                    paths::check(&client, machines, std::time::Duration::from_secs(*wait_secs), *json).await
                }
                PathsCommand::Show { json } => paths::show(&client, *json).await,
            }
        }
        Command::CheckConfig => Ok(inventory::check_config(&load(&cli)?)),
        Command::Serve => serve::serve(load(&cli)?, Mode::Serve).await,
        Command::Run { task, machines } => {
            // Drivers' warnings (an outlet left off) reach the operator; RUST_LOG for more.
            crate::telemetry::init_with("warn");
            let settings = load(&cli)?;
            let targets = machines.targets(settings.inventory_path.as_deref())?;
            if targets.len() == 1 && !machines.json {
                let (w, g) = &targets[0];
                return run::run_once(settings, task, w.as_str(), g.as_str()).await;
            }
            run::run_many(settings, task, targets, machines.yes, machines.json).await
        }
        Command::Breaker { url, credentials, command } => {
            let s = load(&cli)?;
            let url = url.clone().unwrap_or_else(|| jobs::default_url(&s));
            let creds = credentials.clone().unwrap_or_else(|| s.data_dir.join(ADMIN_CREDENTIALS_FILE));
            let client = Client::new(&url, &creds, cli.ca_file.as_deref())?;
            match command {
                BreakerCommand::Status { worker_id } => breaker::status(&client, &WorkerId::parse(worker_id)?).await,
                BreakerCommand::Reset { worker_id, reason } => {
                    breaker::reset(&client, &WorkerId::parse(worker_id)?, reason).await
                }
            }
        }
        Command::Health { url, credentials, json } => {
            let client = api_client(&cli, url, credentials)?;
            medic::health(&client, *json).await
        }
        Command::Medic { url, credentials, command } => {
            let client = api_client(&cli, url, credentials)?;
            match command {
                MedicCommand::Plan { json } => medic::plan(&client, *json).await,
                MedicCommand::Hold { worker_id, reason, hours } => {
                    medic::hold(&client, &WorkerId::parse(worker_id)?, reason, *hours).await
                }
                MedicCommand::Release { worker_id, reason } => {
                    medic::release(&client, &WorkerId::parse(worker_id)?, reason).await
                }
                MedicCommand::Allow { batch, reason } => medic::allow(&client, *batch, reason).await,
            }
        }
        Command::Jobs { url, credentials, command } => {
            let s = load(&cli)?;
            let url = url.clone().unwrap_or_else(|| jobs::default_url(&s));
            let creds = credentials.clone().unwrap_or_else(|| s.data_dir.join(ADMIN_CREDENTIALS_FILE));
            let client = Client::new(&url, &creds, cli.ca_file.as_deref())?;
            match command {
                JobsCommand::Enqueue { task, machines, inventory, wait } => {
                    let task = Task::parse(task)
                        .with_context(|| format!("unknown task {task:?}; one of: {}", Task::list(Task::ALL)))?;
                    let targets = machines.targets(inventory.as_deref().or(s.inventory_path.as_deref()))?;
                    jobs::enqueue(client, task, targets, s.safety.confirm_above, machines.yes, *wait, machines.json)
                        .await
                }
                JobsCommand::Get { task_id, wait, json } => {
                    jobs::get(&client, &JobId::parse(task_id)?, *wait, *json).await
                }
                JobsCommand::Follow { task_id } => jobs::follow(&client, &JobId::parse(task_id)?).await,
                JobsCommand::List { worker_id, state, json } => {
                    jobs::list(&client, &WorkerId::parse(worker_id)?, state.as_deref(), *json).await
                }
            }
        }
    }
}

/// A client for the roller at `url` (default: this configuration's bind address) with
/// `credentials` (default: the admin credentials in the data directory).
fn api_client(cli: &Cli, url: &Option<String>, credentials: &Option<PathBuf>) -> anyhow::Result<Client> {
    let s = load(cli)?;
    let url = url.clone().unwrap_or_else(|| jobs::default_url(&s));
    let creds = credentials.clone().unwrap_or_else(|| s.data_dir.join(ADMIN_CREDENTIALS_FILE));
    Client::new(&url, &creds, cli.ca_file.as_deref())
}
