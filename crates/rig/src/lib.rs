//! The Checkout Chaos Rig's command-line library: each command of `rig` as a module, and
//! `rig run` as phases a test can call without spawning the binary. `main.rs` only parses
//! the command line, calls one of these and maps the outcome to an exit code.
//!
//! # Layout
//! - [`cmd`]: one module per subcommand, each with its clap `Args` and an async `run`.
//! - [`run`]: a run from profile to verdict in phases ([`run::prepare`], [`run::start`],
//!   [`run::drive`], [`run::drain`], [`run::judge`], [`run::write`]), the profile, the
//!   topology and the run directory's documents.
//! - [`observe`]: the load observers `load` and `run` share (progress line, `.hlog`).
//! - [`metrics`]: one `/metrics` endpoint merging every component's registry.
//! - [`grafana`]: chaos windows as Grafana annotations.
//! - [`overrides`]: `--set a.b=c` on a TOML document; [`target_config`]: `[target]` for
//!   `rig serve`.
//! - [`exit`]: the exit codes and the error kinds that select them.

pub mod cmd;
pub mod exit;
pub mod fuzzing;
pub mod grafana;
pub mod metrics;
pub mod observe;
pub mod overrides;
pub mod run;
pub mod target_config;

/// A file's bytes, or `Ok(None)` when it is larger than `max` bytes: refused by its size
/// before reading when it has one, else (a pipe) by what it gives, never more than `max + 1`.
pub fn read_at_most(path: &std::path::Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    if file.metadata().map(|m| m.len()).unwrap_or(0) > max {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}
