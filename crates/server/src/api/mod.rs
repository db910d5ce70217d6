//! The gRPC client API (`proto/shoal.proto`). Each call becomes the RESP command it
//! stands for ([`command`]) and runs through a node's router like a RESP client's;
//! the reply is read back into the typed response ([`reply`]). One implementation of
//! every rule, so both fronts answer alike, errors included (same text).

pub mod auth;
pub mod command;
pub mod reply;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use shoal_engine::Reply;
use shoal_proto::api::shoal_server::{Shoal, ShoalServer};
use shoal_proto::api::{
    ClusterStatusRequest, ClusterStatusResponse, CreateIndexRequest, CreateIndexResponse,
    DeleteRequest, DeleteResponse, Document, DropIndexRequest, DropIndexResponse, GetRequest,
    GetResponse, GroupStatus, IndexInfoRequest, IndexInfoResponse, ListIndexesRequest,
    ListIndexesResponse, SearchRequest, SearchResponse, UpsertResponse,
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::node::{Node, Store};
use auth::Caller;
use command::Args;

/// Largest request or response: a search returning many fields.
const MAX_MESSAGE: usize = 64 << 20;
/// Documents per pipelined write of a BulkUpsert.
const BULK_BATCH: usize = 256;

/// The service, over the routing nodes of this process (one for `shoal node`, the
/// first `--routers` embedded nodes for `shoal dev`, taken in turn as RESP connections
/// are).
#[derive(Debug)]
pub struct Api {
    nodes: Vec<Arc<Node>>,
    next: AtomicUsize,
    /// Refusals that may re-read the users, for every call together.
    refreshes: parking_lot::Mutex<crate::access::Budget>,
}

impl Api {
    pub fn new(nodes: Vec<Arc<Node>>) -> Api {
        Api {
            nodes,
            next: AtomicUsize::new(0),
            refreshes: parking_lot::Mutex::new(crate::access::Budget::per_client()),
        }
    }

    fn node(&self) -> Result<&Arc<Node>, Status> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.nodes
            .get(i % self.nodes.len().max(1))
            .ok_or_else(|| Status::unavailable("no node serves this API"))
    }

    /// Runs write commands (each its own command of one pipelined run), if the caller
    /// may.
    async fn writes(&self, caller: &mut Caller, commands: Vec<Args>) -> Result<Vec<Reply>, Status> {
        let node = self.node()?;
        // Checked as `Bytes` and handed back as the vectors they were: both conversions
        // keep the buffers (a BulkUpsert's vectors are not copied for the check).
        let requests: Vec<Vec<Bytes>> = commands
            .into_iter()
            .map(|a| a.into_iter().map(Bytes::from).collect())
            .collect();
        caller.authorize(node, &self.refreshes, &requests).await?;
        let commands: Vec<Args> = requests
            .into_iter()
            .map(|r| r.into_iter().map(Vec::from).collect())
            .collect();
        node.counters
            .commands_processed
            .fetch_add(commands.len() as u64, Ordering::Relaxed);
        Ok(node.apply_each(commands).await)
    }

    async fn write(&self, caller: &mut Caller, args: Args) -> Result<Reply, Status> {
        let reply = self.writes(caller, vec![args]).await?.pop();
        reply::ok(reply.unwrap_or(Reply::Null))
    }

    async fn read(&self, caller: &mut Caller, args: Args) -> Result<Reply, Status> {
        let node = self.node()?;
        let request: Vec<Bytes> = args.into_iter().map(Bytes::from).collect();
        caller
            .authorize(node, &self.refreshes, std::slice::from_ref(&request))
            .await?;
        node.counters
            .commands_processed
            .fetch_add(1, Ordering::Relaxed);
        let reply = node.read_each(&[request], false, false).await.pop();
        reply::ok(reply.unwrap_or(Reply::Null))
    }
}

