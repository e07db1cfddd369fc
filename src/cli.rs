//! The `roller` command line: subcommands and what each runs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::actions::{self, ActionContext, LogSink, Target, Task};
use crate::client::Client;
use crate::config::{ProcessEnv, Settings};
use crate::domain::{JobId, WorkerGroup, WorkerId};
use crate::queue::Outcome;
use crate::runner::{Limits, run_with_limits};
use crate::startup::{ADMIN_CREDENTIALS_FILE, Application, Mode};

/// `println!` that ignores a closed stdout (`roller check-config | head`) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// One line to stdout, ignoring a closed pipe (for modules that print tables).
pub fn print(line: &str) {
    say!("{line}");
}

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
    /// Load and validate the configuration, then print it (secrets redacted).
    CheckConfig,
    /// Work with an inventory file (machines, hardware classes, reboot chains).
    Inventory {
        #[command(subcommand)]
        command: InventoryCommand,
    },
    /// Explain, without touching hardware, what `reboot` would do for a machine: which
    /// steps of its chain run, which are skipped for missing configuration, and the proof.
    Explain {
        /// The machine's worker id.
        worker_id: String,
        /// Inventory file [default: the configured one (ROLLER_INVENTORY / inventory)].
        #[arg(long)]
        inventory: Option<PathBuf>,
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
        /// The roller to talk to [default: http://<server.bind>].
        #[arg(long, env = "ROLLER_URL", global = true)]
        url: Option<String>,
        /// Credentials file [default: <data_dir>/admin-credentials.json]; TASKCLUSTER_CLIENT_ID and
        /// TASKCLUSTER_ACCESS_TOKEN take precedence when both are set.
        #[arg(long, global = true)]
        credentials: Option<PathBuf>,
        #[command(subcommand)]
        command: JobsCommand,
    },
}

