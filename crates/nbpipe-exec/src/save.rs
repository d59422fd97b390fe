//! When to write the output notebook during a run.
//!
//! papermill rewrites the whole notebook at every cell start and end, so a notebook of n
//! cells costs O(n²) in saving alone (416 s for 1,000 trivial cells). The policy here keeps
//! saving to a bounded share of run time instead: a save at a cell boundary happens only when
//! the time since the previous save is at least [`Saver::RATIO`] times what that save cost.
//! Saving therefore costs at most ~1/RATIO of the run, whatever its size, while a notebook
//! whose cells take longer than a save is still saved after every cell. During a long cell,
//! output is saved every `autosave_every` (papermill's `--autosave-cell-every`), backing off
//! when a save gets slow. The start and the end of a run are always saved.
//!
//! Every write streams the notebook to its location in small chunks, reading large outputs
//! back from the run's [`Spill`]: a save never holds the serialized notebook in memory.
//!
//! When the final write to an object store fails (after the store's own retries), the
//! notebook is written to a local file instead and the error names it: a run's record is
//! never lost because the store is down.

use std::time::{Duration, Instant};

use nbpipe_notebook::{Notebook, Spill};
use nbpipe_store::{Location, StoreError};

/// Saving state for one output location.
pub struct Saver {
    location: Option<Location>,
    incremental: bool,
    autosave_every: Duration,
    last_save: Instant,
    last_cost: Duration,
    dirty: bool,
    /// Number of writes done so far.
    pub saves: usize,
}

impl Saver {
    /// Minimum ratio of time between boundary saves to the cost of the last save.
    pub const RATIO: u32 = 20;

    /// A saver for `location`; `save_on_cell` enables saves at cell boundaries.
    pub fn new(location: Option<Location>, save_on_cell: bool, autosave_every: Duration) -> Saver {
        let incremental = location
            .as_ref()
            .is_some_and(Location::supports_incremental_writes);
        Saver {
            location,
            incremental: incremental && save_on_cell,
            autosave_every: if incremental {
                autosave_every
            } else {
                Duration::ZERO
            },
            last_save: Instant::now(),
            last_cost: Duration::ZERO,
            dirty: false,
            saves: 0,
        }
    }

    /// Note that the notebook changed since the last save.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Write now, unconditionally (start of run); stdout is only written at the end.
    pub async fn save(&mut self, nb: &Notebook, spill: Option<&Spill>) -> Result<(), StoreError> {
        let Some(loc) = &self.location else {
            return Ok(());
        };
        if !loc.supports_incremental_writes() {
            return Ok(());
        }
        self.write(nb, spill).await
    }

    /// The final write; for stdout this is the only one. If it fails, the notebook is
    /// written to a local fallback file, whose path the error carries.
    pub async fn save_final(
        &mut self,
        nb: &Notebook,
        spill: Option<&Spill>,
    ) -> Result<(), SaveError> {
        let Some(loc) = self.location.clone() else {
            return Ok(());
        };
        match self.write(nb, spill).await {
            Ok(()) => Ok(()),
            Err(source) => {
                let fallback = fallback_path(&loc);
                let kept = std::fs::create_dir_all(fallback.parent().unwrap_or(&fallback))
                    .and_then(|_| {
                        let mut file = std::io::BufWriter::new(std::fs::File::create(&fallback)?);
                        nbpipe_notebook::write_to(nb, spill, &mut file)
                    });
                Err(SaveError {
                    source,
                    fallback: kept.ok().map(|_| fallback),
                })
            }
        }
    }

    async fn write(&mut self, nb: &Notebook, spill: Option<&Spill>) -> Result<(), StoreError> {
        let Some(loc) = &self.location else {
            return Ok(());
        };
        let started = Instant::now();
        loc.put_streamed(|w| nbpipe_notebook::write_to(nb, spill, w))
            .await?;
        self.last_cost = started.elapsed();
        self.last_save = Instant::now();
        self.dirty = false;
        self.saves += 1;
        Ok(())
    }

    /// At a cell boundary: save if the policy allows.
    pub async fn at_cell_boundary(
        &mut self,
        nb: &Notebook,
        spill: Option<&Spill>,
    ) -> Result<(), StoreError> {
        if self.incremental
            && self.dirty
            && self.last_save.elapsed() >= self.last_cost * Self::RATIO
        {
            self.write(nb, spill).await?;
        }
        Ok(())
    }

    /// During a cell: save if output arrived and the autosave interval has passed.
    pub async fn during_cell(
        &mut self,
        nb: &Notebook,
        spill: Option<&Spill>,
    ) -> Result<(), StoreError> {
        if self.autosave_every.is_zero() || !self.dirty {
            return Ok(());
        }
        if self.last_save.elapsed() >= self.autosave_every {
            self.write(nb, spill).await?;
            // papermill's rule: a save taking over 25% of the interval doubles the interval.
            if self.last_cost * 4 > self.autosave_every {
                self.autosave_every *= 2;
            }
        }
        Ok(())
    }

    /// When the next autosave could be due, for timers.
    pub fn next_autosave(&self) -> Option<Instant> {
        (!self.autosave_every.is_zero() && self.dirty).then(|| self.last_save + self.autosave_every)
    }
}

/// The final write failed.
#[derive(Debug, thiserror::Error)]
#[error("{source}{}", match .fallback {
    Some(p) => format!("; the notebook was kept locally at `{}`", p.display()),
    None => "; a local copy could not be written either".to_string(),
})]
pub struct SaveError {
    /// Why the write failed.
    pub source: StoreError,
    /// Where the notebook was kept instead.
    pub fallback: Option<std::path::PathBuf>,
}

/// `$NBPIPE_HOME/unsaved/<time>-<name>` (default `~/.cache/nbpipe`), or the temp dir.
fn fallback_path(loc: &Location) -> std::path::PathBuf {
    let home = std::env::var_os("NBPIPE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/nbpipe"))
        })
        .unwrap_or_else(std::env::temp_dir);
    let name = loc.file_name().unwrap_or_else(|| "notebook.ipynb".into());
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    home.join("unsaved").join(format!("{stamp}-{name}"))
}
