//! The reshard coordinator's hands: one tick reads the record and the layout from the
//! meta leader, claims the reshard if this coordinator has not, asks
//! [`crate::reshard::next_action`] what to do and does it (docs/resharding.md §3.3).
//!
//! The meta leader's node runs the ticks (`shoal-server`'s `cluster_node`). Nothing is
//! remembered between ticks but the run this coordinator claimed: every input is read
//! again, so a new meta leader takes up where the last stopped.
//!
//! **Claims.** A coordinator that finds a record whose `run` it did not write raises
//! the run by one (a guarded write) before anything else, and names that run in the
//! target's `_IMPORT`, `_ACCEPT` and `_ABORT`. The target keeps the highest run it has
//! seen and refuses older ones, so a deposed coordinator's late import cannot land
//! over what its successor copied. Runs start at `e1 << 32` (`RESHARD ADD-GROUP`, e1
//! the reshard's first epoch), so a later reshard's run is above every run of an
//! aborted one whose target it reuses.
//!
//! **Guards.** Every map write is guarded by the version of `shoal:reshard` this tick
//! read: a write that lost to another coordinator's, or to `RESHARD ABORT`, is refused
//! whole and the next tick reads again. Group entries are safe to send twice
//! (`shoal_engine::commands::reshard`), so a tick cut short anywhere is repeated.

use std::time::Duration;

use shoal_engine::Reply;
use shoal_raft::{GroupId, Request};

use crate::layout::{Layout, Moving, LAYOUT_FIELD, RESHARD_KEY};
use crate::meta::{ClusterShape, MAP_KEY, META, SHAPE};
use crate::reshard::{next_action, Action};
use crate::reshard_inputs::Inputs;
use crate::reshard_record::{Phase, ReshardRecord, RESHARD_FIELD};
use crate::router::{error_text, Router};
use crate::shards::{Answer, Op};
use crate::wire::ReadCall;

/// Keys one `_EXPORT` or `_CHANGES` read returns at most.
const PAGE_KEYS: usize = 512;
/// Bytes of dumps one read returns at most: an import stays well under the 16 MiB
/// bulk limit and the 64 MiB Raft message.
const PAGE_BYTES: usize = 4 << 20;
/// Keys one `_PURGE` entry deletes at most (it holds the apply loop meanwhile).
const PURGE_KEYS: usize = 1_024;
/// Reads of changes one tick makes before it records how far it came.
const CATCH_UP_READS: usize = 64;
/// A catch-up read listing at most this many keys lets the source fence: the final
/// catch-up behind the fence (while routers below its epoch are refused) stays short.
const FENCE_BELOW: usize = 256;
/// Reads the final catch-up makes before it gives up for this tick: each lists up to
/// `PAGE_KEYS` keys and only expiries change a fenced source.
const FINAL_READS: usize = 10_000;
/// Purge entries one tick sends.
const PURGE_ENTRIES: usize = 64;
/// A new group that has no leader with every voter up this long after the
/// coordinator took the reshard up is given up: the reshard aborts (nothing was
/// published).
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a coordinator remembers between ticks: the run it claimed.
#[derive(Debug, Default)]
pub struct Coordinator {
    run: Option<u64>,
}

