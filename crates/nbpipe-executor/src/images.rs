//! The project's image, for executors whose attempts run it elsewhere (a container, a task):
//! built from the project's current files with `nbpipe-image` (cached per layer, so an
//! unchanged project costs a fraction of a second), one build at a time per project folder.
//! What happens to it next — loaded into an engine, pushed to a registry — is the
//! executor's.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use nbpipe_image::{BuiltImage, Store};
use nbpipe_project::Project;

use crate::ExecutorError;

/// Builds projects' images, one at a time per project.
#[derive(Clone, Default)]
pub(crate) struct ImageBuilds {
    /// The nbpipe binary put in the images (default: the running one).
    binary: Option<PathBuf>,
    locks: Arc<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>>,
}

/// A built image, with the store holding it and the project's build lock: the caller
/// finishes with it (load, push) before another build of the project starts.
pub(crate) struct Built {
    pub image: BuiltImage,
    pub store: Store,
    _lock: tokio::sync::OwnedMutexGuard<()>,
}

impl Built {
    /// `repository@digest` of the image.
    pub fn pinned(&self, digest: &str) -> String {
        let first = &self.image.references[0];
        let repo = first.rsplit_once(':').map_or(first.as_str(), |(r, _)| r);
        format!("{repo}@{digest}")
    }
}

impl ImageBuilds {
    pub fn new(binary: Option<PathBuf>) -> ImageBuilds {
        ImageBuilds {
            binary,
            locks: Arc::default(),
        }
    }

    /// Build `project`'s image from its current files.
    pub async fn build(&self, project: &Project) -> Result<Built, ExecutorError> {
        let lock = {
            let mut b = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            b.entry(project.dir.clone()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        let store = Store::default_location().map_err(|e| ExecutorError::Image(e.to_string()))?;
        let opts = nbpipe_image::BuildOptions {
            dir: project.dir.clone(),
            binary: self.binary.clone(),
            quiet: true,
            ..Default::default()
        };
        let image = nbpipe_image::build(&opts, &store)
            .await
            .map_err(|e| ExecutorError::Image(e.to_string()))?;
        Ok(Built {
            image,
            store,
            _lock: guard,
        })
    }
}
