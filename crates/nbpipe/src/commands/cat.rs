//! `nbpipe cat` (hidden): the bytes at a storage location, on stdout. The Python API uses it to
//! read an output notebook back from an object store with the same credentials nbpipe used.

use std::io::Write;

use crate::cli::CatArgs;
use crate::exit;

/// Run the command; returns the exit code.
pub fn run(args: CatArgs) -> u8 {
    let loc = match nbpipe_store::Location::parse(&args.location) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let runtime = match super::runtime(Some(1)) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(loc.get()) {
        Ok(b) => match std::io::stdout().lock().write_all(&b) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("error: could not write to stdout: {e}");
                exit::USAGE
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
    }
}
