//! Reads department files row by row, as text, with the line (or sheet row) a person sees:
//! CSV in UTF-8 (with or without BOM) or GBK/GB18030 — detected or declared — streamed
//! through a decoder; XLSX (a named or the first sheet); JSON arrays and NDJSON; Parquet.
//! Title rows above a header are recognised, or the header row is named.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use deltalake::arrow::array::Array;
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType as ArrowType;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tongchou_catalog::sample::find_header;
use tongchou_catalog::sheet::{SheetError, SheetLimits};
use tongchou_model::Resource;

use crate::ExchangeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Auto,
    Utf8,
    Gbk,
}

impl Encoding {
    pub fn parse(text: &str) -> Option<Encoding> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Some(Encoding::Auto),
            "utf-8" | "utf8" => Some(Encoding::Utf8),
            "gbk" | "gb18030" | "gb2312" => Some(Encoding::Gbk),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
    Json,
    Parquet,
}

impl Format {
    pub fn of(path: &Path) -> Format {
        let lower = path.to_string_lossy().to_ascii_lowercase();
        if tongchou_catalog::sheet::is_workbook(&lower) {
            Format::Xlsx
        } else if lower.ends_with(".json")
            || lower.ends_with(".ndjson")
            || lower.ends_with(".jsonl")
        {
            Format::Json
        } else if lower.ends_with(".parquet") {
            Format::Parquet
        } else {
            Format::Csv
        }
    }
}

/// How to read one file.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub encoding: Encoding,
    pub sheet: Option<String>,
    /// 1-based header line; found automatically when `None`.
    pub header_row: Option<u64>,
}

/// One row's values: a single buffer with field bounds, as the CSV reader makes it. The
/// bytes are UTF-8 once decoded, but a UTF-8 file is passed through unchecked: each value
/// is checked where the row is checked, in parallel, and a row with bytes that are not
/// UTF-8 is quarantined rather than altered.
pub type Row = csv::ByteRecord;

/// Rows read into buffers the caller hands back, so that a long file's rows reuse a few
/// thousand buffers instead of allocating (and freeing, on another thread) one per row.
pub trait RowSource: Send {
    /// Reads the next row into `row`; its line (or sheet row), or `None` at the end.
    fn next_into(&mut self, row: &mut Row) -> Option<Result<u64, ExchangeError>>;
}

pub type Rows = Box<dyn RowSource>;

/// Rows of formats read as text values one by one (XLSX, JSON, Parquet).
struct Values<I>(I);

impl<I> RowSource for Values<I>
where
    I: Iterator<Item = Result<(u64, Vec<String>), ExchangeError>> + Send,
{
    fn next_into(&mut self, row: &mut Row) -> Option<Result<u64, ExchangeError>> {
        Some(self.0.next()?.map(|(line, values)| {
            row.clear();
            values.iter().for_each(|v| row.push_field(v.as_bytes()));
            line
        }))
    }
}

pub(crate) fn from_values<I>(rows: I) -> Rows
where
    I: Iterator<Item = Result<(u64, Vec<String>), ExchangeError>> + Send + 'static,
{
    Box::new(Values(rows))
}

/// A row is held whole while it is read: a longer one (one giant field, an object on one
/// line) fails the load instead of taking the server's memory.
pub const MAX_ROW_BYTES: u64 = 64 << 20;

/// Counts the bytes read since the last row ended (the reader's read-ahead included),
/// failing past [`MAX_ROW_BYTES`]; whoever finishes a row resets `since`.
struct RowBound<R> {
    inner: R,
    since: Arc<AtomicU64>,
}

impl<R> RowBound<R> {
    fn new(inner: R) -> (RowBound<R>, Arc<AtomicU64>) {
        let since = Arc::new(AtomicU64::new(0));
        let bound = RowBound {
            inner,
            since: since.clone(),
        };
        (bound, since)
    }
}

impl<R: Read> Read for RowBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.since.fetch_add(n as u64, Ordering::Relaxed) + n as u64 > MAX_ROW_BYTES {
            return Err(std::io::Error::other(format!(
                "a row is over {} MiB; no row of a department file is that long — check the file's quoting",
                MAX_ROW_BYTES >> 20
            )));
        }
        Ok(n)
    }
}

/// A CSV file's rows after its header: the ones read ahead to find it, then the rest.
struct CsvRows<R> {
    ahead: std::vec::IntoIter<(u64, Row)>,
    reader: csv::Reader<R>,
    path: String,
    row_bytes: Arc<AtomicU64>,
}

