//! `roller tc-actions`: the Taskcluster worker-context action definitions for
//! the enabled tasks, printed or sent with `queue.declareProvisioner`.

use std::process::ExitCode;

use anyhow::Context;

use super::output::say;
use crate::actions::Task;
use crate::config::Settings;

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

pub async fn tc_actions(settings: Settings, base_url: &str, declare: Option<&str>) -> anyhow::Result<ExitCode> {
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
