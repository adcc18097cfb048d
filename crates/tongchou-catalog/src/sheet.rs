//! Reads an XLSX sheet by its real cells, streamed, within limits — never by the rectangle
//! its extreme cells span (a workbook with cells at A1 and XFD1048576 is two cells, not
//! seventeen billion). The parts a reader holds whole (shared strings, styles) are
//! bounded by their declared unpacked size before they are opened, and the unpacking
//! stops at that size.

use std::io::{Read, Seek, SeekFrom};

use calamine::{Data, DataRef, Reader, Xlsx, XlsxCellReader};

/// What a workbook may claim before it is refused.
#[derive(Debug, Clone, Copy)]
pub struct SheetLimits {
    /// A cell in a column past this is refused (Excel allows 16,384).
    pub max_columns: u32,
    pub max_sheets: usize,
    /// Unpacked size of each part read whole: shared strings, styles, the workbook.
    pub max_part_bytes: u64,
    /// Unpacked size of a worksheet, which is streamed.
    pub max_sheet_bytes: u64,
    /// Filled cells read from one sheet.
    pub max_cells: u64,
    /// The text of one row (a shared string counts each time a cell uses it).
    pub max_row_bytes: usize,
}

impl Default for SheetLimits {
    fn default() -> SheetLimits {
        SheetLimits {
            max_columns: 2_048,
            max_sheets: 256,
            max_part_bytes: 256 << 20,
            max_sheet_bytes: 4 << 30,
            max_cells: 200_000_000,
            max_row_bytes: 16 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SheetError {
    #[error("cannot read the workbook: {0}")]
    Unreadable(String),
    #[error(
        "{0} workbooks are not read (their readers hold every sheet whole); save the file as Excel Workbook (.xlsx) or CSV"
    )]
    Format(&'static str),
    #[error(
        "the workbook part {0} unpacks to {1} bytes, over the limit of {2}; save the sheet alone as .xlsx or CSV"
    )]
    TooBig(String, u64, u64),
    #[error("the workbook has {0} sheets; at most {1} are read")]
    TooManySheets(usize, usize),
    #[error("the workbook has no sheet named '{0}'; its sheets are: {1}")]
    NoSheet(String, String),
    #[error("cell {0} is in column {1}; a sheet may have at most {2} columns")]
    TooWide(String, u32, u32),
    #[error("the sheet has over {0} filled cells; split it or load it as CSV")]
    TooManyCells(u64),
    #[error("the sheet's cells are out of order at {0}; save it again in Excel or WPS")]
    OutOfOrder(String),
    #[error(
        "the workbook part {0} has a text of over {1} bytes; a cell holds at most 32,767 characters"
    )]
    LongText(String, usize),
    #[error("row {0} holds over {1} bytes of text; no row of a department file is that long")]
    LongRow(u32, usize),
}

/// Whether a file name is a workbook (which [`open`] reads or refuses with a reason).
pub fn is_workbook(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".xlsx", ".xlsm", ".xls", ".xlsb", ".ods"]
        .iter()
        .any(|e| lower.ends_with(e))
}

/// Opens an XLSX/XLSM workbook after checking what its parts claim.
pub fn open<RS: Read + Seek>(
    name: &str,
    mut reader: RS,
    limits: &SheetLimits,
) -> Result<Xlsx<RS>, SheetError> {
    let lower = name.to_ascii_lowercase();
    for (ext, format) in [
        (".xls", "Excel 97–2003 (.xls)"),
        (".xlsb", "Excel binary (.xlsb)"),
        (".ods", "OpenDocument (.ods)"),
    ] {
        if lower.ends_with(ext) {
            return Err(SheetError::Format(format));
        }
    }
    check_parts(&mut reader, limits)?;
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| SheetError::Unreadable(e.to_string()))?;
    let xlsx = Xlsx::new(reader).map_err(|e| SheetError::Unreadable(e.to_string()))?;
    let sheets = xlsx.sheet_names().len();
    if sheets > limits.max_sheets {
        return Err(SheetError::TooManySheets(sheets, limits.max_sheets));
    }
    Ok(xlsx)
}

/// The declared unpacked sizes bound what is unpacked: the zip reader stops at them. The
/// parts with cell text are scanned for a text longer than a cell can hold, because the
/// XML reader holds each text whole.
fn check_parts<RS: Read + Seek>(reader: &mut RS, limits: &SheetLimits) -> Result<(), SheetError> {
    let unreadable = |e: zip::result::ZipError| SheetError::Unreadable(e.to_string());
    let mut zip = zip::ZipArchive::new(reader).map_err(unreadable)?;
    for index in 0..zip.len() {
        let entry = zip.by_index_data(index).map_err(unreadable)?;
        let part = entry.name().unwrap_or_default().to_string();
        let size = entry.size();
        let sheet = part.starts_with("xl/worksheets/");
        let limit = if sheet {
            limits.max_sheet_bytes
        } else {
            limits.max_part_bytes
        };
        if size > limit {
            return Err(SheetError::TooBig(part, size, limit));
        }
        if sheet || part == "xl/sharedStrings.xml" {
            longest_text_within(zip.by_index(index).map_err(unreadable)?, &part)?;
        }
    }
    Ok(())
}

