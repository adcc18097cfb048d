//! Writes department exports as departments produce them: CSV in UTF-8 (with or without
//! BOM) or GBK, XLSX with a title row above the header, newline-delimited JSON.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use jiff::civil::Date;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tongchou_model::{DataType, Resource};

use crate::SimError;

/// One row of values, kept in one reusable buffer.
#[derive(Default)]
pub struct Row {
    buf: String,
    ends: Vec<usize>,
}

impl Row {
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    pub fn push(&mut self, value: &str) {
        self.buf.push_str(value);
        self.ends.push(self.buf.len());
    }

    pub fn push_fmt(&mut self, args: std::fmt::Arguments<'_>) {
        use std::fmt::Write as _;
        self.buf.write_fmt(args).expect("writing to a String");
        self.ends.push(self.buf.len());
    }

    pub fn fields(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let field = &self.buf[start..end];
            start = end;
            field
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    Utf8,
    Utf8Bom,
    Gbk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Xlsx,
    Ndjson,
}

/// How a department writes dates; `Mixed` is an export assembled from several systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateStyle {
    Iso,
    Slash,
    Chinese,
    Mixed,
}

pub fn format_date(date: Date, style: DateStyle, rng: &mut ChaCha8Rng) -> String {
    let style = match style {
        DateStyle::Mixed => {
            [DateStyle::Iso, DateStyle::Slash, DateStyle::Chinese][rng.random_range(0..3)]
        }
        other => other,
    };
    let (y, m, d) = (date.year(), date.month(), date.day());
    match style {
        DateStyle::Iso | DateStyle::Mixed => format!("{y:04}-{m:02}-{d:02}"),
        DateStyle::Slash => format!("{y}/{m}/{d}"),
        DateStyle::Chinese => format!("{y}年{m}月{d}日"),
    }
}

/// Where and how one resource's export is written.
#[derive(Debug, Clone)]
pub struct ExportSpec {
    pub file: String,
    pub format: Format,
    pub encoding: Encoding,
    pub title: Option<String>,
    pub date_style: DateStyle,
}

/// The manifest entry of one written export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub file: String,
    pub resource_code: String,
    pub unit: String,
    pub format: Format,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    /// 1-based line (CSV, NDJSON) or row (XLSX) of the header; data starts below it.
    pub header_row: u64,
    pub rows: u64,
}

enum Sink {
    Csv(Box<csv::Writer<CsvOut>>),
    Xlsx {
        workbook: Box<rust_xlsxwriter::Workbook>,
        sheet: Box<rust_xlsxwriter::Worksheet>,
        numeric: Vec<bool>,
    },
    Ndjson {
        file: BufWriter<File>,
        names: Vec<String>,
        numeric: Vec<bool>,
    },
}

pub const SHEET_NAME: &str = "数据";

/// Writes one export; rows are numbered as a person sees them in an editor or in Excel.
pub struct TableWriter {
    sink: Sink,
    path: PathBuf,
    report: ExportReport,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn xlsx_error(path: &Path) -> impl Fn(rust_xlsxwriter::XlsxError) -> SimError + '_ {
    move |e| match e {
        rust_xlsxwriter::XlsxError::IoError(source) => SimError::Io {
            path: path.display().to_string(),
            source,
        },
        other => SimError::Xlsx {
            path: path.display().to_string(),
            message: other.to_string(),
        },
    }
}

