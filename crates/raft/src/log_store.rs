//! One group's Raft log in the node's RocksDB (see `db` for the layout).
//!
//! Every method that openraft awaits for durability — votes, truncation, purging — waits
//! for the shared syncer, so concurrent groups share fsyncs; `append` returns as soon
//! as its entries are readable and reports durability through openraft's callback.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Weak};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::db::{index_of, log_key, meta_key, GroupId, LogDb, LOGS, META};
use crate::error::RaftError;
use crate::types::{Entry, LogId, TypeConfig, Vote};
use crate::view_mirror::ViewMirror;

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

/// The log of group `group`, sharing `db` with every other group of the node.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<LogDb>,
    group: GroupId,
    /// What this log tells the replica's views (`crate::view_mirror`), shared with the
    /// state machine and the group's handles.
    views: Arc<ViewMirror>,
}

/// A handle that reads a group's log without keeping the database open: what the state
/// machine holds (it can outlive its Raft for a moment after shutdown, and RocksDB's
/// lock must go with the host so a restart in the same process can reopen it).
#[derive(Debug, Clone)]
pub struct WeakLog {
    db: Weak<LogDb>,
    group: GroupId,
}

impl WeakLog {
    /// `LogStore::read_range`, or an error once the database is closed.
    pub(crate) fn read_range(
        &self,
        start: u64,
        end: u64,
        max_bytes: usize,
    ) -> io::Result<Vec<Entry>> {
        let db = self
            .db
            .upgrade()
            .ok_or_else(|| io::Error::other("the Raft log is closed"))?;
        LogStore {
            db,
            group: self.group,
            views: Arc::default(),
        }
        .read_range(start, end, max_bytes)
    }
}

impl LogStore {
    pub fn new(db: Arc<LogDb>, group: GroupId) -> Self {
        LogStore {
            db,
            group,
            views: Arc::new(ViewMirror::new()),
        }
    }

    /// The replica's views as this log and its state machine keep them.
    pub fn views(&self) -> Arc<ViewMirror> {
        self.views.clone()
    }

    /// A reader of this log that does not keep the database open.
    pub fn weak(&self) -> WeakLog {
        WeakLog {
            db: Arc::downgrade(&self.db),
            group: self.group,
        }
    }

    fn get_meta<T: DeserializeOwned>(&self, name: &str) -> io::Result<Option<T>> {
        let cf = self.db.cf(META)?;
        match self
            .db
            .db()
            .get_pinned_cf(cf, meta_key(self.group, name))
            .map_err(RaftError::from)?
        {
            Some(bytes) => decode(&bytes, "log metadata").map(Some),
            None => Ok(None),
        }
    }

    fn meta_batch<T: Serialize>(&self, name: &str, value: &T) -> io::Result<WriteBatch> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.db.cf(META)?,
            meta_key(self.group, name),
            encode(value)?,
        );
        Ok(batch)
    }

    /// The last entry of this group's log, if any.
    fn last_entry(&self) -> io::Result<Option<Entry>> {
        let cf = self.db.cf(LOGS)?;
        let end = log_key(self.group, u64::MAX);
        let mut iter = self
            .db
            .db()
            .iterator_cf(cf, IteratorMode::From(&end, Direction::Reverse));
        match iter.next() {
            Some(Ok((key, value))) if index_of(self.group, &key).is_some() => {
                decode(&value, "log entry").map(Some)
            }
            Some(Err(e)) => Err(RaftError::from(e).into()),
            Some(Ok(_)) | None => Ok(None),
        }
    }
}

impl From<RaftError> for io::Error {
    fn from(e: RaftError) -> Self {
        io::Error::other(e.to_string())
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(io::Error::other)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| {
        RaftError::Corrupt {
            what,
            detail: e.to_string(),
        }
        .into()
    })
}

