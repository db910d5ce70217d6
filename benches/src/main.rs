//! `shoal-bench`: reproducible benchmarks of Shoal's indexes.
//!
//! `shoal-bench ann` builds an index from TEXMEX or NumPy files, searches it at several
//! beam widths and reports recall, throughput and latency in the JSON schema the peer
//! harness (`benches/peers/run_peer.py`) also writes, so `benches/compare.py` can put
//! Shoal, hnswlib and faiss side by side. `shoal-bench filter-threshold` measures where an
//! exact scan of a filter's ids starts beating the filtered graph walk. `shoal-bench
//! resp-load` drives closed-loop RESP clients from one thread for the server benchmarks.
//! `shoal-bench engine-search` times FT.SEARCH through the engine in-process, between the
//! bare index and the server.

mod ann;
mod engine_search;
mod filter_threshold;
mod resp_load;
mod vecs;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "shoal-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an index, search it at each ef, report recall / QPS / latency.
    Ann(ann::AnnArgs),
    /// FT.SEARCH through the engine in-process, on an index built from HSETs as a server builds it.
    EngineSearch(engine_search::EngineSearchArgs),
    /// Time the filtered HNSW walk against the exact filtered scan at many selectivities.
    FilterThreshold(filter_threshold::ThresholdArgs),
    /// Closed-loop RESP clients (one request in flight each) on one thread; latencies as JSON.
    RespLoad(resp_load::RespLoadArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ann(args) => ann::run(&args),
        Command::EngineSearch(args) => engine_search::run(&args),
        Command::FilterThreshold(args) => filter_threshold::run(&args),
        Command::RespLoad(args) => resp_load::run(&args),
    }
}
