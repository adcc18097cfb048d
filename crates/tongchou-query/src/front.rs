//! What the front doors share: the answer in the format asked for, and the ledger entry of
//! a statement — what it read, how masked and filtered, what it returned, whom it touched.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::{DataType, Float64Type};
use arrow::record_batch::RecordBatch;
use tongchou_audit::{Audit, DENIED, Entry, FAILED};

use crate::{Answer, QueryError};

/// How text cells leave in CSV: for people, a cell a spreadsheet would take for a formula
/// is neutralised (OWASP: a leading `'`); for programs, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csv {
    FormulaSafe,
    Raw,
}

/// The answer in `format`, as the bytes that will leave; CSV formula-safe.
pub fn render(answer: &Answer, format: &str) -> Result<Vec<u8>, QueryError> {
    render_with(answer, format, Csv::FormulaSafe)
}

/// The answer in `format`, as the bytes that will leave.
pub fn render_with(answer: &Answer, format: &str, csv: Csv) -> Result<Vec<u8>, QueryError> {
    let mut out = Vec::new();
    match format {
        "csv" => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for b in &answer.batches {
                match csv {
                    Csv::FormulaSafe => w.write(&formula_safe(b)?)?,
                    Csv::Raw => w.write(b)?,
                }
            }
        }
        "json" => {
            let mut w = arrow::json::ArrayWriter::new(&mut out);
            let batches: Vec<&arrow::record_batch::RecordBatch> = answer.batches.iter().collect();
            w.write_batches(&batches)?;
            w.finish()?;
            if answer.batches.is_empty() {
                out = b"[]".to_vec();
            }
            out.push(b'\n');
        }
        "table" => {
            let table = deltalake::arrow::util::pretty::pretty_format_batches(&answer.batches)?;
            out = format!("{table}\n({} rows)\n", answer.rows).into_bytes();
        }
        "arrow" => {
            let mut w = arrow::ipc::writer::FileWriter::try_new(&mut out, &answer.schema)?;
            for b in &answer.batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        "xlsx" => out = workbook(answer)?,
        other => {
            return Err(QueryError::Refused(format!(
                "format '{other}': use table, csv, json, xlsx or arrow"
            )));
        }
    }
    Ok(out)
}

/// The batch with every text cell (and column name) that a spreadsheet would run as a
/// formula quoted.
fn formula_safe(batch: &RecordBatch) -> Result<RecordBatch, QueryError> {
    let columns = batch
        .columns()
        .iter()
        .map(|column| {
            if !is_text(column.data_type()) {
                return Ok(column.clone());
            }
            let text = arrow::compute::cast(column, &DataType::Utf8)?;
            let text: &StringArray = text.as_any().downcast_ref().expect("cast to utf8");
            Ok(Arc::new(text.iter().map(|v| v.map(neutral)).collect::<StringArray>()) as ArrayRef)
        })
        .collect::<Result<Vec<_>, QueryError>>()?;
    let fields: Vec<_> = batch
        .schema()
        .fields()
        .iter()
        .zip(&columns)
        .map(|(f, c)| arrow::datatypes::Field::new(neutral(f.name()), c.data_type().clone(), true))
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
    )?)
}

fn is_text(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => is_text(values),
        _ => false,
    }
}

fn neutral(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_string(),
    }
}

/// The answer as one worksheet: a header row of column names, numbers as numbers
/// (decimals with their places), every other value as its text (dates as ISO dates),
/// nulls as empty cells.
fn workbook(answer: &Answer) -> Result<Vec<u8>, QueryError> {
    use rust_xlsxwriter::{Format, Workbook};
    let failed = |e: rust_xlsxwriter::XlsxError| QueryError::Sql(format!("xlsx: {e}"));
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    let bold = Format::new().set_bold();
    for (c, field) in answer.schema.fields().iter().enumerate() {
        sheet
            .write_string_with_format(0, c as u16, field.name(), &bold)
            .map_err(failed)?;
    }
    let mut row = 1u32;
    for batch in &answer.batches {
        for (c, column) in batch.columns().iter().enumerate() {
            let cell = Cell::of(column.data_type());
            let values = arrow::compute::cast(column, &cell.read_as())?;
            for i in (0..batch.num_rows()).filter(|i| !values.is_null(*i)) {
                let (r, c) = (row + i as u32, c as u16);
                match &cell {
                    Cell::Number => {
                        let v = values.as_primitive::<Float64Type>().value(i);
                        sheet.write_number(r, c, v).map(|_| ())
                    }
                    Cell::Decimal(places) => {
                        write_decimal(sheet, (r, c), values.as_string::<i32>().value(i), places)
                    }
                    Cell::Text => sheet
                        .write_string(r, c, values.as_string::<i32>().value(i))
                        .map(|_| ()),
                }
                .map_err(failed)?;
            }
        }
        row += batch.num_rows() as u32;
    }
    book.save_to_buffer().map_err(failed)
}

