//! `nbpipe kernels`: the kernelspecs discovery finds, in Jupyter's precedence order.

use serde_json::json;

use crate::cli::KernelsArgs;
use crate::exit;

/// Run the command; returns the exit code.
pub fn run(args: KernelsArgs) -> u8 {
    let specs = nbpipe_kernel::spec::find_all();
    if args.json {
        let list: Vec<_> = specs
            .iter()
            .map(|s| json!({"name": s.name, "display_name": s.display_name, "language": s.language, "resource_dir": s.resource_dir, "argv": s.argv}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
    } else if specs.is_empty() {
        eprintln!("No kernels found. Create one with `nbpipe env DIR` or `python3 -m ipykernel install --user`.");
    } else {
        let width = specs.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in &specs {
            let dir = s
                .resource_dir
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_default();
            println!("{:<width$}  {:<10}  {}", s.name, s.language, dir);
        }
    }
    exit::OK
}
