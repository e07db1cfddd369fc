//! [`Records`] on Redis: a hash per kind (`{p}:rec:<kind>`, field = key), a capped
//! list per event stream (`{p}:events:<stream>`, newest at the head), a string per
//! lease (`{p}:lease:<name>` = holder, expiring by the server's clock) and one per
//! accepted Hawk header (`{p}:nonce:<digest in hex>`, expiring with its window). Plain
//! commands where one command is atomic; the lease's compare-and-set is a script.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redis::Script;

use super::RedisQueue;
use super::connection::stale;
use crate::queue::QueueError;
use crate::queue::records::{RecordKind, Records};

/// Take the lease when it is free or ours (renewing it); `1` when we hold it now.
const ACQUIRE: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0";

/// Delete the lease only if it is ours.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

impl RedisQueue {
    fn records_key(&self, kind: RecordKind) -> String {
        format!("{}rec:{}", self.key_base(), kind.as_str())
    }

    /// `t` (our clock) as unix ms in Redis's clock, by the offset measured at connect and
    /// by every health check: a Redis whose clock runs ahead does not forget a nonce early.
    pub(super) fn in_redis_clock(&self, t: SystemTime) -> i64 {
        let ours = t.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        ours.saturating_add(self.clock_offset_ms.load(Ordering::Relaxed)).max(1)
    }
}

/// A nonce digest as its key names it: lower-case hex.
pub(super) fn hex(digest: &[u8; 16]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for b in digest {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

#[async_trait]
impl Records for RedisQueue {
    async fn put_record(&self, kind: RecordKind, key: &str, record: &str) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        self.call(redis::cmd("HSET").arg(self.records_key(kind)).arg(key).arg(record).query_async::<()>(&mut conn))
            .await
    }

    async fn put_records(&self, kind: RecordKind, items: &[(String, String)]) -> Result<(), QueueError> {
        // Bounded batches: one HSET of thousands of fields is fine, millions would block Redis.
        for chunk in items.chunks(1000) {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(self.records_key(kind));
            for (k, r) in chunk {
                cmd.arg(k).arg(r);
            }
            let mut conn = self.conn.clone();
            self.call(cmd.query_async::<()>(&mut conn)).await?;
        }
        Ok(())
    }

    async fn delete_record(&self, kind: RecordKind, key: &str) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        self.call(redis::cmd("HDEL").arg(self.records_key(kind)).arg(key).query_async::<()>(&mut conn)).await
    }

    async fn record(&self, kind: RecordKind, key: &str) -> Result<Option<String>, QueueError> {
        let mut conn = self.conn.clone();
        self.call(redis::cmd("HGET").arg(self.records_key(kind)).arg(key).query_async(&mut conn)).await
    }

    async fn records(&self, kind: RecordKind) -> Result<Vec<(String, String)>, QueueError> {
        let mut conn = self.conn.clone();
        let map: std::collections::BTreeMap<String, String> =
            self.call(redis::cmd("HGETALL").arg(self.records_key(kind)).query_async(&mut conn)).await?;
        Ok(map.into_iter().collect())
    }

    async fn append_event(&self, stream: &str, record: &str, keep: usize) -> Result<(), QueueError> {
        let key = format!("{}events:{stream}", self.key_base());
        let last = isize::try_from(keep.max(1)).unwrap_or(isize::MAX) - 1;
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("LPUSH").arg(&key).arg(record).ignore().cmd("LTRIM").arg(&key).arg(0).arg(last).ignore();
        let mut conn = self.conn.clone();
        self.call(pipe.query_async::<()>(&mut conn)).await
    }

    async fn events(&self, stream: &str, limit: usize) -> Result<Vec<String>, QueueError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = format!("{}events:{stream}", self.key_base());
        let last = isize::try_from(limit).unwrap_or(isize::MAX) - 1;
        let mut conn = self.conn.clone();
        self.call(redis::cmd("LRANGE").arg(key).arg(0).arg(last).query_async(&mut conn)).await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, QueueError> {
        let key = format!("{}lease:{name}", self.key_base());
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.conn.clone();
        let got: i64 = self.call(Script::new(ACQUIRE).key(key).arg(holder).arg(ms).invoke_async(&mut conn)).await?;
        Ok(got == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), QueueError> {
        let key = format!("{}lease:{name}", self.key_base());
        let mut conn = self.conn.clone();
        self.call(Script::new(RELEASE).key(key).arg(holder).invoke_async::<i64>(&mut conn)).await.map(drop)
    }

    /// `SET <key> 1 NX PXAT <ms>`: one command, one round trip, atomic; Redis's own
    /// key expiry purges it. (An enqueue makes the same claim inside its script.)
    ///
    /// Tried once more when the connection turns out dead (Redis restarted), as the
    /// reads are: the first try then never reached Redis. Should it have (the link
    /// dropped after Redis ran it), the second try finds the key and the header is
    /// refused as a replay: a false refusal the client mends with a fresh signature,
    /// never a replay let through.
    async fn claim_nonce(&self, digest: &[u8; 16], expires_at: SystemTime) -> Result<bool, QueueError> {
        let key = format!("{}nonce:{}", self.key_base(), hex(digest));
        let at = self.in_redis_clock(expires_at);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(1).arg("NX").arg("PXAT").arg(at);
        let once = || {
            let mut conn = self.conn.clone();
            let cmd = &cmd;
            async move { cmd.query_async::<Option<String>>(&mut conn).await }
        };
        let set = self
            .call(async {
                match once().await {
                    Err(e) if stale(&e) => once().await,
                    r => r,
                }
            })
            .await?;
        Ok(set.is_some())
    }
}
