//! One client connection: read requests, answer them in order, write replies back.
//!
//! Every complete request in the input buffer is answered before the replies are
//! written, so a pipelining client gets one write per read; runs of plain writes are
//! applied under one engine lock. A protocol error is answered and the connection
//! closed, as Redis does; nothing a client sends can affect another connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use shoal_resp::{encode, lookup, Decoder, Limits, Protocol, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::access::{Denial, Session};
use crate::busy_poll::{poll_for, Polled};
use crate::convert::{to_value, EngineReply};
use crate::live_config::LiveConfig;
use crate::node::Node;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;
/// Input gathered before requests are answered (a batch of a few thousand writes).
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// How every connection of a node is served.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The fixed limits; the longest argument is `live`'s, which CONFIG SET changes.
    pub limits: Limits,
    /// How long an answered connection polls for its next request before parking
    /// (see `busy_poll`); zero parks at once.
    pub busy_poll: std::time::Duration,
    /// What CONFIG SET changes, shared by every connection of the listener.
    pub live: Arc<LiveConfig>,
}

/// What a connection reads requests from: a plain socket, or a TLS session over one.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    /// Polls for the next request for up to `budget` before the caller parks (see
    /// `busy_poll`).
    fn poll_for(&self, input: &mut BytesMut, budget: std::time::Duration) -> Polled;

    /// Appends what is already waiting, without blocking; `Closed` when the peer closed
    /// or the connection failed.
    fn take_waiting(&mut self, input: &mut BytesMut) -> Polled;
}

impl Transport for TcpStream {
    fn poll_for(&self, input: &mut BytesMut, budget: std::time::Duration) -> Polled {
        poll_for(self, input, budget, MAX_BATCH_BYTES)
    }

    fn take_waiting(&mut self, input: &mut BytesMut) -> Polled {
        match self.try_read_buf(input) {
            // A close is seen again by the next read, after this batch.
            Ok(0) => Polled::Idle,
            Ok(_) => Polled::Data,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Polled::Idle,
            Err(_) => Polled::Closed,
        }
    }
}

impl Transport for TlsStream<TcpStream> {
    /// No spinning under TLS: bytes on the socket are not yet a request (records need
    /// decrypting, and a read may be only a handshake message).
    fn poll_for(&self, _input: &mut BytesMut, _budget: std::time::Duration) -> Polled {
        Polled::Idle
    }

    fn take_waiting(&mut self, input: &mut BytesMut) -> Polled {
        // One poll of the read: decrypted bytes already buffered, or records already
        // on the socket; `None` when it would wait. The waker it registers is replaced
        // by the next real read's.
        match self.read_buf(input).now_or_never() {
            Some(Ok(0)) | None => Polled::Idle,
            Some(Ok(_)) => Polled::Data,
            Some(Err(_)) => Polled::Closed,
        }
    }
}

/// Where a connection is in the MULTI/EXEC protocol.
#[derive(Debug)]
enum TransactionState {
    None,
    /// Queuing; `failed` once a queued command was rejected (EXEC then aborts).
    Queuing {
        commands: Vec<Vec<Vec<u8>>>,
        failed: bool,
    },
}

/// Per-connection state.
#[derive(Debug)]
pub struct Client {
    pub id: u64,
    pub protocol: Protocol,
    pub name: Option<String>,
    pub lib_name: Option<String>,
    pub lib_ver: Option<String>,
    pub addr: String,
    transaction: TransactionState,
    /// Keys under WATCH and their versions then; EXEC aborts if any moved.
    watched: Vec<(Vec<u8>, Option<u64>)>,
    /// `READONLY`: reads may be served by this replica even when it does not lead (and
    /// may be stale). Writes still go to the leader.
    pub readonly: bool,
    /// Who the connection is logged in as.
    pub session: Session,
    /// The listener's CONFIG GET / SET parameters.
    pub config: Arc<LiveConfig>,
    closing: bool,
}

