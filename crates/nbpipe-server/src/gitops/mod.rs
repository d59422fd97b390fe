//! Git-ops: `nbpipe serve --git URL…` follows repositories' branches, one per project
//! environment, and deploys each new commit. One [`GitOps`] per repository; a server may
//! follow several, beside project folders, as long as no two serve the same project key.
//!
//! Owns the mirror of the repository (`git fetch` into a bare clone under the server's work
//! folder, using the usual git credentials: SSH keys, credential helpers, `GIT_ASKPASS`, or
//! a token in `NBPIPE_GIT_TOKEN` sent as HTTP Basic credentials through git's environment,
//! never its command line),
//! the revision folders (each commit checked out once, with `git archive`, into its own
//! folder) and the switch: a new commit is checked out, its `nbpipe.yaml` validated and its
//! kernel environment built *before* it replaces the revision being served; a commit that
//! fails any of that is refused with the error recorded (API, UI) and the previous revision
//! keeps serving. Runs take their project when they start, so runs in flight finish on their
//! revision (see [`crate::projects`]). New commits are found by polling and, sooner, by a
//! verified push webhook ([`webhook`]).
//!
//! What a new revision changes: its notebooks, parameters, environment, executor, output,
//! run policy, the S3 prefixes events are routed by, and its triggers: `on_switch` is called
//! after each switch, and the server's schedules, inbox folders and polled prefixes follow
//! the new revision there (see [`crate::triggers`]).

pub mod webhook;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nbpipe_project::config::Select;
use nbpipe_project::run::manifest::GitInfo;
use nbpipe_project::Project;
use tokio::sync::{watch, Notify};

use crate::api::{ProjectInfo, ProjectList};
use crate::projects::{Projects, Served};
use crate::queue::Queue;
use crate::worker::EnvCache;

/// What `nbpipe serve --git` is told.
#[derive(Debug, Clone)]
pub struct GitOptions {
    /// The repository (any URL or path `git fetch` takes).
    pub url: String,
    /// The environments to serve (empty: every environment the default branch's
    /// `nbpipe.yaml` declares; none declared: the default branch's top-level settings).
    pub envs: Vec<String>,
    /// How often the repository is fetched when no webhook says so sooner.
    pub poll: Duration,
    /// The work folder: the mirror, the revision folders, and the outputs of projects whose
    /// `output` is a relative path.
    pub workdir: PathBuf,
    /// An HTTPS token for a private repository (`NBPIPE_GIT_TOKEN`), sent as HTTP Basic
    /// credentials with `user` (`NBPIPE_GIT_USERNAME`, default `x-access-token`, which
    /// GitHub takes; GitLab takes `oauth2`).
    pub token: Option<GitToken>,
}

/// HTTPS credentials for the repository: a user name and a token (never shown in `Debug`).
#[derive(Clone)]
pub struct GitToken {
    /// The user name sent with the token.
    pub user: String,
    /// The token.
    pub token: String,
}

impl std::fmt::Debug for GitToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GitToken {{ user: {:?}, token: *** }}", self.user)
    }
}

/// `.nbpipe/git/<hash of url>` under the current folder.
pub fn default_workdir(url: &str) -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    workdir_under(&cwd.join(".nbpipe").join("git"), url)
}

/// `base/<hash of url>`: a repository's own work folder under a folder shared by several.
pub fn workdir_under(base: &Path, url: &str) -> PathBuf {
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(url.as_bytes()));
    base.join(&hash[..16])
}

/// Why the repository could not be followed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// A git command failed.
    #[error("git {what}: {message}")]
    Git {
        /// What was being done.
        what: String,
        /// git's message.
        message: String,
    },
    /// A file operation in the work folder failed.
    #[error("{0}")]
    Io(String),
    /// The repository's project could not be served.
    #[error("{0}")]
    Refused(String),
}

/// One environment followed: its project key, environment and branch.
#[derive(Debug, Clone)]
struct Followed {
    env: Option<String>,
    branch: String,
    /// The key of the project this branch serves (`None` before its first revision): a
    /// later revision must keep it, and no other repository or folder may serve it.
    key: Option<String>,
    /// The commit being served (`None` before the first one).
    serving: Option<String>,
    /// The last commit refused, so it is not retried on every poll, and why.
    refused: Option<(String, String)>,
}

