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

use std::time::{Duration, Instant};

use nbpipe_notebook::Notebook;
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

    /// Write now, unconditionally (start of run, end of run, failures).
    pub fn save(&mut self, nb: &Notebook) -> Result<(), StoreError> {
        let Some(loc) = &self.location else {
            return Ok(());
        };
        if !loc.supports_incremental_writes() {
            return Ok(());
        }
        self.write(nb)
    }

    /// The final write; for stdout this is the only one.
    pub fn save_final(&mut self, nb: &Notebook) -> Result<(), StoreError> {
        if self.location.is_none() {
            return Ok(());
        }
        self.write(nb)
    }

    fn write(&mut self, nb: &Notebook) -> Result<(), StoreError> {
        let Some(loc) = &self.location else {
            return Ok(());
        };
        let started = Instant::now();
        let bytes = nbpipe_notebook::to_bytes(nb);
        loc.write(&bytes)?;
        self.last_cost = started.elapsed();
        self.last_save = Instant::now();
        self.dirty = false;
        self.saves += 1;
        Ok(())
    }

    /// At a cell boundary: save if the policy allows.
    pub fn at_cell_boundary(&mut self, nb: &Notebook) -> Result<(), StoreError> {
        if self.incremental
            && self.dirty
            && self.last_save.elapsed() >= self.last_cost * Self::RATIO
        {
            self.write(nb)?;
        }
        Ok(())
    }

    /// During a cell: save if output arrived and the autosave interval has passed.
    pub fn during_cell(&mut self, nb: &Notebook) -> Result<(), StoreError> {
        if self.autosave_every.is_zero() || !self.dirty {
            return Ok(());
        }
        if self.last_save.elapsed() >= self.autosave_every {
            self.write(nb)?;
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