impl Client {
    /// QUIT: answer, then close.
    pub fn mark_closing(&mut self) {
        self.closing = true;
    }
}

/// What to do with one request.
enum Step {
    /// A write to apply (batched with the writes around it).
    Write(Vec<Vec<u8>>),
    /// An engine read (batched with the reads around it).
    Read(Vec<Bytes>),
    /// An answer, already known.
    Reply(Value),
    /// EXEC of a queued transaction (one log entry).
    Exec(Vec<Vec<Vec<u8>>>),
    /// Shard group administration (RAFT, RESHARD), which waits on Raft.
    Raft(Vec<Bytes>),
    /// WATCH: the versions must come from a linearized read.
    Watch(Vec<Vec<u8>>),
    /// INFO: this node's figures, once its replicas caught up with their leaders.
    Info(Vec<Bytes>),
    /// ACL: users live in the cluster map when replicated.
    Acl(Vec<Bytes>),
    /// Refused by the ACL check; final only once the users were read again (another
    /// router may have just granted it).
    Denied(Vec<Bytes>, Denial),
}

/// Consecutive requests of one kind, answered together under one engine lock.
#[derive(Debug, Default)]
struct Run {
    writes: Vec<Vec<Vec<u8>>>,
    reads: Vec<Vec<Bytes>>,
}

impl Run {
    /// Answers whatever is pending, in order, into `output`.
    async fn flush(&mut self, node: &Node, client: &Client, output: &mut BytesMut) {
        if !self.writes.is_empty() {
            let batch = std::mem::take(&mut self.writes);
            let span = tracing::trace_span!("apply", commands = batch.len());
            for reply in node.apply_each(batch).instrument(span).await {
                encode(EngineReply(reply), client.protocol, output);
            }
        }
        if !self.reads.is_empty() {
            let batch = std::mem::take(&mut self.reads);
            let span = tracing::trace_span!("read", commands = batch.len());
            node.read_into(&batch, client.protocol, client.readonly, output)
                .instrument(span)
                .await;
        }
    }
}

/// Serves one accepted connection, after its TLS handshake when the port speaks TLS.
pub async fn serve(
    node: Arc<Node>,
    mut stream: TcpStream,
    settings: Settings,
    tls: Option<TlsAcceptor>,
) {
    let addr = stream
        .peer_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let mut client = Client {
        id: node.client_id(),
        protocol: Protocol::Resp2,
        name: None,
        lib_name: None,
        lib_ver: None,
        addr,
        transaction: TransactionState::None,
        watched: Vec::new(),
        readonly: false,
        session: Session::new(),
        config: settings.live.clone(),
        closing: false,
    };
    node.counters
        .connected_clients
        .fetch_add(1, Ordering::Relaxed);
    node.counters
        .connections_received
        .fetch_add(1, Ordering::Relaxed);
    let span = tracing::debug_span!("connection", id = client.id, peer = %client.addr);
    let _ = stream.set_nodelay(true);
    match tls {
        None => {
            run(&node, &mut stream, &mut client, &settings)
                .instrument(span)
                .await
        }
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let failure = match handshake.instrument(span.clone()).await {
                Ok(Ok(mut stream)) => {
                    run(&node, &mut stream, &mut client, &settings)
                        .instrument(span.clone())
                        .await;
                    // close_notify, so the client sees a clean end (not waiting on a
                    // client that stopped reading).
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_secs(1), stream.shutdown())
                            .await;
                    None
                }
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("timed out".to_owned()),
            };
            if let Some(error) = failure {
                node.counters
                    .tls_handshake_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(parent: &span, %error, "TLS handshake failed");
            }
        }
    }
    node.counters
        .connected_clients
        .fetch_sub(1, Ordering::Relaxed);
}

