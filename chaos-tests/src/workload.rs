//! The workload: teams of workers that share a few keys and write, delete, read and
//! KNN-search them, each worker through a router on a different node, recording
//! everything.
//!
//! A key's operations overlap in time (its team's workers run concurrently), and an
//! operation whose outcome is unknown may still take effect later; `check` searches
//! for an order that explains what every worker saw. Every value is unique in the run
//! and so is its vector, which makes a KNN query for a value's vector a read of whether
//! the key holds it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::aio::MultiplexedConnection;

use crate::history::{Call, Op, Outcome, Seen};

/// The index every run creates: FLAT, so a KNN answer is exact.
pub const INDEX: &str = "chaos";
pub const DIM: usize = 4;
/// How long one operation may take before its outcome is unknown: longer than the
/// nodes' quorum timeout (5 s), so that a refusal is seen as the error it is.
pub const OP_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Debug, Clone)]
pub struct Workload {
    pub workers: usize,
    /// Workers per team: a team's workers share its keys, each through its own router.
    pub team: usize,
    pub keys_per_team: usize,
    /// Pause between a worker's operations.
    pub pace: Duration,
}

/// A value's vector: distinct for distinct values, exactly representable in f32.
pub fn vector(value: u64) -> Vec<u8> {
    let v = value as f32;
    [v, (value % 97) as f32, (value / 97) as f32, 1.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect()
}

pub fn key(team: usize, k: usize) -> String {
    format!("doc:{team}:{k}")
}

pub fn create_index() -> redis::Cmd {
    let mut cmd = redis::cmd("FT.CREATE");
    cmd.arg(INDEX)
        .arg(
            &[
                "ON", "HASH", "PREFIX", "1", "doc:", "SCHEMA", "vec", "VECTOR", "FLAT", "6",
            ][..],
        )
        .arg(
            &[
                "TYPE",
                "FLOAT32",
                "DIM",
                &DIM.to_string(),
                "DISTANCE_METRIC",
                "L2",
            ][..],
        );
    cmd
}

/// Whether an error reply leaves the operation's effect unknown. Only refusals that
/// come before anything was proposed are definite failures.
fn classify(e: &redis::RedisError) -> Outcome {
    let text = e.to_string();
    match e.code() {
        // The router found no leader and proposed nothing, or the command itself was
        // refused by the engine.
        Some("WRONGTYPE") => Outcome::Failed(text),
        _ => Outcome::Unknown(text),
    }
}

async fn run_op(con: &mut MultiplexedConnection, key: &str, call: &Call) -> Outcome {
    let query = async {
        match call {
            Call::Write(v) => {
                let r: redis::RedisResult<i64> = redis::cmd("HSET")
                    .arg(key)
                    .arg("val")
                    .arg(*v)
                    .arg("vec")
                    .arg(vector(*v))
                    .query_async(con)
                    .await;
                r.map(|_| Seen::Done)
            }
            Call::Delete => {
                let r: redis::RedisResult<i64> = redis::cmd("DEL").arg(key).query_async(con).await;
                r.map(|_| Seen::Done)
            }
            Call::Read => {
                let r: redis::RedisResult<Option<u64>> = redis::cmd("HGET")
                    .arg(key)
                    .arg("val")
                    .query_async(con)
                    .await;
                r.map(Seen::Value)
            }
            Call::Knn(v) => {
                let r: redis::RedisResult<redis::Value> = redis::cmd("FT.SEARCH")
                    .arg(INDEX)
                    .arg("*=>[KNN 2 @vec $q AS d]")
                    .arg(&["PARAMS", "2", "q"][..])
                    .arg(vector(*v))
                    .arg(&["RETURN", "1", "d", "DIALECT", "2"][..])
                    .query_async(con)
                    .await;
                r.map(|reply| match named_twice(&reply) {
                    Some(twice) => Seen::Twice(twice),
                    None => Seen::Found(nearest_is(&reply, key)),
                })
            }
        }
    };
    match tokio::time::timeout(OP_TIMEOUT, query).await {
        Ok(Ok(seen)) => Outcome::Ok(seen),
        Ok(Err(e)) => classify(&e),
        Err(_) => Outcome::Unknown("timed out".into()),
    }
}

/// A reply's string, bulk or simple.
fn text(v: &redis::Value) -> Option<String> {
    if let redis::Value::BulkString(b) = v {
        Some(String::from_utf8_lossy(b).into_owned())
    } else if let redis::Value::SimpleString(s) = v {
        Some(s.clone())
    } else {
        None
    }
}

/// An FT.SEARCH reply's hit ids (`[total, id, fields, id, fields, ..]`).
fn hit_ids(reply: &redis::Value) -> Vec<String> {
    let redis::Value::Array(items) = reply else {
        return Vec::new();
    };
    items.iter().skip(1).step_by(2).filter_map(text).collect()
}

/// A key an FT.SEARCH reply names more than once: a document two groups both showed
/// (a reshard's copy and its original), which the router's merge must never give.
fn named_twice(reply: &redis::Value) -> Option<String> {
    let ids = hit_ids(reply);
    ids.iter()
        .enumerate()
        .find(|(i, id)| ids[..*i].contains(id))
        .map(|(_, id)| id.clone())
}

/// Whether an FT.SEARCH reply's first hit is `key` at distance 0 (KNN 2 asks for a
/// second hit only so that a key named twice can be seen).
fn nearest_is(reply: &redis::Value, key: &str) -> bool {
    let redis::Value::Array(items) = reply else {
        return false;
    };
    let (Some(id), Some(redis::Value::Array(fields))) = (items.get(1).and_then(text), items.get(2))
    else {
        return false;
    };
    let distance = fields
        .get(1)
        .and_then(text)
        .and_then(|d| d.parse::<f64>().ok());
    id == key && distance == Some(0.0)
}

/// Runs `workload` against `addrs` (one router per worker, in turn, so a team's workers
/// use different routers) until `stop`, and returns every operation.
pub async fn run(
    workload: &Workload,
    addrs: &[String],
    seed: u64,
    started: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Op> {
    let tasks = (0..workload.workers).map(|w| {
        let addr = addrs[w % addrs.len()].clone();
        let stop = stop.clone();
        let workload = workload.clone();
        tokio::spawn(async move { worker(w, &addr, &workload, seed, started, &stop).await })
    });
    let mut ops = Vec::new();
    for task in futures::future::join_all(tasks).await {
        ops.extend(task.unwrap_or_default());
    }
    ops
}

async fn connect(addr: &str) -> Option<MultiplexedConnection> {
    let client = redis::Client::open(addr).ok()?;
    tokio::time::timeout(OP_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .ok()?
        .ok()
}

async fn worker(
    w: usize,
    addr: &str,
    workload: &Workload,
    seed: u64,
    started: Instant,
    stop: &AtomicBool,
) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(seed ^ (w as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut ops = Vec::new();
    let team = w / workload.team.max(1);
    // The value this worker last wrote to each key (for KNN queries; another worker
    // may have changed it since, which the query then reads as absent).
    let mut last: Vec<Option<u64>> = vec![None; workload.keys_per_team];
    let mut next_value = (w as u64 + 1) * 1_000_000;
    let mut con: Option<MultiplexedConnection> = None;
    while !stop.load(Ordering::Relaxed) {
        if con.is_none() {
            con = connect(addr).await;
            if con.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let k = rng.gen_range(0..workload.keys_per_team);
        let key = key(team, k);
        let roll: u32 = rng.gen_range(0..100);
        let call = match (roll, last[k]) {
            (0..=44, _) => {
                next_value += 1;
                Call::Write(next_value)
            }
            (45..=54, _) => Call::Delete,
            (55..=79, _) => Call::Read,
            (_, Some(v)) => Call::Knn(v),
            (_, None) => Call::Read,
        };
        let start = started.elapsed();
        let Some(c) = con.as_mut() else {
            continue;
        };
        let outcome = run_op(c, &key, &call).await;
        let end = started.elapsed();
        if let Call::Write(v) = call {
            last[k] = Some(v);
        }
        if matches!(outcome, Outcome::Unknown(_)) {
            // The connection may be broken or stuck behind the lost request.
            con = None;
        }
        ops.push(Op {
            worker: w,
            key,
            call,
            start,
            end,
            outcome,
        });
        tokio::time::sleep(workload.pace).await;
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(hits: &[(&str, &str)]) -> redis::Value {
        let mut items = vec![redis::Value::Int(hits.len() as i64)];
        for (id, d) in hits {
            items.push(redis::Value::BulkString(id.as_bytes().to_vec()));
            items.push(redis::Value::Array(vec![
                redis::Value::BulkString(b"d".to_vec()),
                redis::Value::BulkString(d.as_bytes().to_vec()),
            ]));
        }
        redis::Value::Array(items)
    }

    #[test]
    fn a_knn_answer_naming_a_key_twice_is_told_apart() {
        let fine = reply(&[("doc:0:1", "0"), ("doc:0:2", "4")]);
        assert_eq!(named_twice(&fine), None);
        assert!(nearest_is(&fine, "doc:0:1"));
        assert!(!nearest_is(&fine, "doc:0:2"));
        let twice = reply(&[("doc:0:1", "0"), ("doc:0:1", "0")]);
        assert_eq!(named_twice(&twice).as_deref(), Some("doc:0:1"));
        assert_eq!(named_twice(&reply(&[])), None);
    }
}
