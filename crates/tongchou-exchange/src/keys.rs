//! The key index: the declared key and unique values a resource's table holds, each with
//! the version and file line of the row that brought it, so that a load refuses a key an
//! earlier version holds without reading the table. It is derived and bound to the Delta
//! version it covers: a missing, damaged or stale index is rebuilt from the table.
//!
//! Layout (`<table>/_keys/`): `current`, a manifest naming the version covered and the
//! segments, oldest first; each segment holds, per slot, entries sorted by hash and a Bloom
//! filter of them. A load adds one segment; a newer entry for a hash hides older ones (a
//! deleted row's is a tombstone).

mod filter;

use std::fs::File;
use std::hash::Hasher as _;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    Array, BooleanArray, Date32Array, Decimal128Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType as ArrowType, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use memmap2::{Advice, Mmap};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tongchou_model::{DataType, Field, Resource};

use crate::ExchangeError;
use crate::load::{KeyHash, Value, slot_hash};

/// What one slot of the index holds: the resource's key (its fields' values together) or
/// one unique field that is not the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub fields: Vec<usize>,
    pub is_key: bool,
}

/// The slots of a resource: its key first, if it has one, then each other unique field.
pub fn slots(resource: &Resource) -> Vec<Slot> {
    let position = |name: &String| resource.fields.iter().position(|f| &f.name == name);
    let key: Vec<usize> = resource.key.iter().filter_map(position).collect();
    let key_slot = (!key.is_empty()).then(|| Slot {
        fields: key.clone(),
        is_key: true,
    });
    let unique = (resource.fields.iter().enumerate())
        .filter(|(i, f)| f.unique && key != [*i])
        .map(|(i, _)| Slot {
            fields: vec![i],
            is_key: false,
        });
    key_slot.into_iter().chain(unique).collect()
}

/// Names the slots by their fields, so that an index built for other slots (the catalog
/// changed the key or a unique flag) is not trusted.
fn fingerprint(resource: &Resource, slots: &[Slot]) -> Vec<String> {
    slots
        .iter()
        .map(|s| {
            let names: Vec<&str> = (s.fields.iter())
                .map(|f| resource.fields[*f].name.as_str())
                .collect();
            format!(
                "{}:{}",
                if s.is_key { "key" } else { "unique" },
                names.join("+")
            )
        })
        .collect()
}

/// A value in the index. `owner` is the key of the row holding a unique value (when the
/// resource has a key): an upsert may replace that row, and the value is the row's only
/// while the key's own entry has the same version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub hash: u128,
    pub owner: u128,
    pub version: u64,
    /// The line in the file of the load that brought the row; 0 when not known (rebuilt).
    pub line: u64,
    pub gone: bool,
}

const MAGIC: &[u8; 8] = b"TCKEYS02";
const GONE: u64 = 1 << 63;

fn width(has_owner: bool) -> usize {
    if has_owner { 48 } else { 32 }
}

/// Where one slot's entries and filter lie in a segment.
struct Section {
    offset: usize,
    count: usize,
    width: usize,
    filter: std::ops::Range<usize>,
}

/// Bytes a slot takes in a segment's header: its entries' count and width, its filter's blocks.
const SLOT_HEADER: usize = 24;

fn header_len(slots: usize) -> usize {
    16 + SLOT_HEADER * slots
}

/// Filters start on a cache line, so that a block is never split across two.
fn filters_start(entries_end: usize) -> Option<usize> {
    entries_end.checked_next_multiple_of(64)
}

/// One immutable file of sorted entries and their filters, mapped into memory; it ends
/// with the body's checksum and the header's (which covers the body's checksum).
struct Segment {
    name: String,
    bytes: Mmap,
    sections: Vec<Section>,
}

