//! One module per subcommand: each has its clap `Args` and an async `run`.

pub mod chaos;
pub mod compare;
pub mod explain;
pub mod load;
pub mod repair;
pub mod report;
pub mod run;
pub mod serve;
pub mod toxiproxy;
pub mod verify;
