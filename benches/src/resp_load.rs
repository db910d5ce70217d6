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
//! the warm-up's seconds, and every measured request's latency in µs.
//!
//! `--warmup-seconds`: every connection first runs its plan unmeasured, in a closed loop,
//! until the warm-up ends, and then goes on to its measured requests without pausing.
//! Without it every connection sends its first measured request at the same instant,
//! and a clustered search's confirmation rounds start in lockstep: in session 32 the
//! first 100 ms of a 20,000-request row held half of the requests at or over its p99
//! (docs/benchmarks.md). A warm-up measures the steady state a server sees from clients
//! that did not all start together; each connection crosses into the measured window on
//! its own, so the crossing does not line them up again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::types::RangeFrame;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
            for j in seq {
                let t = Instant::now();
                conn.call(&requests[j]).await?;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
            Ok::<_, anyhow::Error>((lat, Instant::now()))
        });
    }
    // The driver's CPU and run-queue wait are read when the window opens, on this (the
    // only) thread.
    tokio::time::sleep_until(t0.into()).await;
    let (cpu0, wait0) = thread_sched_seconds()?;
    let mut latencies_us = Vec::with_capacity(args.requests);
    let mut end = t0;
    while let Some(joined) = measuring.join_next().await {
        let (lat, done) = joined??;
        latencies_us.extend(lat);
        end = end.max(done);
    }
    let (cpu1, wait1) = thread_sched_seconds()?;
    Ok(Report {
        seconds: end.saturating_duration_since(t0).as_secs_f64(),
        cpu_seconds: cpu1 - cpu0,
        wait_seconds: wait1 - wait0,
        warmup_seconds: t0.saturating_duration_since(start).as_secs_f64(),
        latencies_us,
    })
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
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: vec![0; 64 * 1024],
            filled: 0,
        })
    }

    /// Sends one request and reads its whole reply; an error reply fails the run.
    async fn call(&mut self, request: &[u8]) -> Result<()> {
        self.stream.write_all(request).await?;
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
                return Ok(());
            }
            if self.filled == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self.stream.read(&mut self.buf[self.filled..]).await?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            self.filled += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_deals_requests_round_robin() {
        let all: Vec<Vec<usize>> = (0..3).map(|c| plan(10, 3, c).collect()).collect();
        assert_eq!(all, vec![vec![0, 3, 6, 9], vec![1, 4, 7], vec![2, 5, 8]]);
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