impl Coordinator {
    /// A node that stops leading the meta group forgets its claim: when it leads again,
    /// another coordinator may have run in between, so it claims afresh.
    pub fn forget(&mut self) {
        self.run = None;
    }
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// No reshard is recorded.
    Idle,
    /// This coordinator claimed the reshard at this run.
    Claimed(u64),
    /// The action was taken.
    Took(Action),
    /// The new group did not come up within [`CREATE_TIMEOUT`]: the reshard aborts.
    TimedOut,
    /// Nothing to do until something changes.
    Waiting(&'static str),
    /// A guarded map write was refused: the record changed since this tick read it.
    Lost,
    /// Another coordinator claimed the reshard after this one: it stands back a while.
    Superseded,
}

/// The reshard's part of the map, read on the meta leader.
#[derive(Debug, Clone)]
pub struct Current {
    pub record: Option<ReshardRecord>,
    /// The layout keys are routed by (the initial one when the map has none).
    pub layout: Layout,
    /// What every node was started with (the replication factor a new group gets).
    pub shape: ClusterShape,
    /// The version of `shoal:reshard` both were read at: every write is guarded by it.
    pub version: Option<u64>,
}

fn cmd(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

fn num(n: impl ToString) -> Vec<u8> {
    n.to_string().into_bytes()
}

pub(crate) fn hset_record(record: &ReshardRecord) -> Result<Vec<Vec<u8>>, String> {
    let value = record.encode().map_err(|e| format!("ERR {e}"))?;
    Ok(vec![
        b"HSET".to_vec(),
        RESHARD_KEY.to_vec(),
        RESHARD_FIELD.to_vec(),
        value,
    ])
}

fn hset_layout(layout: &Layout) -> Result<Vec<Vec<u8>>, String> {
    let value = layout.encode().map_err(|e| format!("ERR {e}"))?;
    Ok(vec![
        b"HSET".to_vec(),
        RESHARD_KEY.to_vec(),
        LAYOUT_FIELD.to_vec(),
        value,
    ])
}

fn hdel_record() -> Vec<Vec<u8>> {
    cmd(&[b"HDEL", RESHARD_KEY, RESHARD_FIELD])
}

/// The items of an array reply; `Err` for any other shape.
fn items(reply: Reply, what: &str) -> Result<Vec<Reply>, String> {
    match reply {
        Reply::Array(items) => Ok(items),
        other @ (Reply::Ok
        | Reply::Simple(_)
        | Reply::Bulk(_)
        | Reply::Null
        | Reply::Int(_)
        | Reply::Error(_)
        | Reply::Map(_)
        | Reply::Double(_)
        | Reply::Verbatim(_)) => Err(format!("ERR {what} answered {other:?}")),
    }
}

fn bulk(reply: &Reply) -> Result<Vec<u8>, String> {
    match reply {
        Reply::Bulk(b) => Ok(b.clone()),
        other @ (Reply::Ok
        | Reply::Simple(_)
        | Reply::Null
        | Reply::Int(_)
        | Reply::Array(_)
        | Reply::Error(_)
        | Reply::Map(_)
        | Reply::Double(_)
        | Reply::Verbatim(_)) => Err(format!("ERR expected a bulk string, got {other:?}")),
    }
}

/// A keyspace cursor, as `_EXPORT` and `_PURGE` send it (a decimal string).
fn cursor_of(reply: &Reply) -> Result<u64, String> {
    let text = bulk(reply)?;
    std::str::from_utf8(&text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "ERR a cursor that is not a number".to_string())
}

/// A page of `key, dump` pairs as the export and changes reads list them.
fn pairs(items: &[Reply]) -> Result<Vec<Vec<u8>>, String> {
    items.iter().map(bulk).collect()
}

impl Router {
    /// The record, the layout and the hash's version, linearized on the meta leader.
    pub async fn read_reshard(&self, now_ms: u64) -> Result<Current, String> {
        let call = ReadCall {
            commands: vec![
                cmd(&[b"HGET", RESHARD_KEY, RESHARD_FIELD]),
                cmd(&[b"HGET", RESHARD_KEY, LAYOUT_FIELD]),
                cmd(&[b"HGET", MAP_KEY, SHAPE]),
            ],
            resp3: false,
            now_ms,
            stale_ok: false,
            versions: vec![RESHARD_KEY.to_vec()],
            // The meta group never reshards.
            epoch: 0,
        };
        let answer = match self.shards().call(META, &Op::Read(call)).await {
            Ok(Answer::Read(answer)) => answer,
            Ok(Answer::Write(_) | Answer::Search(_) | Answer::Aggregate(_)) => {
                return Err("ERR meta group: unexpected answer".into())
            }
            Err(e) => return Err(error_text(&e)),
        };
        let mut replies = answer.replies.into_iter();
        let record = match replies.next() {
            Some(Reply::Bulk(value)) => Some(ReshardRecord::decode(&value).ok_or_else(|| {
                "ERR the reshard under way is recorded in a format this node does not know"
                    .to_string()
            })?),
            Some(Reply::Error(e)) => return Err(e),
            Some(_) | None => None,
        };
        let layout = replies.next();
        let shape = match replies.next() {
            Some(Reply::Bulk(value)) => postcard::from_bytes::<ClusterShape>(&value).ok(),
            Some(_) | None => None,
        };
        let shape =
            shape.ok_or_else(|| "ERR the cluster map has no shape yet; try again".to_string())?;
        let layout = match layout {
            Some(Reply::Bulk(value)) => Layout::decode(&value).ok_or_else(|| {
                "ERR the layout is in a format this node does not know".to_string()
            })?,
            Some(Reply::Error(e)) => return Err(e),
            // No reshard ever published one: the shape's first groups.
            Some(_) | None => Layout::initial(shape.groups),
        };
        Ok(Current {
            record,
            layout,
            shape,
            version: answer.versions.into_iter().next().flatten(),
        })
    }

    /// `commands` on the meta group as one entry guarded by `version` of
    /// `shoal:reshard`: `Ok(false)` when the hash changed since (nothing was written).
    pub(crate) async fn write_reshard(
        &self,
        version: Option<u64>,
        commands: Vec<Vec<Vec<u8>>>,
        now_ms: u64,
    ) -> Result<bool, String> {
        let request = Request {
            now_ms,
            commands,
            resp3: false,
            guard: vec![(RESHARD_KEY.to_vec(), version)],
        };
        match self.shards().call(META, &Op::Write(request)).await {
            Ok(Answer::Write(response)) if response.aborted => Ok(false),
            Ok(Answer::Write(response)) => {
                for reply in response.replies {
                    if let Reply::Error(e) = reply {
                        return Err(e);
                    }
                }
                Ok(true)
            }
            Ok(Answer::Read(_) | Answer::Search(_) | Answer::Aggregate(_)) => {
                Err("ERR meta group: unexpected answer".into())
            }
            Err(e) => Err(error_text(&e)),
        }
    }

    /// One coordinator tick (see the module comment). Run only on the meta leader's
    /// node; a deposed leader's tick at worst repeats steps, and its map writes lose.
    pub async fn reshard_tick(&self, me: &mut Coordinator, now_ms: u64) -> Result<Tick, String> {
        let current = self.read_reshard(now_ms).await?;
        let Some(record) = current.record.clone() else {
            me.forget();
            return Ok(Tick::Idle);
        };
        let version = current.version;
        if me.run.is_some_and(|run| run != record.run) {
            // Another coordinator claimed it since: this node was deposed (or two
            // believe they lead). Stand back before claiming again, so that two do not
            // take the record from each other on every tick.
            me.forget();
            return Ok(Tick::Superseded);
        }
        if me.run.is_none() {
            let mut claimed = ReshardRecord {
                run: record.run.saturating_add(1),
                ..record
            };
            if claimed.phase == Phase::Creating {
                // The creation timeout runs on the coordinator's clock, from its claim.
                claimed.started_ms = now_ms;
            }
            let run = claimed.run;
            if !self
                .write_reshard(version, vec![hset_record(&claimed)?], now_ms)
                .await?
            {
                return Ok(Tick::Lost);
            }
            me.run = Some(run);
            return Ok(Tick::Claimed(run));
        }
        if record.phase == Phase::Creating
            && now_ms.saturating_sub(record.started_ms) > millis(CREATE_TIMEOUT)
        {
            let abort = ReshardRecord {
                phase: Phase::Aborting,
                ..record
            };
            tracing::warn!(
                target = abort.target,
                "the new group did not come up in time: aborting the reshard"
            );
            return match self.save(version, &abort, None, now_ms).await? {
                true => Ok(Tick::TimedOut),
                false => Ok(Tick::Lost),
            };
        }
        let inputs = self.reshard_inputs_of(record, current.layout, now_ms).await;
        let action = next_action(inputs.view());
        if let Action::Wait(why) = action {
            return Ok(Tick::Waiting(why));
        }
        tracing::info!(?action, run = inputs.record.run, "reshard step");
        match self.take(&inputs, version, &action, now_ms).await? {
            true => Ok(Tick::Took(action)),
            false => Ok(Tick::Lost),
        }
    }

    /// Writes the record (and the layout, when given) in one guarded entry.
    async fn save(
        &self,
        version: Option<u64>,
        record: &ReshardRecord,
        layout: Option<&Layout>,
        now_ms: u64,
    ) -> Result<bool, String> {
        let mut commands = vec![hset_record(record)?];
        if let Some(layout) = layout {
            commands.push(hset_layout(layout)?);
        }
        self.write_reshard(version, commands, now_ms).await
    }

    /// One reshard entry on `group`; an error reply (a refusal) is `Err`.
    async fn step(
        &self,
        group: GroupId,
        command: Vec<Vec<u8>>,
        now_ms: u64,
    ) -> Result<Reply, String> {
        let reply = self.group_write(group, command, now_ms).await?;
        if let Reply::Error(e) = reply {
            return Err(format!("{e} (group {group})"));
        }
        Ok(reply)
    }

    /// `SHOAL._IMPORT source run [FLUSH] key dump …` on the target; nothing to send
    /// for an empty page without a flush.
    async fn import(
        &self,
        inputs: &Inputs,
        source: GroupId,
        flush: bool,
        dumps: Vec<Vec<u8>>,
        now_ms: u64,
    ) -> Result<(), String> {
        if dumps.is_empty() && !flush {
            return Ok(());
        }
        let mut command = vec![
            b"SHOAL._IMPORT".to_vec(),
            num(source),
            num(inputs.record.run),
        ];
        if flush {
            command.push(b"FLUSH".to_vec());
        }
        command.extend(dumps);
        self.step(inputs.record.target, command, now_ms)
            .await
            .map(|_| ())
    }

    /// Reads `source`'s changes after `seq` and imports them, until a read that ran
    /// out of changes lists at most `few` keys, or `reads` reads were made. Returns the
    /// last seq imported and whether such a read came. With `few` 0 that read listed
    /// nothing, which alone proves the end whatever the limits.
    async fn catch_up(
        &self,
        inputs: &Inputs,
        source: GroupId,
        mut seq: u64,
        (few, reads): (usize, usize),
        now_ms: u64,
    ) -> Result<(u64, bool), String> {
        let target = inputs.record.target;
        for _ in 0..reads {
            let read = cmd(&[
                b"SHOAL._CHANGES",
                &num(target),
                &num(seq),
                &num(PAGE_KEYS),
                &num(PAGE_BYTES),
            ]);
            let reply = items(self.group_read(source, read, now_ms).await?, "_CHANGES")?;
            let (Some(Reply::Int(high)), Some(flushed)) = (reply.first(), reply.get(1)) else {
                return Err(format!("ERR _CHANGES of group {source}: {reply:?}"));
            };
            let high = u64::try_from(*high).map_err(|_| "ERR a negative seq".to_string())?;
            let flushed = *flushed == Reply::Int(1);
            let dumps = pairs(&reply[2..])?;
            let listed = dumps.len() / 2;
            // The engine stops listing once either limit is reached: a read under both
            // ran out of changes; one at a limit may have been cut with more to come
            // (pages of large documents list few keys).
            let bytes: usize = dumps.iter().map(Vec::len).sum();
            let reached_end = listed < PAGE_KEYS && bytes < PAGE_BYTES;
            self.import(inputs, source, flushed, dumps, now_ms).await?;
            seq = high;
            if reached_end && listed <= few {
                return Ok((seq, true));
            }
        }
        Ok((seq, false))
    }

    /// Takes `action`: `Ok(false)` when its map write lost (see the module comment).
    async fn take(
        &self,
        inputs: &Inputs,
        version: Option<u64>,
        action: &Action,
        now_ms: u64,
    ) -> Result<bool, String> {
        let Inputs { record, layout, .. } = inputs;
        let target = record.target;
        let run = record.run;
        let old = layout.old_groups(target);
        match *action {
            Action::Wait(_) => Ok(true),
            Action::Intake { epoch } => {
                self.reconcile_groups(&[target], false, now_ms).await?;
                let mut incoming = cmd(&[b"SHOAL._INCOMING", &num(epoch), &num(run)]);
                incoming.extend(old.iter().map(num));
                self.step(target, incoming, now_ms).await?;
                let published = Layout {
                    epoch,
                    groups: old.clone(),
                    moving: Some(Moving {
                        target,
                        switched: Vec::new(),
                    }),
                };
                let copying = ReshardRecord {
                    phase: Phase::Copying,
                    ..record.clone()
                };
                self.save(version, &copying, Some(&published), now_ms).await
            }
            Action::Begin { source, epoch } => {
                let mut next: Vec<GroupId> = old.iter().copied().chain([target]).collect();
                next.sort_unstable();
                let mut begin = cmd(&[b"SHOAL._BEGIN", &num(epoch), &num(target)]);
                begin.extend(next.iter().map(num));
                self.step(source, begin, now_ms).await?;
                Ok(true)
            }
            Action::Copy { source, cursor } => {
                let read = cmd(&[
                    b"SHOAL._EXPORT",
                    &num(target),
                    &num(cursor),
                    &num(PAGE_KEYS),
                    &num(PAGE_BYTES),
                ]);
                let page = items(self.group_read(source, read, now_ms).await?, "_EXPORT")?;
                let Some(next) = page.first() else {
                    return Err(format!("ERR _EXPORT of group {source}: an empty reply"));
                };
                let next = cursor_of(next)?;
                let dumps = pairs(&page[1..])?;
                let copied = dumps.len() / 2;
                self.import(inputs, source, false, dumps, now_ms).await?;
                let mut progressed = record.clone();
                let p = progressed.progress.entry(source).or_default();
                p.cursor = next;
                p.copied = p.copied.saturating_add(copied as u64);
                p.copy_done = next == 0;
                self.save(version, &progressed, None, now_ms).await
            }
            Action::CatchUp { source, seq } => {
                let (seq, ended) = self
                    .catch_up(inputs, source, seq, (FENCE_BELOW, CATCH_UP_READS), now_ms)
                    .await?;
                let mut progressed = record.clone();
                let p = progressed.progress.entry(source).or_default();
                p.seq = seq;
                p.caught_up = ended;
                self.save(version, &progressed, None, now_ms).await
            }
            Action::StartSwitch { source, epoch } => {
                let switching = ReshardRecord {
                    phase: Phase::Switching { source, epoch },
                    ..record.clone()
                };
                self.save(version, &switching, None, now_ms).await
            }
            Action::Fence { source, epoch } => {
                let fence = cmd(&[b"SHOAL._FENCE", &num(target), &num(epoch)]);
                self.step(source, fence, now_ms).await?;
                Ok(true)
            }
            Action::Accept { source, epoch, seq } => {
                // Read after the fence committed, the changes are complete: every one
                // is imported before the target shows the source's keys.
                let (_, ended) = self
                    .catch_up(inputs, source, seq, (0, FINAL_READS), now_ms)
                    .await?;
                if !ended {
                    return Err(format!(
                        "ERR the final catch-up of group {source} did not end"
                    ));
                }
                self.reconcile_groups(&[target], false, now_ms).await?;
                let accept = cmd(&[b"SHOAL._ACCEPT", &num(source), &num(epoch), &num(run)]);
                self.step(target, accept, now_ms).await?;
                Ok(true)
            }
            Action::Switch { source, epoch } => {
                let mut switched = layout.clone();
                switched.epoch = epoch;
                let moving = switched.moving.get_or_insert(Moving {
                    target,
                    switched: Vec::new(),
                });
                if !moving.switched.contains(&source) {
                    moving.switched.push(source);
                }
                let mut copying = ReshardRecord {
                    phase: Phase::Copying,
                    ..record.clone()
                };
                for p in copying.progress.values_mut() {
                    p.caught_up = false;
                }
                self.save(version, &copying, Some(&switched), now_ms).await
            }
            Action::ResumeCopying => {
                let copying = ReshardRecord {
                    phase: Phase::Copying,
                    ..record.clone()
                };
                self.save(version, &copying, None, now_ms).await
            }
            Action::StartCleaning => {
                let mut groups: Vec<GroupId> = old.iter().copied().chain([target]).collect();
                groups.sort_unstable();
                let settled = Layout {
                    epoch: layout.epoch,
                    groups,
                    moving: None,
                };
                let cleaning = ReshardRecord {
                    phase: Phase::Cleaning,
                    ..record.clone()
                };
                self.save(version, &cleaning, Some(&settled), now_ms).await
            }
            Action::Purge { source, epoch } => {
                for _ in 0..PURGE_ENTRIES {
                    let purge =
                        cmd(&[b"SHOAL._PURGE", &num(target), &num(epoch), &num(PURGE_KEYS)]);
                    let reply = items(self.step(source, purge, now_ms).await?, "_PURGE")?;
                    let Some(next) = reply.first() else {
                        return Err(format!("ERR _PURGE of group {source}: an empty reply"));
                    };
                    if cursor_of(next)? == 0 {
                        let settle = cmd(&[b"SHOAL._SETTLE", b"SOURCE", &num(target), &num(epoch)]);
                        self.step(source, settle, now_ms).await?;
                        break;
                    }
                }
                Ok(true)
            }
            Action::SettleTarget { epoch } => {
                let settle = cmd(&[b"SHOAL._SETTLE", b"TARGET", &num(epoch)]);
                self.step(target, settle, now_ms).await?;
                Ok(true)
            }
            Action::Finish => {
                tracing::info!(target, epoch = layout.epoch, "reshard done");
                self.write_reshard(version, vec![hdel_record()], now_ms)
                    .await
            }
            Action::AbortTarget { epoch } => {
                let abort = cmd(&[b"SHOAL._ABORT", b"TARGET", &num(epoch), &num(run)]);
                self.step(target, abort, now_ms).await?;
                Ok(true)
            }
            Action::AbortSource { source, epoch } => {
                let abort = cmd(&[b"SHOAL._ABORT", b"SOURCE", &num(target), &num(epoch)]);
                self.step(source, abort, now_ms).await?;
                Ok(true)
            }
            Action::FinishAbort { epoch } => {
                let back = Layout {
                    epoch,
                    groups: old,
                    moving: None,
                };
                tracing::info!(target, epoch, "reshard aborted");
                self.write_reshard(version, vec![hset_layout(&back)?, hdel_record()], now_ms)
                    .await
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
