//! The file's layout: the schema this code writes, its version in
//! `PRAGMA user_version`, and the steps that bring an older file up to date.
//! Apart because it changes only with the schema, and a reader checking what is
//! stored should find it in one place.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::DbResult;
use crate::queue::QueueError;

/// The schema this code writes and understands, kept in `PRAGMA user_version`.
/// Bump it (and add a migration step in [`migrate`]) whenever the schema changes.
pub const SCHEMA_VERSION: i64 = 5;

// A macro so the same text goes into the schema and the migration with `concat!`.
macro_rules! breaker_resets_table {
    () => {
        "
CREATE TABLE breaker_resets (
    id        INTEGER PRIMARY KEY,
    worker_id TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    by        TEXT    NOT NULL,
    reason    TEXT    NOT NULL
) STRICT;
CREATE INDEX breaker_resets_worker ON breaker_resets (worker_id, at);
"
    };
}

// The shared records (observations, holds, the medic's memory), event logs and leases:
// see `queue::records`.
macro_rules! records_tables {
    () => {
        "
CREATE TABLE records (
    kind       TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    record     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
) STRICT;
CREATE TABLE events (
    id     INTEGER PRIMARY KEY,
    stream TEXT    NOT NULL,
    at     INTEGER NOT NULL,
    record TEXT    NOT NULL
) STRICT;
CREATE INDEX events_stream ON events (stream, id);
CREATE TABLE leases (
    name   TEXT    NOT NULL PRIMARY KEY,
    holder TEXT    NOT NULL,
    until  INTEGER NOT NULL
) STRICT;
"
    };
}

// The digests of accepted Hawk headers, each until its header's `ts + skew`
// (`auth::replay`). WITHOUT ROWID: the 16-byte digest is the key, stored once;
// `nonces_expiry` lets each claim purge a few expired rows without a scan.
macro_rules! nonces_table {
    () => {
        "
CREATE TABLE nonces (
    digest     BLOB    NOT NULL PRIMARY KEY CHECK (length(digest) = 16),
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX nonces_expiry ON nonces (expires_at);
"
    };
}

// `seq` exists because `created_at` has millisecond resolution and jobs enqueued
// in the same millisecond still need a stable FIFO order; the implicit rowid is
// not used for that since VACUUM may renumber it.
//
// STRICT and the CHECKs make SQLite refuse wrongly typed or impossible values at
// write time, so a bug (or a hand-edited row) fails loudly instead of being read
// back as garbage later.
const SCHEMA: &str = concat!(
    "
CREATE TABLE jobs (
    id             TEXT    NOT NULL PRIMARY KEY,
    seq            INTEGER NOT NULL UNIQUE,
    task           TEXT    NOT NULL,
    worker_id      TEXT    NOT NULL,
    worker_group   TEXT    NOT NULL,
    requester      TEXT    NOT NULL,
    origin         TEXT,
    provisioner_id TEXT,
    worker_type    TEXT,
    state          TEXT    NOT NULL CHECK (state IN
                       ('queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled')),
    attempts       INTEGER NOT NULL CHECK (attempts >= 0),
    max_attempts   INTEGER NOT NULL CHECK (max_attempts >= 1),
    created_at     INTEGER NOT NULL,
    started_at     INTEGER,
    finished_at    INTEGER,
    consumer       TEXT,
    lease_until    INTEGER,
    result         TEXT,
    error          TEXT,
    touched        INTEGER NOT NULL DEFAULT 0 CHECK (touched IN (0, 1)),
    restore        TEXT,
    reason         TEXT
) STRICT;
CREATE INDEX jobs_state_created ON jobs (state, created_at, seq);
CREATE INDEX jobs_worker_created ON jobs (worker_id, created_at, seq);
-- Coalescing is decided inside an IMMEDIATE transaction already; this index makes
-- a second active job for the same machine+group+task impossible even if some
-- other writer gets it wrong.
CREATE UNIQUE INDEX jobs_active_unique ON jobs (worker_id, worker_group, task)
    WHERE state IN ('queued', 'running');
-- Retention deletes by finished_at; only final jobs have one.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE job_log (
    job_id TEXT    NOT NULL REFERENCES jobs (id),
    seq    INTEGER NOT NULL,
    at     INTEGER NOT NULL,
    line   TEXT    NOT NULL,
    PRIMARY KEY (job_id, seq)
) STRICT;
",
    breaker_resets_table!(),
    records_tables!(),
    nonces_table!()
);

/// Version 1 → 2: the retention index.
const MIGRATE_1_TO_2: &str = "CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;";

/// Version 2 → 3: what a job did to the hardware (`touched`, `restore`) and the
/// breaker's overrides.
const MIGRATE_2_TO_3: &str = concat!(
    "
ALTER TABLE jobs ADD COLUMN touched INTEGER NOT NULL DEFAULT 0 CHECK (touched IN (0, 1));
ALTER TABLE jobs ADD COLUMN restore TEXT;
",
    breaker_resets_table!()
);

/// Version 3 → 4: why a job was asked for (the medic says), and the shared records,
/// event logs and leases (fleet health, the medic).
const MIGRATE_3_TO_4: &str = concat!("ALTER TABLE jobs ADD COLUMN reason TEXT;\n", records_tables!());

/// Version 4 → 5: the record of used Hawk nonces (replay protection shared by every
/// process on the file and kept across restarts).
const MIGRATE_4_TO_5: &str = nonces_table!();

/// The steps from version `n` to `n + 1`, at index `n - 1`.
const STEPS: [&str; 4] = [MIGRATE_1_TO_2, MIGRATE_2_TO_3, MIGRATE_3_TO_4, MIGRATE_4_TO_5];

/// Create the schema on a fresh file; accept the current version; refuse
/// anything else rather than guess at a layout this code does not know.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), QueueError> {
    // IMMEDIATE so two processes opening a new file at once do not both create tables.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).db()?;
    match version {
        0 => {
            let tables: i64 =
                tx.query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |r| r.get(0)).db()?;
            if tables > 0 {
                return Err(QueueError::Unavailable(format!(
                    "{} is an SQLite database but not a roller queue (it has tables and no schema \
                     version); refusing to modify it",
                    path.display()
                )));
            }
            tx.execute_batch(SCHEMA).db()?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION).db()?;
        }
        v @ 1..SCHEMA_VERSION => {
            for step in &STEPS[usize::try_from(v - 1).unwrap_or(0)..] {
                tx.execute_batch(step).db()?;
            }
            tx.pragma_update(None, "user_version", SCHEMA_VERSION).db()?;
        }
        SCHEMA_VERSION => {}
        v if v > SCHEMA_VERSION => {
            return Err(QueueError::Unavailable(format!(
                "queue database {} has schema version {v}, newer than this roller understands \
                 ({SCHEMA_VERSION}); run a newer roller or point it at another file",
                path.display()
            )));
        }
        v => {
            return Err(QueueError::Unavailable(format!(
                "queue database {} has unknown schema version {v} (this roller writes \
                 {SCHEMA_VERSION}); refusing to use it",
                path.display()
            )));
        }
    }
    tx.commit().db()
}