/// The most bytes between two tags: a cell's 32,767 characters, escaped, in UTF-8.
const MAX_TEXT_BYTES: usize = 1 << 20;

fn longest_text_within(mut part: impl Read, name: &str) -> Result<(), SheetError> {
    let mut buf = vec![0u8; 64 << 10];
    let mut run = 0usize;
    loop {
        let n = part
            .read(&mut buf)
            .map_err(|e| SheetError::Unreadable(e.to_string()))?;
        if n == 0 {
            return Ok(());
        }
        for &byte in &buf[..n] {
            run = if byte == b'<' { 0 } else { run + 1 };
        }
        if run > MAX_TEXT_BYTES {
            return Err(SheetError::LongText(name.to_string(), MAX_TEXT_BYTES));
        }
    }
}

/// The sheet named, or the first one.
pub fn choose<RS: Read + Seek>(xlsx: &Xlsx<RS>, sheet: Option<&str>) -> Result<String, SheetError> {
    let names = xlsx.sheet_names();
    match sheet {
        Some(s) if names.iter().any(|n| n == s) => Ok(s.to_string()),
        Some(s) => Err(SheetError::NoSheet(s.to_string(), names.join(", "))),
        None => names
            .first()
            .cloned()
            .ok_or_else(|| SheetError::Unreadable("it has no sheets".into())),
    }
}

/// A sheet's rows that have a filled cell, in order, each with its 1-based row number;
/// a row's values run from column A to its last filled cell.
pub struct Rows<'a, RS: Read + Seek> {
    cells: XlsxCellReader<'a, RS>,
    ahead: Option<(u32, u32, String)>,
    read: u64,
    limits: SheetLimits,
    last_row: Option<u32>,
    /// The reader fails if asked again after the sheet's end.
    ended: bool,
}

/// Streams the rows of `sheet`.
pub fn rows<'a, RS: Read + Seek>(
    xlsx: &'a mut Xlsx<RS>,
    sheet: &str,
    limits: &SheetLimits,
) -> Result<Rows<'a, RS>, SheetError> {
    let cells = xlsx
        .worksheet_cells_reader(sheet)
        .map_err(|e| SheetError::Unreadable(e.to_string()))?;
    Ok(Rows {
        cells,
        ahead: None,
        read: 0,
        limits: *limits,
        last_row: None,
        ended: false,
    })
}

impl<RS: Read + Seek> Rows<'_, RS> {
    /// The number of rows the sheet declares (untrusted: an estimate).
    pub fn declared_rows(&self) -> usize {
        let d = self.cells.dimensions();
        (d.end.0.saturating_sub(d.start.0) as usize) + 1
    }

    /// The next filled cell as (row, column, text).
    fn next_cell(&mut self) -> Result<Option<(u32, u32, String)>, SheetError> {
        if let Some(cell) = self.ahead.take() {
            return Ok(Some(cell));
        }
        while !self.ended {
            let Some(cell) = self
                .cells
                .next_cell()
                .map_err(|e| SheetError::Unreadable(e.to_string()))?
            else {
                self.ended = true;
                break;
            };
            let (row, col) = cell.get_position();
            let value = cell.get_value();
            if matches!(value, DataRef::Empty) {
                continue;
            }
            if col >= self.limits.max_columns {
                return Err(SheetError::TooWide(
                    cell_name(row, col),
                    col + 1,
                    self.limits.max_columns,
                ));
            }
            self.read += 1;
            if self.read > self.limits.max_cells {
                return Err(SheetError::TooManyCells(self.limits.max_cells));
            }
            let text = crate::sample::cell_text(&Data::from(value.clone()));
            if text.is_empty() {
                continue;
            }
            return Ok(Some((row, col, text)));
        }
        Ok(None)
    }

    fn next_row(&mut self) -> Result<Option<(u32, Vec<String>)>, SheetError> {
        let Some((row, col, text)) = self.next_cell()? else {
            return Ok(None);
        };
        if self.last_row.is_some_and(|last| row <= last) {
            return Err(SheetError::OutOfOrder(cell_name(row, col)));
        }
        self.last_row = Some(row);
        let (mut values, mut bytes) = (Vec::new(), 0usize);
        let max = self.limits.max_row_bytes;
        let mut put = |col: u32, text: String| {
            bytes += text.len();
            if bytes > max {
                return Err(SheetError::LongRow(row + 1, max));
            }
            let col = col as usize;
            if values.len() <= col {
                values.resize(col + 1, String::new());
            }
            values[col] = text;
            Ok(())
        };
        put(col, text)?;
        while let Some((next_row, col, text)) = self.next_cell()? {
            if next_row != row {
                self.ahead = Some((next_row, col, text));
                break;
            }
            put(col, text)?;
        }
        Ok(Some((row + 1, values)))
    }
}

impl<RS: Read + Seek> Iterator for Rows<'_, RS> {
    type Item = Result<(u32, Vec<String>), SheetError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_row().transpose()
    }
}