fn invalid(e: command::RequestError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn args(parts: &[&[u8]]) -> Args {
    parts.iter().map(|p| p.to_vec()).collect()
}

#[tonic::async_trait]
impl Shoal for Api {
    async fn create_index(
        &self,
        request: Request<CreateIndexRequest>,
    ) -> Result<Response<CreateIndexResponse>, Status> {
        let mut caller = Caller::from_metadata(request.metadata())?;
        let r = request.into_inner();
        let span = tracing::debug_span!("grpc", method = "CreateIndex", index = %r.index);
        let a = command::create_index(&r).map_err(invalid)?;
        self.write(&mut caller, a).instrument(span).await?;
        Ok(Response::new(CreateIndexResponse {}))
    }

    async fn drop_index(
        &self,
        request: Request<DropIndexRequest>,
    ) -> Result<Response<DropIndexResponse>, Status> {
        let mut caller = Caller::from_metadata(request.metadata())?;
        let r = request.into_inner();
        let span = tracing::debug_span!("grpc", method = "DropIndex", index = %r.index);
        let mut a = args(&[b"FT.DROPINDEX", r.index.as_bytes()]);
        if r.delete_documents {
            a.push(b"DD".to_vec());
        }
        self.write(&mut caller, a).instrument(span).await?;
        Ok(Response::new(DropIndexResponse {}))
    }

    async fn list_indexes(
        &self,
        request: Request<ListIndexesRequest>,
    ) -> Result<Response<ListIndexesResponse>, Status> {
        let mut caller = Caller::from_metadata(request.metadata())?;
        let span = tracing::debug_span!("grpc", method = "ListIndexes");
        let reply = self
            .read(&mut caller, args(&[b"FT._LIST"]))
            .instrument(span)
            .await?;
        Ok(Response::new(ListIndexesResponse {
            indexes: reply::strings(reply)?,
        }))
    }

    async fn index_info(
        &self,
        request: Request<IndexInfoRequest>,
    ) -> Result<Response<IndexInfoResponse>, Status> {
        let mut caller = Caller::from_metadata(request.metadata())?;
        let r = request.into_inner();
        let span = tracing::debug_span!("grpc", method = "IndexInfo", index = %r.index);
        let reply = self
            .read(&mut caller, args(&[b"FT.INFO", r.index.as_bytes()]))
            .instrument(span)
            .await?;
        Ok(Response::new(reply::index_info(reply)?))
    }

    async fn upsert(&self, request: Request<Document>) -> Result<Response<UpsertResponse>, Status> {
        let mut caller = Caller::from_metadata(request.metadata())?;
        let d = request.into_inner();
        let span = tracing::debug_span!("grpc", method = "Upsert", key = %d.key);
        let a = command::upsert(&d).map_err(invalid)?;
        self.write(&mut caller, a).instrument(span).await?;
        Ok(Response::new(UpsertResponse { upserted: 1 }))
    }

    async fn bulk_upsert(
        &self,
        request: Request<Streaming<Document>>,
    ) -> Result<Response<UpsertResponse>, Status> {
        let mut caller = Caller::from_metadata(request.metadata())?;
        let mut stream = request.into_inner();
        let span = tracing::debug_span!("grpc", method = "BulkUpsert");
        async {
            let mut upserted = 0u64;
            let mut batch = Vec::with_capacity(BULK_BATCH);
            loop {
                let next = stream.message().await?;
                let done = next.is_none();
                if let Some(d) = next {
                    batch.push(command::upsert(&d).map_err(|e| {
                        Status::invalid_argument(format!(
                            "document {}: {e}",
                            upserted + batch.len() as u64
                        ))
                    })?);
                }
                if batch.len() >= BULK_BATCH || (done && !batch.is_empty()) {
                    for reply in self.writes(&mut caller, std::mem::take(&mut batch)).await? {
                        // Earlier documents stay written, as a pipeline's would.
                        if let Reply::Error(text) = reply {
                            let s = reply::status(&text);
                            return Err(Status::new(
                                s.code(),
                                format!("{text} (after {upserted} documents were written)"),
                            ));
                        }
                        upserted += 1;
                    }
                }
                if done {
                    return Ok(Response::new(UpsertResponse { upserted }));
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let mut caller = Caller::from_metadata(request.metadata())?;
        let r = request.into_inner();
        let span = tracing::debug_span!("grpc", method = "Get", key = %r.key);
        async {
            let key = r.key.as_bytes();
            let kind = self.read(&mut caller, args(&[b"TYPE", key])).await?;
            let kind = reply::bytes(&kind).unwrap_or_default();
            match kind.as_slice() {
                b"none" => Ok(Response::new(GetResponse::default())),
                b"hash" => {
                    let all = self.read(&mut caller, args(&[b"HGETALL", key])).await?;
                    Ok(Response::new(GetResponse {
                        found: true,
                        fields: reply::fields(all)?,
                        json: String::new(),
                    }))
                }
                b"ReJSON-RL" => {
                    let doc = self.read(&mut caller, args(&[b"JSON.GET", key])).await?;
                    let json = reply::bytes(&doc).unwrap_or_default();
                    Ok(Response::new(GetResponse {
                        found: true,
                        fields: Default::default(),
                        json: String::from_utf8_lossy(&json).into_owned(),
                    }))
                }
                _ => Err(reply::status(
                    "WRONGTYPE Operation against a key holding the wrong kind of value",
                )),
            }
        }
        .instrument(span)
        .await
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let mut caller = Caller::from_metadata(request.metadata())?;
        let r = request.into_inner();
        let span = tracing::debug_span!("grpc", method = "Delete", keys = r.keys.len());
        if r.keys.is_empty() {
            return Ok(Response::new(DeleteResponse { deleted: 0 }));
        }
        let mut a = vec![b"DEL".to_vec()];
        a.extend(r.keys.iter().map(|k| k.as_bytes().to_vec()));
        let reply = self.write(&mut caller, a).instrument(span).await?;
        Ok(Response::new(DeleteResponse {
            deleted: u64::try_from(reply::int(&reply)?).unwrap_or(0),
        }))
    }

    async fn search(
        &self,
        request: Request<SearchRequest>,
    ) -> Result<Response<SearchResponse>, Status> {
        let mut caller = Caller::from_metadata(request.metadata())?;
        let r = request.into_inner();
        let span = tracing::debug_span!("grpc", method = "Search", index = %r.index);
        let (a, distance) = command::search(&r).map_err(invalid)?;
        let reply = self.read(&mut caller, a).instrument(span).await?;
        let keep = distance
            .as_ref()
            .is_some_and(|d| r.return_fields.iter().any(|f| f == d));
        let nocontent = r.keys_only && distance.is_none();
        let mut response = reply::search(reply, distance.as_deref(), keep, nocontent)?;
        if r.keys_only {
            for hit in &mut response.hits {
                hit.fields.clear();
            }
        }
        Ok(Response::new(response))
    }

    async fn cluster_status(
        &self,
        request: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        let mut caller = Caller::from_metadata(request.metadata())?;
        let node = self.node()?;
        // What INFO cluster would tell the same user.
        let info = vec![Bytes::from_static(b"INFO"), Bytes::from_static(b"cluster")];
        caller.authorize(node, &self.refreshes, &[info]).await?;
        let Store::Replicated(r) = &node.store else {
            return Ok(Response::new(ClusterStatusResponse::default()));
        };
        let map = r.router.cached_map();
        let groups = r
            .router
            .routing()
            .all()
            .iter()
            .map(|&g| {
                let view = crate::info::group_view(r, &map, g);
                GroupStatus {
                    group: g,
                    leader: view.leader.unwrap_or(0),
                    local_role: view.role.to_owned(),
                }
            })
            .collect();
        Ok(Response::new(ClusterStatusResponse {
            node_id: r.host.id(),
            groups,
        }))
    }
}

/// Serves the API and server reflection on `listener` until `shutdown` completes.
pub async fn serve(
    nodes: Vec<Arc<Node>>,
    listener: TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(shoal_proto::api::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // grpcio's reflection client (and older grpcurl) still ask v1alpha.
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(shoal_proto::api::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tracing::debug!(?addr, "gRPC API serving");
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .add_service(
            ShoalServer::new(Api::new(nodes))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(reflection)
        .add_service(reflection_alpha)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
