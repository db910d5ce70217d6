//! `shoal-bench resp-load`: closed-loop RESP clients, one request in flight each.
//!
//! The Python drivers of `benches/cluster/cluster_search.py` spend 50–70 µs of CPU per
//! request. On a 2-vCPU machine shared with the servers that is a third of the machine
//! at 7k searches/s, and a Python process that the kernel preempts holds back every
//! reply it has already received: with those clients even PING had a 4–5 ms p99 at 32
//! connections. This driver runs every connection on one thread (a current-thread
//! tokio runtime) with pre-encoded requests, so what it measures is the servers.
//!
//! Input: a file of requests, each a little-endian `u32` length followed by that many
//! bytes of RESP. Connection `c` of `n` sends requests `c, c + n, c + 2n, …` of
//! `--requests`, cycling over the file, exactly as the Python drivers plan them. Output
//! (stdout, JSON): the measured window's wall seconds, the driver's CPU seconds in it,
//! the warm-up's seconds, and every measured request's latency in µs, twice: until the
//! driver has read the whole reply, and until the reply's last bytes reached the
//! driver's socket.
//!
//! The second is the servers' latency without the driver's: on a 2-vCPU machine whose
//! cores the servers keep busy, the driver's one thread waits for a core for a fifth of
//! a 32-client row (docs/benchmarks.md, "Session 43"), and every reply that came in
//! meanwhile waits with it, so all in-flight requests look stalled at once. The kernel
//! stamps each segment as it enters the receive path (`SO_TIMESTAMPNS`, read back with
//! `recvmsg`), which on loopback is while the server's `send` runs; a request's arrival
//! latency is that stamp of the read that completed its reply, less the wall-clock time
//! just before the request was written. Both are `CLOCK_REALTIME`. A client on a machine
//! of its own would add only its own wake-up to it. The kernel turns stamping on for
//! the whole system in deferred work once a first socket asks, so the replies of the
//! first moments can come unstamped: such a request counts its driver-observed time
//! (an upper bound), and the report says how many did (`unstamped`).
//!
//! `--warmup-seconds`: every connection first runs its plan unmeasured, in a closed loop,
//! until the warm-up ends, and then goes on to its measured requests without pausing.
//! Without it every connection sends its first measured request at the same instant,
//! and a clustered search's confirmation rounds start in lockstep: in session 32 the
//! first 100 ms of a 20,000-request row held half of the requests at or over its p99
//! (docs/benchmarks.md). A warm-up measures the steady state a server sees from clients
//! that did not all start together; each connection crosses into the measured window on
//! its own, so the crossing does not line them up again.

use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
use nix::sys::time::TimeSpec;
use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::types::RangeFrame;
use serde::Serialize;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

#[derive(Debug, clap::Args)]
pub struct RespLoadArgs {
    /// RESP address; repeat it to spread the connections (connection c uses the
    /// (c mod count)-th).
    #[arg(long = "addr", required = true)]
    addrs: Vec<SocketAddr>,
    /// Requests: each a little-endian u32 length, then that many bytes of RESP.
    #[arg(long)]
    requests_file: PathBuf,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Measured requests over all connections.
    #[arg(long, default_value_t = 3000)]
    requests: usize,
    /// Send READONLY on every connection first (replica reads on a cluster).
    #[arg(long)]
    readonly: bool,
    /// Seconds every connection sends unmeasured requests before its measured ones.
    #[arg(long, default_value_t = 0.0)]
    warmup_seconds: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    seconds: f64,
    cpu_seconds: f64,
    /// How long the driver's thread was runnable but waiting for a core during the
    /// window. On a machine whose cores the servers keep busy, every reply that came in
    /// meanwhile waited too: this is the part of the latencies that is the driver's.
    wait_seconds: f64,
    /// From the connections' start to the measured window's (0 without a warm-up).
    warmup_seconds: f64,
    latencies_us: Vec<f64>,
    /// The same requests' latencies until their replies reached the socket (the module
    /// doc), in the same order.
    arrival_latencies_us: Vec<f64>,
    /// Measured requests whose reply came without a receive stamp (their arrival is
    /// the time the driver read it).
    unstamped: usize,
}

