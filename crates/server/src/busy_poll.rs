//! Opt-in busy polling of a connection between requests.
//!
//! On virtual machines an idle vCPU halts, and waking it for the next request costs an
//! exit to the hypervisor and back: on the 2-vCPU Firecracker VM of docs/benchmarks.md
//! that is 15–25 µs per round trip, more than a warm KNN search. A connection that has
//! just been answered therefore asks the socket for its next request in a tight loop for
//! a bounded time before it parks in the reactor; a client issuing requests one after
//! another finds the server still running. The price is a core spent spinning while a
//! client thinks, so it is off unless `--busy-poll-us` asks for it (the same trade
//! Linux's `SO_BUSY_POLL` makes for NIC queues, which loopback and most virtual NICs
//! cannot use).

use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;

/// Bytes taken per non-blocking read while polling.
const POLL_CHUNK: usize = 16 * 1024;

/// What a bounded poll found.
#[derive(Debug, PartialEq, Eq)]
pub enum Polled {
    /// Bytes arrived and were appended to the input.
    Data,
    /// The peer closed the connection or the socket failed.
    Closed,
    /// Nothing arrived within the budget: park in the reactor.
    Idle,
}

/// Reads from `stream` without blocking until something arrives or `budget` passes;
/// once something arrives, keeps reading until the socket is drained or `input` holds
/// `max_bytes`, so a pipeline still arrives as one batch.
///
/// The reads go to the socket directly, past tokio's readiness cache (which only learns
/// of new data when a worker polls epoll). That cache can then believe the socket
/// readable when it is not, which costs tokio one empty read later, never a lost wake-up:
/// data that arrives afterwards raises a new edge-triggered event.
pub fn poll_for(
    stream: &TcpStream,
    input: &mut BytesMut,
    budget: Duration,
    max_bytes: usize,
) -> Polled {
    if budget.is_zero() {
        return Polled::Idle;
    }
    let socket = socket2::SockRef::from(stream);
    let mut chunk = [0u8; POLL_CHUNK];
    let start = Instant::now();
    loop {
        match (&*socket).read(&mut chunk) {
            Ok(0) => return Polled::Closed,
            Ok(n) => {
                input.extend_from_slice(&chunk[..n]);
                drain(&socket, input, &mut chunk, max_bytes);
                return Polled::Data;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Polled::Closed,
        }
        if start.elapsed() >= budget {
            return Polled::Idle;
        }
        std::hint::spin_loop();
    }
}

/// Takes what else is waiting, up to `max_bytes` of input in all.
fn drain(socket: &socket2::SockRef<'_>, input: &mut BytesMut, chunk: &mut [u8], max_bytes: usize) {
    while input.len() < max_bytes {
        match (&**socket).read(chunk) {
            // A close or an error is seen again by the next read, after this batch.
            Ok(0) | Err(_) => return,
            Ok(n) => input.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn finds_data_waiting_idles_on_silence_and_sees_a_close() {
        let (mut client, server) = pair().await;
        let mut input = BytesMut::new();
        let budget = Duration::from_millis(20);
        assert_eq!(
            poll_for(&server, &mut input, Duration::ZERO, 1 << 20),
            Polled::Idle
        );
        let t0 = Instant::now();
        assert_eq!(poll_for(&server, &mut input, budget, 1 << 20), Polled::Idle);
        assert!(t0.elapsed() >= budget, "polled for the whole budget");

        client.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
        let mut got = Polled::Idle;
        for _ in 0..100 {
            got = poll_for(&server, &mut input, budget, 1 << 20);
            if got == Polled::Data {
                break;
            }
        }
        assert_eq!(got, Polled::Data);
        assert_eq!(&input[..], b"*1\r\n$4\r\nPING\r\n");

        drop(client);
        let mut got = Polled::Idle;
        for _ in 0..100 {
            got = poll_for(&server, &mut input, budget, 1 << 20);
            if got != Polled::Idle {
                break;
            }
        }
        assert_eq!(got, Polled::Closed);
    }
}