/// Follows one repository for a server.
pub struct GitOps {
    opts: GitOptions,
    mirror: PathBuf,
    followed: tokio::sync::Mutex<Vec<Followed>>,
    /// The followed branches (fixed at start; read without waiting for a deploy that holds
    /// `followed`).
    branches: Vec<String>,
    projects: Projects,
    list: ProjectList,
    queue: Queue,
    envs: EnvCache,
    executors: crate::executors::Executors,
    per_project: usize,
    wake: Arc<Notify>,
    on_switch: Box<dyn Fn(&Projects) + Send + Sync>,
}

impl GitOps {
    /// Fetches the repository, chooses the environments and serves each branch's current
    /// commit. Fails when the repository cannot be fetched or no environment can be served.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        opts: GitOptions,
        projects: Projects,
        list: ProjectList,
        queue: Queue,
        envs: EnvCache,
        executors: crate::executors::Executors,
        per_project: usize,
        on_switch: Box<dyn Fn(&Projects) + Send + Sync>,
    ) -> Result<Arc<GitOps>, GitError> {
        std::fs::create_dir_all(&opts.workdir)
            .map_err(|e| GitError::Io(format!("`{}`: {e}", opts.workdir.display())))?;
        // Revision folders are project folders: their paths must not depend on the cwd.
        let mut opts = opts;
        if let Ok(abs) = std::fs::canonicalize(&opts.workdir) {
            opts.workdir = abs;
        }
        let mirror = opts.workdir.join("mirror.git");
        if !mirror.join("HEAD").is_file() {
            git(None, &["init", "--bare", "--quiet"], Some(&mirror), "init").await?;
        }
        let mut ops = GitOps {
            opts,
            mirror,
            followed: tokio::sync::Mutex::new(Vec::new()),
            branches: Vec::new(),
            projects,
            list,
            queue,
            envs,
            executors,
            per_project,
            wake: Arc::new(Notify::new()),
            on_switch,
        };
        ops.fetch().await?;
        let default_branch = ops.default_branch().await?;
        let head = ops.tip(&default_branch).await?;
        let dir = ops.checkout(&head).await?;
        let top = nbpipe_project::config::load_env(&dir, Select::Top)
            .map_err(|e| GitError::Refused(format!("`{default_branch}` at {head}: {e}")))?;
        let mut followed = Vec::new();
        if ops.opts.envs.is_empty() && top.environments.is_empty() {
            followed.push(Followed {
                env: None,
                branch: default_branch.clone(),
                key: None,
                serving: None,
                refused: None,
            });
        } else {
            let names: Vec<String> = if ops.opts.envs.is_empty() {
                top.environments.iter().map(|e| e.name.clone()).collect()
            } else {
                ops.opts.envs.clone()
            };
            for name in names {
                let Some(e) = top.environments.iter().find(|e| e.name == name) else {
                    let known: Vec<&str> =
                        top.environments.iter().map(|e| e.name.as_str()).collect();
                    return Err(GitError::Refused(format!(
                        "`nbpipe.yaml` on `{default_branch}` declares no environment `{name}` \
                         (it declares: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    )));
                };
                followed.push(Followed {
                    env: Some(name.clone()),
                    branch: e.branch.clone(),
                    key: None,
                    serving: None,
                    refused: None,
                });
            }
        }
        ops.branches = followed.iter().map(|f| f.branch.clone()).collect();
        *ops.followed.lock().await = followed;
        ops.update().await;
        let followed = ops.followed.lock().await.clone();
        if let Some(f) = followed.iter().find(|f| f.serving.is_none()) {
            return Err(GitError::Refused(format!(
                "cannot serve {} from `{}`{}",
                f.env
                    .as_deref()
                    .map(|e| format!("environment `{e}`"))
                    .unwrap_or_else(|| format!("branch `{}`", f.branch)),
                ops.url(),
                match &f.refused {
                    Some((commit, why)) => format!(": {commit} is refused: {why}"),
                    None => String::new(),
                }
            )));
        }
        Ok(Arc::new(ops))
    }

    /// The repository followed, as shown to people: any user name or password in the URL
    /// replaced by `***`.
    pub fn url(&self) -> String {
        redact_url(&self.opts.url)
    }

    /// Whether this is the repository at one of `urls` (a push payload's clone, SSH and web
    /// addresses), compared without scheme, credentials, port, host case, a trailing `/`
    /// or `.git`, and with `git@host:path` read as `host/path`.
    pub fn is_repository(&self, urls: &[String]) -> bool {
        let own = repository_id(&self.opts.url);
        !own.is_empty() && urls.iter().any(|u| repository_id(u) == own)
    }

    /// Whether a followed environment's branch is `branch`.
    /// Answers at once, even while a new revision is being built.
    pub fn follows(&self, branch: &str) -> bool {
        self.branches.iter().any(|b| b == branch)
    }

    /// Wakes the follower now (a verified push webhook).
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Fetches and deploys every `poll` (or when woken) until `shutdown`.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.opts.poll) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            if let Err(e) = self.fetch().await {
                eprintln!("warning: git: {e}");
                continue;
            }
            self.update().await;
        }
    }

    async fn fetch(&self) -> Result<(), GitError> {
        git_auth(
            self.opts.token.as_ref(),
            Some(&self.mirror),
            &[
                "fetch",
                "--quiet",
                "--prune",
                "--no-tags",
                &self.opts.url,
                "+refs/heads/*:refs/heads/*",
            ],
            None,
            &format!("fetch `{}`", self.url()),
        )
        .await?;
        // HEAD names the remote's default branch (for choosing environments at start).
        if let Ok(out) = git_out_auth(
            self.opts.token.as_ref(),
            Some(&self.mirror),
            &["ls-remote", "--symref", &self.opts.url, "HEAD"],
            "ls-remote",
        )
        .await
        {
            if let Some(b) = out
                .lines()
                .find_map(|l| l.strip_prefix("ref: refs/heads/"))
                .and_then(|l| l.split_whitespace().next())
            {
                let _ = git(
                    Some(&self.mirror),
                    &["symbolic-ref", "HEAD", &format!("refs/heads/{b}")],
                    None,
                    "symbolic-ref",
                )
                .await;
            }
        }
        Ok(())
    }

    async fn default_branch(&self) -> Result<String, GitError> {
        let out = git_out(
            Some(&self.mirror),
            &["symbolic-ref", "--short", "HEAD"],
            "default branch",
        )
        .await?;
        Ok(out.trim().to_owned())
    }

    async fn tip(&self, branch: &str) -> Result<String, GitError> {
        let out = git_out(
            Some(&self.mirror),
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{branch}^{{commit}}"),
            ],
            &format!("branch `{branch}`"),
        )
        .await
        .map_err(|_| GitError::Git {
            what: format!("branch `{branch}`"),
            message: format!("`{}` has no branch `{branch}`", self.url()),
        })?;
        Ok(out.trim().to_owned())
    }

    /// The folder of `commit`'s files, made once (`git archive` into a temporary folder,
    /// then renamed into place).
    async fn checkout(&self, commit: &str) -> Result<PathBuf, GitError> {
        let revs = self.opts.workdir.join("revisions");
        let dir = revs.join(commit);
        if dir.join(".nbpipe-revision").is_file() {
            return Ok(dir);
        }
        let tmp = revs.join(format!(".{commit}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)
            .map_err(|e| GitError::Io(format!("`{}`: {e}", tmp.display())))?;
        let tar = tmp.with_extension("tar");
        git(
            Some(&self.mirror),
            &[
                "archive",
                "--format=tar",
                "-o",
                &tar.to_string_lossy(),
                commit,
            ],
            None,
            &format!("archive {commit}"),
        )
        .await?;
        let (tar2, tmp2) = (tar.clone(), tmp.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let file = std::fs::File::open(&tar2)?;
            tar::Archive::new(file).unpack(&tmp2)?;
            std::fs::remove_file(&tar2)?;
            std::fs::write(tmp2.join(".nbpipe-revision"), b"")
        })
        .await
        .map_err(|e| GitError::Io(e.to_string()))?
        .map_err(|e| GitError::Io(format!("unpacking {commit}: {e}")))?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir)
            .map_err(|e| GitError::Io(format!("`{}`: {e}", dir.display())))?;
        Ok(dir)
    }

    /// Serves every followed branch's tip, when it changed and can be served.
    async fn update(&self) {
        let mut followed = self.followed.lock().await;
        for f in followed.iter_mut() {
            let commit = match self.tip(&f.branch).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("warning: git: {e}");
                    continue;
                }
            };
            if f.serving.as_deref() == Some(&commit)
                || f.refused.as_ref().is_some_and(|(c, _)| *c == commit)
            {
                continue;
            }
            let key_of = |p: &str| match &f.env {
                Some(e) => format!("{p}@{e}"),
                None => p.to_owned(),
            };
            match self.prepare(f, &commit).await {
                Ok(project) => {
                    let key = project.key();
                    let git = GitInfo {
                        commit: commit.clone(),
                        branch: f.branch.clone(),
                        dirty: false,
                    };
                    self.projects.replace(Served {
                        project: project.clone(),
                        git: Some(git),
                    });
                    let mut info = ProjectInfo::from_project(&project, self.per_project);
                    info.source = Some(crate::api::ProjectSource {
                        repository: self.url(),
                        branch: f.branch.clone(),
                        commit: commit.clone(),
                    });
                    self.list.replace(info);
                    if let Err(e) = self
                        .queue
                        .set_project_policy(&key, &crate::policy::stored_policy(&project))
                        .await
                    {
                        eprintln!("warning: git: run policy of `{key}`: {e}");
                    }
                    (self.on_switch)(&self.projects);
                    self.record(&key, f, &commit, None).await;
                    eprintln!("Serving `{key}` at {commit} (`{}`)", f.branch);
                    f.key = Some(key);
                    f.serving = Some(commit);
                    f.refused = None;
                }
                Err(e) => {
                    // The key the branch serves, else the name in the refused commit's
                    // `nbpipe.yaml`, else the repository's.
                    let key = match &f.key {
                        Some(k) => k.clone(),
                        None => key_of(&self.refused_name(&commit).await),
                    };
                    let message = e.to_string();
                    eprintln!("warning: git: refused {commit} of `{key}`: {message}");
                    self.record(&key, f, &commit, Some(&message)).await;
                    f.refused = Some((commit, message));
                }
            }
        }
    }

    /// Records `commit` of `key` as serving, or refused with `error`.
    async fn record(&self, key: &str, f: &Followed, commit: &str, error: Option<&str>) {
        let status = if error.is_some() {
            "refused"
        } else {
            "serving"
        };
        if let Err(e) = self
            .queue
            .record_revision(key, f.env.as_deref(), commit, &f.branch, status, error)
            .await
        {
            eprintln!("warning: git: could not record {commit} of `{key}`: {e}");
        }
    }

    /// The project name a refused `commit` declares, when its `nbpipe.yaml` says one, else
    /// the repository's name (the last part of its URL).
    async fn refused_name(&self, commit: &str) -> String {
        let declared = match self.checkout(commit).await {
            Ok(dir) => nbpipe_project::config::declared_name(&dir),
            Err(_) => None,
        };
        declared.unwrap_or_else(|| {
            let id = repository_id(&self.opts.url);
            id.rsplit('/')
                .find(|s| !s.is_empty())
                .unwrap_or("project")
                .to_owned()
        })
    }

    /// Checks `commit` out, validates it and builds its environment.
    async fn prepare(&self, f: &Followed, commit: &str) -> Result<Project, GitError> {
        let dir = self.checkout(commit).await?;
        let select = match &f.env {
            Some(e) => Select::Named(e),
            None => Select::Top,
        };
        let mut project = nbpipe_project::config::load_env(&dir, select)
            .map_err(|e| GitError::Refused(e.to_string()))?;
        let key = project.key();
        match &f.key {
            Some(served) if *served != key => {
                return Err(GitError::Refused(format!(
                    "the project is `{key}` now, `{served}` before: a server keeps a \
                     project's name (restart it to rename)"
                )));
            }
            Some(_) => {}
            // Another repository, environment or project folder serves this key already.
            None if self.projects.contains(&key) => {
                return Err(GitError::Refused(format!(
                    "`{key}` is served already (by a project folder or another repository \
                     or branch this server follows): rename one of them"
                )));
            }
            None => {}
        }
        // Relative outputs go to a folder that outlives the revision's.
        let stable = self.opts.workdir.join("outputs").join(project.key());
        let prefix = dir.to_string_lossy().into_owned();
        if let Some(rest) = project.output.strip_prefix(&prefix) {
            project.output = format!("{}{rest}", stable.display());
        }
        let executor = self
            .executors
            .for_project(&project)
            .map_err(GitError::Refused)?;
        if executor.kind() == "local" {
            self.envs
                .ensure(&project)
                .await
                .map_err(|e| GitError::Refused(format!("kernel environment: {e}")))?;
        } else {
            executor
                .prepare(&project)
                .await
                .map_err(|e| GitError::Refused(format!("{} image: {e}", executor.kind())))?;
        }
        Ok(project)
    }
}

