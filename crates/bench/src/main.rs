//! `cairn-bench`: benchmarks that drive the real suite over gRPC.
//!
//! - `quality`: a seeded simulator of a telecom customer base that asks the
//!   recommendation service for the next best action, reports what the
//!   customer did, and compares the service's acceptance rate with uniform
//!   random choice, a context-free popularity baseline and the oracle that
//!   knows the hidden acceptance probabilities.
//!
//! The suite is started in this process (`cairn::Suite::start`) on a fresh
//! PostgreSQL database and Redis prefix, dropped afterwards.

mod quality;
mod suite;

use clap::{Parser, Subcommand};

/// The command line.
#[derive(Parser)]
#[command(name = "cairn-bench", about = "Benchmarks of the Cairn suite")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The recommendation quality benchmark.
    Quality(quality::Options),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Quality(options) => runtime.block_on(quality::run(options)),
    }
}
