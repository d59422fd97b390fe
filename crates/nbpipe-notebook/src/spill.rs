//! Large output strings kept in a temporary file instead of memory.
//!
//! A run's outputs (plots, big logs) would otherwise all live in the runner's memory, and a
//! notebook with 20 MB of images would need 20 MB of RAM plus its serialized copy at every
//! save. [`Spill::stash`] moves every string of at least `threshold` bytes out of a value into
//! an anonymous temporary file (removed by the OS when the spill is dropped, even on a crash)
//! and leaves a short marker string in its place. [`crate::write_to`] streams marked strings
//! back from the file, so a notebook written
//! with its spill is byte-identical to one written from memory; [`Spill::restore`] puts the
//! strings back into a value for code that needs them.
//!
//! Markers start with a NUL and carry a random nonce of this spill, so no string a kernel
//! sends can pass for one. A marker means nothing without its spill: a notebook holding
//! markers must be written with it (or restored first).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use serde_json::Value;

use crate::Notebook;

/// The file size below which compaction is never considered.
const COMPACT_FLOOR: u64 = 64 * 1024 * 1024;

/// A temporary file holding large strings of a notebook's outputs.
pub struct Spill {
    file: File,
    /// `"\0nbpipe-spill:<nonce>:"`; a marker is this plus the entry index.
    prefix: String,
    entries: Vec<Entry>,
    /// Bytes written to the file so far (the next entry's offset).
    end: u64,
    threshold: usize,
    /// File size at which [`Spill::compact`] looks for garbage next.
    next_compact_check: u64,
    /// Below this file size compaction is never considered.
    compact_floor: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    offset: u64,
    len: u64,
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spill")
            .field("entries", &self.entries.len())
            .field("bytes", &self.end)
            .field("threshold", &self.threshold)
            .finish()
    }
}

impl Spill {
    /// A spill for strings of at least `threshold` bytes, in a new anonymous temp file
    /// (in `$TMPDIR`).
    pub fn new(threshold: usize) -> io::Result<Spill> {
        Ok(Spill {
            file: tempfile::tempfile()?,
            prefix: format!("\0nbpipe-spill:{}:", uuid::Uuid::new_v4().simple()),
            entries: Vec::new(),
            end: 0,
            threshold: threshold.max(1),
            next_compact_check: COMPACT_FLOOR,
            compact_floor: COMPACT_FLOOR,
        })
    }

    /// Consider [`Spill::compact`] only once the file has at least `bytes` (default 64 MiB).
    pub fn compact_from(&mut self, bytes: u64) {
        self.compact_floor = bytes;
        self.next_compact_check = bytes;
    }

    /// Strings at least this long are moved to the file.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Bytes in the temporary file (live strings and garbage not yet compacted).
    pub fn file_bytes(&self) -> u64 {
        self.end
    }

    /// Whether `s` is a marker of this spill.
    pub fn is_marker(&self, s: &str) -> bool {
        self.entry_index(s).is_some()
    }

    fn entry_index(&self, s: &str) -> Option<usize> {
        if s.as_bytes().first() != Some(&0) {
            return None;
        }
        let idx: usize = s.strip_prefix(self.prefix.as_str())?.parse().ok()?;
        (idx < self.entries.len()).then_some(idx)
    }

    fn marker(&self, idx: usize) -> String {
        format!("{}{idx}", self.prefix)
    }

    fn push_entry(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(bytes, self.end)?;
        self.entries.push(Entry {
            offset: self.end,
            len: bytes.len() as u64,
        });
        self.end += bytes.len() as u64;
        Ok(self.entries.len() - 1)
    }

    /// Move every string of at least [`Spill::threshold`] bytes in an output (at any depth)
    /// to the file, leaving markers. The strings that say what the output is
    /// (`output_type`, a stream's `name`) stay, as do markers already there.
    pub fn stash_output(&mut self, output: &mut Value) -> io::Result<()> {
        match output {
            Value::Object(map) => map
                .iter_mut()
                .filter(|(k, _)| !matches!(k.as_str(), "output_type" | "name"))
                .try_for_each(|(_, v)| self.stash(v)),
            other => self.stash(other),
        }
    }

    fn stash(&mut self, value: &mut Value) -> io::Result<()> {
        match value {
            Value::String(s) if s.len() >= self.threshold && !self.is_marker(s) => {
                let idx = self.push_entry(s.as_bytes())?;
                *s = self.marker(idx);
                Ok(())
            }
            Value::Array(items) => items.iter_mut().try_for_each(|v| self.stash(v)),
            Value::Object(map) => map.values_mut().try_for_each(|v| self.stash(v)),
            _ => Ok(()),
        }
    }

    /// Append `more` to the string `value` (a marker or plain text), spilling the result once
    /// it reaches the threshold. Used for stream outputs that grow message by message; the
    /// marker's entry is changed in place, so it must not be shared with another value.
    pub fn append(&mut self, value: &mut String, more: &str) -> io::Result<()> {
        let Some(idx) = self.entry_index(value) else {
            if value.len() + more.len() < self.threshold {
                value.push_str(more);
                return Ok(());
            }
            let offset = self.end;
            self.file.write_all_at(value.as_bytes(), offset)?;
            self.file
                .write_all_at(more.as_bytes(), offset + value.len() as u64)?;
            let len = (value.len() + more.len()) as u64;
            self.entries.push(Entry { offset, len });
            self.end += len;
            *value = self.marker(self.entries.len() - 1);
            return Ok(());
        };
        let entry = self.entries[idx];
        if entry.offset + entry.len != self.end {
            // Not the last entry: move it to the end first (the old bytes become garbage).
            self.copy_to_end(entry)?;
            self.entries[idx].offset = self.end - entry.len;
        }
        self.file.write_all_at(more.as_bytes(), self.end)?;
        self.entries[idx].len += more.len() as u64;
        self.end += more.len() as u64;
        Ok(())
    }

