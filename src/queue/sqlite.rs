//! The embedded queue: one SQLite file in WAL mode. (Placeholder until the real one lands.)

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

use super::*;

pub struct SqliteQueue;

impl SqliteQueue {
    pub fn open(_path: &Path) -> Result<Self, QueueError> {
        Err(QueueError::Unavailable("not built".into()))
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn enqueue(&self, _job: NewJob) -> Result<Enqueued, QueueError> {
        unimplemented!()
    }
    async fn reserve(&self, _c: &str, _l: Duration) -> Result<Option<Job>, QueueError> {
        unimplemented!()
    }
    async fn append_log(&self, _id: JobId, _line: &str) -> Result<(), QueueError> {
        unimplemented!()
    }
    async fn finish(&self, _id: JobId, _c: &str, _o: Outcome) -> Result<(), QueueError> {
        unimplemented!()
    }
    async fn release(&self, _id: JobId, _c: &str) -> Result<(), QueueError> {
        unimplemented!()
    }
    async fn get(&self, _id: JobId) -> Result<Option<Job>, QueueError> {
        unimplemented!()
    }
    async fn history(&self, _w: &WorkerId, _l: usize) -> Result<Vec<Job>, QueueError> {
        unimplemented!()
    }
    async fn health(&self) -> Result<(), QueueError> {
        unimplemented!()
    }
}
