//! Reads the first rows of a department file — CSV in UTF-8 (with or without BOM) or
//! GBK/GB18030, or a sheet of an XLSX workbook — finding the header below any title rows.

use std::io::Cursor;

use calamine::Data;

pub use crate::sheet::is_workbook;
use crate::sheet::{self, SheetError, SheetLimits};

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error(transparent)]
    Sheet(#[from] SheetError),
    #[error("cannot read the CSV file: {0}")]
    Csv(String),
    #[error("the file has no header row with at least two column names in its first 20 rows")]
    NoHeader,
    #[error("row {0} has {1} columns; a sample may have at most {MAX_COLUMNS}")]
    TooWide(usize, usize),
}

/// Columns a sample may have, and the bytes of a file read for one: a sample is the
/// first rows, never the whole of what was sent.
pub const MAX_COLUMNS: usize = 2_048;
pub const MAX_SAMPLE_BYTES: usize = 8 << 20;
/// Longer values are cut in a sample (inference needs their start, not their whole).
pub const MAX_VALUE_CHARS: usize = 1_024;

/// A table's header and first rows, with how it was read.
#[derive(Debug, Clone)]
pub struct Sample {
    /// 1-based line (CSV) or sheet row (XLSX) of the header.
    pub header_row: usize,
    pub labels: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub encoding: Option<&'static str>,
    pub sheet: Option<String>,
}

/// Reads a file given by name and content.
pub fn read(
    name: &str,
    bytes: &[u8],
    sheet: Option<&str>,
    max_rows: usize,
) -> Result<Sample, SampleError> {
    if is_workbook(name) {
        read_workbook(name, bytes, sheet, max_rows)
    } else {
        read_csv(bytes, max_rows)
    }
}

/// Decodes text: a UTF-8 BOM or valid UTF-8 is UTF-8; anything else is read as GB18030
/// (a superset of GBK and GB2312), which is what Chinese government exports use.
pub fn decode(bytes: &[u8]) -> (String, &'static str) {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return (String::from_utf8_lossy(rest).into_owned(), "utf-8-bom");
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), "utf-8"),
        Err(e) if e.error_len().is_none() && e.valid_up_to() + 4 > bytes.len() => {
            // Cut inside the last character of a truncated sample: still UTF-8.
            (
                String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned(),
                "utf-8",
            )
        }
        Err(_) => (encoding_rs::GB18030.decode(bytes).0.into_owned(), "gbk"),
    }
}

fn read_csv(bytes: &[u8], max_rows: usize) -> Result<Sample, SampleError> {
    let cut = bytes.len() > MAX_SAMPLE_BYTES;
    let (text, encoding) = decode(&bytes[..bytes.len().min(MAX_SAMPLE_BYTES)]);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows: Vec<(usize, Vec<String>)> = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| SampleError::Csv(e.to_string()))?;
        let number = rows.len() + 1;
        if record.len() > MAX_COLUMNS {
            return Err(SampleError::TooWide(number, record.len()));
        }
        rows.push((number, record.iter().map(sample_value).collect()));
        if rows.len() >= max_rows + 20 {
            break;
        }
    }
    if cut && rows.len() > 1 && rows.len() < max_rows + 20 {
        rows.pop(); // cut short by the sample's size
    }
    let mut sample = split_header(rows, max_rows)?;
    sample.encoding = Some(encoding);
    Ok(sample)
}

fn sample_value(value: &str) -> String {
    let value = value.trim();
    match value.char_indices().nth(MAX_VALUE_CHARS) {
        Some((end, _)) => value[..end].to_string(),
        None => value.to_string(),
    }
}

pub fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
        Data::DateTime(d) => excel_serial_to_text(d.as_f64()),
        other => other.to_string().trim().to_string(),
    }
}

/// Excel's day numbers count from 1899-12-30 (its 1900 leap-year bug included).
fn excel_serial_to_text(serial: f64) -> String {
    let epoch = jiff::civil::date(1899, 12, 30).to_datetime(jiff::civil::Time::midnight());
    let seconds = (serial * 86_400.0).round() as i64;
    match epoch.checked_add(jiff::Span::new().seconds(seconds)) {
        Ok(dt) if dt.time() == jiff::civil::Time::midnight() => dt.date().to_string(),
        Ok(dt) => dt.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => serial.to_string(),
    }
}

fn read_workbook(
    name: &str,
    bytes: &[u8],
    sheet: Option<&str>,
    max_rows: usize,
) -> Result<Sample, SampleError> {
    let limits = SheetLimits {
        max_columns: MAX_COLUMNS as u32,
        ..SheetLimits::default()
    };
    let mut workbook = sheet::open(name, Cursor::new(bytes), &limits)?;
    let name = sheet::choose(&workbook, sheet)?;
    let (mut rows, mut bytes) = (Vec::new(), 0);
    for row in sheet::rows(&mut workbook, &name, &limits)?.take(max_rows + 20) {
        let (number, values) = row?;
        let values: Vec<String> = values.iter().map(|v| sample_value(v)).collect();
        bytes += values.iter().map(String::len).sum::<usize>();
        rows.push((number as usize, values));
        if bytes > MAX_SAMPLE_BYTES {
            break; // a sample is the first rows, as for CSV
        }
    }
    let mut sample = split_header(rows, max_rows)?;
    sample.sheet = Some(name);
    Ok(sample)
}