fn word(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn wide(bytes: &[u8], at: usize) -> u128 {
    u128::from_le_bytes(bytes[at..at + 16].try_into().expect("16 bytes"))
}

impl Segment {
    fn open(path: &Path, slots: usize) -> Option<Segment> {
        let file = File::open(path).ok()?;
        // Safety: segments are never changed in place (written whole, then renamed), and
        // the resource's lock keeps other loads from removing one while it is read.
        let bytes = unsafe { Mmap::map(&file) }.ok()?;
        let header = header_len(slots);
        if bytes.len() < header + 16 || &bytes[..8] != MAGIC || word(&bytes, 8) != slots as u64 {
            return None;
        }
        let mut offset = header;
        let mut sections = Vec::with_capacity(slots);
        for s in 0..slots {
            let at = 16 + SLOT_HEADER * s;
            let (count, width) = (word(&bytes, at) as usize, word(&bytes, at + 8) as usize);
            if width != 32 && width != 48 {
                return None;
            }
            sections.push(Section {
                offset,
                count,
                width,
                filter: 0..0,
            });
            offset = offset.checked_add(count.checked_mul(width)?)?;
        }
        offset = filters_start(offset)?;
        for (s, section) in sections.iter_mut().enumerate() {
            let blocks = word(&bytes, 32 + SLOT_HEADER * s) as usize;
            let end = offset.checked_add(blocks.checked_mul(filter::BLOCK)?)?;
            section.filter = offset..end;
            offset = end;
        }
        let whole = offset.checked_add(16) == Some(bytes.len())
            && checksum(&bytes[..header], word(&bytes, offset)) == word(&bytes, offset + 8);
        let name = path.file_name()?.to_string_lossy().into_owned();
        // A lookup reads a few entries far apart: the pages around them would only be
        // mapped in and out again.
        let _ = bytes.advise(Advice::Random);
        whole.then_some(Segment {
            name,
            bytes,
            sections,
        })
    }

    fn hash_at(&self, section: &Section, i: usize) -> u128 {
        wide(&self.bytes, section.offset + i * section.width)
    }

    fn entry_at(&self, section: &Section, i: usize) -> Entry {
        let at = section.offset + i * section.width;
        let (owner, rest) = if section.width == 48 {
            (wide(&self.bytes, at + 16), at + 32)
        } else {
            (0, at + 16)
        };
        let version = word(&self.bytes, rest);
        Entry {
            hash: wide(&self.bytes, at),
            owner,
            version: version & !GONE,
            line: word(&self.bytes, rest + 8),
            gone: version & GONE != 0,
        }
    }

    fn entries(&self, slot: usize) -> impl Iterator<Item = Entry> + '_ {
        let section = &self.sections[slot];
        (0..section.count).map(move |i| self.entry_at(section, i))
    }

    /// Finds `hash` in a slot. Hashes are uniform, so a probe placed by interpolation
    /// between the values at the ends of the range narrows it to about its square root:
    /// a few probes, the later ones on the first one's page (a binary search would touch
    /// two dozen pages). After a few, bisection bounds the worst case.
    fn find(&self, slot: usize, hash: u128) -> Option<Entry> {
        let section = &self.sections[slot];
        if !filter::may_hold(&self.bytes[section.filter.clone()], hash) {
            return None;
        }
        let at = |i: usize| self.hash_at(section, i);
        let (mut lo, mut hi) = (0, section.count);
        let (mut low, mut high) = (0u128, u128::MAX);
        for probe in 0.. {
            if lo >= hi {
                return None;
            }
            let mid = if probe < 4 {
                let share = ((hash - low) >> 64) as f64 / (((high - low) >> 64) as f64 + 1.0);
                (lo + (share * (hi - lo) as f64) as usize).min(hi - 1)
            } else {
                lo + (hi - lo) / 2
            };
            let found = at(mid);
            if found < hash {
                (lo, low) = (mid + 1, found);
            } else if found > hash {
                (hi, high) = (mid, found);
            } else {
                return Some(self.entry_at(section, mid));
            }
        }
        None
    }

    /// Asks the CPU to fetch the filter block that answers for `hash`, so that the
    /// lookups of many values wait for memory together rather than one after another.
    fn prefetch(&self, slot: usize, hash: u128) {
        let section = &self.sections[slot];
        prefetch(filter::block(&self.bytes[section.filter.clone()], hash));
    }

    /// Whether the entries and filters are as written (read whole only when merged:
    /// checking them at every load would read the whole index).
    fn body_intact(&self) -> bool {
        let end = self.bytes.len() - 16;
        data_hash(&self.bytes[header_len(self.sections.len())..end]) == word(&self.bytes, end)
    }
}

fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    // Safety: a prefetch is a hint: it reads nothing and never faults.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr().cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

fn data_hash(data: &[u8]) -> u64 {
    let mut h = twox_hash::XxHash3_64::new();
    h.write(data);
    h.finish()
}

/// The header's checksum, which covers the body's through `data`.
fn checksum(header: &[u8], data: u64) -> u64 {
    let mut h = twox_hash::XxHash3_64::new();
    h.write(header);
    h.write(&data.to_le_bytes());
    h.finish()
}

/// Writes a segment slot by slot, entries in hash order, to a temporary file that becomes
/// the segment (durably) only when whole; the slots' filters follow their entries.
struct SegmentWriter {
    temp: Temporary,
    out: BufWriter<File>,
    data: twox_hash::XxHash3_64,
    written: usize,
    /// Per slot written: its entries' count and width, and its filter.
    slots: Vec<(u64, usize, filter::Builder)>,
}

impl SegmentWriter {
    fn new(dir: &Path, slots: usize) -> std::io::Result<SegmentWriter> {
        let temp = dir.join(format!("tmp-{}-{}", std::process::id(), stamp()));
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&temp)?);
        let temp = Temporary(temp);
        out.write_all(&vec![0; header_len(slots)])?;
        Ok(SegmentWriter {
            temp,
            out,
            data: twox_hash::XxHash3_64::new(),
            written: header_len(slots),
            slots: Vec::with_capacity(slots),
        })
    }

    fn body(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.data.write(bytes);
        self.written += bytes.len();
        Ok(())
    }

    /// Writes a slot's entries; `expected` (at least their number) sizes its filter.
    fn slot(
        &mut self,
        has_owner: bool,
        expected: usize,
        entries: impl Iterator<Item = Entry>,
    ) -> std::io::Result<()> {
        let mut count = 0u64;
        let mut buf = [0u8; 48];
        let mut filter = filter::Builder::new(expected);
        for e in entries {
            let mut at = 16;
            buf[..16].copy_from_slice(&e.hash.to_le_bytes());
            if has_owner {
                buf[16..32].copy_from_slice(&e.owner.to_le_bytes());
                at = 32;
            }
            let version = e.version | if e.gone { GONE } else { 0 };
            buf[at..at + 8].copy_from_slice(&version.to_le_bytes());
            buf[at + 8..at + 16].copy_from_slice(&e.line.to_le_bytes());
            self.body(&buf[..at + 16])?;
            filter.insert(e.hash);
            count += 1;
        }
        self.slots.push((count, width(has_owner), filter));
        Ok(())
    }

    /// Completes the segment durably under its temporary name.
    fn finish(mut self) -> std::io::Result<Prepared> {
        let slots = std::mem::take(&mut self.slots);
        let mut header = Vec::with_capacity(header_len(slots.len()));
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&(slots.len() as u64).to_le_bytes());
        for (count, width, filter) in &slots {
            for n in [*count, *width as u64, filter.blocks() as u64] {
                header.extend_from_slice(&n.to_le_bytes());
            }
        }
        let padding = filters_start(self.written).expect("a file's length") - self.written;
        self.body(&vec![0; padding])?;
        for (_, _, filter) in &slots {
            self.body(&filter.to_bytes())?;
        }
        let data = self.data.finish();
        self.out.write_all(&data.to_le_bytes())?;
        self.out.write_all(&checksum(&header, data).to_le_bytes())?;
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header)?;
        file.sync_all()?;
        Ok(Prepared {
            temp: self.temp,
            version: 0,
        })
    }
}

/// A whole segment not yet in the index: a load's entries, written while its version
/// commits (so that the commit does not wait for them), stamped with the version they
/// expect. Removed if never added.
pub struct Prepared {
    temp: Temporary,
    version: u64,
}