/// How a column's values become cells.
enum Cell {
    Number,
    /// Read as their exact text; the number format showing their places.
    Decimal(rust_xlsxwriter::Format),
    Text,
}

impl Cell {
    fn of(data_type: &DataType) -> Cell {
        match data_type {
            DataType::Decimal128(_, scale) => {
                let places = "0".repeat((*scale).max(0) as usize);
                let shown = if places.is_empty() {
                    "0".into()
                } else {
                    format!("0.{places}")
                };
                Cell::Decimal(rust_xlsxwriter::Format::new().set_num_format(shown))
            }
            t if t.is_numeric() => Cell::Number,
            _ => Cell::Text,
        }
    }

    fn read_as(&self) -> DataType {
        match self {
            Cell::Number => DataType::Float64,
            Cell::Decimal(_) | Cell::Text => DataType::Utf8,
        }
    }
}

/// A decimal as a number cell when Excel's numbers (doubles, 15 significant digits) keep
/// every digit of it; otherwise as its exact text, which no spreadsheet rounds.
fn write_decimal(
    sheet: &mut rust_xlsxwriter::Worksheet,
    (row, column): (u32, u16),
    text: &str,
    places: &rust_xlsxwriter::Format,
) -> Result<(), rust_xlsxwriter::XlsxError> {
    let digits = text.bytes().filter(u8::is_ascii_digit);
    let significant = digits.skip_while(|d| *d == b'0').count();
    match text.parse::<f64>() {
        Ok(v) if significant <= 15 => sheet.write_number_with_format(row, column, v, places),
        _ => sheet.write_string(row, column, text),
    }
    .map(|_| ())
}

/// The ledger entry of a statement that ran: what it read, how masked, what it returned
/// (`result`, the bytes delivered), whom it touched.
pub fn statement_entry(audit: &Audit, entry: Entry, answer: &Answer, result: &[u8]) -> Entry {
    delivered_entry(audit, entry, answer, digest(result))
}

/// `sha256:` and the hex digest of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// [`statement_entry`] for a result delivered as a file whose digest is `result_digest`.
pub fn delivered_entry(
    audit: &Audit,
    mut entry: Entry,
    answer: &Answer,
    result_digest: String,
) -> Entry {
    for read in &answer.reads {
        entry.resources.push(read.code.clone());
        entry
            .fields
            .extend(read.fields.iter().map(|f| format!("{}:{f}", read.code)));
        entry.masks.extend(
            read.masks
                .iter()
                .map(|(f, m)| (format!("{}:{f}", read.code), m.clone())),
        );
        if let Some(filter) = &read.row_filter {
            entry.row_filters.insert(read.code.clone(), filter.clone());
        }
    }
    entry.rows = Some(answer.rows);
    if let Some(unit) = &answer.unit {
        entry.unit = Some(unit.clone());
    }
    entry.result_digest = Some(result_digest);
    audit.set_subjects(&mut entry, answer.subjects.clone());
    entry
}