/// The header is the first row naming at least 60% of the widest row's columns (title
/// rows above it name one cell); rows after it are data.
pub fn find_header<R: AsRef<[String]>>(rows: &[R]) -> Option<usize> {
    let filled = |r: &R| r.as_ref().iter().filter(|v| !v.trim().is_empty()).count();
    let widest = rows.iter().take(20).map(filled).max().unwrap_or(0);
    let needed = 2.max((widest * 6).div_ceil(10));
    rows.iter().take(20).position(|r| filled(r) >= needed)
}

/// Splits numbered rows (1-based lines or sheet rows) at the header.
fn split_header(
    mut rows: Vec<(usize, Vec<String>)>,
    max_rows: usize,
) -> Result<Sample, SampleError> {
    let values: Vec<&Vec<String>> = rows.iter().map(|(_, r)| r).collect();
    let header = find_header(&values).ok_or(SampleError::NoHeader)?;
    let mut data: Vec<Vec<String>> = rows
        .split_off(header + 1)
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let (header_row, labels) = rows.pop().unwrap_or_default();
    let labels: Vec<String> = labels.into_iter().map(|l| l.trim().to_string()).collect();
    let width = labels.len();
    data.truncate(max_rows);
    for row in &mut data {
        row.resize(width, String::new());
    }
    data.retain(|r| r.iter().any(|v| !v.is_empty()));
    Ok(Sample {
        header_row,
        labels,
        rows: data,
        encoding: None,
        sheet: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbk_csv_with_a_title_row() {
        let text = "南海区社会保险参保缴费明细表,,,\n单位编号,统一社会信用代码,单位名称,参保人数\nSB1,91350100M000100Y43,佛山市南海区锦华五金有限公司,12\n";
        let (bytes, _, _) = encoding_rs::GBK.encode(text);
        let s = read("x.csv", &bytes, None, 100).unwrap();
        assert_eq!(s.encoding, Some("gbk"));
        assert_eq!(s.header_row, 2);
        assert_eq!(s.labels[2], "单位名称");
        assert_eq!(
            s.rows,
            vec![vec![
                "SB1",
                "91350100M000100Y43",
                "佛山市南海区锦华五金有限公司",
                "12"
            ]]
        );
    }

    #[test]
    fn utf8_with_bom() {
        let s = read(
            "x.csv",
            "\u{feff}姓名,电话\n张三,13812341234\n".as_bytes(),
            None,
            100,
        )
        .unwrap();
        assert_eq!(
            (s.encoding, s.header_row, s.labels[0].as_str()),
            (Some("utf-8-bom"), 1, "姓名")
        );
    }

    #[test]
    fn workbook_with_title_row_and_named_sheet() {
        let mut wb = rust_xlsxwriter::Workbook::new();
        let sheet = wb.add_worksheet().set_name("数据").unwrap();
        sheet.write_string(0, 0, "标题").unwrap();
        sheet.write_string(1, 0, "姓名").unwrap();
        sheet.write_string(1, 1, "年龄").unwrap();
        sheet.write_string(2, 0, "李四").unwrap();
        sheet.write_number(2, 1, 42).unwrap();
        let bytes = wb.save_to_buffer().unwrap();
        let s = read("x.xlsx", &bytes, Some("数据"), 100).unwrap();
        assert_eq!((s.header_row, s.rows[0][1].as_str()), (2, "42"));
        assert!(matches!(
            read("x.xlsx", &bytes, Some("Sheet9"), 100),
            Err(SampleError::Sheet(SheetError::NoSheet(..)))
        ));
    }

    #[test]
    fn samples_are_bounded_by_what_they_hold() {
        let mut wb = rust_xlsxwriter::Workbook::new();
        let sheet = wb.add_worksheet();
        sheet.write_string(0, 0, "姓名").unwrap();
        sheet.write_string(0, 1, "住址").unwrap();
        sheet.write_string(1_048_575, 16_383, "远").unwrap();
        let sparse = wb.save_to_buffer().unwrap();
        let error = read("a.xlsx", &sparse, None, 100).unwrap_err().to_string();
        assert!(
            error.contains("cell XFD1048576 is in column 16384"),
            "{error}"
        );

        let wide = "a,".repeat(4 << 20);
        let error = read("x.csv", wide.as_bytes(), None, 100).unwrap_err();
        assert!(matches!(error, SampleError::TooWide(1, _)), "{error}");

        let long = |n| format!("姓名,备注\n张三,{}\n李四,短\n", "长".repeat(n));
        let s = read("x.csv", long(2 << 20).as_bytes(), None, 100).unwrap();
        assert_eq!(s.rows[0][1].chars().count(), MAX_VALUE_CHARS);
        assert_eq!(s.rows.len(), 2);
        let s = read("x.csv", long(3 << 20).as_bytes(), None, 100).unwrap();
        assert!(
            s.rows.is_empty(),
            "the sample stops at {MAX_SAMPLE_BYTES} bytes, a cut row dropped"
        );
    }
}