/// A file being written, removed when dropped unless kept: nothing half-written or never
/// used stays to fill the disk (a load that failed for want of space must leave it).
struct Temporary(PathBuf);

impl Temporary {
    fn keep(mut self) -> PathBuf {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn stamp() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The manifest: what the index covers and where it is.
#[derive(Serialize, Deserialize)]
struct Manifest {
    version: u64,
    slots: Vec<String>,
    segments: Vec<String>,
}

/// A resource's key index as of one version of its table.
pub struct KeyIndex {
    dir: PathBuf,
    pub version: u64,
    slots: Vec<String>,
    has_key: bool,
    segments: Vec<Segment>,
}

fn index_dir(table_dir: &Path) -> PathBuf {
    table_dir.join("_keys")
}

fn io(e: std::io::Error) -> ExchangeError {
    ExchangeError::Table(format!("the key index could not be written: {e}"))
}

impl KeyIndex {
    /// The index as on disk, if it is whole and covers `slots`.
    fn open(table_dir: &Path, slots: &[String], has_key: bool) -> Option<KeyIndex> {
        let dir = index_dir(table_dir);
        let manifest: Manifest =
            serde_json::from_slice(&std::fs::read(dir.join("current")).ok()?).ok()?;
        if manifest.slots != slots {
            return None;
        }
        let segments = (manifest.segments.iter())
            .map(|name| Segment::open(&dir.join(name), slots.len()))
            .collect::<Option<Vec<_>>>()?;
        Some(KeyIndex {
            dir,
            version: manifest.version,
            slots: manifest.slots,
            has_key,
            segments,
        })
    }

    fn empty(table_dir: &Path, slots: Vec<String>, has_key: bool, version: u64) -> KeyIndex {
        KeyIndex {
            dir: index_dir(table_dir),
            version,
            slots,
            has_key,
            segments: Vec::new(),
        }
    }

    /// The newest entry for `hash` in `slot`, unless it is a tombstone.
    fn newest(&self, slot: usize, hash: u128) -> Option<Entry> {
        let found = self
            .segments
            .iter()
            .rev()
            .find_map(|s| s.find(slot, hash))?;
        (!found.gone).then_some(found)
    }

    pub fn has_key(&self) -> bool {
        self.has_key
    }

    /// Maps the filters in whole ahead of `lookups` lookups when they would touch most of
    /// their pages anyway: one call instead of a page fault per page.
    pub fn expect_lookups(&self, lookups: usize) {
        for segment in &self.segments {
            for section in &segment.sections {
                if lookups >= section.filter.len() / 4096 {
                    let (start, len) = (section.filter.start, section.filter.len());
                    let _ = segment.bytes.advise_range(Advice::PopulateRead, start, len);
                }
            }
        }
    }

    /// Prepares the lookup of `hash` in `slot` (see `Segment::prefetch`).
    pub(crate) fn prefetch(&self, slot: usize, hash: KeyHash) {
        for segment in &self.segments {
            segment.prefetch(slot, hash.wide());
        }
    }

    /// The row of the table holding `hash` in `slot`, if any.
    pub(crate) fn holds(&self, slot: usize, hash: KeyHash) -> Option<Entry> {
        let found = self.newest(slot, hash.wide())?;
        let replaced = slot > 0
            && self.has_key
            && self.newest(0, found.owner).map(|k| k.version) != Some(found.version);
        (!replaced).then_some(found)
    }

    fn has_owner(&self, slot: usize) -> bool {
        self.has_key && slot > 0
    }

    /// Adds what a load landed as `version` (replacing everything when `replace`).
    pub fn record(
        self,
        version: u64,
        replace: bool,
        landed: Vec<Vec<Entry>>,
    ) -> Result<KeyIndex, ExchangeError> {
        let prepared = self.prepare(version, landed)?;
        self.commit(version, replace, prepared)
    }

    /// Writes what a load landed as the segment of `version`, the version its commit is
    /// expected to make; nothing when it landed nothing.
    pub fn prepare(
        &self,
        version: u64,
        mut landed: Vec<Vec<Entry>>,
    ) -> Result<Option<Prepared>, ExchangeError> {
        if landed.iter().all(|l| l.is_empty()) {
            return Ok(None);
        }
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let mut writer = SegmentWriter::new(&self.dir, self.slots.len()).map_err(io)?;
        for (slot, entries) in landed.iter_mut().enumerate() {
            entries.par_sort_unstable_by_key(|e| e.hash);
            let owner = self.has_owner(slot);
            let stamped = entries.iter().map(|e| Entry { version, ..*e });
            (writer.slot(owner, entries.len(), stamped)).map_err(io)?;
        }
        let mut prepared = writer.finish().map_err(io)?;
        prepared.version = version;
        Ok(Some(prepared))
    }

    /// Adds a prepared segment as `version` (replacing everything when `replace`), then
    /// merges the newest segments while the newer is at least half the older, so that a
    /// lookup visits few segments and the large oldest one is seldom rewritten. Refused,
    /// leaving the index as it was (stale, so the next load rebuilds it), when the version
    /// is not the one the segment was prepared for or, appending, not the next after the
    /// index's: another write committed in between, and its values are not in the index.
    pub fn commit(
        mut self,
        version: u64,
        replace: bool,
        prepared: Option<Prepared>,
    ) -> Result<KeyIndex, ExchangeError> {
        let next = replace || version == self.version + 1;
        if !next || prepared.as_ref().is_some_and(|p| p.version != version) {
            return Err(io(std::io::Error::other(format!(
                "version {version} does not follow the index's {}",
                self.version
            ))));
        }
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        if replace {
            self.segments.clear();
        }
        if let Some(prepared) = prepared {
            self.add(prepared, version)?;
        }
        while let [.., older, newer] = &self.segments[..]
            && older.bytes.len() <= 2 * newer.bytes.len()
        {
            self.merge_newest(version)?;
        }
        self.version = version;
        self.write_manifest().map_err(io)?;
        Ok(self)
    }

    fn add(&mut self, prepared: Prepared, version: u64) -> Result<(), ExchangeError> {
        let name = format!("{version:020}-{}.seg", stamp());
        std::fs::rename(&prepared.temp.0, self.dir.join(&name)).map_err(io)?;
        prepared.temp.keep();
        let segment = Segment::open(&self.dir.join(&name), self.slots.len())
            .ok_or_else(|| io(std::io::Error::other("a segment just written is not whole")))?;
        self.segments.push(segment);
        Ok(())
    }

    /// Merges the two newest segments into one; a tombstone is kept only while older
    /// segments may hold what it hides.
    fn merge_newest(&mut self, version: u64) -> Result<(), ExchangeError> {
        let newer = self.segments.pop().expect("two segments");
        let older = self.segments.pop().expect("two segments");
        let oldest = self.segments.is_empty();
        for segment in [&older, &newer] {
            let _ = segment.bytes.advise(Advice::Sequential);
        }
        if !older.body_intact() || !newer.body_intact() {
            return Err(io(std::io::Error::other("a segment's entries are damaged")));
        }
        let mut writer = SegmentWriter::new(&self.dir, self.slots.len()).map_err(io)?;
        for slot in 0..self.slots.len() {
            let merged =
                merge(older.entries(slot), newer.entries(slot)).filter(|e| !(oldest && e.gone));
            let expected = older.sections[slot].count + newer.sections[slot].count;
            writer
                .slot(self.has_owner(slot), expected, merged)
                .map_err(io)?;
        }
        self.add(writer.finish().map_err(io)?, version)
    }

    /// Puts the manifest in place durably, then removes the files it no longer names.
    fn write_manifest(&self) -> std::io::Result<()> {
        let manifest = Manifest {
            version: self.version,
            slots: self.slots.clone(),
            segments: self.segments.iter().map(|s| s.name.clone()).collect(),
        };
        let temp = self
            .dir
            .join(format!("tmp-{}-{}", std::process::id(), stamp()));
        let mut file = File::create(&temp)?;
        file.write_all(&serde_json::to_vec(&manifest).expect("serialises"))?;
        file.sync_all()?;
        std::fs::rename(&temp, self.dir.join("current"))?;
        File::open(&self.dir)?.sync_all()?;
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "current" && name != "lock" && !manifest.segments.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// Two sorted runs as one; on equal hashes the newer run's entry wins.
fn merge(
    older: impl Iterator<Item = Entry>,
    newer: impl Iterator<Item = Entry>,
) -> impl Iterator<Item = Entry> {
    let (mut older, mut newer) = (older.peekable(), newer.peekable());
    std::iter::from_fn(move || match (older.peek(), newer.peek()) {
        (Some(o), Some(n)) if o.hash < n.hash => older.next(),
        (Some(o), Some(n)) if o.hash == n.hash => {
            older.next();
            newer.next()
        }
        (_, Some(_)) => newer.next(),
        (Some(_), None) => older.next(),
        (None, None) => None,
    })
}

/// Serialises the loads of one resource, across processes: a load checks keys against the
/// index of the version it will commit after. Held until dropped.
pub async fn lock(table_dir: &Path) -> Result<File, ExchangeError> {
    let file = lock_file(table_dir)?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| ExchangeError::Table(e.to_string()))?
        .map_err(io)
}

/// The lock if no load of the resource holds it now.
pub fn try_lock(table_dir: &Path) -> Result<Option<File>, ExchangeError> {
    let file = lock_file(table_dir)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

fn lock_file(table_dir: &Path) -> Result<File, ExchangeError> {
    let dir = index_dir(table_dir);
    std::fs::create_dir_all(&dir).map_err(io)?;
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(io)
}

/// The index covering the table's current version: as on disk, or rebuilt from the table
/// (then lines are not known) when missing, damaged, stale or built for other slots.
pub async fn current(
    table_dir: &Path,
    table: &DeltaTable,
    resource: &Resource,
) -> Result<KeyIndex, ExchangeError> {
    let slots = slots(resource);
    let names = fingerprint(resource, &slots);
    let has_key = slots.first().is_some_and(|s| s.is_key);
    let version = table.version().unwrap_or(0);
    if let Some(index) = KeyIndex::open(table_dir, &names, has_key)
        && index.version == version
    {
        return Ok(index);
    }
    let landed = table_entries(table, resource, &slots).await?;
    KeyIndex::empty(table_dir, names, has_key, version).record(version, true, landed)
}

/// An empty index of the resource's slots, for a load that replaces the table.
pub fn fresh(table_dir: &Path, resource: &Resource) -> KeyIndex {
    let slots = slots(resource);
    let has_key = slots.first().is_some_and(|s| s.is_key);
    KeyIndex::empty(table_dir, fingerprint(resource, &slots), has_key, 0)
}

/// Every row's slot values in the table, by reading their columns.
async fn table_entries(
    table: &DeltaTable,
    resource: &Resource,
    slots: &[Slot],
) -> Result<Vec<Vec<Entry>>, ExchangeError> {
    let mut landed = vec![Vec::new(); slots.len()];
    if slots.is_empty() || table.version().unwrap_or(0) == 0 {
        return Ok(landed);
    }
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    ctx.register_table("t", table.table_provider().await?)?;
    let mut used: Vec<usize> = slots.iter().flat_map(|s| s.fields.clone()).collect();
    used.sort_unstable();
    used.dedup();
    let columns: Vec<String> = (used.iter())
        .map(|f| format!("\"{}\"", resource.fields[*f].name))
        .collect();
    let mut stream = ctx
        .sql(&format!("SELECT {} FROM t", columns.join(", ")))
        .await?
        .execute_stream()
        .await?;
    while let Some(batch) = stream.next().await {
        add_batch(&batch?, resource, slots, &used, &mut landed)?;
    }
    Ok(landed)
}

/// A typed column of the table, read back as the loader's values.
enum Typed {
    Text(StringArray),
    Integer(Int64Array),
    Decimal(Decimal128Array),
    Date(Date32Array),
    Timestamp(TimestampMicrosecondArray),
    Boolean(BooleanArray),
}

impl Typed {
    fn new(column: &dyn Array, field: &Field) -> Result<Typed, ExchangeError> {
        let typed = |arrow: ArrowType| {
            (cast(column, &arrow).map(|a| a.to_data()))
                .map_err(|e| ExchangeError::Table(e.to_string()))
        };
        Ok(match field.data_type {
            DataType::String => Typed::Text(typed(ArrowType::Utf8)?.into()),
            DataType::Integer => Typed::Integer(typed(ArrowType::Int64)?.into()),
            DataType::Decimal => Typed::Decimal(typed(crate::load::arrow_type(field))?.into()),
            DataType::Date => Typed::Date(typed(ArrowType::Date32)?.into()),
            DataType::Timestamp => {
                Typed::Timestamp(typed(ArrowType::Timestamp(TimeUnit::Microsecond, None))?.into())
            }
            DataType::Boolean => Typed::Boolean(typed(ArrowType::Boolean)?.into()),
        })
    }

    fn value(&self, i: usize) -> Value<'_> {
        let null = match self {
            Typed::Text(a) => a.is_null(i),
            Typed::Integer(a) => a.is_null(i),
            Typed::Decimal(a) => a.is_null(i),
            Typed::Date(a) => a.is_null(i),
            Typed::Timestamp(a) => a.is_null(i),
            Typed::Boolean(a) => a.is_null(i),
        };
        if null {
            return Value::Null;
        }
        match self {
            Typed::Text(a) => Value::Text(a.value(i)),
            Typed::Integer(a) => Value::Integer(a.value(i)),
            Typed::Decimal(a) => Value::Decimal(a.value(i)),
            Typed::Date(a) => Value::Date(a.value(i)),
            Typed::Timestamp(a) => Value::Timestamp(a.value(i)),
            Typed::Boolean(a) => Value::Boolean(a.value(i)),
        }
    }
}

fn add_batch(
    batch: &RecordBatch,
    resource: &Resource,
    slots: &[Slot],
    used: &[usize],
    landed: &mut [Vec<Entry>],
) -> Result<(), ExchangeError> {
    let columns = (used.iter().enumerate())
        .map(|(c, f)| Typed::new(batch.column(c), &resource.fields[*f]))
        .collect::<Result<Vec<_>, _>>()?;
    let mut row = vec![Value::Null; resource.fields.len()];
    for i in 0..batch.num_rows() {
        for (column, f) in columns.iter().zip(used) {
            row[*f] = column.value(i);
        }
        let owner = match slots[0].is_key {
            true => slot_hash(&row, &slots[0].fields).wide(),
            false => 0,
        };
        for (slot, entries) in slots.iter().zip(landed.iter_mut()) {
            entries.push(Entry {
                hash: slot_hash(&row, &slot.fields).wide(),
                owner,
                version: 0,
                line: 0,
                gone: false,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn entry(hash: u128, version: u64, gone: bool) -> Entry {
        Entry {
            hash,
            owner: 0,
            version,
            line: hash as u64 & 0xffff,
            gone,
        }
    }

    fn names() -> Vec<String> {
        vec!["key:a".into()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Loads of keys added and removed, merged as they go: every lookup answers what a
        /// plain map of the same history answers.
        #[test]
        fn the_index_answers_as_a_map_of_the_same_history(
            loads in prop::collection::vec(
                prop::collection::vec((any::<u128>(), any::<bool>()), 0..300), 1..8),
            probes in prop::collection::vec(any::<u128>(), 0..50),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let mut index = KeyIndex::empty(tmp.path(), names(), true, 0);
            let mut naive = BTreeMap::new();
            for (v, load) in loads.iter().enumerate() {
                let version = v as u64 + 1;
                let mut landed = BTreeMap::new();
                for (hash, gone) in load {
                    // A few hashes shared between loads, so that newer entries hide older.
                    let hash = if hash % 3 == 0 { hash % 64 } else { *hash };
                    landed.insert(hash, entry(hash, version, *gone));
                    naive.insert(hash, entry(hash, version, *gone));
                }
                index = index.record(version, false, vec![landed.into_values().collect()]).unwrap();
            }
            let reopened = KeyIndex::open(tmp.path(), &names(), true).unwrap();
            for probe in probes.iter().copied().chain(naive.keys().copied()) {
                let expected = naive.get(&probe).filter(|e| !e.gone).copied();
                prop_assert_eq!(index.newest(0, probe), expected);
                prop_assert_eq!(reopened.newest(0, probe), expected);
            }
            prop_assert!(reopened.segments.len() <= 1 + loads.len().ilog2() as usize + 1);
        }
    }

    #[test]
    fn lookups_find_every_hash_and_no_other_at_the_ends_of_the_range() {
        let tmp = tempfile::tempdir().unwrap();
        let mut hashes: Vec<u128> = vec![0, 1, 2, u128::MAX - 1, u128::MAX, 1 << 127];
        hashes.extend(
            (0..1000u128).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)),
        );
        hashes.sort_unstable();
        hashes.dedup();
        let landed = hashes.iter().map(|h| entry(*h, 1, false)).collect();
        let index = KeyIndex::empty(tmp.path(), names(), true, 0)
            .record(1, false, vec![landed])
            .unwrap();
        for h in &hashes {
            assert_eq!(index.newest(0, *h).map(|e| e.hash), Some(*h));
        }
        for h in [3u128, u128::MAX - 2, (1 << 127) + 1] {
            assert_eq!(index.newest(0, h), None);
        }
    }

    #[test]
    fn a_prepared_segment_lands_only_as_the_next_version() {
        let tmp = tempfile::tempdir().unwrap();
        let landed = || vec![(1..50).map(|h| entry(h << 90, 0, false)).collect()];
        let index = KeyIndex::empty(tmp.path(), names(), true, 0)
            .record(1, true, landed())
            .unwrap();
        let files = || std::fs::read_dir(tmp.path().join("_keys")).unwrap().count();
        let before = files();
        let prepared = index.prepare(2, landed()).unwrap();
        assert!(
            index.commit(3, false, prepared).is_err(),
            "version 2 was another write's"
        );
        let reopened = KeyIndex::open(tmp.path(), &names(), true).unwrap();
        assert_eq!(reopened.version, 1, "left stale, to be rebuilt");
        assert_eq!(files(), before, "the prepared segment is removed");
        assert!(
            reopened.commit(3, false, None).is_err(),
            "a gap with nothing landed too"
        );
        let reopened = KeyIndex::open(tmp.path(), &names(), true).unwrap();
        let prepared = reopened.prepare(2, landed()).unwrap();
        let index = reopened.commit(2, false, prepared).unwrap();
        assert_eq!(index.newest(0, 7 << 90).map(|e| e.version), Some(2));
        let after = files();
        drop(index.prepare(3, landed()).unwrap());
        assert_eq!(files(), after, "a prepared segment never added is removed");
    }

    #[test]
    fn a_damaged_or_other_slots_index_is_not_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let landed = vec![(1..100).map(|h| entry(h << 100, 1, false)).collect()];
        let index = KeyIndex::empty(tmp.path(), names(), true, 0)
            .record(1, false, landed)
            .unwrap();
        assert!(KeyIndex::open(tmp.path(), &["key:b".into()], true).is_none());
        let segment = index.dir.join(&index.segments[0].name);
        drop(index);
        let bytes = std::fs::read(&segment).unwrap();
        let mut header = bytes.clone();
        header[20] ^= 1;
        std::fs::write(&segment, &header).unwrap();
        assert!(KeyIndex::open(tmp.path(), &names(), true).is_none());
        std::fs::write(&segment, &bytes[..bytes.len() - 1]).unwrap();
        assert!(KeyIndex::open(tmp.path(), &names(), true).is_none());
        let mut entries = bytes.clone();
        entries[100] ^= 1;
        std::fs::write(&segment, &entries).unwrap();
        let opened = KeyIndex::open(tmp.path(), &names(), true).unwrap();
        assert!(
            !opened.segments[0].body_intact(),
            "found when the segment is merged"
        );
    }
}