/// A cell's name as Excel shows it (0-based row and column): `A1`, `XFD1048576`.
pub fn cell_name(row: u32, col: u32) -> String {
    let mut letters = Vec::new();
    let mut n = col + 1;
    while n > 0 {
        letters.push(b'A' + ((n - 1) % 26) as u8);
        n = (n - 1) / 26;
    }
    letters.reverse();
    format!(
        "{}{}",
        String::from_utf8(letters).unwrap_or_default(),
        row + 1
    )
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// A workbook with `cells` (name, text) on one sheet named `表1`.
    pub(crate) fn workbook(cells: &[(u32, u16, &str)]) -> Vec<u8> {
        let mut book = rust_xlsxwriter::Workbook::new();
        let sheet = book.add_worksheet().set_name("表1").unwrap();
        for (row, col, text) in cells {
            sheet.write_string(*row, *col, *text).unwrap();
        }
        book.save_to_buffer().unwrap()
    }

    fn read_all(bytes: &[u8], limits: &SheetLimits) -> Result<Vec<(u32, Vec<String>)>, SheetError> {
        let mut xlsx = open("a.xlsx", Cursor::new(bytes), limits)?;
        let sheet = choose(&xlsx, None)?;
        rows(&mut xlsx, &sheet, limits)?.collect()
    }

    #[test]
    fn extreme_cells_are_two_cells_not_a_rectangle() {
        let bytes = workbook(&[(0, 0, "甲"), (1_048_575, 2_047, "乙")]);
        let rows = read_all(&bytes, &SheetLimits::default()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], (1, vec!["甲".to_string()]));
        assert_eq!(rows[1].0, 1_048_576);
        assert_eq!(rows[1].1.len(), 2_048);
        let wide = workbook(&[(0, 0, "甲"), (1_048_575, 16_383, "乙")]);
        let error = read_all(&wide, &SheetLimits::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cell XFD1048576 is in column 16384; a sheet may have at most 2048 columns"
        );
    }

    #[test]
    fn rows_keep_their_numbers_and_gaps() {
        let bytes = workbook(&[(2, 0, "标题"), (4, 0, "姓名"), (4, 2, "住址"), (5, 1, "x")]);
        let rows = read_all(&bytes, &SheetLimits::default()).unwrap();
        let numbers: Vec<u32> = rows.iter().map(|r| r.0).collect();
        assert_eq!(numbers, [3, 5, 6]);
        assert_eq!(rows[1].1, ["姓名", "", "住址"]);
        assert_eq!(rows[2].1, ["", "x"]);
    }

    #[test]
    fn limits_refuse_with_reasons() {
        let bytes = workbook(&[(0, 0, "a"), (0, 1, "b"), (1, 0, "c")]);
        let few = SheetLimits {
            max_cells: 2,
            ..SheetLimits::default()
        };
        assert!(matches!(
            read_all(&bytes, &few),
            Err(SheetError::TooManyCells(2))
        ));
        let small = SheetLimits {
            max_part_bytes: 10,
            ..SheetLimits::default()
        };
        assert!(matches!(
            read_all(&bytes, &small),
            Err(SheetError::TooBig(..))
        ));
        let Err(error) = open("a.xls", Cursor::new(&bytes[..]), &SheetLimits::default()) else {
            panic!("an .xls workbook was opened");
        };
        assert!(
            error
                .to_string()
                .contains("save the file as Excel Workbook (.xlsx)")
        );
    }

    /// The workbook with `text` in place of `mark` in every part (a writer refuses texts
    /// longer than a cell, so a hostile one is made by hand).
    fn replaced(bytes: &[u8], mark: &str, text: &str) -> Vec<u8> {
        let mut from = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let mut to = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for i in 0..from.len() {
            let mut entry = from.by_index(i).unwrap();
            let mut content = String::new();
            entry.read_to_string(&mut content).unwrap();
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            to.start_file(entry.name().unwrap().to_string(), options)
                .unwrap();
            std::io::Write::write_all(&mut to, content.replace(mark, text).as_bytes()).unwrap();
        }
        to.finish().unwrap().into_inner()
    }

    #[test]
    fn a_text_longer_than_a_cell_is_refused_before_it_is_read() {
        let bytes = workbook(&[(0, 0, "a"), (1, 0, "MARK")]);
        let long = replaced(&bytes, "MARK", &"长".repeat(400_000));
        let error = read_all(&long, &SheetLimits::default()).unwrap_err();
        assert!(matches!(error, SheetError::LongText(..)), "{error}");
        let fine = replaced(&bytes, "MARK", &"长".repeat(30_000));
        assert_eq!(read_all(&fine, &SheetLimits::default()).unwrap().len(), 2);
    }

    #[test]
    fn cell_names() {
        assert_eq!(cell_name(0, 0), "A1");
        assert_eq!(cell_name(9, 25), "Z10");
        assert_eq!(cell_name(0, 26), "AA1");
        assert_eq!(cell_name(1_048_575, 16_383), "XFD1048576");
    }
}