/// `range` as a half-open `[start, end)` over log indexes.
fn half_open(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&i) => i.saturating_add(1),
        Bound::Excluded(&i) => i,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl LogStore {
    /// The entries with indexes in `[start, end)` that the log holds, in order (purged
    /// ones are absent), stopping after the first entry that brings the encoded size
    /// read to `max_bytes`. Synchronous: the snapshot builder reads from a blocking thread.
    pub(crate) fn read_range(
        &self,
        start: u64,
        end: u64,
        max_bytes: usize,
    ) -> io::Result<Vec<Entry>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let cf = self.db.cf(LOGS)?;
        let from = log_key(self.group, start);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in self
            .db
            .db()
            .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward))
        {
            let (key, value) = item.map_err(RaftError::from)?;
            match index_of(self.group, &key) {
                Some(i) if i < end => out.push(decode(&value, "log entry")?),
                Some(_) | None => break,
            }
            bytes = bytes.saturating_add(value.len());
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
impl LogStore {
    /// Puts `entries` in the log (visible, not synced): tests that drive the state
    /// machine without a Raft.
    pub(crate) fn put(&self, entries: &[Entry]) -> io::Result<()> {
        let cf = self.db.cf(LOGS)?;
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put_cf(cf, log_key(self.group, entry.index()), encode(entry)?);
        }
        Ok(self.db.write(batch)?)
    }

    /// Deletes the entries below `index`, as a purge does.
    pub(crate) fn drop_below(&self, index: u64) -> io::Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.db.cf(LOGS)?,
            log_key(self.group, 0),
            log_key(self.group, index),
        );
        Ok(self.db.write(batch)?)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let (start, end) = half_open(&range);
        self.read_range(start, end, usize::MAX)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        let vote = self.get_meta(VOTE)?;
        self.views.read_vote(vote.as_ref());
        Ok(vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId> = self.get_meta(PURGED)?;
        let last_log_id = match self.last_entry()? {
            Some(entry) => Some(entry.log_id()),
            None => last_purged_log_id,
        };
        self.views
            .log_state(last_log_id.as_ref().map(|l| l.index()));
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        // Shown before it is durable: openraft answers by it only after this returns.
        self.views.save_vote(vote);
        let batch = self.meta_batch(VOTE, vote)?;
        Ok(self.db.write_durable(batch).await?)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        // Not waited for: it only tells a restarted replica how far it may re-apply
        // before it hears from a leader, and it becomes durable with the next sync.
        let batch = self.meta_batch(COMMITTED, &committed)?;
        Ok(self.db.write(batch)?)
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.get_meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let cf = self.db.cf(LOGS)?;
        let mut batch = WriteBatch::default();
        let entries: Vec<Entry> = entries.into_iter().collect();
        for entry in &entries {
            batch.put_cf(cf, log_key(self.group, entry.index()), encode(entry)?);
        }
        // Readable now; durable when the syncer says so. The views learn of them first.
        self.views.append(&entries);
        self.db.write(batch)?;
        self.db.when_durable(Box::new(move |result| {
            callback.io_completed(result.map_err(io::Error::other));
        }));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.db.cf(LOGS)?,
            log_key(self.group, from),
            log_key(self.group, u64::MAX),
        );
        self.db.write_durable(batch).await?;
        self.views.truncate_after(last_log_id.map(|id| id.index()));
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        // The purged id first, then the range, in one batch: a crash leaves both or neither.
        let mut batch = self.meta_batch(PURGED, &log_id)?;
        batch.delete_range_cf(
            self.db.cf(LOGS)?,
            log_key(self.group, 0),
            log_key(self.group, log_id.index() + 1),
        );
        self.db.write_durable(batch).await?;
        self.views.purge(log_id.index());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::blank_ent;

    #[test]
    fn a_range_read_stops_at_its_byte_budget_but_returns_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogStore::new(LogDb::open(dir.path()).unwrap(), 3);
        let entries: Vec<Entry> = (0..10).map(|i| blank_ent::<TypeConfig>(1, 1, i)).collect();
        log.put(&entries).unwrap();
        let one = encode(&entries[0]).unwrap().len();
        let indexes = |v: Vec<Entry>| v.iter().map(|e| e.index()).collect::<Vec<_>>();
        assert_eq!(
            indexes(log.read_range(0, 10, usize::MAX).unwrap()).len(),
            10
        );
        assert_eq!(indexes(log.read_range(2, 10, 1).unwrap()), vec![2]);
        assert_eq!(
            indexes(log.read_range(2, 10, 3 * one).unwrap()),
            vec![2, 3, 4]
        );
        assert_eq!(
            indexes(log.read_range(8, 20, usize::MAX).unwrap()),
            vec![8, 9]
        );
        log.drop_below(5).unwrap();
        assert_eq!(
            indexes(log.read_range(0, 7, usize::MAX).unwrap()),
            vec![5, 6]
        );
    }
}
