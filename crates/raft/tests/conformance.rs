//! openraft's storage conformance suite against the RocksDB log store and the engine
//! state machine.
//!
//! Every store the suite builds shares its RocksDB with two neighbouring groups whose
//! logs are not empty, so any key-range mistake (reading a neighbour's entries, purging
//! or truncating into them) fails the suite's checks of the group under test.

#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::collections::BTreeSet;

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::testing::{blank_ent, membership_ent};
use openraft::type_config::TypeConfigExt;
use openraft::StorageError;
use shoal_raft::types::Vote;
use shoal_raft::{LogDb, LogStore, StateMachine, TypeConfig};
use tempfile::TempDir;

struct Builder;

fn err(e: impl std::error::Error + 'static) -> StorageError<TypeConfig> {
    StorageError::read(TypeConfig::err_from_error(&e))
}

/// Fills group `g` with a vote and a few entries, durably.
async fn neighbour(db: &std::sync::Arc<LogDb>, g: u64) -> Result<(), StorageError<TypeConfig>> {
    let mut store = LogStore::new(db.clone(), g);
    store.save_vote(&Vote::new(9, 9)).await.map_err(err)?;
    let entries = vec![
        membership_ent::<TypeConfig>(1, 1, 0, vec![BTreeSet::from([1])]),
        blank_ent::<TypeConfig>(1, 1, 1),
        blank_ent::<TypeConfig>(1, 1, 2),
        blank_ent::<TypeConfig>(2, 1, 100),
    ];
    let (tx, rx) = TypeConfig::oneshot();
    store
        .append(entries, IOFlushed::signal(tx))
        .await
        .map_err(err)?;
    rx.await
        .map_err(|e| StorageError::read(TypeConfig::err_from_string(e.to_string())))?
        .map_err(err)
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = TempDir::new().map_err(err)?;
        let db = LogDb::open(&dir.path().join("log")).map_err(err)?;
        neighbour(&db, 6).await?;
        neighbour(&db, 8).await?;
        let log = LogStore::new(db, 7);
        let sm = StateMachine::open(dir.path().join("group-7"), &log).map_err(err)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    TypeConfig::run(async {
        Suite::test_all(Builder).await.unwrap();
    });
}
