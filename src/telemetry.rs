//! Structured logs: JSON when stderr is not a terminal, readable text when it is.
//! The filter comes from `ROLLER_LOG` (or `RUST_LOG`), default `info`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init() {
    init_with("info")
}

/// Logs for a command that prints its own progress (`roller run`): warnings and
/// errors by default (an outlet left off, a failed repair), more with `ROLLER_LOG` /
/// `RUST_LOG`.
pub fn init_with(default: &str) {
    let filter = std::env::var("ROLLER_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // try_init: a second call (tests) keeps the first subscriber.
    if std::io::stderr().is_terminal() {
        let _ = builder.try_init();
    } else {
        let _ = builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init();
    }
}

/// The process's Prometheus recorder, installed on first use. Metric names and
/// labels are low-cardinality by design: task names, job states, reasons,
/// channels and steps, never worker ids or clients.
pub fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
        // A reboot takes minutes; a ping milliseconds.
        let buckets = [0.05, 0.25, 1.0, 5.0, 15.0, 60.0, 180.0, 600.0, 1200.0];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full("roller_job_duration_seconds".into()), &buckets)
            .expect("buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // The exporter keeps every histogram sample until its upkeep folds them into
        // the buckets, and only its own HTTP listener (not used: /metrics is ours)
        // runs upkeep. Without a scraper a worker grew by every job's duration sample
        // (the soak: ~20 bytes a job, without end), so upkeep runs here.
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms grow until scraped");
        }
        // Another recorder already installed (only possible in an embedding program)
        // leaves this one unused: /metrics then shows only the queue gauges.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be incomplete");
        }
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("roller_jobs_enqueued_total", "Jobs created through the API, by task");
    describe_counter!("roller_jobs_finished_total", "Jobs that ended, by task and final state");
    describe_histogram!("roller_job_duration_seconds", metrics::Unit::Seconds, "Job run time, by task");
    describe_gauge!("roller_jobs_running", "Jobs this process is running now");
    describe_gauge!("roller_queue_jobs", "Jobs in the queue now, by state (queued, running), all processes");
    describe_gauge!("roller_queue_oldest_job_age_seconds", "How long the oldest queued job has waited");
    describe_gauge!("roller_queue_up", "1 when the queue backend answered the last scrape");
    describe_gauge!("roller_queue_lock_waits", "Queued jobs waiting for their machine's lock");
    describe_counter!("roller_auth_failures_total", "Refused requests, by reason");
    describe_counter!("roller_notify_failures_total", "Notifications not delivered after retries, by channel");
    describe_counter!("roller_reboot_steps_total", "Reboot chain steps, by step and outcome");
    describe_counter!(
        "roller_evidence_pieces_total",
        "Pieces of evidence before a power cut, by piece and outcome (taken, not_offered, failed)"
    );
    describe_counter!("roller_restart_refusals_total", "Restarts refused by the reboot-loop breaker, by task");
    describe_counter!("roller_breaker_resets_total", "Reboot-loop breaker resets by an operator");
    describe_counter!("roller_job_errors_total", "Jobs that failed, by task and kind of failure");
    describe_counter!(
        "roller_power_repairs_total",
        "Power restored after an interrupted change, in place or on takeover"
    );
    describe_counter!("roller_leases_lost_total", "Jobs stopped because this runner's lease ran out under them");
    describe_histogram!("roller_health_sweep_seconds", metrics::Unit::Seconds, "One health sweep of every machine");
    describe_gauge!("roller_health_machines", "Inventory machines by health state, as of this process's last sweep");
    describe_gauge!(
        "roller_health_observation_age_seconds",
        "The oldest observation of each kind (probe, power, taskcluster) at this process's last sweep"
    );
    describe_counter!(
        "roller_path_checks_total",
        "Standing path checks (a login and a read, nothing changed), by path kind and outcome (ok, failed)"
    );
    describe_gauge!(
        "roller_machines_without_path",
        "Inventory machines roller has no way left to restart (every path their remediation could use failed \
         its last check, or none is configured), as of the path checker's last look"
    );
    describe_counter!("roller_medic_cycles_total", "Medic cycles, by mode (act, dry_run, plan)");
    describe_counter!("roller_medic_decisions_total", "Medic decisions on hung machines, by verdict");
    describe_counter!("roller_medic_gate_blocks_total", "Machines (or whole cycles) a medic gate stopped, by gate");
    describe_counter!("roller_medic_remediations_total", "Medic remediations that ended, by outcome");
    describe_counter!("roller_medic_holds_total", "Machines held, by who (operator, medic)");
    describe_counter!(
        "roller_requests_refused_total",
        "Requests refused (401, 403, 409), by status and reason (the error_code)"
    );
    describe_gauge!("roller_connections_open", "HTTP connections being served now");
    describe_counter!(
        "roller_connections_refused_total",
        "Connections beyond server.max_connections, by how: answered 503, or closed at once"
    );
    describe_counter!(
        "roller_connections_dropped_total",
        "Connections roller closed, by reason: header_timeout, idle_timeout, stalled, shutdown, unparsable"
    );
    describe_counter!("roller_accept_errors_total", "Failed accepts (out of file descriptors, say)");
}
