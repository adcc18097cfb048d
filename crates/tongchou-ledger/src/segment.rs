//! Segment files: the ledger's entries as they are kept on disk.
//!
//! A segment is named after the index of its first entry (`00000000000000000000.seg`, 20
//! digits so names sort in order) and holds whole records back to back:
//!
//! ```text
//! length: u32 LE │ check: first 4 bytes of the entry's leaf hash │ entry bytes
//! ```
//!
//! The check lets a scan tell a changed or mis-framed record from a good one without the
//! tree; the tree (and the signed checkpoints over it) is what proves the log.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::merkle::{Hash, leaf_hash};

pub const SEGMENTS_DIR: &str = "segments";
pub const SEGMENT_SUFFIX: &str = ".seg";
pub const HEADER_BYTES: u64 = 8;
/// The longest entry accepted (a statement's record, not its data).
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

pub fn segment_name(first: u64) -> String {
    format!("{first:020}{SEGMENT_SUFFIX}")
}

pub fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(SEGMENTS_DIR).join(segment_name(first))
}

/// The first-entry numbers of the segments in `dir`, in order. Other files are refused:
/// something put there by hand is itself a finding.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut firsts = Vec::new();
    let segments = dir.join(SEGMENTS_DIR);
    if !segments.exists() {
        return Ok(firsts);
    }
    for item in std::fs::read_dir(&segments)? {
        let name = item?.file_name();
        let name = name.to_string_lossy();
        let first = name
            .strip_suffix(SEGMENT_SUFFIX)
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} holds '{name}', which is not a ledger segment",
                        segments.display()
                    ),
                )
            })?;
        firsts.push(first);
    }
    firsts.sort_unstable();
    Ok(firsts)
}

pub fn check_of(leaf: &Hash) -> [u8; 4] {
    [leaf[0], leaf[1], leaf[2], leaf[3]]
}

/// Appends one record to `buffer`.
pub fn encode_record(buffer: &mut Vec<u8>, entry: &[u8]) -> Hash {
    let leaf = leaf_hash(entry);
    buffer.extend_from_slice(&(entry.len() as u32).to_le_bytes());
    buffer.extend_from_slice(&check_of(&leaf));
    buffer.extend_from_slice(entry);
    leaf
}

/// What a sequential read of one segment finds next.
pub enum Found {
    Record {
        offset: u64,
        entry: Vec<u8>,
        leaf: Hash,
    },
    /// Bytes at the end that are not a whole record (an unfinished append, or truncation).
    Torn { offset: u64, bytes: u64 },
    /// A whole record whose bytes do not match its check, or an impossible length.
    Damaged { offset: u64, why: String },
}

/// Reads the records of one segment from `offset` on.
pub struct SegmentReader {
    reader: BufReader<File>,
    offset: u64,
    size: u64,
    stopped: bool,
    most: usize,
}

impl SegmentReader {
    pub fn open(path: &Path, offset: u64) -> io::Result<SegmentReader> {
        let mut file = File::open(path)?;
        let size = file.metadata()?.len();
        io::Seek::seek(&mut file, io::SeekFrom::Start(offset.min(size)))?;
        Ok(SegmentReader {
            reader: BufReader::with_capacity(1 << 20, file),
            offset,
            size,
            stopped: false,
            most: MAX_ENTRY_BYTES,
        })
    }

    /// Lowers the longest record this file may hold (checkpoint notes are short), so that
    /// a changed length is told from an unfinished write.
    pub fn at_most(mut self, bytes: usize) -> SegmentReader {
        self.most = bytes;
        self
    }

    /// Where the next record would start.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next record, or `None` at a clean end.
    pub fn next_found(&mut self) -> io::Result<Option<Found>> {
        if self.stopped || self.offset >= self.size {
            return Ok(None);
        }
        let offset = self.offset;
        let torn = |bytes| {
            Ok(Some(Found::Torn {
                offset,
                bytes: bytes - offset,
            }))
        };
        if offset + HEADER_BYTES > self.size {
            self.stopped = true;
            return torn(self.size);
        }
        let mut header = [0u8; HEADER_BYTES as usize];
        self.reader.read_exact(&mut header)?;
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as u64;
        if len as usize > self.most {
            self.stopped = true;
            return Ok(Some(Found::Damaged {
                offset,
                why: format!(
                    "a record length of {len} bytes, more than any record here may have ({})",
                    self.most
                ),
            }));
        }
        if offset + HEADER_BYTES + len > self.size {
            self.stopped = true;
            let mut rest = Vec::new();
            self.reader.read_to_end(&mut rest)?;
            // An unfinished write leaves part of a record; a whole one that claims more
            // than it holds had its length changed.
            if check_of(&leaf_hash(&rest)) == header[4..] {
                return Ok(Some(Found::Damaged {
                    offset,
                    why: format!(
                        "a whole record of {} bytes whose length was changed to {len}",
                        rest.len()
                    ),
                }));
            }
            return torn(self.size);
        }
        let mut entry = vec![0u8; len as usize];
        self.reader.read_exact(&mut entry)?;
        let leaf = leaf_hash(&entry);
        if check_of(&leaf) != header[4..] {
            self.stopped = true;
            return Ok(Some(Found::Damaged {
                offset,
                why: "the record's bytes do not match its check (changed, or the length before it was)".into(),
            }));
        }
        self.offset += HEADER_BYTES + len;
        Ok(Some(Found::Record {
            offset,
            entry,
            leaf,
        }))
    }
}

/// Reads the record at `offset` of a segment.
pub fn read_record(path: &Path, offset: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = File::open(path)?;
    let mut header = [0u8; HEADER_BYTES as usize];
    file.read_exact_at(&mut header, offset)?;
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_ENTRY_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: a record length of {len} at byte {offset}",
                path.display()
            ),
        ));
    }
    let mut entry = vec![0u8; len];
    file.read_exact_at(&mut entry, offset + HEADER_BYTES)?;
    Ok(entry)
}
