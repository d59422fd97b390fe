//! One module per subcommand; each exposes `run(args) -> exit code`.

pub mod cat;
pub mod deploy;
pub mod env;
pub mod exec;
pub mod image;
pub mod inspect;
pub mod kernels;
mod params;
pub mod render;
pub mod run;
pub mod runs;
pub mod serve;

/// The async runtime of a subcommand (`worker_threads`: `None` for one per CPU); when it cannot
/// start, says so and gives the exit code to return.
fn runtime(worker_threads: Option<usize>) -> Result<tokio::runtime::Runtime, u8> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n);
    }
    builder.enable_all().build().map_err(|e| {
        eprintln!("error: could not start the async runtime: {e}");
        crate::exit::USAGE
    })
}
