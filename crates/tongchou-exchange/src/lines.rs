//! The file's own line numbers for CSV records. The CSV reader only knows the offset where
//! it began reading a record, which lies before any blank lines and, with CRLF, before the
//! previous line's LF; so the bytes it reads are watched for line breaks on their way in.

use std::collections::VecDeque;
use std::io::{self, Read};

/// A stretch of consecutive CR and LF bytes, and the line breaks it holds.
struct Run {
    start: u64,
    end: u64,
    breaks: u64,
}

/// A reader that notes where lines break in what passes through it, until asked.
pub(crate) struct LineBreaks<R> {
    inner: R,
    read: u64,
    runs: VecDeque<Run>,
    /// Line breaks in the runs already asked past.
    passed: u64,
    last_cr: Option<u64>,
}

impl<R> LineBreaks<R> {
    pub(crate) fn new(inner: R) -> Self {
        LineBreaks {
            inner,
            read: 0,
            runs: VecDeque::new(),
            passed: 0,
            last_cr: None,
        }
    }

    /// The line of the first byte at or after `offset` that is not a line break, as an
    /// editor counts lines (CRLF, LF or CR each end one). Offsets asked never go back.
    pub(crate) fn line_at(&mut self, offset: u64) -> u64 {
        while let Some(run) = self.runs.front() {
            if run.start > offset {
                break;
            }
            self.passed += run.breaks;
            self.runs.pop_front();
        }
        self.passed + 1
    }

    fn note(&mut self, bytes: &[u8]) {
        for i in memchr::memchr2_iter(b'\r', b'\n', bytes) {
            let at = self.read + i as u64;
            let breaks = if bytes[i] == b'\r' {
                self.last_cr = Some(at);
                1
            } else {
                u64::from(self.last_cr.is_none_or(|cr| cr + 1 != at))
            };
            match self.runs.back_mut() {
                Some(run) if run.end == at => {
                    run.end += 1;
                    run.breaks += breaks;
                }
                _ => self.runs.push_back(Run {
                    start: at,
                    end: at + 1,
                    breaks,
                }),
            }
        }
        self.read += bytes.len() as u64;
    }
}

impl<R: Read> Read for LineBreaks<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.note(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader handing out one byte at a time, so that a CRLF is split between reads.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn crlf_lf_and_cr_each_end_one_line_even_split_between_reads() {
        let text = b"a\r\n\r\nb\rc\n\nd";
        let mut breaks = LineBreaks::new(Trickle(text));
        io::copy(&mut breaks, &mut io::sink()).unwrap();
        let lines: Vec<u64> = [0, 2, 7, 9].iter().map(|&at| breaks.line_at(at)).collect();
        assert_eq!(lines, vec![1, 3, 4, 6]);
    }
}