impl<R: Read + Send> RowSource for CsvRows<R> {
    fn next_into(&mut self, row: &mut Row) -> Option<Result<u64, ExchangeError>> {
        if let Some((line, read)) = self.ahead.next() {
            *row = read;
            return Some(Ok(line));
        }
        match self.reader.read_byte_record(row) {
            Ok(true) => {
                self.row_bytes.store(0, Ordering::Relaxed);
                Some(Ok(row.position().map_or(0, |p| p.line())))
            }
            Ok(false) => None,
            Err(e) => Some(Err(ExchangeError::BadFile(format!("{}: {e}", self.path)))),
        }
    }
}

/// A value's text as a person sees it, whatever its bytes.
pub fn lossy(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

/// A file opened for reading: its column labels and its rows.
pub struct Source {
    pub labels: Vec<String>,
    pub header_row: u64,
    pub encoding: Option<&'static str>,
    pub rows: Rows,
    /// About how many rows follow the header, where that is cheap to know.
    pub rows_estimate: Option<usize>,
}

fn bad(path: &Path, what: impl std::fmt::Display) -> ExchangeError {
    ExchangeError::BadFile(format!("{}: {what}", shown(path)))
}

/// A file as errors name it: its own name, never where the server keeps it.
pub(crate) fn shown(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

pub fn open(
    path: &Path,
    resource: &Resource,
    options: &ReadOptions,
) -> Result<Source, ExchangeError> {
    match Format::of(path) {
        Format::Csv => csv_source(path, options),
        Format::Xlsx => xlsx_source(path, options),
        Format::Json => json_source(path, resource),
        Format::Parquet => parquet_source(path),
    }
}

/// Chooses the encoding from the first 64 KiB: a BOM or valid UTF-8 means UTF-8,
/// anything else GB18030 (which reads GBK and GB2312).
fn detect(path: &Path) -> Result<&'static encoding_rs::Encoding, ExchangeError> {
    let mut head = vec![0u8; 64 * 1024];
    let mut file = File::open(path).map_err(|e| bad(path, e))?;
    let n = file.read(&mut head).map_err(|e| bad(path, e))?;
    let head = &head[..n];
    if head.starts_with(b"\xEF\xBB\xBF") {
        return Ok(encoding_rs::UTF_8);
    }
    match std::str::from_utf8(head) {
        Ok(_) => Ok(encoding_rs::UTF_8),
        Err(e) if e.error_len().is_none() => Ok(encoding_rs::UTF_8),
        Err(_) => Ok(encoding_rs::GB18030),
    }
}

fn header_of<R: AsRef<[String]>>(
    path: &Path,
    buffered: &[(u64, R)],
    options: &ReadOptions,
) -> Result<usize, ExchangeError> {
    match options.header_row {
        Some(n) => buffered
            .iter()
            .position(|(line, _)| *line == n)
            .ok_or_else(|| bad(path, format!("has no line {n} to use as the header"))),
        None => {
            let rows: Vec<Vec<String>> =
                buffered.iter().map(|(_, r)| r.as_ref().to_vec()).collect();
            find_header(&rows).ok_or_else(|| bad(path, "no header row with at least two column names in the first 20 rows; name it with --header-row N"))
        }
    }
}

fn csv_source(path: &Path, options: &ReadOptions) -> Result<Source, ExchangeError> {
    let encoding = match options.encoding {
        Encoding::Auto => detect(path)?,
        Encoding::Utf8 => encoding_rs::UTF_8,
        Encoding::Gbk => encoding_rs::GB18030,
    };
    let file = File::open(path).map_err(|e| bad(path, e))?;
    // UTF-8 passes through undecoded (its values are checked in parallel later).
    let decoder = encoding_rs_io::DecodeReaderBytesBuilder::new()
        .encoding(Some(encoding))
        .bom_override(true)
        .utf8_passthru(true)
        .strip_bom(true)
        .build(file);
    let (bounded, row_bytes) = RowBound::new(decoder);
    let reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_reader(bounded);
    let mut rows = CsvRows {
        ahead: Vec::new().into_iter(),
        reader,
        path: shown(path),
        row_bytes,
    };
    let mut buffered = Vec::new();
    while buffered.len() < 20 {
        let mut row = Row::new();
        match rows.next_into(&mut row) {
            Some(line) => buffered.push((line?, row)),
            None => break,
        }
    }
    let texts: Vec<(u64, Vec<String>)> = buffered
        .iter()
        .map(|(line, r)| (*line, r.iter().map(lossy).collect()))
        .collect();
    let header = header_of(path, &texts, options)?;
    let labels = texts[header]
        .1
        .iter()
        .map(|l| l.trim().to_string())
        .collect();
    let header_row = buffered[header].0;
    let after = buffered.split_off(header + 1);
    let rows_estimate = csv_rows_estimate(path, &after);
    rows.ahead = after.into_iter();
    Ok(Source {
        labels,
        header_row,
        encoding: Some(if encoding == encoding_rs::UTF_8 {
            "utf-8"
        } else {
            "gbk"
        }),
        rows: Box::new(rows),
        rows_estimate,
    })
}

/// The file's size over its first data rows' average size.
fn csv_rows_estimate(path: &Path, first: &[(u64, Row)]) -> Option<usize> {
    let bytes: usize = first
        .iter()
        .map(|(_, r)| r.as_slice().len() + r.len())
        .sum();
    let size = std::fs::metadata(path).ok()?.len() as usize;
    (bytes > 0).then(|| size / (bytes / first.len()).max(1))
}

/// A sheet's rows, streamed by a thread that owns the workbook (its cell reader borrows
/// it) through a short queue, so a long sheet is never held whole.
fn xlsx_source(path: &Path, options: &ReadOptions) -> Result<Source, ExchangeError> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1_024);
    let (file, sheet) = (path.to_path_buf(), options.sheet.clone());
    std::thread::spawn(move || {
        let send = |row| sender.send(row).is_ok();
        if let Err(e) = send_sheet(&file, sheet.as_deref(), &send) {
            send(Err(bad(&file, e)));
        }
    });
    let mut rows = receiver.into_iter();
    let declared = match rows.next() {
        Some(Ok((declared, _))) => declared,
        Some(Err(e)) => return Err(e),
        None => return Err(bad(path, "the workbook could not be read")),
    };
    let head = rows.by_ref().take(20).collect::<Result<Vec<_>, _>>()?;
    let header = header_of(path, &head, options)?;
    let mut head = head.into_iter().skip(header);
    let (header_row, labels) = head.next().expect("header row");
    let rest: Vec<_> = head.map(Ok).collect();
    Ok(Source {
        labels: labels.into_iter().map(|l| l.trim().to_string()).collect(),
        header_row,
        encoding: None,
        rows_estimate: Some(declared as usize),
        rows: from_values(rest.into_iter().chain(rows)),
    })
}