/// `url` with any `user:password@` replaced by `***@`.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{path}"),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// What identifies a repository in its URLs: `host/path`, lower-case host, without scheme,
/// credentials, port, trailing `/` or `.git`; `git@host:path` (scp-like) as `host/path`; a
/// local path as itself without the trailing `/` or `.git`.
fn repository_id(url: &str) -> String {
    let url = url.trim();
    let (host, path) = if let Some((_, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = host.split(':').next().unwrap_or(host);
        (host.to_ascii_lowercase(), path.to_owned())
    } else if let Some((left, path)) = url
        .split_once(':')
        .filter(|(l, _)| !l.contains('/') && !l.is_empty())
    {
        let host = left.rsplit_once('@').map_or(left, |(_, h)| h);
        (host.to_ascii_lowercase(), format!("/{path}"))
    } else {
        (String::new(), url.to_owned())
    };
    let path = path.trim_end_matches('/');
    let path = path
        .strip_suffix(".git")
        .unwrap_or(path)
        .trim_end_matches('/');
    if host.is_empty() {
        path.to_owned()
    } else {
        format!("{host}/{}", path.trim_start_matches('/'))
    }
}

async fn git(
    repo: Option<&Path>,
    args: &[&str],
    target: Option<&Path>,
    what: &str,
) -> Result<(), GitError> {
    git_auth(None, repo, args, target, what).await
}

async fn git_auth(
    token: Option<&GitToken>,
    repo: Option<&Path>,
    args: &[&str],
    target: Option<&Path>,
    what: &str,
) -> Result<(), GitError> {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if let Some(t) = target {
        all.push(t.to_string_lossy().into_owned());
    }
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    git_out_auth(token, repo, &refs, what).await.map(|_| ())
}

async fn git_out(repo: Option<&Path>, args: &[&str], what: &str) -> Result<String, GitError> {
    git_out_auth(None, repo, args, what).await
}

/// Runs git; with `token`, HTTP requests carry `Authorization: Basic user:token`, set through
/// `GIT_CONFIG_*` variables (appended to any the environment has) so that it appears in no
/// command line.
async fn git_out_auth(
    token: Option<&GitToken>,
    repo: Option<&Path>,
    args: &[&str],
    what: &str,
) -> Result<String, GitError> {
    let mut cmd = tokio::process::Command::new("git");
    if let Some(r) = repo {
        cmd.arg("--git-dir").arg(r);
    }
    if let Some(GitToken { user, token }) = token {
        use base64::Engine;
        let n: usize = std::env::var("GIT_CONFIG_COUNT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
        cmd.env("GIT_CONFIG_COUNT", (n + 1).to_string())
            .env(format!("GIT_CONFIG_KEY_{n}"), "http.extraHeader")
            .env(
                format!("GIT_CONFIG_VALUE_{n}"),
                format!("Authorization: Basic {basic}"),
            );
    }
    // Never wait for a password on a terminal: credentials come from helpers, SSH agents
    // or `GIT_ASKPASS`.
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .map_err(|_| GitError::Git {
            what: what.into(),
            message: "no answer in 5 minutes".into(),
        })?
        .map_err(|e| GitError::Git {
            what: what.into(),
            message: format!("cannot run `git`: {e}"),
        })?;
    if !out.status.success() {
        return Err(GitError::Git {
            what: what.into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_is_known_by_any_of_its_urls() {
        let ids: Vec<String> = [
            "https://github.com/Acme/sales.git",
            "https://user:tok@GitHub.com/Acme/sales",
            "git@github.com:Acme/sales.git",
            "ssh://git@github.com:22/Acme/sales.git/",
            "git://github.com/Acme/sales",
        ]
        .iter()
        .map(|u| repository_id(u))
        .collect();
        assert!(ids.iter().all(|i| i == "github.com/Acme/sales"), "{ids:?}");
        // The path's case matters (it does on most servers); other repositories differ.
        assert_ne!(repository_id("https://github.com/acme/sales"), ids[0]);
        assert_ne!(repository_id("https://github.com/Acme/sales-2"), ids[0]);
        assert_ne!(repository_id("https://gitlab.com/Acme/sales"), ids[0]);
        assert_eq!(repository_id("/srv/git/sales.git/"), "/srv/git/sales");
        assert_ne!(repository_id("/srv/git/sales"), ids[0]);
    }

    #[test]
    fn credentials_in_a_url_are_never_shown() {
        assert_eq!(
            redact_url("https://me:s3cret@example.org/a/b.git"),
            "https://***@example.org/a/b.git"
        );
        assert_eq!(
            redact_url("https://example.org/a@b"),
            "https://example.org/a@b"
        );
        assert_eq!(redact_url("git@host:a/b"), "git@host:a/b");
    }
}