async fn run(
    node: &Arc<Node>,
    stream: &mut impl Transport,
    client: &mut Client,
    settings: &Settings,
) {
    let mut decoder = Decoder::new(settings.limits);
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    // CONFIG SET timeout: the listener's sweep closes this connection when it has
    // waited for a request longer than that (`idle_clients`).
    let idle = client.config.idle.register();
    loop {
        if input.capacity() - input.len() < READ_CHUNK / 2 {
            input.reserve(READ_CHUNK);
        }
        idle.idle();
        match stream.poll_for(&mut input, settings.busy_poll) {
            Polled::Data => {}
            Polled::Closed => return,
            Polled::Idle => loop {
                tokio::select! {
                    biased;
                    got = stream.read_buf(&mut input) => match got {
                        Ok(0) | Err(_) => return,
                        Ok(_) => break,
                    },
                    // Both reads are cancel-safe: a read that lost the race took nothing.
                    () = idle.woken() => {
                        if idle.expired(client.config.idle_timeout_secs()) {
                            return;
                        }
                    }
                }
            },
        }
        idle.busy();
        // Take everything already waiting, up to a bound: a pipeline's writes are then
        // applied as one batch, whose vector inserts run in parallel.
        while input.len() < MAX_BATCH_BYTES {
            input.reserve(READ_CHUNK);
            match stream.take_waiting(&mut input) {
                Polled::Data => {}
                Polled::Idle => break,
                Polled::Closed => return,
            }
        }
        let mut run = Run::default();
        loop {
            // CONFIG SET proto-max-bulk-len holds from the next request on, also in a
            // pipeline that sent it.
            decoder.limits.max_bulk_len = client.config.max_bulk_len();
            let request = match decoder.decode(&mut input) {
                Ok(Some(args)) => args,
                Ok(None) => break,
                Err(e) => {
                    run.flush(node, client, &mut output).await;
                    encode(Value::Error(e.to_string()), client.protocol, &mut output);
                    if stream.write_all(&output).await.is_ok() {
                        let _ = stream.flush().await;
                    }
                    return;
                }
            };
            if request.is_empty() {
                continue;
            }
            node.counters
                .commands_processed
                .fetch_add(1, Ordering::Relaxed);
            let mut next = step(node, client, request);
            if let Step::Denied(request, denial) = next {
                run.flush(node, client, &mut output).await;
                next = recheck(node, client, request, denial).await;
            }
            match next {
                Step::Write(args) => {
                    if !run.reads.is_empty() {
                        run.flush(node, client, &mut output).await;
                    }
                    run.writes.push(args);
                }
                Step::Read(args) => {
                    if !run.writes.is_empty() {
                        run.flush(node, client, &mut output).await;
                    }
                    run.reads.push(args);
                }
                Step::Reply(value) => {
                    run.flush(node, client, &mut output).await;
                    encode(value, client.protocol, &mut output);
                }
                Step::Watch(keys) => {
                    run.flush(node, client, &mut output).await;
                    let value = match node.versions(&keys).await {
                        Ok(versions) => {
                            client.watched.extend(keys.into_iter().zip(versions));
                            Value::ok()
                        }
                        Err(message) => Value::Error(message),
                    };
                    encode(value, client.protocol, &mut output);
                }
                Step::Raft(args) => {
                    run.flush(node, client, &mut output).await;
                    let value = match args.first() {
                        Some(name) if name.eq_ignore_ascii_case(b"RESHARD") => {
                            crate::reshard_admin::answer(node, &args).await
                        }
                        Some(_) | None => crate::raft_admin::answer(node, &args).await,
                    };
                    encode(value, client.protocol, &mut output);
                }
                Step::Info(args) => {
                    run.flush(node, client, &mut output).await;
                    node.catch_up().await;
                    let value = crate::admin::answer(node, client, "INFO", &args);
                    encode(value, client.protocol, &mut output);
                }
                Step::Exec(commands) => {
                    run.flush(node, client, &mut output).await;
                    let value = exec(node, client, commands).await;
                    encode(value, client.protocol, &mut output);
                }
                Step::Acl(args) => {
                    run.flush(node, client, &mut output).await;
                    let value = crate::acl_command::answer(node, client, &args).await;
                    encode(value, client.protocol, &mut output);
                }
                Step::Denied(_, denial) => {
                    // `recheck` answers every refusal; kept exhaustive.
                    let value = deny(node, client, denial);
                    encode(value, client.protocol, &mut output);
                }
            }
            if client.closing {
                break;
            }
        }
        run.flush(node, client, &mut output).await;
        if !output.is_empty() {
            // (A TLS session encrypts into its own buffer: flush sends it.)
            if stream.write_all(&output).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            output.clear();
        }
        if client.closing {
            return;
        }
    }
}

