//! `rig run`: not built yet (the [rig-run] issue).

use clap::Args;

use crate::exit::{Verdict, not_built};

/// Not built yet: prints so and exits 2.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Arguments (ignored until the command is built).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

pub async fn run(args: RunArgs) -> anyhow::Result<Verdict> {
    let _ = args.rest;
    not_built("run", "[rig-run]")
}
