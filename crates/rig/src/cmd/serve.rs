//! `rig serve`: the reference checkout system standalone.

use clap::Args;

use crate::exit::{Verdict, not_built};

/// Run the reference system (being built).
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<Verdict> {
    let _ = args.rest;
    not_built("serve", "[target-core]")
}
