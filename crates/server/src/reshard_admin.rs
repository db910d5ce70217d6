//! `RESHARD ...`: adding a shard group to a running cluster, over RESP
//! (docs/operations.md, "Adding a shard group"). Any node answers; the meta leader's
//! coordinator does the work, and `STATUS` shows how far it came.
//!
//! ```text
//! RESHARD ADD-GROUP   -> the new group's id
//! RESHARD STATUS      -> phase, target, epoch, groups, per source: copied, switched
//! RESHARD ABORT       -> OK; refused once a source has switched
//! ```

use bytes::Bytes;
use shoal_cluster::reshard_admin::Status;
use shoal_cluster::reshard_record::Phase;
use shoal_resp::Value;
use tracing::Instrument;

use crate::node::{now_ms, Node, Store};

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

pub async fn answer(node: &Node, args: &[Bytes]) -> Value {
    let Store::Replicated(r) = &node.store else {
        return Value::Error(
            "ERR this node is not replicated (shoal dev --standalone); RESHARD needs a cluster"
                .into(),
        );
    };
    let sub = args
        .get(1)
        .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
        .unwrap_or_default();
    if args.len() != 2 {
        return Value::Error(format!(
            "ERR wrong number of arguments for 'reshard|{}' command",
            sub.to_ascii_lowercase()
        ));
    }
    let span = tracing::info_span!("reshard_admin", sub = %sub);
    let router = &r.router;
    async move {
        let now = now_ms();
        match sub.as_str() {
            "ADD-GROUP" => match router.reshard_add_group(now).await {
                Ok(group) => int(group),
                Err(e) => Value::Error(e),
            },
            "STATUS" => match router.reshard_status(now).await {
                Ok(status) => status_value(&status),
                Err(e) => Value::Error(e),
            },
            "ABORT" => match router.reshard_abort(now).await {
                Ok(()) => Value::ok(),
                Err(e) => Value::Error(e),
            },
            other => Value::Error(format!(
                "ERR unknown subcommand '{}'. Try ADD-GROUP, STATUS or ABORT.",
                other.to_ascii_lowercase()
            )),
        }
    }
    .instrument(span)
    .await
}

pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Creating => "creating",
        Phase::Copying => "copying",
        Phase::Switching { .. } => "switching",
        Phase::Cleaning => "cleaning",
        Phase::Aborting => "aborting",
    }
}

/// `RESHARD STATUS` as a map (a flat array in RESP2). `phase` is `none` when no
/// reshard is under way; `groups` are the groups keys live on.
fn status_value(status: &Status) -> Value {
    let layout = &status.layout;
    let switched: Vec<u64> = layout
        .moving
        .as_ref()
        .map(|m| m.switched.clone())
        .unwrap_or_default();
    let mut fields = vec![
        (
            Value::bulk("phase"),
            Value::bulk(
                status
                    .record
                    .as_ref()
                    .map_or("none", |r| phase_name(r.phase)),
            ),
        ),
        (Value::bulk("epoch"), int(layout.epoch)),
        (
            Value::bulk("groups"),
            Value::Array(layout.groups.iter().map(|&g| int(g)).collect()),
        ),
    ];
    if let Some(record) = &status.record {
        let sources = layout
            .groups
            .iter()
            .filter(|&&g| g != record.target)
            .map(|&g| {
                let p = record.progress_of(g);
                Value::Map(vec![
                    (Value::bulk("group"), int(g)),
                    (Value::bulk("copied"), int(p.copied)),
                    (Value::bulk("copy_done"), int(u64::from(p.copy_done))),
                    (
                        Value::bulk("switched"),
                        int(u64::from(switched.contains(&g))),
                    ),
                ])
            })
            .collect();
        fields.extend([
            (Value::bulk("target"), int(record.target)),
            (
                Value::bulk("members"),
                Value::Array(record.members.iter().map(|&m| int(m)).collect()),
            ),
            (Value::bulk("run"), int(record.run)),
            (Value::bulk("started_ms"), int(record.started_ms)),
            (Value::bulk("sources"), Value::Array(sources)),
        ]);
    }
    Value::Map(fields)
}
