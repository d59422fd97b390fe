//! Exit codes, decided in one place and documented in the README.

/// Success (also `--prepare-only` and a notebook that ends with `sys.exit(0)`).
pub const OK: u8 = 0;
/// A cell raised an exception.
pub const CELL_ERROR: u8 = 1;
/// Bad usage or bad input: malformed notebook, parameters, YAML, unknown kernel, paths.
pub const USAGE: u8 = 2;
/// The kernel could not be started.
pub const KERNEL_START: u8 = 3;
/// A cell exceeded `--execution-timeout`.
pub const TIMEOUT: u8 = 4;
/// The run finished but its output notebook could not be stored (a local copy is kept).
pub const NOT_STORED: u8 = 5;
/// The kernel died mid-run (papermill's code for a dead kernel).
pub const KERNEL_DIED: u8 = 138;

/// 128 + signal number, as shells report it.
pub fn signal(sig: i32) -> u8 {
    (128 + sig.clamp(0, 127)) as u8
}
