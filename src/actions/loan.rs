//! `loan` and `return_loan`: lend a machine to a person and take it back.
//!
//! A loan quarantines the worker in Taskcluster (`queue.quarantineWorker`) for the
//! configured loan length, so it claims no tasks while someone works on it; the
//! job record (requester, result with `loaned_until`) is the record of who has
//! it until when, and the quarantine info in Taskcluster says the same.
//! Returning lifts the quarantine (a `quarantineUntil` of now) and reimages the
//! machine, since a loaned machine's state cannot be trusted.

use super::report::{LoanReport, LoanReturnReport, Report};
use super::{ActionContext, ActionError, Subject, TaskclusterSettings, reimage};
use crate::drivers::taskcluster::{TaskclusterError, WorkerRef};
use crate::inventory::Machine;
use chrono::{SecondsFormat, Utc};

pub async fn loan(on: &Subject, cx: &ActionContext) -> Result<Report, ActionError> {
    let (m, target) = (on.machine()?, &on.target);
    let tc = settings(cx, "loan")?;
    let (provisioner_id, worker_type) = pool(m, cx, "loan")?;
    let until = Utc::now() + chrono::Duration::from_std(tc.loan).unwrap_or(chrono::Duration::days(30));
    let (requester, job) = who(cx);
    let info = format!(
        "Loaned to {requester} until {} by roller (job {job}).",
        until.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    let w = WorkerRef {
        provisioner_id: &provisioner_id,
        worker_type: &worker_type,
        // The inventory knows the machine's group; a request's may be the default `none`.
        worker_group: m.group.as_ref().unwrap_or(&target.worker_group).as_str(),
        worker_id: m.id.as_str(),
    };
    cx.log(format!("quarantining {provisioner_id}/{worker_type}/{}/{} until {until}", w.worker_group, w.worker_id));
    tc.client.quarantine_worker(&w, until, &info, &cx.cancel).await.map_err(|e| fail("loan", e))?;
    cx.log(info.clone());
    Ok(LoanReport {
        loaned_to: requester,
        loaned_until: until.to_rfc3339_opts(SecondsFormat::Secs, true),
        provisioner_id,
        worker_type,
    }
    .into())
}

pub async fn return_loan(on: &Subject, cx: &ActionContext) -> Result<Report, ActionError> {
    let (m, target) = (on.machine()?, &on.target);
    let tc = settings(cx, "return_loan")?;
    let (provisioner_id, worker_type) = pool(m, cx, "return_loan")?;
    let (requester, job) = who(cx);
    let w = WorkerRef {
        provisioner_id: &provisioner_id,
        worker_type: &worker_type,
        // The inventory knows the machine's group; a request's may be the default `none`.
        worker_group: m.group.as_ref().unwrap_or(&target.worker_group).as_str(),
        worker_id: m.id.as_str(),
    };
    let info = format!("Loan returned by {requester} through roller (job {job}); reimaging.");
    tc.client.quarantine_worker(&w, Utc::now(), &info, &cx.cancel).await.map_err(|e| fail("return_loan", e))?;
    cx.log(format!("quarantine of {} lifted; reimaging it", m.id));
    match reimage::reimage(on, cx).await {
        Ok(reimage) => Ok(LoanReturnReport { quarantine_lifted: true, reimage, evidence: None }.into()),
        Err(e @ (ActionError::Config(_) | ActionError::Cancelled)) => Err(e),
        Err(e) => {
            Err(e.map_text(|why| format!("return_loan: the quarantine was lifted, but the reimage failed: {why}")))
        }
    }
}

fn settings<'a>(cx: &'a ActionContext, task: &str) -> Result<&'a TaskclusterSettings, ActionError> {
    cx.settings.taskcluster.as_ref().ok_or_else(|| {
        ActionError::Config(format!(
            "{task}: roller has no Taskcluster credentials (TASKCLUSTER_ROOT_URL, TASKCLUSTER_CLIENT_ID, \
             TASKCLUSTER_ACCESS_TOKEN)"
        ))
    })
}

/// Provisioner and worker type: the request's, else the inventory's.
fn pool(m: &Machine, cx: &ActionContext, task: &str) -> Result<(String, String), ActionError> {
    let from_job = cx.job.as_ref();
    let p =
        from_job.and_then(|j| j.provisioner_id.clone()).or_else(|| m.provisioner_id.as_ref().map(|p| p.to_string()));
    let t = from_job.and_then(|j| j.worker_type.clone()).or_else(|| m.worker_type.as_ref().map(|t| t.to_string()));
    match (p, t) {
        (Some(p), Some(t)) => Ok((p, t)),
        _ => Err(ActionError::Config(format!(
            "{task}: {} needs a provisioner_id and worker_type: in the request or in its inventory entry",
            m.id
        ))),
    }
}

fn who(cx: &ActionContext) -> (String, String) {
    match &cx.job {
        Some(j) => (j.requester.clone(), j.id.clone()),
        None => ("roller run (command line)".into(), "-".into()),
    }
}

fn fail(task: &str, e: TaskclusterError) -> ActionError {
    ActionError::driver(task, e)
}
