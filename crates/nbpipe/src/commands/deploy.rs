//! `nbpipe deploy aws`: resolve each region's target, then write templates, plan, deploy or
//! destroy stacks with `nbpipe-deploy`, building the project's image once for every region.
//! Exit codes: 0 done, 1 AWS, image or push failure, 2 bad project or usage.

use nbpipe_deploy::stack::{Change, Image, Outcome, Region};
use nbpipe_deploy::{DeployError, Target};
use nbpipe_image::{BuildOptions, Store};

use crate::cli::{DeployArgs, DeployAwsArgs, DeployCommand};
use crate::exit;

/// Run the command; returns the exit code.
pub fn run(args: DeployArgs) -> u8 {
    match args.command {
        DeployCommand::Aws(a) => aws(a),
    }
}

fn fail(e: &DeployError) -> u8 {
    eprintln!("error: {e}");
    if e.is_usage() {
        exit::USAGE
    } else {
        exit::CELL_ERROR
    }
}

fn aws(args: DeployAwsArgs) -> u8 {
    let dir = match std::fs::canonicalize(&args.dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: project folder `{}`: {e}", args.dir.display());
            return exit::USAGE;
        }
    };
    // A project with `environments:` deploys the settings of the one `--env` names; without,
    // `--env` only names the stacks.
    let declares = nbpipe_project::config::load_env(&dir, nbpipe_project::config::Select::Top)
        .map(|p| !p.environments.is_empty());
    let select = match declares {
        Ok(true) => nbpipe_project::config::Select::Named(&args.env),
        _ => nbpipe_project::config::Select::Top,
    };
    let project = match nbpipe_project::config::load_env(&dir, select) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let targets = match nbpipe_deploy::target::targets(&project, &args.env, &args.regions) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    if let Some(file) = &args.template {
        return write_templates(&targets, file);
    }
    let runtime = match super::runtime(None) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let quiet = args.quiet;
    let note = move |m: &str| {
        if !quiet {
            eprintln!("nbpipe: {m}");
        }
    };
    runtime.block_on(async move {
        let result = async {
            let mut built = None;
            let store = if args.destroy {
                None
            } else {
                let store = Store::default_location()?;
                let opts = BuildOptions {
                    dir: dir.clone(),
                    base: args.base.clone(),
                    binary: args.binary.clone(),
                    platform: Some("linux/amd64".into()),
                    quiet: args.quiet,
                    ..Default::default()
                };
                note("building the project's image");
                built = Some(nbpipe_image::build(&opts, &store).await?);
                Some(store)
            };
            for t in &targets {
                let region = Region::connect(&t.region).await;
                let outcome = match (&built, &store) {
                    (Some(b), Some(s)) => {
                        let image = Image { built: b, store: s };
                        region.deploy(t, &image, args.plan, &note).await?
                    }
                    _ => region.destroy(t).await?,
                };
                report(t, &outcome);
                if matches!(
                    outcome,
                    Outcome::Created(_) | Outcome::Updated(_) | Outcome::Unchanged
                ) {
                    for (k, v) in region.outputs(&t.stack_name).await? {
                        println!("  {k}: {v}");
                    }
                }
            }
            Ok::<_, DeployError>(())
        }
        .await;
        match result {
            Ok(()) => exit::OK,
            Err(e) => fail(&e),
        }
    })
}

fn write_templates(targets: &[Target], file: &str) -> u8 {
    if targets.len() > 1 && !file.contains("{region}") {
        eprintln!(
            "error: `--template {file}` with {} regions: put `{{region}}` in the file name, one \
             template is written per region",
            targets.len()
        );
        return exit::USAGE;
    }
    for t in targets {
        let text = serde_json::to_string_pretty(&nbpipe_deploy::template::template(t))
            .unwrap_or_default()
            + "\n";
        if file == "-" {
            print!("{text}");
            continue;
        }
        let path = file.replace("{region}", &t.region);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("error: cannot write `{path}`: {e}");
            return exit::CELL_ERROR;
        }
        eprintln!("wrote `{path}` (stack `{}`)", t.stack_name);
    }
    exit::OK
}

fn changes(list: &[Change]) {
    for c in list {
        let replacement = match c.replacement.as_deref() {
            Some("True") => "  (replaced)",
            Some("Conditional") => "  (may be replaced)",
            _ => "",
        };
        println!(
            "  {:<8} {:<16} {}{replacement}",
            c.action, c.logical_id, c.resource_type
        );
    }
}

fn report(t: &Target, outcome: &Outcome) {
    let at = format!("`{}` in `{}`", t.stack_name, t.region);
    match outcome {
        Outcome::Created(c) => {
            println!("{at}: created");
            changes(c);
        }
        Outcome::Updated(c) => {
            println!("{at}: updated");
            changes(c);
        }
        Outcome::Unchanged => println!("{at}: no changes (already up to date)"),
        Outcome::Planned { exists, changes: c } => {
            let what = if *exists { "update" } else { "create" };
            if c.is_empty() && *exists {
                println!("{at}: plan: no changes");
            } else {
                println!("{at}: plan ({what}):");
                changes(c);
            }
            println!("  nothing was changed (--plan)");
        }
        Outcome::Destroyed => println!("{at}: deleted (buckets kept)"),
        Outcome::Absent => println!("{at}: no such stack, nothing to delete"),
    }
}