type SheetRow = Result<(u64, Vec<String>), ExchangeError>;

/// Sends the sheet's declared row count first, then its rows, until the reader hangs up.
fn send_sheet(
    path: &Path,
    sheet: Option<&str>,
    send: &dyn Fn(SheetRow) -> bool,
) -> Result<(), SheetError> {
    let file = File::open(path).map_err(|e| SheetError::Unreadable(e.to_string()))?;
    let name = path.to_string_lossy();
    let limits = SheetLimits::default();
    let mut workbook = tongchou_catalog::sheet::open(&name, BufReader::new(file), &limits)?;
    let sheet = tongchou_catalog::sheet::choose(&workbook, sheet)?;
    let rows = tongchou_catalog::sheet::rows(&mut workbook, &sheet, &limits)?;
    if !send(Ok((rows.declared_rows() as u64, Vec::new()))) {
        return Ok(());
    }
    for row in rows {
        let (number, values) = row?;
        if !send(Ok((u64::from(number), values))) {
            break;
        }
    }
    Ok(())
}

fn json_value_text(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Bool(b)) => {
            if *b {
                "true".into()
            } else {
                "false".into()
            }
        }
        Some(other) => other.to_string(),
    }
}

/// JSON: an array of objects, or one object per line; keys are field names or labels.
fn json_source(path: &Path, resource: &Resource) -> Result<Source, ExchangeError> {
    let (bounded, row_bytes) = RowBound::new(File::open(path).map_err(|e| bad(path, e))?);
    let mut file = BufReader::new(bounded);
    let first = loop {
        let buf = file.fill_buf().map_err(|e| bad(path, e))?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => break buf[i],
            None if buf.is_empty() => break b'{',
            None => {
                let n = buf.len();
                file.consume(n);
            }
        }
    };
    let keys: Vec<(String, String)> = resource
        .fields
        .iter()
        .map(|f| (f.name.clone(), f.label.clone()))
        .collect();
    let labels: Vec<String> = keys.iter().map(|(n, _)| n.clone()).collect();
    let to_row = move |object: JsonObject| -> Vec<String> {
        keys.iter()
            .map(|(name, label)| json_value_text(object.get(name).or_else(|| object.get(label))))
            .collect()
    };
    let display = shown(path);
    let source = |rows_estimate, rows| Source {
        labels,
        header_row: 0,
        encoding: Some("utf-8"),
        rows_estimate,
        rows,
    };
    if first == b'[' {
        return Ok(source(
            None,
            json_array_rows(file, row_bytes, display, to_row),
        ));
    }
    let rows = file
        .lines()
        .enumerate()
        .filter(|(_, l)| l.as_ref().map_or(true, |t| !t.trim().is_empty()))
        .map(move |(i, line)| {
            row_bytes.store(0, Ordering::Relaxed);
            let line_no = i as u64 + 1;
            let text = line
                .map_err(|e| ExchangeError::BadFile(format!("{display}: line {line_no}: {e}")))?;
            match serde_json::from_str::<JsonObject>(&text) {
                Ok(object) => Ok((line_no, to_row(object))),
                // A line that is not a JSON object is kept as one raw value so that it is
                // quarantined with its reason, never dropped.
                Err(e) => Ok((line_no, vec![format!("\u{0}{e}")])),
            }
        });
    Ok(source(None, from_values(rows)))
}