pub fn run(args: &RespLoadArgs) -> Result<()> {
    let requests = Arc::new(read_requests(&args.requests_file)?);
    if requests.is_empty() {
        bail!("{} holds no requests", args.requests_file.display());
    }
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if !(args.warmup_seconds.is_finite() && args.warmup_seconds >= 0.0) {
        bail!("--warmup-seconds must be a number of seconds, 0 or more");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let report = runtime.block_on(drive(args, requests))?;
    serde_json::to_writer(std::io::stdout().lock(), &report)?;
    println!();
    Ok(())
}

fn read_requests(path: &PathBuf) -> Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            bail!("{}: a truncated length prefix", path.display());
        };
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            bail!("{}: a request longer than the file", path.display());
        }
        out.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    Ok(out)
}

/// Indices of the requests connection `c` sends (the Python drivers' `plan`).
fn plan(total: usize, clients: usize, c: usize) -> impl Iterator<Item = usize> {
    (c..total).step_by(clients)
}

async fn drive(args: &RespLoadArgs, requests: Arc<Vec<Vec<u8>>>) -> Result<Report> {
    // Every connection connects and sends one unmeasured request first; the measured
    // requests start together once all have. Dropping a JoinSet aborts its tasks, so the
    // first failure in either phase ends the run instead of leaving others waiting.
    let mut warming = JoinSet::new();
    for c in 0..args.clients {
        let addr = args.addrs[c % args.addrs.len()];
        let seq: Vec<usize> = plan(args.requests, args.clients, c)
            .map(|j| j % requests.len())
            .collect();
        let (requests, readonly) = (requests.clone(), args.readonly);
        warming.spawn(async move {
            let mut conn = Conn::open(addr).await?;
            if readonly {
                conn.call(b"*1\r\n$8\r\nREADONLY\r\n").await?;
            }
            if let Some(&first) = seq.first() {
                conn.call(&requests[first]).await?;
            }
            Ok::<_, anyhow::Error>((conn, seq))
        });
    }
    let mut ready = Vec::with_capacity(args.clients);
    while let Some(joined) = warming.join_next().await {
        ready.push(joined??);
    }

    let start = Instant::now();
    let t0 = start + Duration::from_secs_f64(args.warmup_seconds);
    let mut measuring = JoinSet::new();
    for (mut conn, seq) in ready {
        let requests = requests.clone();
        measuring.spawn(async move {
            // The warm-up cycles over this connection's own plan, so it sends the same
            // requests the measured window will.
            for &j in seq.iter().cycle() {
                if Instant::now() >= t0 {
                    break;
                }
                conn.call(&requests[j]).await?;
            }
            let mut lat = Vec::with_capacity(seq.len());
            let mut arrival = Vec::with_capacity(seq.len());
            let mut unstamped = 0;
            for j in seq {
                let (t, sent) = (Instant::now(), SystemTime::now());
                let reached = conn.call(&requests[j]).await?;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
                let reached = reached.unwrap_or_else(|| {
                    unstamped += 1;
                    SystemTime::now()
                });
                arrival.push(micros_between(sent, reached)?);
            }
            Ok::<_, anyhow::Error>((lat, arrival, unstamped, Instant::now()))
        });
    }
    // The driver's CPU and run-queue wait are read when the window opens, on this (the
    // only) thread.
    tokio::time::sleep_until(t0.into()).await;
    let (cpu0, wait0) = thread_sched_seconds()?;
    let mut latencies_us = Vec::with_capacity(args.requests);
    let mut arrival_latencies_us = Vec::with_capacity(args.requests);
    let (mut end, mut unstamped) = (t0, 0);
    while let Some(joined) = measuring.join_next().await {
        let (lat, arrival, missing, done) = joined??;
        latencies_us.extend(lat);
        arrival_latencies_us.extend(arrival);
        unstamped += missing;
        end = end.max(done);
    }
    let (cpu1, wait1) = thread_sched_seconds()?;
    Ok(Report {
        seconds: end.saturating_duration_since(t0).as_secs_f64(),
        cpu_seconds: cpu1 - cpu0,
        wait_seconds: wait1 - wait0,
        warmup_seconds: t0.saturating_duration_since(start).as_secs_f64(),
        latencies_us,
        arrival_latencies_us,
        unstamped,
    })
}

