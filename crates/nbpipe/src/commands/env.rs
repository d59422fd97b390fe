//! `nbpipe env`: build or reuse a folder's managed kernel environment.

use crate::cli::EnvArgs;
use crate::exit;

/// Run the command; returns the exit code.
pub fn run(args: EnvArgs) -> u8 {
    if !args.dir.is_dir() {
        eprintln!("error: `{}` is not a directory", args.dir.display());
        return exit::USAGE;
    }
    let opts = nbpipe_env::EnvOptions {
        python: args.python,
        requirements: args.requirements,
        force: args.force,
        quiet: args.quiet,
    };
    match nbpipe_env::ensure(&args.dir, &opts) {
        Ok(env) => {
            eprintln!("Environment: {}", env.root.display());
            eprintln!("Python:      {}", env.python.display());
            eprintln!("Hash:        {}", env.hash);
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
    }
}