    fn copy_to_end(&mut self, entry: Entry) -> io::Result<()> {
        copy_range(&self.file, entry, &self.file, self.end)?;
        self.end += entry.len;
        Ok(())
    }

    /// The string a marker stands for (`None` if `s` is not a marker of this spill).
    pub fn read_string(&self, s: &str) -> Option<io::Result<String>> {
        let idx = self.entry_index(s)?;
        let entry = self.entries[idx];
        let mut buf = vec![0u8; entry.len as usize];
        Some(
            self.file
                .read_exact_at(&mut buf, entry.offset)
                .and_then(|_| {
                    String::from_utf8(buf)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
                }),
        )
    }

    /// A reader over the string a marker stands for.
    pub(crate) fn open(&self, s: &str) -> Option<io::Result<SpillReader<'_>>> {
        let idx = self.entry_index(s)?;
        let entry = self.entries[idx];
        Some(Ok(SpillReader {
            file: &self.file,
            pos: entry.offset,
            end: entry.offset + entry.len,
        }))
    }

    /// Replace every marker in `value` by the string it stands for.
    pub fn restore(&self, value: &mut Value) -> io::Result<()> {
        match value {
            Value::String(s) => {
                if let Some(text) = self.read_string(s) {
                    *s = text?;
                }
                Ok(())
            }
            Value::Array(items) => items.iter_mut().try_for_each(|v| self.restore(v)),
            Value::Object(map) => map.values_mut().try_for_each(|v| self.restore(v)),
            _ => Ok(()),
        }
    }

    /// [`Spill::restore`] every output of every cell.
    pub fn restore_notebook(&self, nb: &mut Notebook) -> io::Result<()> {
        nb.cells
            .iter_mut()
            .flat_map(|c| c.outputs.iter_mut())
            .try_for_each(|o| self.restore(o))
    }

    /// Drop the garbage left by cleared and replaced outputs once it outweighs what the
    /// notebook still uses (checked only when the file has doubled since the last look, so
    /// the cost stays linear). Live strings are copied to a new file and the notebook's
    /// markers renumbered.
    pub fn compact(&mut self, nb: &mut Notebook) -> io::Result<bool> {
        if self.end < self.next_compact_check {
            return Ok(false);
        }
        let mut live = HashMap::new();
        let mut live_bytes = 0;
        for out in nb.cells.iter().flat_map(|c| c.outputs.iter()) {
            self.collect_live(out, &mut live, &mut live_bytes);
        }
        if live_bytes * 2 > self.end {
            self.next_compact_check = (self.end * 2).max(self.compact_floor);
            return Ok(false);
        }
        let file = tempfile::tempfile()?;
        let mut olds: Vec<usize> = live.into_keys().collect();
        olds.sort_unstable();
        let mut entries = Vec::with_capacity(olds.len());
        let mut renumber = HashMap::with_capacity(olds.len());
        let mut end = 0;
        for old in olds {
            let entry = self.entries[old];
            copy_range(&self.file, entry, &file, end)?;
            renumber.insert(old, entries.len());
            entries.push(Entry {
                offset: end,
                len: entry.len,
            });
            end += entry.len;
        }
        let old_prefix = std::mem::replace(
            &mut self.prefix,
            format!("\0nbpipe-spill:{}:", uuid::Uuid::new_v4().simple()),
        );
        for out in nb.cells.iter_mut().flat_map(|c| c.outputs.iter_mut()) {
            renumber_markers(out, &old_prefix, &self.prefix, &renumber);
        }
        self.file = file;
        self.entries = entries;
        self.end = end;
        self.next_compact_check = (end * 2).max(self.compact_floor);
        Ok(true)
    }

    fn collect_live(&self, value: &Value, live: &mut HashMap<usize, ()>, bytes: &mut u64) {
        match value {
            Value::String(s) => {
                if let Some(idx) = self.entry_index(s) {
                    if live.insert(idx, ()).is_none() {
                        *bytes += self.entries[idx].len;
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| self.collect_live(v, live, bytes)),
            Value::Object(map) => map.values().for_each(|v| self.collect_live(v, live, bytes)),
            _ => {}
        }
    }
}

fn renumber_markers(value: &mut Value, old: &str, new: &str, map: &HashMap<usize, usize>) {
    match value {
        Value::String(s) => {
            let idx = s
                .strip_prefix(old)
                .and_then(|rest| rest.parse::<usize>().ok());
            if let Some(n) = idx.and_then(|i| map.get(&i)) {
                *s = format!("{new}{n}");
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| renumber_markers(v, old, new, map)),
        Value::Object(m) => m
            .values_mut()
            .for_each(|v| renumber_markers(v, old, new, map)),
        _ => {}
    }
}

/// Copy `entry`'s bytes of `from` to `to` at `at`, in bounded chunks.
fn copy_range(from: &File, entry: Entry, to: &File, at: u64) -> io::Result<()> {
    let mut buf = vec![0u8; (entry.len as usize).min(1 << 20)];
    let mut done = 0;
    while done < entry.len {
        let n = (entry.len - done).min(buf.len() as u64) as usize;
        from.read_exact_at(&mut buf[..n], entry.offset + done)?;
        to.write_all_at(&buf[..n], at + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Reads one spilled string from the file.
pub(crate) struct SpillReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for SpillReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the spill file is shorter than its index",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}
