//! One module per subcommand; each exposes `run(args) -> exit code`.

pub mod env;
pub mod exec;
pub mod inspect;
pub mod kernels;
mod params;
pub mod render;
pub mod run;
pub mod serve;