impl TableWriter {
    pub fn create(
        root: &Path,
        spec: &ExportSpec,
        resource: &Resource,
    ) -> Result<TableWriter, SimError> {
        let path = root.join(&spec.file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        let labels: Vec<&str> = resource.fields.iter().map(|f| f.label.as_str()).collect();
        let numeric: Vec<bool> = resource
            .fields
            .iter()
            .map(|f| matches!(f.data_type, DataType::Integer | DataType::Decimal))
            .collect();
        let title_rows = u64::from(spec.title.is_some());
        let sink = match spec.format {
            Format::Csv => {
                let mut file = BufWriter::with_capacity(
                    1 << 20,
                    File::create(&path).map_err(io_error(&path))?,
                );
                if spec.encoding == Encoding::Utf8Bom {
                    file.write_all(b"\xEF\xBB\xBF").map_err(io_error(&path))?;
                }
                let out = match spec.encoding {
                    Encoding::Gbk => CsvOut::Gbk {
                        file,
                        pending: Vec::new(),
                    },
                    _ => CsvOut::Plain(file),
                };
                let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(out);
                if let Some(title) = &spec.title {
                    let mut line = vec![title.as_str()];
                    line.resize(labels.len(), "");
                    writer
                        .write_record(&line)
                        .map_err(|e| csv_error(&path, e))?;
                }
                writer
                    .write_record(&labels)
                    .map_err(|e| csv_error(&path, e))?;
                Sink::Csv(Box::new(writer))
            }
            Format::Xlsx => {
                let mut workbook = rust_xlsxwriter::Workbook::new();
                let created = rust_xlsxwriter::ExcelDateTime::from_ymd(2015, 6, 9)
                    .map_err(xlsx_error(&path))?;
                workbook.set_properties(
                    &rust_xlsxwriter::DocProperties::new()
                        .set_title(resource.name.as_str())
                        .set_author(resource.unit.as_str())
                        .set_creation_datetime(&created),
                );
                let mut sheet = rust_xlsxwriter::Worksheet::new();
                sheet.set_name(SHEET_NAME).map_err(xlsx_error(&path))?;
                if let Some(title) = &spec.title {
                    let last = (labels.len().max(2) - 1) as u16;
                    sheet
                        .merge_range(
                            0,
                            0,
                            0,
                            last,
                            title,
                            &rust_xlsxwriter::Format::new().set_bold(),
                        )
                        .map_err(xlsx_error(&path))?;
                }
                for (col, label) in labels.iter().enumerate() {
                    sheet
                        .write_string(title_rows as u32, col as u16, *label)
                        .map_err(xlsx_error(&path))?;
                }
                Sink::Xlsx {
                    workbook: Box::new(workbook),
                    sheet: Box::new(sheet),
                    numeric,
                }
            }
            Format::Ndjson => Sink::Ndjson {
                file: BufWriter::with_capacity(
                    1 << 20,
                    File::create(&path).map_err(io_error(&path))?,
                ),
                names: resource.fields.iter().map(|f| f.name.clone()).collect(),
                numeric,
            },
        };
        let header_row = match spec.format {
            Format::Ndjson => 0,
            _ => title_rows + 1,
        };
        Ok(TableWriter {
            sink,
            path,
            report: ExportReport {
                file: spec.file.clone(),
                resource_code: resource.code.clone().unwrap_or_default(),
                unit: resource.unit.clone(),
                format: spec.format,
                encoding: (spec.format == Format::Csv).then_some(spec.encoding),
                sheet: (spec.format == Format::Xlsx).then(|| SHEET_NAME.to_string()),
                header_row,
                rows: 0,
            },
        })
    }

    /// The line (or sheet row) the next row will be written on.
    pub fn next_line(&self) -> u64 {
        self.report.header_row + self.report.rows + 1
    }

    pub fn rows(&self) -> u64 {
        self.report.rows
    }

    pub fn write(&mut self, row: &Row) -> Result<(), SimError> {
        let line = self.next_line();
        match &mut self.sink {
            Sink::Csv(writer) => {
                writer
                    .write_record(row.fields())
                    .map_err(|e| csv_error(&self.path, e))?;
            }
            Sink::Xlsx { sheet, numeric, .. } => {
                let r = (line - 1) as u32;
                for (col, value) in row.fields().enumerate() {
                    let number = numeric[col].then(|| value.parse::<f64>().ok()).flatten();
                    match number {
                        Some(n) => sheet.write_number(r, col as u16, n),
                        None if value.is_empty() => continue,
                        None => sheet.write_string(r, col as u16, value),
                    }
                    .map_err(xlsx_error(&self.path))?;
                }
            }
            Sink::Ndjson {
                file,
                names,
                numeric,
            } => {
                let mut object = serde_json::Map::new();
                for ((name, value), numeric) in names.iter().zip(row.fields()).zip(numeric.iter()) {
                    let json = match value.parse::<f64>() {
                        _ if value.is_empty() => serde_json::Value::Null,
                        Ok(n) if *numeric => serde_json::Number::from_f64(n)
                            .map(serde_json::Value::Number)
                            .unwrap_or(serde_json::Value::Null),
                        _ => serde_json::Value::String(value.to_string()),
                    };
                    object.insert(name.clone(), json);
                }
                serde_json::to_writer(&mut *file, &object).map_err(|e| SimError::Io {
                    path: self.path.display().to_string(),
                    source: e.into(),
                })?;
                file.write_all(b"\n").map_err(io_error(&self.path))?;
            }
        }
        self.report.rows += 1;
        Ok(())
    }

    pub fn finish(self) -> Result<ExportReport, SimError> {
        let path = self.path;
        match self.sink {
            Sink::Csv(writer) => {
                let out = writer
                    .into_inner()
                    .map_err(|e| io_error(&path)(e.into_error()))?;
                out.into_file()
                    .map_err(io_error(&path))?
                    .sync_all()
                    .map_err(io_error(&path))?;
            }
            Sink::Xlsx {
                mut workbook,
                sheet,
                ..
            } => {
                workbook.push_worksheet(*sheet);
                let file = File::create(&path).map_err(io_error(&path))?;
                workbook
                    .save_to_writer(BufWriter::new(&file))
                    .map_err(xlsx_error(&path))?;
                file.sync_all().map_err(io_error(&path))?;
            }
            Sink::Ndjson { mut file, .. } => {
                file.flush().map_err(io_error(&path))?;
                file.get_ref().sync_all().map_err(io_error(&path))?;
            }
        }
        Ok(self.report)
    }
}

fn csv_error(path: &Path, e: csv::Error) -> SimError {
    SimError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Where CSV text goes: straight to the file, or transcoded to GBK on the way.
enum CsvOut {
    Plain(BufWriter<File>),
    Gbk {
        file: BufWriter<File>,
        pending: Vec<u8>,
    },
}

impl CsvOut {
    fn into_file(mut self) -> std::io::Result<File> {
        self.flush()?;
        let file = match self {
            CsvOut::Plain(file) | CsvOut::Gbk { file, .. } => file,
        };
        file.into_inner().map_err(|e| e.into_error())
    }
}

impl Write for CsvOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            CsvOut::Plain(file) => file.write(buf),
            CsvOut::Gbk { file, pending } => {
                pending.extend_from_slice(buf);
                // The CSV writer may split a character between two writes: keep the tail.
                let complete = match std::str::from_utf8(pending) {
                    Ok(text) => text.len(),
                    Err(e) => e.valid_up_to(),
                };
                let text = std::str::from_utf8(&pending[..complete]).expect("validated");
                let (bytes, _, unmappable) = encoding_rs::GBK.encode(text);
                debug_assert!(!unmappable, "generated text must be representable in GBK");
                file.write_all(&bytes)?;
                pending.drain(..complete);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            CsvOut::Plain(file) | CsvOut::Gbk { file, .. } => file.flush(),
        }
    }
}