#[derive(Subcommand)]
enum InventoryCommand {
    /// Validate an inventory, resolve every secret it refers to, and show each machine's
    /// reboot chain with the steps that would be skipped (touches no hardware).
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
        crate::fleet::targets(&crate::fleet::Selection {
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
        /// Wait for the job(s) to finish; exit non-zero unless every one succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// Show one job with its log.
    Get {
        task_id: String,
        /// Wait for the job to finish and exit non-zero unless it succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// Print a job's log as it is written, until the job ends; exit non-zero unless it succeeded.
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

pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("roller: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load(cli: &Cli) -> anyhow::Result<Settings> {
    Ok(Settings::load(cli.config.as_deref(), &ProcessEnv)?)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Tasks => {
            let width = Task::ALL.iter().map(|t| t.name().len()).max().unwrap_or(0);
            for t in Task::ALL {
                say!("{:width$}  {}", t.name(), t.help());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Api => serve(load(&cli)?, Mode::Api).await,
        Command::Worker => serve(load(&cli)?, Mode::Worker).await,
        // Only the Bugzilla/Xen settings matter here (do those steps run?); a config
        // problem elsewhere must not stop the check of an inventory file.
        Command::Inventory { command: InventoryCommand::Check { file } } => {
            let actions = load(&cli).ok().and_then(|s| crate::startup::action_settings(&s).ok()).unwrap_or_default();
            inventory_check(&actions, file)
        }
        Command::TcActions { base_url, declare } => tc_actions(load(&cli)?, base_url, declare.as_deref()).await,
        Command::Explain { worker_id, inventory } => explain(load(&cli)?, worker_id, inventory.as_deref()),
        Command::CheckConfig => {
            let s = load(&cli)?;
            say!("{s:#?}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => serve(load(&cli)?, Mode::Serve).await,
        Command::Run { task, machines } => {
            let settings = load(&cli)?;
            let targets = machines.targets(settings.inventory_path.as_deref())?;
            if targets.len() == 1 && !machines.json {
                let (w, g) = &targets[0];
                return run_once(settings, task, w.as_str(), g.as_str()).await;
            }
            run_many(settings, task, targets, machines.yes, machines.json).await
        }
        Command::Jobs { url, credentials, command } => {
            let s = load(&cli)?;
            let url = url.clone().unwrap_or_else(|| default_url(&s));
            let creds = credentials.clone().unwrap_or_else(|| s.data_dir.join(ADMIN_CREDENTIALS_FILE));
            jobs(&s, Client::new(&url, &creds)?, command).await
        }
    }
}

fn default_url(s: &Settings) -> String {
    let ip = if s.bind.ip().is_unspecified() { "127.0.0.1".to_string() } else { s.bind.ip().to_string() };
    let ip = if ip.contains(':') { format!("[{ip}]") } else { ip };
    format!("http://{ip}:{}", s.bind.port())
}

async fn serve(settings: Settings, mode: Mode) -> anyhow::Result<ExitCode> {
    crate::telemetry::init();
    let app = Application::build_mode(settings, mode).await?;
    // Before the banner: whoever reads it may send SIGHUP right away.
    crate::startup::reload_inventory_on_sighup(app.settings().inventory_path.clone(), app.inventory().clone());
    let s = app.settings();
    let queue = match &s.redis {
        Some(r) => format!("Redis, keys {{{}}}:* (REDIS_URL)", r.prefix),
        None => s.sqlite_path.display().to_string(),
    };
    match (mode, app.local_addr()) {
        (Mode::Worker, addr) => {
            say!("roller {} worker {} is running", env!("CARGO_PKG_VERSION"), app.consumer().unwrap_or("-"));
            if let Some(addr) = addr {
                say!("  metrics:           http://{addr}/metrics");
            }
        }
        (_, Some(addr)) => say!("roller {} is listening on http://{addr}", env!("CARGO_PKG_VERSION")),
        (_, None) => {}
    }
    say!("  data directory:    {}", s.data_dir.display());
    say!("  job queue:         {queue}");
    if let (Some(creds), Some(addr)) = (&app.admin_credentials, app.local_addr()) {
        let url = format!("http://{addr}");
        let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "roller".into());
        say!("  admin credentials: {} (mode 0600)", creds.display());
        let c = format!("--url {url} --credentials {}", creds.display());
        say!();
        say!("Enqueue a ping of 127.0.0.1:");
        say!("  {exe} jobs {c} enqueue ping 127.0.0.1");
        say!("Read its result (the machine's recent jobs, newest first):");
        say!("  {exe} jobs {c} list 127.0.0.1");
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    app.run_until_stopped(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}

fn inventory_check(actions: &crate::actions::ActionSettings, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let inv = crate::inventory::Inventory::load(file)?;
    let mut problems = 0;
    say!("{}: {} machines, {} classes", file.display(), inv.machines.len(), inv.classes.len());
    for m in inv.machines.values() {
        let group = m.group.as_ref().map(|g| g.to_string()).unwrap_or_else(|| "-".into());
        say!("{} (group {group}, class {}, address {})", m.id, m.class.name, m.address);
        for p in crate::actions::reboot::plan(m, actions) {
            match p.skip {
                None => say!("  reboot step {:<18} runs", p.step.name()),
                Some(why) => say!("  reboot step {:<18} skipped: {why}", p.step.name()),
            }
        }
        for (field, secret) in m.secrets() {
            if let Err(e) = secret.resolve() {
                problems += 1;
                say!("  PROBLEM {field}: {e}");
            }
        }
    }
    if problems > 0 {
        say!("{problems} problem(s)");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `{name, title, context, url, method, description}` per enabled task: the
/// action contract while Taskcluster had one (reference/taskcluster.md §5.2).
pub fn tc_action_definitions(base_url: &str, tasks: &[Task]) -> anyhow::Result<serde_json::Value> {
    let base = base_url.trim_end_matches('/');
    let url = reqwest::Url::parse(base).with_context(|| format!("{base_url:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.query().is_some() || !url.username().is_empty() {
        anyhow::bail!("{base_url:?}: give roller's public base URL, http(s), without credentials or query");
    }
    if base.contains("workerId") || base.contains("workerGroup") {
        anyhow::bail!("{base_url:?} may not contain workerId or workerGroup: roller adds them");
    }
    let actions: Vec<serde_json::Value> = tasks
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name(),
                "title": format!("{} (roller)", t.name().replace('_', " ")),
                "context": "worker",
                "url": format!("{base}/api/v1/workers/<workerId>/group/<workerGroup>/jobs?task_name={}", t.name()),
                "method": "POST",
                "description": t.help(),
            })
        })
        .collect();
    Ok(serde_json::Value::Array(actions))
}

async fn tc_actions(settings: Settings, base_url: &str, declare: Option<&str>) -> anyhow::Result<ExitCode> {
    let actions = tc_action_definitions(base_url, &settings.enabled_tasks)?;
    if base_url.starts_with("http://") {
        eprintln!("roller: warning: an http:// base URL is blocked as mixed content by https dashboards");
    }
    let Some(provisioner) = declare else {
        say!("{}", serde_json::to_string_pretty(&serde_json::json!({ "actions": actions }))?);
        return Ok(ExitCode::SUCCESS);
    };
    crate::domain::TaskclusterName::parse("provisioner_id", provisioner)?;
    let Some(tc) = crate::startup::taskcluster_client(&settings)? else {
        anyhow::bail!(
            "--declare needs roller's Taskcluster credentials (TASKCLUSTER_ROOT_URL, TASKCLUSTER_CLIENT_ID, \
             TASKCLUSTER_ACCESS_TOKEN)"
        );
    };
    let answer = tc.declare_provisioner(provisioner, &actions).await?;
    eprintln!(
        "roller: declared {} actions for provisioner {provisioner}. Taskcluster v39 and later accept this and store \
         nothing: no Taskcluster UI will offer them.",
        actions.as_array().map(Vec::len).unwrap_or(0)
    );
    say!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(ExitCode::SUCCESS)
}

/// `roller explain`: the reboot chain as it would run, from the inventory alone.
fn explain(settings: Settings, worker_id: &str, file: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let id = WorkerId::parse(worker_id)?;
    let path = match file.or(settings.inventory_path.as_deref()) {
        Some(p) => p.to_path_buf(),
        None => anyhow::bail!("no inventory: pass --inventory FILE or set ROLLER_INVENTORY"),
    };
    let inv = crate::inventory::Inventory::load(&path)?;
    let Some(m) = inv.machine(&id) else {
        say!("{id} is not in the inventory {}: only `ping` runs on it.", path.display());
        if id.as_str().parse::<std::net::IpAddr>().is_err() {
            let names = crate::drivers::dns::candidates(id.as_str(), &inv.dns_search);
            say!("ping looks it up in DNS as {}: the first name with an address wins.", names.join(", "));
        }
        return Ok(ExitCode::from(1));
    };
    let r = &settings.reboot;
    let group = m.group.as_ref().map(|g| g.to_string()).unwrap_or_else(|| "-".into());
    say!("{} (group {group}, class {})", m.id, m.class.name);
    say!("  address  {}, probed by {}", m.address, m.class.reachability);
    say!(
        "  proof    stops answering within {}s (DOWN_TIMEOUT) and answers again within {}s (UP_TIMEOUT);",
        r.down_timeout.as_secs(),
        r.up_timeout.as_secs()
    );
    say!("           after a power cycle the BMC or PDU saw, or if it was not answering, only coming back counts");
    say!("  reboot chain, in order:");
    let plan = crate::actions::reboot::plan(m, &crate::startup::action_settings(&settings)?);
    for (n, p) in plan.iter().enumerate() {
        let what = crate::actions::reboot::describe(m, p.step);
        match &p.skip {
            None => say!("    {}. {:<18} runs: {what}", n + 1, p.step.name()),
            Some(why) => say!("    {}. {:<18} skipped: {why}", n + 1, p.step.name()),
        }
    }
    if plan.iter().all(|p| p.skip.is_some()) {
        say!("  nothing in this chain can run: `reboot` will fail at once");
    }
    Ok(ExitCode::SUCCESS)
}

struct StderrLog;

impl LogSink for StderrLog {
    fn line(&self, line: String) {
        eprintln!("{} {line}", chrono::Utc::now().format("%H:%M:%S%.3f"));
    }
}

/// `roller run`: the runner's code path (same action, same limits), without a queue.
async fn run_once(settings: Settings, task: &str, worker_id: &str, group: &str) -> anyhow::Result<ExitCode> {
    let task =
        Task::parse(task).with_context(|| format!("unknown task {task:?}; one of: {}", Task::list(Task::ALL)))?;
    let target = Target { worker_id: WorkerId::parse(worker_id)?, worker_group: WorkerGroup::parse(group)? };
    let actions = crate::startup::action_settings(&settings)?;
    crate::startup::load_inventory(&settings, &actions.inventory)?;
    let soft = CancellationToken::new();
    let interrupted = CancellationToken::new();
    let cx = ActionContext::new(Arc::new(actions), soft.clone(), Arc::new(StderrLog))
        .with_soft_deadline(std::time::Instant::now() + settings.runner.soft_time_limit);
    let i = interrupted.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            i.cancel();
        }
    });
    let limits = Limits { soft: settings.runner.soft_time_limit, hard: settings.runner.hard_time_limit };
    let ended = run_with_limits(actions::execute(task, &target, &cx), limits, &soft, &interrupted).await;
    let (ok, out) = outcome_json(crate::runner::outcome(ended, limits));
    say!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A `roller run` outcome as it prints: `{"state", "result"}` or `{"state", "error"}`;
/// whether it succeeded. Ctrl-C before the end is `cancelled`, "interrupted".
fn outcome_json(outcome: Option<Outcome>) -> (bool, serde_json::Value) {
    let outcome = outcome.unwrap_or_else(|| Outcome::Cancelled("interrupted".into()));
    let state = outcome.state().as_str();
    match outcome {
        Outcome::Succeeded(v) => (true, serde_json::json!({ "state": state, "result": v })),
        Outcome::Failed(e) | Outcome::TimedOut(e) | Outcome::Cancelled(e) => {
            (false, serde_json::json!({ "state": state, "error": e }))
        }
    }
}

/// A log sink that prefixes each line with the machine, for runs on many at once.
struct PrefixedLog(String);

impl LogSink for PrefixedLog {
    fn line(&self, line: String) {
        eprintln!("{} [{}] {line}", chrono::Utc::now().format("%H:%M:%S%.3f"), self.0);
    }
}

/// `roller run` on many machines: the same actions and limits in this process,
/// 16 at a time, then the summary table (or JSON).
async fn run_many(
    settings: Settings,
    task: &str,
    targets: Vec<(WorkerId, WorkerGroup)>,
    yes: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let task =
        Task::parse(task).with_context(|| format!("unknown task {task:?}; one of: {}", Task::list(Task::ALL)))?;
    crate::fleet::confirm(task, targets.len(), settings.safety.confirm_above, yes)?;
    let actions = crate::startup::action_settings(&settings)?;
    crate::startup::load_inventory(&settings, &actions.inventory)?;
    let actions = Arc::new(actions);
    let limits = Limits { soft: settings.runner.soft_time_limit, hard: settings.runner.hard_time_limit };
    let interrupted = CancellationToken::new();
    let i = interrupted.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            i.cancel();
        }
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(16));
    let mut set = tokio::task::JoinSet::new();
    for (n, (worker, group)) in targets.into_iter().enumerate() {
        let (actions, slots, interrupted) = (actions.clone(), slots.clone(), interrupted.clone());
        set.spawn(async move {
            let _slot = slots.acquire().await;
            let soft = CancellationToken::new();
            let cx = ActionContext::new(actions, soft.clone(), Arc::new(PrefixedLog(worker.to_string())))
                .with_soft_deadline(std::time::Instant::now() + limits.soft);
            let target = Target { worker_id: worker.clone(), worker_group: group.clone() };
            let ended = run_with_limits(actions::execute(task, &target, &cx), limits, &soft, &interrupted).await;
            let (_, mut job) = outcome_json(crate::runner::outcome(ended, limits));
            let state = job.as_object_mut().and_then(|o| o.remove("state"));
            let state = state.and_then(|s| s.as_str().map(str::to_string)).unwrap_or_default();
            let row = crate::fleet::Row {
                worker: worker.to_string(),
                group: group.to_string(),
                http: 200,
                task_id: None,
                state,
                detail: crate::fleet::summary(&job),
                job,
            };
            (n, row)
        });
    }
    let mut rows = Vec::new();
    while let Some(r) = set.join_next().await {
        rows.push(r.context("a run failed to complete")?);
    }
    rows.sort_by_key(|(n, _)| *n);
    let rows: Vec<crate::fleet::Row> = rows.into_iter().map(|(_, r)| r).collect();
    crate::fleet::report(task, &rows, json)?;
    Ok(if rows.iter().all(|r| r.state == "succeeded") { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn jobs(settings: &Settings, client: Client, cmd: &JobsCommand) -> anyhow::Result<ExitCode> {
    let (answer, wait) = match cmd {
        JobsCommand::Enqueue { task, machines, inventory, wait } => {
            let task = Task::parse(task)
                .with_context(|| format!("unknown task {task:?}; one of: {}", Task::list(Task::ALL)))?;
            let targets = machines.targets(inventory.as_deref().or(settings.inventory_path.as_deref()))?;
            if targets.len() > 1 || machines.json {
                crate::fleet::confirm(task, targets.len(), settings.safety.confirm_above, machines.yes)?;
                let ok =
                    crate::fleet::enqueue(std::sync::Arc::new(client), task, targets, *wait, machines.json).await?;
                return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
            }
            let (worker, group) = &targets[0];
            let q = format!("/api/v1/workers/{worker}/group/{group}/jobs?task_name={}", task.name());
            (client.post(&q).await?, *wait)
        }
        JobsCommand::Get { task_id, wait } => {
            (client.get(&format!("/api/v1/jobs/{}", JobId::parse(task_id)?)).await?, *wait)
        }
        JobsCommand::Follow { task_id } => return follow(&client, &JobId::parse(task_id)?.to_string()).await,
        JobsCommand::List { worker_id, state, json } => {
            let a = client.get(&format!("/api/v1/workers/{}/jobs", WorkerId::parse(worker_id)?)).await?;
            if !(200..300).contains(&a.status) {
                eprintln!("roller: HTTP {}", a.status);
                say!("{}", serde_json::to_string_pretty(&a.body)?);
                return Ok(ExitCode::from(1));
            }
            if let Some(s) = state
                && crate::queue::JobState::parse(s).is_none()
            {
                anyhow::bail!("unknown state {s:?}: queued, running, succeeded, failed, timed_out or cancelled");
            }
            let jobs: Vec<&serde_json::Value> = a.body["jobs"]
                .as_array()
                .map(|v| v.iter().filter(|j| state.as_deref().is_none_or(|s| j["state"] == s)).collect())
                .unwrap_or_default();
            if *json {
                say!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                say!("{:24}  {:18}  {:10}  {:36}  DETAIL", "CREATED", "TASK", "STATE", "TASK_ID");
                for j in &jobs {
                    say!(
                        "{:24}  {:18}  {:10}  {:36}  {}",
                        j["created_at"].as_str().unwrap_or(""),
                        j["task_name"].as_str().unwrap_or(""),
                        j["state"].as_str().unwrap_or(""),
                        j["task_id"].as_str().unwrap_or(""),
                        crate::fleet::summary(j)
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if !(200..300).contains(&answer.status) {
        eprintln!("roller: HTTP {}", answer.status);
        say!("{}", serde_json::to_string_pretty(&answer.body)?);
        return Ok(ExitCode::from(1));
    }
    if !wait {
        say!("{}", serde_json::to_string_pretty(&answer.body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let id = answer.body["task_id"].as_str().context("answer has no task_id")?.to_string();
    loop {
        let job = client.get(&format!("/api/v1/jobs/{id}")).await?;
        let state = job.body["state"].as_str().unwrap_or("").to_string();
        if job.status != 200 || !matches!(state.as_str(), "queued" | "running") {
            say!("{}", serde_json::to_string_pretty(&job.body)?);
            return Ok(if state == "succeeded" { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `roller jobs follow`: new log lines as they arrive, then the outcome.
async fn follow(client: &Client, id: &str) -> anyhow::Result<ExitCode> {
    let mut shown = 0;
    loop {
        let a = client.get(&format!("/api/v1/jobs/{id}")).await?;
        if a.status != 200 {
            eprintln!("roller: HTTP {}", a.status);
            say!("{}", serde_json::to_string_pretty(&a.body)?);
            return Ok(ExitCode::from(1));
        }
        let lines = a.body["log"].as_array().cloned().unwrap_or_default();
        for l in lines.iter().skip(shown) {
            say!("{}  {}", l["at"].as_str().unwrap_or(""), l["line"].as_str().unwrap_or(""));
        }
        shown = shown.max(lines.len());
        let state = a.body["state"].as_str().unwrap_or("").to_string();
        if !matches!(state.as_str(), "queued" | "running") {
            say!("{state}: {}", crate::fleet::summary(&a.body));
            return Ok(if state == "succeeded" { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
