//! Keeping a node to its cluster's shape (`--groups`, `--replication-factor`): the
//! map holds the cluster's ([`ClusterShape`]), and a node started with another stops
//! with a message saying what to change, before it routes a key by another ring or
//! repairs a group to another replication factor.
//!
//! | when                                   | check                                      |
//! |----------------------------------------|--------------------------------------------|
//! | start, `SHAPE` in the data directory   | the flags against it: refuse to start      |
//! | start without `SHAPE`, joining or      | read the map before serving (30 s at most):|
//! | holding data (a restart)               | another shape: refuse                      |
//! | every map read                         | another shape: keep the cluster's in       |
//! |                                        | `SHAPE` (the next start refuses) and stop; |
//! |                                        | the same: write `SHAPE` once               |
//! | a map without one, read by the meta    | write ours (`HSETNX`), only if the map     |
//! | leader                                 | shows it (`ClusterShape::seen_in`)         |
//!
//! So a node started with other flags can be first to nothing: the shape is written
//! only by the meta leader and only from what the groups report. A fresh node that
//! bootstraps with the others (no data, no `SHAPE`) is checked at its first map read
//! once the shape is there, a few seconds into a new cluster; a joining or restarted
//! one routes nothing before its check. Repair and rebalancing do nothing while the
//! map's shape is not this node's.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use shoal_cluster::{ClusterShape, Router};

use crate::node;
use crate::node_config::NodeConfig;

/// In the data directory once the node has seen the map agree with its flags.
const SHAPE: &str = "SHAPE";
/// How long a joining or restarted node waits to read the map before it gives up.
const JOIN_MAP_WAIT: Duration = Duration::from_secs(30);

pub fn of(config: &NodeConfig) -> ClusterShape {
    ClusterShape {
        groups: config.groups,
        replication_factor: config.replication_factor as u64,
    }
}

fn encode(shape: &ClusterShape) -> String {
    format!(
        "groups {}\nreplication_factor {}\n",
        shape.groups, shape.replication_factor
    )
}

fn decode(text: &str) -> Option<ClusterShape> {
    let mut groups = None;
    let mut replication_factor = None;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("groups", n)) => groups = n.trim().parse().ok(),
            Some(("replication_factor", n)) => replication_factor = n.trim().parse().ok(),
            _ => {}
        }
    }
    Some(ClusterShape {
        groups: groups?,
        replication_factor: replication_factor?,
    })
}

/// Refuses a start whose flags differ from the shape this data directory was part of.
pub fn check_remembered(data_dir: &Path, shape: &ClusterShape) -> Result<()> {
    let path = data_dir.join(SHAPE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let Some(remembered) = decode(&text) else {
        bail!("{} is not a cluster shape: {text:?}", path.display());
    };
    shape.check(&remembered).map_err(anyhow::Error::msg)
}

/// One `remember` at a time in the process. A restarted node checks the map before
/// serving while its map task checks every read, and both may remember at once: with
/// one `SHAPE.tmp` between them, one renamed it away under the other, whose start then
/// failed ("writing …/SHAPE: No such file or directory", CI of session 38).
static REMEMBERING: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// Remembers that the cluster has `shape` (once; synced, a restart relies on it).
pub fn remember(data_dir: &Path, shape: &ClusterShape) -> Result<()> {
    let _one_at_a_time = REMEMBERING.lock();
    let path = data_dir.join(SHAPE);
    if path.exists() {
        return Ok(());
    }
    let tmp = data_dir.join("SHAPE.tmp");
    std::fs::write(&tmp, encode(shape))
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .and_then(|()| std::fs::File::open(data_dir)?.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Whether a start must read the map before serving: no `SHAPE` yet, and the node
/// joins a running cluster or holds data already (a restart).
pub fn must_check_first(data_dir: &Path, join: bool, holds_data: bool) -> bool {
    !data_dir.join(SHAPE).exists() && (join || holds_data)
}

/// The check before serving: the running cluster's map, read from its meta group,
/// must have this node's shape (or none, a cluster of nodes from before the shape was
/// kept).
pub async fn check_before_serving(
    router: &Router,
    shape: &ClusterShape,
    data_dir: &Path,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + JOIN_MAP_WAIT;
    let map = loop {
        match router.cluster_map(node::now_ms(), false).await {
            Ok(map) => break map,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                bail!("could not read the cluster map within {JOIN_MAP_WAIT:?} ({e}); a joining node needs the running members in --member, a restarted one its cluster's meta group")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    if let Some(cluster) = map.shape {
        if let Err(why) = shape.check(&cluster) {
            remember(data_dir, &cluster)?;
            bail!(why);
        }
        remember(data_dir, shape)?;
    }
    Ok(())
}

/// What one map read says of this node's shape: `Err` with the operator's message
/// when it must stop (the cluster's shape is then kept in `SHAPE`, so that a restart
/// with the same flags is refused at once). The meta leader writes the shape to a map
/// without one that shows it; `SHAPE` is written once they agree.
pub async fn check_map(
    router: &Router,
    shape: &ClusterShape,
    data_dir: &Path,
    meta_leader: bool,
) -> std::result::Result<(), String> {
    let now_ms = node::now_ms();
    // Whether the map shows our shape is asked only of a map without one, by the one
    // node that may write it.
    let (cluster, seen) = router.with_cached_map(|m| {
        let seen = m.shape.is_none() && meta_leader && shape.seen_in(m, now_ms);
        (m.shape, seen)
    });
    let Some(cluster) = cluster else {
        if seen {
            if let Err(e) = router.claim_shape(shape, now_ms).await {
                tracing::debug!(error = %e, "could not write the cluster's shape to the map");
            }
        }
        return Ok(());
    };
    let fits = shape.check(&cluster);
    // Ours when it fits, else the cluster's: a restart with these flags is refused.
    let kept = if fits.is_ok() { shape } else { &cluster };
    if let Err(e) = remember(data_dir, kept) {
        tracing::warn!(error = %e, "remembering the cluster's shape");
    }
    fits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_remembers_the_shape_and_refuses_another() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let three = ClusterShape {
            groups: 3,
            replication_factor: 3,
        };
        let two = ClusterShape { groups: 2, ..three };
        assert!(
            check_remembered(dir.path(), &two).is_ok(),
            "nothing kept yet"
        );
        remember(dir.path(), &three).unwrap_or_else(|e| panic!("{e}"));
        assert!(check_remembered(dir.path(), &three).is_ok());
        let refused = check_remembered(dir.path(), &two).map_err(|e| e.to_string());
        assert_eq!(refused, two.check(&three));
        assert!(refused.is_err());
        // Kept once: a later call does not overwrite it.
        remember(dir.path(), &two).unwrap_or_else(|e| panic!("{e}"));
        assert!(check_remembered(dir.path(), &three).is_ok());
        std::fs::write(dir.path().join(SHAPE), "groups x\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(check_remembered(dir.path(), &three).is_err());
        assert_eq!(decode(&encode(&three)), Some(three));
    }

    /// Callers racing to remember (a restart's check before serving and the map task)
    /// all succeed, and the first shape is the one kept.
    #[test]
    fn concurrent_remembers_all_succeed() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let three = ClusterShape {
                groups: 3,
                replication_factor: 3,
            };
            let results: Vec<Result<()>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| s.spawn(|| remember(dir.path(), &three)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| panic!("a remember panicked")))
                    .collect()
            });
            for r in results {
                r.unwrap_or_else(|e| panic!("{e:#}"));
            }
            assert!(check_remembered(dir.path(), &three).is_ok());
        }
    }
}
