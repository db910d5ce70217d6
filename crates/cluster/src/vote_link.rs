//! A router's confirmation rounds to one peer (`crate::confirm`) over one long-lived
//! `VotesStream`, instead of a unary `Votes` call per round.
//!
//! Under load a router sends a round to its peer every millisecond or two, and a unary
//! gRPC call costs both nodes an HTTP/2 stream: headers and trailers to encode and
//! decode, a task and a codec on the server, a request set up on the client. On
//! `shoal dev` at 32 clients that was about 20 µs of CPU per search (docs/benchmarks.md,
//! "Session 39"). On the stream a round is one message each way.
//!
//! A round takes the stream out of the link while it runs and puts it back only after
//! its answer came, so a stream carries one call at a time and its answer is the next
//! message. A round given up half-way (its deadline) drops the stream with the answer
//! still owed on it, so a later round can never read an answer meant for an earlier
//! one. Rounds to a peer go one at a time anyway (`crate::rounds`); should two ever
//! overlap on one link (a node id taken over at an address), the second finds no
//! stream kept and opens its own.
//!
//! | the round                                   | next                                 |
//! |---------------------------------------------|--------------------------------------|
//! | answered on the stream                      | keep the stream for the next round   |
//! | failed on a stream kept from an earlier one | drop it, once more on a fresh stream |
//! | failed on a fresh stream                    | drop it, the round fails             |
//! | the peer has no `VotesStream` (older Shoal) | `Votes` calls for [`UNARY_FOR`]      |

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use parking_lot::Mutex;
use shoal_proto::shard::shard_client::ShardClient;
use shoal_proto::shard::{ShardAnswer, ShardCall};
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

/// How long rounds go as `Votes` calls after a peer had no stream: it may be upgraded
/// meanwhile (a rolling upgrade), and then the stream is tried again.
pub const UNARY_FOR: Duration = Duration::from_secs(60);

/// One peer's stream, kept between rounds.
#[derive(Debug)]
pub struct VoteLink {
    channel: Channel,
    open: Mutex<Option<Open>>,
    /// Until when rounds go as `Votes` calls: the peer answered `Unimplemented` for
    /// the stream.
    unary_until: Mutex<Option<Instant>>,
    /// Streams opened since the start (one per peer while nothing breaks).
    opened: AtomicU64,
}

#[derive(Debug)]
struct Open {
    calls: mpsc::UnboundedSender<ShardCall>,
    answers: Streaming<ShardAnswer>,
}

impl VoteLink {
    /// A link over `channel`, the peer's; the first round opens its stream.
    pub fn new(channel: Channel) -> VoteLink {
        VoteLink {
            channel,
            open: Mutex::new(None),
            unary_until: Mutex::new(None),
            opened: AtomicU64::new(0),
        }
    }

    /// The peer's answer to one round carrying `payload` (a `Votes` call's), sent when
    /// this is called. `timeout` is set on a `Votes` call when the peer takes no stream;
    /// the caller bounds the round itself.
    pub async fn round(&self, payload: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, Status> {
        if self
            .unary_until
            .lock()
            .is_some_and(|until| Instant::now() < until)
        {
            return self.unary(payload, timeout).await;
        }
        let kept = self.open.lock().take();
        let reused = kept.is_some();
        let mut result = self.exchange(kept, payload.clone()).await;
        if reused
            && result
                .as_ref()
                .is_err_and(|s| s.code() != Code::Unimplemented)
        {
            result = self.exchange(None, payload.clone()).await;
        }
        match result {
            Err(status) if status.code() == Code::Unimplemented => {
                *self.unary_until.lock() = Some(Instant::now() + UNARY_FOR);
                self.unary(payload, timeout).await
            }
            other => other,
        }
    }

    /// Streams opened so far.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Sends `payload` on `link` (a new stream when `None`) and reads its answer; the
    /// stream goes back into the link only then.
    async fn exchange(&self, link: Option<Open>, payload: Vec<u8>) -> Result<Vec<u8>, Status> {
        let call = ShardCall { group: 0, payload };
        let mut link = match link {
            Some(link) => {
                link.calls
                    .unbounded_send(call)
                    .map_err(|_| Status::unavailable("the votes stream was closed"))?;
                link
            }
            None => self.open_stream(call).await?,
        };
        let answer = link
            .answers
            .message()
            .await?
            .ok_or_else(|| Status::unavailable("the peer ended the votes stream"))?;
        *self.open.lock() = Some(link);
        Ok(answer.payload)
    }

    /// A new stream with `first` already on it: the call goes out with the stream's
    /// headers instead of a round trip after them.
    async fn open_stream(&self, first: ShardCall) -> Result<Open, Status> {
        let (calls, requests) = mpsc::unbounded();
        calls
            .unbounded_send(first)
            .map_err(|_| Status::internal("a new channel refused a call"))?;
        let mut client = ShardClient::new(self.channel.clone());
        let answers = client.votes_stream(requests).await?.into_inner();
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Open { calls, answers })
    }

