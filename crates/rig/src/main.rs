//! `rig`: the Checkout Chaos Rig command line. A thin binary: parse, load, call a library,
//! map the outcome to an exit code (0 pass, 1 verdict or threshold failed, 2 bad input,
//! 3 could not complete).

use std::process::ExitCode;

use rig::{cmd, exit};

/// jemalloc: rows and buffers are allocated on one thread (a database driver's, the load
/// generator's) and freed on another, which makes glibc's arenas contend.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Parser, Subcommand};

/// Does this checkout system keep its promises under load and faults?
///
/// One binary drives a reference checkout system (two regions, a simulated payment provider,
/// durable stores) with open-loop load, replays a chaos timeline, and verifies business
/// invariants from the durable records. Exit code = verdict: 0 pass, 1 an invariant or
/// threshold failed, 2 bad input, 3 the run could not complete.
#[derive(Debug, Parser)]
#[command(name = "rig", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Whole run: profile -> system + load + chaos -> drain -> verify -> report.
    Run(cmd::run::RunArgs),
    /// Run the reference checkout system standalone (provider, region a, region b).
    Serve(cmd::serve::ServeArgs),
    /// Generic open-loop HTTP load, wrk2-style (latency from the intended send time).
    Load(cmd::load::LoadArgs),
    /// Embedded Toxiproxy-compatible server, standalone.
    Toxiproxy(cmd::toxiproxy::ToxiproxyArgs),
    /// Apply a profile's chaos timeline to an external Toxiproxy.
    Chaos(cmd::chaos::ChaosArgs),
    /// Verify business invariants against existing durable records.
    Verify(cmd::verify::VerifyArgs),
    /// One order's story on one timeline: client, regions, provider, sink, faults.
    Explain(cmd::explain::ExplainArgs),
    /// Resolve one pending order by hand, checked against the provider and audited.
    Repair(cmd::repair::RepairArgs),
    /// Re-render a run's report, or merge .hlog files.
    Report(cmd::report::ReportArgs),
    /// Side-by-side comparison of two runs.
    Compare(cmd::compare::CompareArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    exit::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::from(exit::COULD_NOT_COMPLETE);
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => cmd::run::run(args).await,
            Command::Serve(args) => cmd::serve::run(args).await,
            Command::Load(args) => cmd::load::run(args).await,
            Command::Toxiproxy(args) => cmd::toxiproxy::run(args).await,
            Command::Chaos(args) => cmd::chaos::run(args).await,
            Command::Verify(args) => cmd::verify::run(args).await,
            Command::Explain(args) => cmd::explain::run(args).await,
            Command::Repair(args) => cmd::repair::run(args).await,
            Command::Report(args) => cmd::report::run(args).await,
            Command::Compare(args) => cmd::compare::run(args).await,
        }
    });
    // Do not wait for stray background tasks (servers already shut down gracefully).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    exit::to_exit_code(outcome)
}