type JsonObject = serde_json::Map<String, serde_json::Value>;

/// A JSON array's objects, parsed one at a time by a thread that sends them through a
/// short queue (serde pushes; the loader pulls), so a long array is never held whole.
fn json_array_rows<R: Read + Send + 'static>(
    reader: R,
    row_bytes: Arc<AtomicU64>,
    display: String,
    to_row: impl Fn(JsonObject) -> Vec<String> + Send + 'static,
) -> Rows {
    let (sender, receiver) = std::sync::mpsc::sync_channel::<SheetRow>(1_024);
    std::thread::spawn(move || {
        let mut sent = 0u64;
        let each = |object: JsonObject| {
            row_bytes.store(0, Ordering::Relaxed);
            sent += 1;
            sender.send(Ok((sent, to_row(object)))).is_ok()
        };
        let mut reader = serde_json::Deserializer::from_reader(reader);
        if let Err(e) = serde::Deserializer::deserialize_seq(&mut reader, EachObject(each)) {
            let _ = sender.send(Err(ExchangeError::BadFile(format!(
                "{display}: is not a JSON array of objects: {e}"
            ))));
        }
    });
    from_values(receiver.into_iter())
}

/// Visits an array's objects one by one, until the array ends or `0` says stop.
struct EachObject<F>(F);

impl<'de, F: FnMut(JsonObject) -> bool> serde::de::Visitor<'de> for EachObject<F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of objects")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(object) = seq.next_element::<JsonObject>()? {
            if !(self.0)(object) {
                break;
            }
        }
        Ok(())
    }
}

fn parquet_source(path: &Path) -> Result<Source, ExchangeError> {
    let file = File::open(path).map_err(|e| bad(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(path, e))?;
    let rows_estimate = usize::try_from(builder.metadata().file_metadata().num_rows()).ok();
    let reader = builder
        .with_batch_size(8192)
        .build()
        .map_err(|e| bad(path, e))?;
    let labels: Vec<String> = deltalake::arrow::record_batch::RecordBatchReader::schema(&reader)
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let display = shown(path);
    let mut line = 0u64;
    let rows = reader.flat_map(
        move |batch| -> Vec<Result<(u64, Vec<String>), ExchangeError>> {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => return vec![Err(ExchangeError::BadFile(format!("{display}: {e}")))],
            };
            let columns: Vec<_> = batch
                .columns()
                .iter()
                .map(|c| cast(c, &ArrowType::Utf8))
                .collect::<Result<_, _>>()
                .unwrap_or_default();
            let strings: Vec<&deltalake::arrow::array::StringArray> = columns
                .iter()
                .filter_map(|c| c.as_any().downcast_ref())
                .collect();
            (0..batch.num_rows())
                .map(|r| {
                    line += 1;
                    Ok((
                        line,
                        strings
                            .iter()
                            .map(|c| {
                                if c.is_null(r) {
                                    String::new()
                                } else {
                                    c.value(r).to_string()
                                }
                            })
                            .collect(),
                    ))
                })
                .collect()
        },
    );
    Ok(Source {
        labels,
        header_row: 0,
        encoding: None,
        rows_estimate,
        rows: from_values(rows),
    })
}