/// Microseconds from `sent` to `reached`, both wall-clock times of this machine.
fn micros_between(sent: SystemTime, reached: SystemTime) -> Result<f64> {
    // A stamp before the send would mean the clock stepped back mid-request (or a stamp
    // of some other segment): the row is not to be trusted then.
    let span = reached
        .duration_since(sent)
        .context("a reply stamped before its request was sent: the wall clock moved")?;
    Ok(span.as_secs_f64() * 1e6)
}

/// CPU time of the calling thread and its time waiting on a run queue (the first two
/// fields of its schedstat): with a current-thread runtime, all of the driver.
fn thread_sched_seconds() -> Result<(f64, f64)> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let mut fields = text.split_whitespace();
    let mut next = || -> Result<f64> {
        let ns: u64 = fields.next().context("short schedstat")?.parse()?;
        Ok(ns as f64 / 1e9)
    };
    let cpu = next()?;
    let wait = next()?;
    Ok((cpu, wait))
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    filled: usize,
    /// Room for one `SO_TIMESTAMPNS` control message.
    control: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        setsockopt(&stream, sockopt::ReceiveTimestampns, &true)
            .context("asking for receive timestamps (SO_TIMESTAMPNS)")?;
        Ok(Conn {
            stream,
            buf: vec![0; 64 * 1024],
            filled: 0,
            control: nix::cmsg_space!(TimeSpec),
        })
    }

    /// Sends one request and reads its whole reply; an error reply fails the run.
    /// Returns when the reply's last bytes reached the socket (the kernel's stamp of
    /// the read that completed it), if the kernel stamped them.
    async fn call(&mut self, request: &[u8]) -> Result<Option<SystemTime>> {
        self.stream.write_all(request).await?;
        let mut reached = None;
        loop {
            if let Some((frame, used)) = decode_range(&self.buf[..self.filled])? {
                if let RangeFrame::Error(range) = frame {
                    bail!(
                        "error reply: {}",
                        String::from_utf8_lossy(&self.buf[range.0..range.1])
                    );
                }
                self.buf.copy_within(used..self.filled, 0);
                self.filled -= used;
                // One request is in flight, so the reply always needs a read of its own.
                return reached.context("a reply completed without a read");
            }
            if self.filled == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let (n, stamp) = self.read_stamped().await?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            self.filled += n;
            reached = Some(stamp);
        }
    }

    /// One read into the free end of the buffer, with the kernel's receive stamp of the
    /// last segment it took (none for a segment received before stamping was on).
    async fn read_stamped(&mut self) -> Result<(usize, Option<SystemTime>)> {
        let fd = self.stream.as_raw_fd();
        loop {
            self.stream.readable().await?;
            let (buf, control) = (&mut self.buf[self.filled..], &mut self.control);
            let read = self.stream.try_io(Interest::READABLE, || {
                let mut iov = [IoSliceMut::new(buf)];
                let msg = recvmsg::<()>(fd, &mut iov, Some(control), MsgFlags::empty())
                    .map_err(std::io::Error::from)?;
                let stamp = msg.cmsgs().map_err(std::io::Error::from)?.find_map(|c| {
                    if let ControlMessageOwned::ScmTimestampns(ts) = c {
                        Some(ts)
                    } else {
                        None
                    }
                });
                Ok((msg.bytes, stamp))
            });
            match read {
                Ok((n, Some(ts))) => return Ok((n, Some(wall_time(ts)?))),
                Ok((n, None)) => return Ok((n, None)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A `CLOCK_REALTIME` stamp as a `SystemTime`.
fn wall_time(ts: TimeSpec) -> Result<SystemTime> {
    let secs = u64::try_from(ts.tv_sec()).context("a receive stamp before 1970")?;
    let nanos = u32::try_from(ts.tv_nsec()).context("a receive stamp's nanoseconds")?;
    Ok(UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_deals_requests_round_robin() {
        let all: Vec<Vec<usize>> = (0..3).map(|c| plan(10, 3, c).collect()).collect();
        assert_eq!(all, vec![vec![0, 3, 6, 9], vec![1, 4, 7], vec![2, 5, 8]]);
    }

    /// The arrival latency leaves out the time the driver took to read a reply: here
    /// the server answers after 10 ms while the driver's thread is blocked for 300.
    #[test]
    fn arrival_is_when_the_reply_reached_the_socket_not_when_it_was_read() -> Result<()> {
        stamping_on()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server = std::thread::spawn(move || -> std::io::Result<()> {
            use std::io::{Read, Write};
            let (mut peer, _) = listener.accept()?;
            let mut request = [0u8; 14];
            peer.read_exact(&mut request)?;
            std::thread::sleep(Duration::from_millis(10));
            peer.write_all(b"+PONG\r\n")?;
            // Held open until the driver has read the reply.
            let _ = peer.read(&mut request)?;
            Ok(())
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (observed, arrival) = runtime.block_on(async {
            let mut conn = Conn::open(addr).await?;
            let (t, sent) = (Instant::now(), SystemTime::now());
            let call = conn.call(b"*1\r\n$4\r\nPING\r\n");
            tokio::pin!(call);
            // The request goes out on the first poll; the thread then blocks.
            let first = poll_once(&mut call).await;
            std::thread::sleep(Duration::from_millis(300));
            let reached = match first {
                Some(done) => done?,
                None => call.await?,
            }
            .context("the reply came unstamped")?;
            let observed = t.elapsed().as_secs_f64() * 1e3;
            Ok::<_, anyhow::Error>((observed, micros_between(sent, reached)? / 1e3))
        })?;
        server
            .join()
            .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
        assert!(observed >= 300.0, "observed {observed} ms");
        assert!((10.0..250.0).contains(&arrival), "arrival {arrival} ms");
        Ok(())
    }

    /// Waits until the kernel stamps what loopback sockets receive: it turns stamping on
    /// in deferred work after the first socket asks (the module doc).
    fn stamping_on() -> Result<()> {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let mut sender = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (receiver, _) = listener.accept()?;
        setsockopt(&receiver, sockopt::ReceiveTimestampns, &true)?;
        let mut control = nix::cmsg_space!(TimeSpec);
        for _ in 0..200 {
            sender.write_all(b"x")?;
            let mut byte = [0u8; 1];
            let mut iov = [IoSliceMut::new(&mut byte)];
            let msg = recvmsg::<()>(
                receiver.as_raw_fd(),
                &mut iov,
                Some(&mut control),
                MsgFlags::empty(),
            )?;
            if msg.cmsgs()?.next().is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("the kernel never stamped a received segment")
    }

    /// Polls `fut` once: its output if it is ready at once.
    async fn poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut *fut).poll(cx) {
                std::task::Poll::Ready(out) => Some(out),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }

    #[test]
    fn requests_round_trip_through_the_file_format() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("resp-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("requests");
        let reqs: [&[u8]; 2] = [b"*1\r\n$4\r\nPING\r\n", b""];
        let mut file = Vec::new();
        for r in reqs {
            file.extend((r.len() as u32).to_le_bytes());
            file.extend(r);
        }
        std::fs::write(&path, &file)?;
        assert_eq!(read_requests(&path)?, vec![reqs[0].to_vec(), Vec::new()]);
        std::fs::write(&path, &file[..file.len() - 3])?;
        assert!(read_requests(&path).is_err());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
