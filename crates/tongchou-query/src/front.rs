//! What the front doors share: the answer in the format asked for, and the ledger entry of
//! a statement — what it read, how masked and filtered, what it returned, whom it touched.

use tongchou_audit::{Audit, DENIED, Entry, FAILED};

use crate::{Answer, QueryError};

/// The answer in `format`, as the bytes that will leave.
pub fn render(answer: &Answer, format: &str) -> Result<Vec<u8>, QueryError> {
    let mut out = Vec::new();
    match format {
        "csv" => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for b in &answer.batches {
                w.write(b)?;
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
        other => {
            return Err(QueryError::Refused(format!(
                "format '{other}': use table, csv, json or arrow"
            )));
        }
    }
    Ok(out)
}

/// The ledger entry of a statement that ran: what it read, how masked, what it returned.
pub fn statement_entry(audit: &Audit, mut entry: Entry, answer: &Answer, result: &[u8]) -> Entry {
    use sha2::Digest;
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
    let named = std::mem::take(&mut entry.subjects);
    entry.result_digest = Some(format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(result))
    ));
    entry.subjects = audit.subjects_of(answer.rows, answer.subject_ids.iter().map(String::as_str));
    entry.subjects.extend(named);
    entry.subjects.sort_unstable();
    entry.subjects.dedup();
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
