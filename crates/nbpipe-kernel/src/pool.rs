//! A warm pool of pre-started kernels, so a triggered run does not wait for a cold start.
//!
//! Kernels are kept per (kernelspec command, working directory): a kernel's interpreter,
//! environment and cwd are fixed when it starts, so only an identical launch may be served
//! from the pool. Each pooled kernel serves exactly one run and is then shut down like any
//! other — no state leaks from one run into the next. Taking a kernel starts a replacement
//! in the background (unless the pool is [`KernelPool::on_demand`], whose owner says what
//! to start); a pooled kernel that died while idle is discarded, never handed out, and a
//! refilling pool notices the death at once and starts a replacement.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Callers of [`KernelPool::take_or_launch`] waiting for a starting kernel.
    waiting: usize,
}

/// The first ready kernel that is still alive (dead ones are dropped: killed).
fn pop_alive(slot: &mut Slot) -> Option<Kernel> {
    while let Some(k) = slot.ready.pop() {
        if k.exited().is_none() {
            return Some(k);
        }
    }
    None
}

/// A registered wait for a starting kernel; unregisters when dropped (also on cancellation).
struct Waiter<'a> {
    pool: &'a KernelPool,
    key: &'a Key,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if let Ok(mut slots) = self.pool.slots.lock() {
            if let Some(slot) = slots.get_mut(self.key) {
                slot.waiting = slot.waiting.saturating_sub(1);
            }
        }
    }
}

/// Pre-started kernels, `size` per launch identity that has been warmed or used.
#[derive(Clone)]
pub struct KernelPool {
    size: usize,
    refill: bool,
    slots: Arc<Mutex<HashMap<Key, Slot>>>,
    /// Set by [`KernelPool::discard`]: kernels that finish starting afterwards are killed.
    closed: Arc<AtomicBool>,
}

/// Kernels shutting down in the background. A finished run hands its kernel over instead of
/// waiting the ~0.3 s ipykernel takes to exit, and whoever owns the set waits for all of them
/// before it ends (kernels are still shut down gracefully: their `atexit` handlers run).
#[derive(Clone, Default)]
pub struct Shutdowns {
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Shutdowns {
    /// Shut `kernel` down in the background.
    pub fn retire(&self, kernel: Kernel) {
        let task = tokio::spawn(kernel.shutdown());
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
        }
    }

    /// Wait until every retired kernel is gone.
    pub async fn wait(&self) {
        loop {
            let tasks: Vec<_> = match self.tasks.lock() {
                Ok(mut t) => t.drain(..).collect(),
                Err(_) => return,
            };
            if tasks.is_empty() {
                return;
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    }
}

/// Environment variable set in pooled kernels (`1`), so a run can tell it got one.
pub const POOLED_ENV: &str = "NBPIPE_POOLED_KERNEL";

impl KernelPool {
    /// A pool keeping `size` ready kernels per launch identity (0 disables it).
    pub fn new(size: usize) -> KernelPool {
        KernelPool {
            size,
            refill: true,
            slots: Arc::new(Mutex::new(HashMap::new())),
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A pool that starts kernels only when [`KernelPool::warm`] is called, never as a
    /// replacement for one taken: for a pipeline that knows which kernel its next step needs
    /// and must not start one nobody will use.
    pub fn on_demand(size: usize) -> KernelPool {
        KernelPool {
            refill: false,
            ..KernelPool::new(size)
        }
    }

    /// Start kernels for this launch in the background until `size` are ready.
    pub fn warm(&self, spec: &KernelSpec, opts: &LaunchOptions) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
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
            let asked = opts.clone();
            let mut opts = opts.clone();
            opts.env.push((POOLED_ENV.to_string(), "1".to_string()));
            // Pooled kernels must not print into someone's terminal while idle.
            opts.echo_stderr = false;
            tokio::spawn(async move {
                let launched = Kernel::launch(&spec, &opts).await;
                if pool.closed.load(Ordering::SeqCst) {
                    return; // discarded meanwhile: the kernel is dropped (killed) here
                }
                let exit = launched.as_ref().ok().map(Kernel::exit_watch);
                if let Ok(mut slots) = pool.slots.lock() {
                    let slot = slots.entry(key).or_default();
                    slot.starting = slot.starting.saturating_sub(1);
                    if let Ok(k) = launched {
                        slot.ready.push(k);
                    }
                }
                if let (Some(mut exit), true) = (exit, pool.refill) {
                    // Once it exits — dead while idle, or after the run that took it — top
                    // the pool up again (a no-op when it is full).
                    let _ = exit.wait_for(Option::is_some).await;
                    if !pool.closed.load(Ordering::SeqCst) {
                        pool.warm(&spec, &asked);
                    }
                }
            });
        }
    }

    /// A warm kernel if there is one; else, if one for this launch is already starting and no
    /// other caller is waiting for it, that one when it is ready (it is part-way there, so
    /// never slower than starting afresh); else a cold start. A refilling pool also warms a
    /// replacement.
    pub async fn take_or_launch(
        &self,
        spec: &KernelSpec,
        opts: &LaunchOptions,
    ) -> Result<Kernel, KernelError> {
        if self.size == 0 {
            return Kernel::launch(spec, opts).await;
        }
        let key = Key::of(spec, opts);
        let mut waiter: Option<Waiter<'_>> = None;
        let found = loop {
            let wait = {
                let Ok(mut slots) = self.slots.lock() else {
                    break None;
                };
                let slot = slots.entry(key.clone()).or_default();
                if let Some(k) = pop_alive(slot) {
                    break Some(k);
                }
                if waiter.is_none() && slot.starting > slot.waiting {
                    slot.waiting += 1;
                    waiter = Some(Waiter {
                        pool: self,
                        key: &key,
                    });
                }
                slot.starting > 0 && waiter.is_some()
            };
            if !wait {
                break None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        drop(waiter);
        if self.refill {
            self.warm(spec, opts);
        }
        match found {
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

    /// Kill every pooled kernel at once (they never ran anything, so there is nothing to
    /// shut down gracefully) and forget kernels still starting.
    pub fn discard(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Ok(mut slots) = self.slots.lock() {
            slots.clear(); // drops (kills) the ready kernels
        }
    }

    /// Shut every pooled kernel down; the pool starts no kernel afterwards.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let kernels: Vec<Kernel> = match self.slots.lock() {
            Ok(mut slots) => slots.values_mut().flat_map(|s| s.ready.drain(..)).collect(),
            Err(_) => Vec::new(),
        };
        for k in kernels {
            k.shutdown().await;
        }
    }
}