/// How a refused or failed statement is recorded.
pub fn outcome_of(error: &QueryError) -> &'static str {
    match error {
        QueryError::Access(_) | QueryError::Refused(_) => DENIED,
        QueryError::Sql(text) if text.contains("not found") => DENIED,
        _ => FAILED,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray,
    };
    use calamine::{Data, Reader, Xlsx};

    use super::*;

    fn answer_of(batch: RecordBatch) -> Answer {
        Answer {
            schema: batch.schema(),
            rows: batch.num_rows() as u64,
            batches: vec![batch],
            reads: Vec::new(),
            subjects: Vec::new(),
            unit: None,
        }
    }

    #[test]
    fn csv_for_people_quotes_the_text_a_spreadsheet_would_run() {
        let cells = [
            "=HYPERLINK(\"http://x\")",
            "@SUM(1+1)",
            "+1+1",
            "-5",
            "\tx",
            "\rx",
            "南海区",
        ];
        let batch = RecordBatch::try_from_iter([
            (
                "名称",
                Arc::new(StringArray::from(cells.to_vec())) as ArrayRef,
            ),
            ("-金额", Arc::new(Int64Array::from(vec![-5; 7]))),
        ])
        .unwrap();
        let answer = answer_of(batch);
        let safe = String::from_utf8(render(&answer, "csv").unwrap()).unwrap();
        assert!(safe.starts_with("名称,'-金额\n"), "{safe}");
        let safe: Vec<&str> = safe.lines().skip(1).collect();
        assert_eq!(safe[0], "\"'=HYPERLINK(\"\"http://x\"\")\",-5");
        assert_eq!(safe[1..4], ["'@SUM(1+1),-5", "'+1+1,-5", "'-5,-5"]);
        assert_eq!(safe[4], "'\tx,-5");
        assert_eq!(safe[6], "南海区,-5");
        let raw = String::from_utf8(render_with(&answer, "csv", Csv::Raw).unwrap()).unwrap();
        assert!(raw.starts_with("名称,-金额\n\"=HYPERLINK("), "{raw}");
        assert!(raw.contains("\n@SUM(1+1),-5\n"), "{raw}");
    }

    #[test]
    fn an_answer_becomes_a_worksheet_with_numbers_as_numbers() {
        let batch = RecordBatch::try_from_iter([
            (
                "单位",
                Arc::new(StringArray::from(vec![Some("南海区"), None])) as ArrayRef,
            ),
            ("欠缴金额", Arc::new(Int64Array::from(vec![1200, 35]))),
            ("日期", Arc::new(Date32Array::from(vec![19_000, 19_001]))),
        ])
        .unwrap();
        let bytes = render(&answer_of(batch), "xlsx").unwrap();
        let mut book = Xlsx::new(std::io::Cursor::new(bytes)).unwrap();
        let sheet = book.worksheet_range_at(0).unwrap().unwrap();
        let rows: Vec<Vec<Data>> = sheet.rows().map(|r| r.to_vec()).collect();
        assert_eq!(rows[0][1], Data::String("欠缴金额".into()));
        assert_eq!(rows[1][0], Data::String("南海区".into()));
        assert_eq!(rows[1][1], Data::Float(1200.0));
        assert_eq!(rows[1][2], Data::String("2022-01-08".into()));
        assert_eq!(rows[2][0], Data::Empty);
        assert_eq!(rows[2][1], Data::Float(35.0));
    }

    #[test]
    fn decimals_leave_as_their_exact_text_in_every_format() {
        let sums = Decimal128Array::from(vec![123_480, 12_345_678_901_234_567_890])
            .with_precision_and_scale(28, 2)
            .unwrap();
        let answer =
            answer_of(RecordBatch::try_from_iter([("s", Arc::new(sums) as ArrayRef)]).unwrap());
        let text = |format| String::from_utf8(render(&answer, format).unwrap()).unwrap();
        assert_eq!(text("csv"), "s\n1234.80\n123456789012345678.90\n");
        assert_eq!(
            text("json"),
            "[{\"s\":1234.80},{\"s\":123456789012345678.90}]\n"
        );
        let bytes = render(&answer, "xlsx").unwrap();
        let mut book = Xlsx::new(std::io::Cursor::new(bytes)).unwrap();
        let sheet = book.worksheet_range_at(0).unwrap().unwrap();
        let rows: Vec<Vec<Data>> = sheet.rows().map(|r| r.to_vec()).collect();
        assert_eq!(rows[1][0], Data::Float(1234.8));
        assert_eq!(rows[2][0], Data::String("123456789012345678.90".into()));
    }
}
