//! The shard service (`proto/shard.proto`): peers' routers call it to reach the groups
//! this node leads. Every call is decoded, run through [`Local`], and its result —
//! answer or [`ShardError`] — encoded back; gRPC errors are left for transport failures.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use shoal_proto::shard::shard_server::{Shard, ShardServer};
use shoal_proto::shard::{ShardAnswer, ShardCall};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::confirm::VotesAnswer;
use crate::local::Local;
use crate::wire::{
    decode, decode_aggregate, decode_read, decode_search, encode, LeaderView, ShardError,
};

/// Largest shard message: a batch of pipelined vector writes, or a search part that
/// loads many fields.
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ShardService {
    local: Local,
}

impl ShardService {
    pub fn new(local: Local) -> Self {
        ShardService { local }
    }

    pub fn into_server(self) -> ShardServer<Self> {
        ShardServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }
}

/// A stream of answers to a stream of calls (`VotesStream`).
pub type AnswerStream = Pin<Box<dyn Stream<Item = Result<ShardAnswer, Status>> + Send>>;

/// The answer to one `Votes` call: this node's views of the groups named.
async fn votes_answer(local: &Local, call: &ShardCall) -> Result<VotesAnswer, ShardError> {
    let groups: Vec<u64> = decode(&call.payload)?;
    Ok(VotesAnswer::new(local.vote_views(&groups)))
}

fn answer<T: serde::Serialize>(
    result: &Result<T, ShardError>,
) -> Result<Response<ShardAnswer>, Status> {
    let payload = encode(result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(ShardAnswer { payload }))
}

#[tonic::async_trait]
impl Shard for ShardService {
    async fn write(&self, request: Request<ShardCall>) -> Result<Response<ShardAnswer>, Status> {
        let call = request.into_inner();
        let span = tracing::debug_span!("shard_write", group = call.group);
        let result = async {
            let write = decode(&call.payload)?;
            self.local.write(call.group, write).await
        }
        .instrument(span)
        .await;
        answer(&result)
    }

    async fn read(&self, request: Request<ShardCall>) -> Result<Response<ShardAnswer>, Status> {
        let call = request.into_inner();
        let span = tracing::debug_span!("shard_read", group = call.group);
        let result = async {
            let read = decode_read(&call.payload)?;
            self.local.read(call.group, &read).await
        }
        .instrument(span)
        .await;
        answer(&result)
    }

    async fn search(&self, request: Request<ShardCall>) -> Result<Response<ShardAnswer>, Status> {
        let call = request.into_inner();
        let span = tracing::debug_span!("shard_search", group = call.group);
        let result = async {
            let search = decode_search(&call.payload)?;
            self.local.search(call.group, &search).await
        }
        .instrument(span)
        .await;
        answer(&result)
    }

    async fn aggregate(
        &self,
        request: Request<ShardCall>,
    ) -> Result<Response<ShardAnswer>, Status> {
        let call = request.into_inner();
        let span = tracing::debug_span!("shard_aggregate", group = call.group);
        let result = async {
            let aggregate = decode_aggregate(&call.payload)?;
            self.local.aggregate(call.group, &aggregate).await
        }
        .instrument(span)
        .await;
        answer(&result)
    }

    async fn read_index(
        &self,
        request: Request<ShardCall>,
    ) -> Result<Response<ShardAnswer>, Status> {
        let group = request.into_inner().group;
        let span = tracing::debug_span!("shard_read_index", group);
        let result = self.local.read_index(group).instrument(span).await;
        answer(&result)
    }

    async fn votes(&self, request: Request<ShardCall>) -> Result<Response<ShardAnswer>, Status> {
        let call = request.into_inner();
        let span = tracing::debug_span!("shard_votes");
        let result = votes_answer(&self.local, &call).instrument(span).await;
        answer(&result)
    }

    type VotesStreamStream = AnswerStream;

    async fn votes_stream(
        &self,
        request: Request<Streaming<ShardCall>>,
    ) -> Result<Response<AnswerStream>, Status> {
        let local = self.local.clone();
        // The stream ends when the node stops: its groups give no views any more, and a
        // peer's kept stream would otherwise hold the connection open past the stop.
        let stopping = local.host.stopping();
        // One call at a time, in order (`then`): each answer is the views as they are
        // when its call is read, after the caller's reads began.
        let answers = request.into_inner().take_until(stopping).then(move |call| {
            let local = local.clone();
            async move {
                let call = call?;
                let span = tracing::debug_span!("shard_votes");
                let result = votes_answer(&local, &call).instrument(span).await;
                let payload = encode(&result).map_err(|e| Status::internal(e.to_string()))?;
                Ok(ShardAnswer { payload })
            }
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn leader(&self, request: Request<ShardCall>) -> Result<Response<ShardAnswer>, Status> {
        let group = request.into_inner().group;
        let _span = tracing::debug_span!("shard_leader", group).entered();
        let host = &self.local.host;
        let result = match host.group(group).filter(|g| g.is_member()) {
            Some(g) => {
                let status = g.status();
                Ok(LeaderView {
                    term: status.term,
                    leader: status.leader.map(|(id, _)| id),
                })
            }
            None => Err(ShardError::NotHosted {
                node: host.id(),
                group,
            }),
        };
        answer(&result)
    }
}