    /// One round as a unary `Votes` call (a peer without the stream).
    async fn unary(&self, payload: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, Status> {
        let mut client = ShardClient::new(self.channel.clone());
        let mut request = tonic::Request::new(ShardCall { group: 0, payload });
        request.set_timeout(timeout);
        Ok(client.votes(request).await?.into_inner().payload)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::StreamExt;
    use shoal_proto::shard::shard_server::{Shard, ShardServer};
    use tonic::{Request, Response};

    use super::*;
    use crate::service::AnswerStream;

    /// A peer that echoes each call's payload, over a real gRPC server on loopback.
    #[derive(Clone, Default)]
    struct Echo {
        /// Ends each stream after this many answers (0: never).
        stream_answers: usize,
        /// Answers `Unimplemented` for the stream, as an older Shoal does.
        no_stream: bool,
        unary_calls: Arc<AtomicU64>,
        stream_calls: Arc<AtomicU64>,
    }

    const SLOW: &[u8] = b"slow";

    fn unimplemented<T>() -> Result<Response<T>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    #[tonic::async_trait]
    impl Shard for Echo {
        async fn write(&self, _: Request<ShardCall>) -> Result<Response<ShardAnswer>, Status> {
            unimplemented()
        }
        async fn read(&self, _: Request<ShardCall>) -> Result<Response<ShardAnswer>, Status> {
            unimplemented()
        }
        async fn search(&self, _: Request<ShardCall>) -> Result<Response<ShardAnswer>, Status> {
            unimplemented()
        }
        async fn aggregate(&self, _: Request<ShardCall>) -> Result<Response<ShardAnswer>, Status> {
            unimplemented()
        }
        async fn leader(&self, _: Request<ShardCall>) -> Result<Response<ShardAnswer>, Status> {
            unimplemented()
        }
        async fn read_index(&self, _: Request<ShardCall>) -> Result<Response<ShardAnswer>, Status> {
            unimplemented()
        }
        async fn votes(&self, call: Request<ShardCall>) -> Result<Response<ShardAnswer>, Status> {
            self.unary_calls.fetch_add(1, Ordering::Relaxed);
            Ok(Response::new(ShardAnswer {
                payload: call.into_inner().payload,
            }))
        }

        type VotesStreamStream = AnswerStream;

        async fn votes_stream(
            &self,
            calls: Request<Streaming<ShardCall>>,
        ) -> Result<Response<AnswerStream>, Status> {
            self.stream_calls.fetch_add(1, Ordering::Relaxed);
            if self.no_stream {
                return unimplemented();
            }
            let calls = calls.into_inner();
            let answers = calls.then(|call| async move {
                let payload = call?.payload;
                if payload == SLOW {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Ok(ShardAnswer { payload })
            });
            Ok(Response::new(match self.stream_answers {
                0 => Box::pin(answers) as AnswerStream,
                n => Box::pin(answers.take(n)),
            }))
        }
    }

    async fn serve(echo: Echo) -> Channel {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ShardServer::new(echo))
                .serve_with_incoming(incoming),
        );
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn rounds_share_one_stream_and_each_gets_its_own_answer() {
        let channel = serve(Echo::default()).await;
        let link = VoteLink::new(channel);
        for i in 0..20u8 {
            let answer = link.round(vec![i; 3], WAIT).await.unwrap();
            assert_eq!(answer, vec![i; 3]);
        }
        assert_eq!(link.opened(), 1);
    }

    #[tokio::test]
    async fn a_round_given_up_leaves_no_answer_for_the_next() {
        let channel = serve(Echo::default()).await;
        let link = VoteLink::new(channel);
        assert_eq!(link.round(b"a".to_vec(), WAIT).await.unwrap(), b"a");
        // Given up while its answer is still owed on the stream...
        let slow = link.round(SLOW.to_vec(), WAIT);
        assert!(tokio::time::timeout(Duration::from_millis(50), slow)
            .await
            .is_err());
        // ...so the next round must not read it as its own.
        assert_eq!(link.round(b"b".to_vec(), WAIT).await.unwrap(), b"b");
        assert_eq!(
            link.opened(),
            2,
            "the stream with the owed answer was dropped"
        );
    }

    #[tokio::test]
    async fn a_stream_that_broke_between_rounds_is_replaced_within_the_round() {
        let echo = Echo {
            stream_answers: 3,
            ..Echo::default()
        };
        let channel = serve(echo).await;
        let link = VoteLink::new(channel);
        for i in 0..10u8 {
            let answer = link.round(vec![i], WAIT).await.unwrap();
            assert_eq!(answer, vec![i], "round {i}");
        }
        // Three rounds a stream: the fourth on each finds it ended and opens the next.
        assert_eq!(link.opened(), 4);
    }

    #[tokio::test]
    async fn a_peer_without_the_stream_gets_votes_calls() {
        let echo = Echo {
            no_stream: true,
            ..Echo::default()
        };
        let (unary_calls, stream_calls) = (echo.unary_calls.clone(), echo.stream_calls.clone());
        let channel = serve(echo).await;
        let link = VoteLink::new(channel);
        for i in 0..3u8 {
            assert_eq!(link.round(vec![i], WAIT).await.unwrap(), vec![i]);
        }
        assert_eq!(unary_calls.load(Ordering::Relaxed), 3);
        assert_eq!(
            stream_calls.load(Ordering::Relaxed),
            1,
            "the stream tried once"
        );
        assert_eq!(link.opened(), 0);
        // Once the peer may have been upgraded, the stream is tried again.
        *link.unary_until.lock() = Some(Instant::now());
        assert_eq!(link.round(vec![9], WAIT).await.unwrap(), vec![9]);
        assert_eq!(stream_calls.load(Ordering::Relaxed), 2);
        assert_eq!(unary_calls.load(Ordering::Relaxed), 4);
    }
}
