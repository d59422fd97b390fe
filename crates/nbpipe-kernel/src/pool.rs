//! A warm pool of pre-started kernels, so a triggered run does not wait for a cold start.
//!
//! Kernels are kept per (kernelspec command, working directory): a kernel's interpreter,
//! environment and cwd are fixed when it starts, so only an identical launch may be served
//! from the pool. Each pooled kernel serves exactly one run and is then shut down like any
//! other — no state leaks from one run into the next. Taking a kernel starts a replacement
//! in the background; a pooled kernel that died while idle is discarded, never handed out.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::client::{Kernel, KernelError, LaunchOptions};
use crate::spec::KernelSpec;

/// Identity of a launch: the same key means an interchangeable kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
}

impl Key {
    fn of(spec: &KernelSpec, opts: &LaunchOptions) -> Key {
        let mut env: Vec<(String, String)> = spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(opts.env.iter().cloned())
            .collect();
        env.sort();
        Key {
            argv: spec.argv.clone(),
            env,
            cwd: opts.cwd.clone(),
        }
    }
}

#[derive(Default)]
struct Slot {
    ready: Vec<Kernel>,
    starting: usize,
}

/// Pre-started kernels, `size` per launch identity that has been warmed or used.
#[derive(Clone)]
pub struct KernelPool {
    size: usize,
    slots: Arc<Mutex<HashMap<Key, Slot>>>,
}

/// Environment variable set in pooled kernels (`1`), so a run can tell it got one.
pub const POOLED_ENV: &str = "NBPIPE_POOLED_KERNEL";

impl KernelPool {
    /// A pool keeping `size` ready kernels per launch identity (0 disables it).
    pub fn new(size: usize) -> KernelPool {
        KernelPool {
            size,
            slots: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Start kernels for this launch in the background until `size` are ready.
    pub fn warm(&self, spec: &KernelSpec, opts: &LaunchOptions) {
        let key = Key::of(spec, opts);
        let missing = {
            let Ok(mut slots) = self.slots.lock() else {
                return;
            };
            let slot = slots.entry(key.clone()).or_default();
            slot.ready.retain(|k| k.exited().is_none());
            let missing = self.size.saturating_sub(slot.ready.len() + slot.starting);
            slot.starting += missing;
            missing
        };
        for _ in 0..missing {
            let pool = self.clone();
            let (spec, key) = (spec.clone(), key.clone());
            let mut opts = opts.clone();
            opts.env.push((POOLED_ENV.to_string(), "1".to_string()));
            // Pooled kernels must not print into someone's terminal while idle.
            opts.echo_stderr = false;
            tokio::spawn(async move {
                let launched = Kernel::launch(&spec, &opts).await;
                if let Ok(mut slots) = pool.slots.lock() {
                    let slot = slots.entry(key).or_default();
                    slot.starting = slot.starting.saturating_sub(1);
                    if let Ok(k) = launched {
                        slot.ready.push(k);
                    }
                }
            });
        }
    }

    /// A ready kernel for this launch if one is warm (a replacement starts in the background),
    /// else `None`.
    pub fn take(&self, spec: &KernelSpec, opts: &LaunchOptions) -> Option<Kernel> {
        if self.size == 0 {
            return None;
        }
        let key = Key::of(spec, opts);
        let kernel = {
            let mut slots = self.slots.lock().ok()?;
            let slot = slots.entry(key).or_default();
            let mut found = None;
            while let Some(k) = slot.ready.pop() {
                if k.exited().is_none() {
                    found = Some(k);
                    break;
                }
                // Died while idle: dropped here (its group is killed on drop).
            }
            found
        };
        self.warm(spec, opts);
        kernel
    }

    /// A warm kernel if there is one, else a cold start (which also warms the pool for the
    /// next run of the same launch).
    pub async fn take_or_launch(
        &self,
        spec: &KernelSpec,
        opts: &LaunchOptions,
    ) -> Result<Kernel, KernelError> {
        match self.take(spec, opts) {
            Some(k) => Ok(k),
            None => Kernel::launch(spec, opts).await,
        }
    }

    /// Kernels ready now, over all launch identities.
    pub fn ready(&self) -> usize {
        self.slots
            .lock()
            .map(|s| s.values().map(|slot| slot.ready.len()).sum())
            .unwrap_or(0)
    }

    /// Shut every pooled kernel down.
    pub async fn shutdown(&self) {
        let kernels: Vec<Kernel> = match self.slots.lock() {
            Ok(mut slots) => slots.values_mut().flat_map(|s| s.ready.drain(..)).collect(),
            Err(_) => Vec::new(),
        };
        for k in kernels {
            k.shutdown().await;
        }
    }
}