fn owned(args: Vec<Bytes>) -> Vec<Vec<u8>> {
    args.into_iter().map(|b| b.to_vec()).collect()
}

/// Decides what a request needs.
fn step(node: &Arc<Node>, client: &mut Client, request: Vec<Bytes>) -> Step {
    let Some(command) = lookup(&request[0]) else {
        let args: Vec<String> = request[1..]
            .iter()
            .take(8)
            .map(|a| format!("'{}'", String::from_utf8_lossy(a)))
            .collect();
        return reject(
            client,
            format!(
                "ERR unknown command '{}', with args beginning with: {}",
                String::from_utf8_lossy(&request[0]),
                args.join(" ")
            ),
        );
    };
    let name = command.name;
    let _span = tracing::debug_span!("request", cmd = name).entered();
    if !command.arity_ok(request.len()) {
        return reject(
            client,
            format!(
                "ERR wrong number of arguments for '{}' command",
                name.to_ascii_lowercase()
            ),
        );
    }
    if let Err(denial) = crate::access::check(node, &mut client.session, command, &request) {
        return Step::Denied(request, denial);
    }
    // Inside MULTI everything but the transaction commands is queued.
    if let TransactionState::Queuing { commands, .. } = &mut client.transaction {
        match name {
            "EXEC" | "DISCARD" | "MULTI" | "WATCH" | "QUIT" | "RESET" => {}
            _ => {
                commands.push(owned(request));
                return Step::Reply(Value::Simple(Bytes::from_static(b"QUEUED")));
            }
        }
    }
    match name {
        "MULTI" => Step::Reply(match client.transaction {
            TransactionState::Queuing { .. } => {
                Value::Error("ERR MULTI calls can not be nested".into())
            }
            TransactionState::None => {
                client.transaction = TransactionState::Queuing {
                    commands: Vec::new(),
                    failed: false,
                };
                Value::ok()
            }
        }),
        "EXEC" => match std::mem::replace(&mut client.transaction, TransactionState::None) {
            TransactionState::None => Step::Reply(Value::Error("ERR EXEC without MULTI".into())),
            TransactionState::Queuing { failed: true, .. } => {
                client.watched.clear();
                Step::Reply(Value::Error(
                    "EXECABORT Transaction discarded because of previous errors.".into(),
                ))
            }
            TransactionState::Queuing { commands, .. } => Step::Exec(commands),
        },
        "DISCARD" => Step::Reply(
            match std::mem::replace(&mut client.transaction, TransactionState::None) {
                TransactionState::None => Value::Error("ERR DISCARD without MULTI".into()),
                TransactionState::Queuing { .. } => {
                    client.watched.clear();
                    Value::ok()
                }
            },
        ),
        "WATCH" => Step::Reply(match client.transaction {
            TransactionState::Queuing { .. } => {
                Value::Error("ERR WATCH inside MULTI is not allowed".into())
            }
            TransactionState::None => {
                return Step::Watch(request[1..].iter().map(|k| k.to_vec()).collect());
            }
        }),
        "UNWATCH" => {
            client.watched.clear();
            Step::Reply(Value::ok())
        }
        "RESET" => {
            client.transaction = TransactionState::None;
            client.watched.clear();
            client.lib_name = None;
            client.lib_ver = None;
            Step::Reply(crate::admin::answer(node, client, name, &request))
        }
        "RAFT" | "RESHARD" => Step::Raft(request),
        "INFO" => Step::Info(request),
        "ACL" => Step::Acl(request),
        _ if command.is_write() => Step::Write(owned(request)),
        _ if crate::admin::is_engine_read(name) => Step::Read(request),
        _ => Step::Reply(crate::admin::answer(node, client, name, &request)),
    }
}

