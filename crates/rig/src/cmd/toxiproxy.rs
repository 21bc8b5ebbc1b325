//! `rig toxiproxy`: the embedded Toxiproxy-compatible server, standalone. Same HTTP API as
//! Toxiproxy 2.x, so `toxiproxy-cli`, client libraries and `rig chaos` drive it unchanged.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;

use crate::exit::{BadInput, Verdict};

/// Serve a Toxiproxy-compatible API until Ctrl-C.
#[derive(Debug, Args)]
pub struct ToxiproxyArgs {
    /// Address of the HTTP API (Toxiproxy's default port is 8474).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8474")]
    listen: String,
    /// Seed for every random choice of the data path (toxicity rolls, latency jitter, slice
    /// sizes). Default: taken from the clock and printed, so a run can be replayed.
    #[arg(long)]
    seed: Option<u64>,
    /// JSON file of proxies to create at start, in `/populate` format:
    /// `[{"name": "a_to_b", "listen": "127.0.0.1:21001", "upstream": "127.0.0.1:9001"}]`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub async fn run(args: ToxiproxyArgs) -> anyhow::Result<Verdict> {
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default()
    });
    let proxies = match &args.config {
        None => Vec::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| BadInput(format!("--config {}: {e}", path.display())))?;
            serde_json::from_str(&text).map_err(|e| {
                BadInput(format!(
                    "--config {}: {e}; it must be a JSON array of {{\"name\", \"listen\", \"upstream\"}} objects",
                    path.display()
                ))
            })?
        }
    };
    let listener = TcpListener::bind(&args.listen).await.map_err(|e| {
        BadInput(format!(
            "--listen {}: {e}; pick a free address, e.g. --listen 127.0.0.1:8475",
            args.listen
        ))
    })?;
    let address = listener
        .local_addr()
        .context("the API listener has no address")?;
    let server = chaos::ToxiproxyServer::new(chaos::ServerOptions { seed, proxies })
        .await
        .map_err(|e| match &args.config {
            Some(path) => anyhow::Error::new(BadInput(format!("--config {}: {e}", path.display()))),
            None => e.into(),
        })?;
    println!("toxiproxy-compatible API on http://{address} (seed {seed}); Ctrl-C stops it");
    server
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    eprintln!("stopped: every proxy and connection is closed");
    Ok(Verdict::Pass)
}
