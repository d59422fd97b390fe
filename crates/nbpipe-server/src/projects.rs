//! The projects a server runs, by key (`name`, or `name@environment` for an environment's
//! settings), each at its current revision.
//!
//! Owns the swap of a project for a newer revision (git-ops): [`Projects::replace`] is
//! atomic, and a run takes a copy of its project when it starts and keeps it to its end, so
//! runs in flight finish on their revision while new runs use the new one. Must not load,
//! validate or build anything: callers hand it projects ready to run.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use nbpipe_project::run::manifest::GitInfo;
use nbpipe_project::Project;

/// A project as served: its settings and, when the server checked it out itself, the
/// commit its files are at.
#[derive(Debug, Clone)]
pub struct Served {
    /// The project.
    pub project: Project,
    /// The commit and branch of its files, when known without asking `git` in its folder
    /// (a revision folder has no `.git`).
    pub git: Option<GitInfo>,
}

/// The served projects (cheap to clone; clones share the set).
#[derive(Debug, Clone, Default)]
pub struct Projects(Arc<RwLock<BTreeMap<String, Arc<Served>>>>);

impl Projects {
    /// A set of these projects, keyed by [`Project::key`].
    pub fn new(projects: impl IntoIterator<Item = Project>) -> Projects {
        let set = Projects::default();
        for p in projects {
            set.replace(Served {
                project: p,
                git: None,
            });
        }
        set
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Served>>> {
        // A writer cannot panic while holding the lock (it only inserts), so a poisoned
        // lock still holds a consistent map.
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The project with this key, as it is now.
    pub fn get(&self, key: &str) -> Option<Project> {
        self.read().get(key).map(|s| s.project.clone())
    }

    /// The project with this key and the commit it is at.
    pub fn served(&self, key: &str) -> Option<Arc<Served>> {
        self.read().get(key).cloned()
    }

    /// Every project as it is now, by key.
    pub fn values(&self) -> Vec<Project> {
        self.read().values().map(|s| s.project.clone()).collect()
    }

    /// Whether a project has this key.
    pub fn contains(&self, key: &str) -> bool {
        self.read().contains_key(key)
    }

    /// How many projects are served.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no project is served.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Serves `served` under its project's key from now on, in place of the previous
    /// revision (runs that already took a copy keep theirs).
    pub fn replace(&self, served: Served) {
        let key = served.project.key();
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, Arc::new(served));
    }
}