/// A refused request, once more after reading the users again if the refusal could
/// be stale; still refused, it is answered (and dooms a transaction being queued).
async fn recheck(
    node: &Arc<Node>,
    client: &mut Client,
    request: Vec<Bytes>,
    denial: Denial,
) -> Step {
    let refreshed = denial.may_change_with_the_map()
        && client.session.may_force_refresh(&node.access)
        && node.refresh_access().await;
    if !refreshed {
        return Step::Reply(deny(node, client, denial));
    }
    client.session.decide_again();
    let next = step(node, client, request);
    if let Step::Denied(_, denial) = &next {
        let denial = denial.clone();
        return Step::Reply(deny(node, client, denial));
    }
    next
}

/// Counts a refusal and answers it.
fn deny(node: &Node, client: &mut Client, denial: Denial) -> Value {
    denial.count(&node.access);
    doom(client);
    Value::Error(denial.message())
}

/// An error reply that, inside MULTI, also dooms the transaction.
fn reject(client: &mut Client, message: String) -> Step {
    doom(client);
    Step::Reply(Value::Error(message))
}

/// Inside MULTI, makes EXEC abort.
fn doom(client: &mut Client) {
    if let TransactionState::Queuing { failed, .. } = &mut client.transaction {
        *failed = true;
    }
}

/// EXEC: engine commands apply as one log entry; connection commands in the queue are
/// answered in place.
async fn exec(node: &Arc<Node>, client: &mut Client, commands: Vec<Vec<Vec<u8>>>) -> Value {
    // Checked again: the user's rules may have changed since the commands were queued
    // (Redis does the same, and answers the refused ones with this error).
    let unrestricted = client.session.unrestricted(&node.access);
    let allowed: Vec<bool> = commands
        .iter()
        .map(|c| {
            if unrestricted {
                // No copy of a pipeline's payloads for the common case.
                return true;
            }
            let args: Vec<Bytes> = c.iter().map(|a| Bytes::copy_from_slice(a)).collect();
            args.first().and_then(|n| lookup(n)).is_some_and(|command| {
                crate::access::check(node, &mut client.session, command, &args).is_ok()
            })
        })
        .collect();
    let engine_commands: Vec<Vec<Vec<u8>>> = commands
        .iter()
        .zip(&allowed)
        .filter(|(c, ok)| **ok && crate::admin::is_engine_command(c))
        .map(|(c, _)| c.clone())
        .collect();
    let watched = std::mem::take(&mut client.watched);
    let engine_replies = match node
        .apply_batch(engine_commands, client.protocol == Protocol::Resp3, watched)
        .await
    {
        Ok(Some(replies)) => replies,
        // A watched key changed: the transaction is not run (a null reply).
        Ok(None) => return Value::Null,
        Err(message) => return Value::Error(message),
    };
    let mut engine_replies = engine_replies.into_iter();
    let mut out = Vec::with_capacity(commands.len());
    for (c, ok) in commands.into_iter().zip(allowed) {
        if !ok {
            out.push(Value::Error(
                "NOPERM ACLs rules changed between the moment the transaction was accumulated and its execution".into(),
            ));
        } else if crate::admin::is_engine_command(&c) {
            out.push(engine_replies.next().map_or(Value::Null, to_value));
        } else {
            let args: Vec<Bytes> = c.into_iter().map(Bytes::from).collect();
            let name = lookup(&args[0]).map_or("", |c| c.name);
            out.push(crate::admin::answer(node, client, name, &args));
        }
    }
    Value::Array(out)
}
