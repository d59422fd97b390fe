//! `nbpipe serve`: parse options, handle signals, hand over to `nbpipe_server::serve`.

use std::time::Duration;

use nbpipe_server::serve::{serve, ServeOptions};
use tokio::sync::watch;

use crate::cli::ServeArgs;
use crate::exit;

/// Run the command; returns the exit code.
pub fn run(args: ServeArgs) -> u8 {
    let several = args.git.len() > 1;
    let git_workdirs: Vec<_> = args
        .git
        .iter()
        .map(|url| match &args.git_workdir {
            Some(dir) if several => nbpipe_server::gitops::workdir_under(dir, url),
            Some(dir) => dir.clone(),
            None => nbpipe_server::gitops::default_workdir(url),
        })
        .collect();
    // The inbox lives with the first project folder, else with the first followed repository.
    let home = match (args.projects.first(), git_workdirs.first()) {
        (Some(first), _) => std::fs::canonicalize(first)
            .unwrap_or(first.clone())
            .join(".nbpipe"),
        (None, Some(w)) => w.clone(),
        (None, None) => std::path::PathBuf::from(".nbpipe"),
    };
    let inbox = if args.no_inbox {
        None
    } else {
        Some(args.inbox.clone().unwrap_or_else(|| home.join("inbox")))
    };
    let opts = ServeOptions {
        projects: args.projects,
        listen: args.listen,
        allowed_hosts: args.allowed_hosts,
        database: args.database,
        workers: args.workers.max(1),
        max_running: args.max_running,
        per_project: args.per_project.max(1),
        token: args.token.filter(|t| !t.is_empty()),
        inbox,
        poll: args.poll.filter(|s| *s > 0).map(Duration::from_secs),
        sqs_queues: args.sqs_queues,
        drain_timeout: Duration::from_secs(args.drain_timeout),
        lease: Duration::from_secs(args.lease.max(2)),
        warm_kernels: args.warm_kernels,
        no_fork_server: args.no_fork_server,
        executor: args.executor,
        image_binary: args.image_binary,
        git: args
            .git
            .iter()
            .zip(git_workdirs)
            .map(|(url, workdir)| nbpipe_server::gitops::GitOptions {
                url: url.clone(),
                envs: args.envs.clone(),
                poll: Duration::from_secs(args.git_poll.max(1)),
                workdir,
                token: std::env::var("NBPIPE_GIT_TOKEN")
                    .ok()
                    .filter(|t| !t.is_empty())
                    .map(|t| {
                        let user = std::env::var("NBPIPE_GIT_USERNAME")
                            .ok()
                            .filter(|u| !u.is_empty())
                            .unwrap_or_else(|| "x-access-token".into());
                        nbpipe_server::gitops::GitToken { user, token: t }
                    }),
            })
            .collect(),
        git_webhook_secret: args.git_webhook_secret.filter(|s| !s.is_empty()),
        envs: args.envs,
        public_url: args.public_url,
    };
    let runtime = match super::runtime(None) {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            let mut first = true;
            loop {
                let sig = tokio::select! { _ = int.recv() => 2, _ = term.recv() => 15 };
                if !first {
                    std::process::exit(i32::from(exit::signal(sig)));
                }
                first = false;
                let _ = tx.send(true);
            }
        });
        match serve(opts, rx).await {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("error: {e}");
                exit::USAGE
            }
        }
    })
}
