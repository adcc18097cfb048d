//! Reads the first rows of a department file — CSV in UTF-8 (with or without BOM) or
//! GBK/GB18030, or a sheet of an XLSX workbook — finding the header below any title rows.

use std::io::Cursor;

use calamine::{Data, Reader};

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("cannot read the workbook: {0}")]
    Workbook(String),
    #[error("the workbook has no sheet named '{0}'; its sheets are: {1}")]
    NoSheet(String, String),
    #[error("cannot read the CSV file: {0}")]
    Csv(String),
    #[error("the file has no header row with at least two column names in its first 20 rows")]
    NoHeader,
}

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

pub fn is_workbook(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".xlsx", ".xlsm", ".xls", ".ods"]
        .iter()
        .any(|e| lower.ends_with(e))
}

/// Reads a file given by name and content.
pub fn read(
    name: &str,
    bytes: &[u8],
    sheet: Option<&str>,
    max_rows: usize,
) -> Result<Sample, SampleError> {
    if is_workbook(name) {
        read_workbook(bytes, sheet, max_rows)
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
    let (text, encoding) = decode(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows: Vec<Vec<String>> = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| SampleError::Csv(e.to_string()))?;
        rows.push(record.iter().map(|v| v.trim().to_string()).collect());
        if rows.len() >= max_rows + 20 {
            break;
        }
    }
    let mut sample = split_header(rows, max_rows)?;
    sample.encoding = Some(encoding);
    Ok(sample)
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
    bytes: &[u8],
    sheet: Option<&str>,
    max_rows: usize,
) -> Result<Sample, SampleError> {
    let mut workbook = calamine::open_workbook_auto_from_rs(Cursor::new(bytes))
        .map_err(|e| SampleError::Workbook(e.to_string()))?;
    let names = workbook.sheet_names();
    let name = match sheet {
        Some(s) if names.iter().any(|n| n == s) => s.to_string(),
        Some(s) => return Err(SampleError::NoSheet(s.to_string(), names.join(", "))),
        None => names
            .first()
            .cloned()
            .ok_or_else(|| SampleError::Workbook("it has no sheets".into()))?,
    };
    let range = workbook
        .worksheet_range(&name)
        .map_err(|e| SampleError::Workbook(e.to_string()))?;
    let first_row = range.start().map_or(0, |(r, _)| r as usize);
    let mut rows: Vec<Vec<String>> = vec![Vec::new(); first_row];
    rows.extend(
        range
            .rows()
            .take(max_rows + 20)
            .map(|r| r.iter().map(cell_text).collect()),
    );
    let mut sample = split_header(rows, max_rows)?;
    sample.sheet = Some(name);
    Ok(sample)
}

/// The header is the first row naming at least 60% of the widest row's columns (title
/// rows above it name one cell); rows after it are data.
pub fn find_header(rows: &[Vec<String>]) -> Option<usize> {
    let filled = |r: &Vec<String>| r.iter().filter(|v| !v.trim().is_empty()).count();
    let widest = rows.iter().take(20).map(filled).max().unwrap_or(0);
    let needed = 2.max((widest * 6).div_ceil(10));
    rows.iter().take(20).position(|r| filled(r) >= needed)
}

fn split_header(mut rows: Vec<Vec<String>>, max_rows: usize) -> Result<Sample, SampleError> {
    let header = find_header(&rows).ok_or(SampleError::NoHeader)?;
    let mut data = rows.split_off(header + 1);
    let labels: Vec<String> = rows
        .pop()
        .unwrap_or_default()
        .into_iter()
        .map(|l| l.trim().to_string())
        .collect();
    let width = labels.len();
    data.truncate(max_rows);
    for row in &mut data {
        row.resize(width, String::new());
    }
    data.retain(|r| r.iter().any(|v| !v.is_empty()));
    Ok(Sample {
        header_row: header + 1,
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
            Err(SampleError::NoSheet(..))
        ));
    }
}
