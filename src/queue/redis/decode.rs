//! Decoding what the scripts return: a job's hash and log list back into a
//! [`Job`], the running jobs and a machine's breaker resets, and a reply of the
//! wrong shape or a damaged record reported as corrupt (never a panic). Apart
//! because every operation reads its reply through it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use redis::Value;

use crate::domain::{ClientId, JobId, TaskclusterName, WorkerGroup, WorkerId};
use crate::queue::{BreakerReset, Held, Job, JobState, LogLine, QueueError};
use crate::task::Task;

#[derive(serde::Deserialize)]
struct StoredLine {
    at_ms: i64,
    line: String,
}

#[derive(serde::Deserialize)]
struct StoredReset {
    at_ms: i64,
    by: String,
    reason: String,
}

pub(super) fn corrupt(id: &str, what: impl Into<String>) -> QueueError {
    QueueError::Corrupt(id.to_string(), what.into())
}

pub(super) fn into_items(v: Value) -> Result<Vec<Value>, QueueError> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(corrupt("(script reply)", format!("expected an array, got {other:?}"))),
    }
}

fn into_strings(v: Value) -> Result<Vec<String>, QueueError> {
    redis::from_redis_value::<Vec<String>>(v).map_err(|e| corrupt("(script reply)", e.to_string()))
}

pub(super) fn into_int(v: Value) -> Result<i64, QueueError> {
    redis::from_redis_value::<i64>(v).map_err(|e| corrupt("(script reply)", e.to_string()))
}

/// A job from its HGETALL (flat field/value list) and its log list.
pub(super) fn decode_job(fields: Value, log: Value) -> Result<Job, QueueError> {
    let flat = into_strings(fields)?;
    let mut map: HashMap<String, String> = HashMap::new();
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        map.insert(k, v);
    }
    let id = map.get("id").cloned().unwrap_or_else(|| "(no id)".to_string());
    let c = |what: String| corrupt(&id, what);
    let req = |name: &str| map.get(name).ok_or_else(|| c(format!("{name} is missing")));
    let int = |name: &str, s: &str| s.parse::<i64>().map_err(|_| c(format!("{name} {s:?} is not a number")));
    let dt = |name: &str, s: &str| {
        let ms = int(name, s)?;
        DateTime::<Utc>::from_timestamp_millis(ms).ok_or_else(|| c(format!("{name} {ms} is out of range")))
    };
    let opt_dt = |name: &str| map.get(name).map(|s| dt(name, s)).transpose();
    let count = |name: &str| {
        let s = req(name)?;
        s.parse::<u32>().map_err(|_| c(format!("{name} {s:?} out of range")))
    };
    let opt_name =
        |kind: &str| map.get(kind).map(|s| TaskclusterName::parse(kind, s).map_err(|e| c(e.to_string()))).transpose();
    let task = req("task")?;
    let state = req("state")?;
    let mut lines = Vec::new();
    for raw in into_strings(log)? {
        let l: StoredLine = serde_json::from_str(&raw).map_err(|e| c(format!("log line is not JSON: {e}")))?;
        lines.push(LogLine { at: dt("log time", &l.at_ms.to_string())?, line: l.line });
    }
    Ok(Job {
        id: JobId::parse(&id).map_err(|e| c(e.to_string()))?,
        task: Task::parse(task).ok_or_else(|| c(format!("unknown task {task:?}")))?,
        worker_id: WorkerId::parse(req("worker_id")?).map_err(|e| c(e.to_string()))?,
        worker_group: WorkerGroup::parse(req("worker_group")?).map_err(|e| c(e.to_string()))?,
        requester: ClientId::parse(req("requester")?).map_err(|e| c(e.to_string()))?,
        origin: map.get("origin").cloned(),
        provisioner_id: opt_name("provisioner_id")?,
        worker_type: opt_name("worker_type")?,
        reason: map.get("reason").cloned(),
        state: JobState::parse(state).ok_or_else(|| c(format!("unknown state {state:?}")))?,
        attempts: count("attempts")?,
        max_attempts: count("max_attempts")?,
        created_at: dt("created_at", req("created_at")?)?,
        started_at: opt_dt("started_at")?,
        finished_at: opt_dt("finished_at")?,
        consumer: map.get("consumer").cloned(),
        lease_until: opt_dt("lease_until")?,
        log: lines,
        result: map
            .get("result")
            .map(|s| serde_json::from_str(s))
            .transpose()
            .map_err(|e| c(format!("result is not JSON: {e}")))?,
        error: map.get("error").cloned(),
        touched: map.get("touched").is_some_and(|t| t == "1"),
        restore: map.get("restore").cloned(),
    })
}

/// `{fields, log}` or `{}`.
pub(super) fn decode_snapshot(v: Value) -> Result<Option<Job>, QueueError> {
    let mut items = into_items(v)?.into_iter();
    match (items.next(), items.next()) {
        (Some(fields), Some(log)) => decode_job(fields, log).map(Some),
        (None, _) => Ok(None),
        (Some(_), None) => Err(corrupt("(script reply)", "a job without its log")),
    }
}

/// `{id, holder, id, holder, ...}` from `running.lua`.
pub(super) fn decode_held(v: Value) -> Result<Vec<Held>, QueueError> {
    let flat = into_strings(v)?;
    if flat.len() % 2 != 0 {
        return Err(corrupt("(script reply)", "a running job without its holder"));
    }
    flat.chunks_exact(2)
        .map(|pair| {
            let id = JobId::parse(&pair[0]).map_err(|e| corrupt(&pair[0], e.to_string()))?;
            Ok(Held { id, holder: pair[1].clone() })
        })
        .collect()
}

/// The JSON entries of a machine's breaker resets list, in the list's order.
pub(super) fn decode_resets(worker_id: &str, v: Value) -> Result<Vec<BreakerReset>, QueueError> {
    into_strings(v)?
        .into_iter()
        .map(|raw| {
            let r: StoredReset = serde_json::from_str(&raw)
                .map_err(|e| corrupt(worker_id, format!("breaker reset is not JSON: {e}")))?;
            let at = DateTime::<Utc>::from_timestamp_millis(r.at_ms)
                .ok_or_else(|| corrupt(worker_id, format!("breaker reset time {} is out of range", r.at_ms)))?;
            Ok(BreakerReset { at, by: r.by, reason: r.reason })
        })
        .collect()
}
