//! Turns text rows into typed Arrow batches by the catalog's field rules, and sends every
//! row that breaks a rule to quarantine with its line, field and reason.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{
    DataType as ArrowType, Field as ArrowField, Schema, SchemaRef, TimeUnit,
};
use deltalake::arrow::record_batch::RecordBatch;
use rayon::prelude::*;
use serde::Serialize;
use tongchou_catalog::values;
use tongchou_ids::{citizen_id, credit_code};
use tongchou_model::{DataType, Field, Resource, Role};

use crate::ExchangeError;
use crate::reader::Row;

/// The Arrow schema of a resource's table, from its catalog fields.
pub fn arrow_schema(resource: &Resource) -> SchemaRef {
    Arc::new(Schema::new(
        resource
            .fields
            .iter()
            .map(|f| {
                let t = match f.data_type {
                    DataType::String => ArrowType::Utf8,
                    DataType::Integer => ArrowType::Int64,
                    DataType::Decimal => ArrowType::Float64,
                    DataType::Date => ArrowType::Date32,
                    DataType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, None),
                    DataType::Boolean => ArrowType::Boolean,
                };
                ArrowField::new(&f.name, t, true)
            })
            .collect::<Vec<_>>(),
    ))
}

/// One rule a row broke.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Violation {
    pub field: String,
    pub rule: String,
    pub reason: String,
}

/// A row kept out of the table, with everything needed to correct and resubmit it.
#[derive(Debug, Clone, Serialize)]
pub struct Quarantined {
    pub line: u64,
    pub violations: Vec<Violation>,
    /// The row as read, by column label.
    pub values: BTreeMap<String, String>,
}

enum Column {
    Text(StringBuilder),
    Integer(Int64Builder),
    Decimal(Float64Builder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Boolean(BooleanBuilder),
}

/// A checked value; text borrows from the row it was read from.
enum Value<'a> {
    Null,
    Text(&'a str),
    Integer(i64),
    Decimal(f64),
    Date(i32),
    Timestamp(i64),
    Boolean(bool),
}

impl Column {
    fn new(t: DataType) -> Column {
        match t {
            DataType::String => Column::Text(StringBuilder::new()),
            DataType::Integer => Column::Integer(Int64Builder::new()),
            DataType::Decimal => Column::Decimal(Float64Builder::new()),
            DataType::Date => Column::Date(Date32Builder::new()),
            DataType::Timestamp => Column::Timestamp(TimestampMicrosecondBuilder::new()),
            DataType::Boolean => Column::Boolean(BooleanBuilder::new()),
        }
    }

    fn push(&mut self, v: Value<'_>) {
        match (self, v) {
            (Column::Text(b), Value::Text(s)) => b.append_value(s),
            (Column::Integer(b), Value::Integer(n)) => b.append_value(n),
            (Column::Decimal(b), Value::Decimal(n)) => b.append_value(n),
            (Column::Date(b), Value::Date(n)) => b.append_value(n),
            (Column::Timestamp(b), Value::Timestamp(n)) => b.append_value(n),
            (Column::Boolean(b), Value::Boolean(n)) => b.append_value(n),
            (Column::Text(b), _) => b.append_null(),
            (Column::Integer(b), _) => b.append_null(),
            (Column::Decimal(b), _) => b.append_null(),
            (Column::Date(b), _) => b.append_null(),
            (Column::Timestamp(b), _) => b.append_null(),
            (Column::Boolean(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Text(b) => Arc::new(b.finish()),
            Column::Integer(b) => Arc::new(b.finish()),
            Column::Decimal(b) => Arc::new(b.finish()),
            Column::Date(b) => Arc::new(b.finish()),
            Column::Timestamp(b) => Arc::new(b.finish()),
            Column::Boolean(b) => Arc::new(b.finish()),
        }
    }
}

fn days_since_epoch(d: jiff::civil::Date) -> i32 {
    (d - jiff::civil::Date::constant(1970, 1, 1)).get_days()
}

/// Coerces a text value to the field's type, or says why it cannot.
fn coerce<'a>(field: &Field, text: &'a str) -> Result<Value<'a>, (&'static str, String)> {
    let t = text.trim();
    if t.is_empty() {
        return if field.required {
            Err((
                "required",
                format!("{}（{}） is required but empty", field.label, field.name),
            ))
        } else {
            Ok(Value::Null)
        };
    }
    let value = match field.data_type {
        DataType::String => Value::Text(t),
        DataType::Integer => values::parse_integer(t)
            .or_else(|| {
                values::parse_decimal(t)
                    .filter(|f| f.fract() == 0.0)
                    .map(|f| f as i64)
            })
            .map(Value::Integer)
            .ok_or(("type", format!("'{t}' is not a whole number")))?,
        DataType::Decimal => values::parse_decimal(t)
            .map(Value::Decimal)
            .ok_or(("type", format!("'{t}' is not a number")))?,
        DataType::Date => values::parse_date(t)
            .map(|d| Value::Date(days_since_epoch(d)))
            .ok_or((
                "type",
                format!("'{t}' is not a date (2015-06-09, 2015/6/9, 2015年6月9日 or 20150609)"),
            ))?,
        DataType::Timestamp => values::parse_timestamp(t)
            .or_else(|| values::parse_date(t).map(|d| d.to_datetime(jiff::civil::Time::midnight())))
            .map(|dt| {
                let days = i64::from(days_since_epoch(dt.date()));
                let t = dt.time();
                Value::Timestamp(
                    ((days * 86_400
                        + i64::from(t.hour()) * 3600
                        + i64::from(t.minute()) * 60
                        + i64::from(t.second()))
                        * 1_000_000)
                        + i64::from(t.subsec_nanosecond() / 1000),
                )
            })
            .ok_or(("type", format!("'{t}' is not a date and time")))?,
        DataType::Boolean => values::parse_bool(t)
            .map(Value::Boolean)
            .ok_or(("type", format!("'{t}' is not yes/no (是/否, true/false)")))?,
    };
    if !field.allowed_values.is_empty() && !field.allowed_values.iter().any(|a| a == t) {
        return Err((
            "allowed_values",
            format!("'{t}' is not one of {}", field.allowed_values.join("、")),
        ));
    }
    match field.role {
        Some(Role::PersonId) => {
            citizen_id::validate(t).map_err(|e| ("person_id", format!("citizen ID {t}: {e}")))?
        }
        Some(Role::EnterpriseId) => credit_code::validate(t)
            .map_err(|e| ("enterprise_id", format!("credit code {t}: {e}")))?,
        _ => {}
    }
    Ok(value)
}

/// What a load did, per rule.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    pub rows_read: u64,
    pub accepted: u64,
    pub quarantined: u64,
    pub by_rule: BTreeMap<String, u64>,
}

/// Builds batches from rows; keeps quarantined rows aside.
pub struct Loader {
    fields: Vec<Field>,
    mapping: Vec<Option<usize>>,
    labels: Vec<String>,
    columns: Vec<Column>,
    schema: SchemaRef,
    unique: Vec<(usize, Seen)>,
    pending: usize,
    /// Upserts: the key fields, the column marking deletes, and the delete flags built.
    upsert: Option<Upsert>,
    pub tally: Tally,
    pub quarantine: Vec<Quarantined>,
}

/// One row after the field rules: its values (null where a rule failed) and what failed.
struct Checked<'r> {
    values: Vec<Value<'r>>,
    violations: Vec<Violation>,
    delete: bool,
}

/// The first line of each value seen, by a 128-bit hash of the value.
type Seen = HashMap<(u64, u64), u64>;

struct Upsert {
    key: Vec<usize>,
    op_column: Option<usize>,
    seen: Seen,
    deletes: BooleanBuilder,
}

/// Column names that mark a row of an upsert file as a deletion (value D / 删除).
const OP_COLUMNS: [&str; 4] = ["_op", "op", "操作类型", "变更类型"];

fn is_delete(text: &str) -> bool {
    matches!(
        text.trim().to_ascii_lowercase().as_str(),
        "d" | "delete" | "删除"
    )
}

/// The column an upsert file adds to its batches.
pub const DELETE_FLAG: &str = "_delete";

fn key_hash(value: &str) -> (u64, u64) {
    let hash = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        value.hash(&mut h);
        h.finish()
    };
    (hash(0), hash(1))
}

impl Loader {
    /// Matches the file's columns to the resource's fields, by field name or Chinese label.
    pub fn new(resource: &Resource, labels: &[String]) -> Result<Loader, ExchangeError> {
        let find = |f: &Field| {
            labels
                .iter()
                .position(|l| l == &f.name || l == &f.label || l.eq_ignore_ascii_case(&f.name))
        };
        let mapping: Vec<Option<usize>> = resource.fields.iter().map(find).collect();
        let missing: Vec<String> = resource
            .fields
            .iter()
            .zip(&mapping)
            .filter(|(f, m)| m.is_none() && f.required)
            .map(|(f, _)| format!("{}（{}）", f.label, f.name))
            .collect();
        if !missing.is_empty() {
            return Err(ExchangeError::Columns(format!(
                "the file has no column for the required field(s) {}; its columns are: {}",
                missing.join("、"),
                labels.join("、")
            )));
        }
        if mapping.iter().all(Option::is_none) {
            return Err(ExchangeError::Columns(format!(
                "none of the file's columns ({}) is a field of 「{}」",
                labels.join("、"),
                resource.name
            )));
        }
        let unique = resource
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.unique)
            .map(|(i, _)| (i, HashMap::new()))
            .collect();
        Ok(Loader {
            fields: resource.fields.clone(),
            mapping,
            labels: labels.to_vec(),
            columns: resource
                .fields
                .iter()
                .map(|f| Column::new(f.data_type))
                .collect(),
            schema: arrow_schema(resource),
            unique,
            pending: 0,
            upsert: None,
            tally: Tally::default(),
            quarantine: Vec::new(),
        })
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Rows waiting in the builders.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Prepares an upsert by the resource's key: rows with the same key replace the
    /// table's row; rows marked D (or 删除) in an `_op` column delete it.
    pub fn for_upsert(mut self, resource: &Resource) -> Result<Loader, ExchangeError> {
        if resource.key.is_empty() {
            return Err(ExchangeError::Columns(format!(
                "「{}」 has no key fields in the catalog; set `key` (e.g. [\"credit_code\"]) to upsert",
                resource.name
            )));
        }
        let key: Vec<usize> = resource
            .key
            .iter()
            .filter_map(|k| self.fields.iter().position(|f| &f.name == k))
            .collect();
        if let Some(i) = key.iter().find(|i| self.mapping[**i].is_none()) {
            return Err(ExchangeError::Columns(format!(
                "the file has no column for the key field {}（{}）",
                self.fields[*i].label, self.fields[*i].name
            )));
        }
        let op_column = self
            .labels
            .iter()
            .position(|l| OP_COLUMNS.contains(&l.as_str()));
        let mut fields: Vec<ArrowField> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(ArrowField::new(DELETE_FLAG, ArrowType::Boolean, false));
        self.schema = Arc::new(Schema::new(fields));
        self.upsert = Some(Upsert {
            key,
            op_column,
            seen: HashMap::new(),
            deletes: BooleanBuilder::new(),
        });
        Ok(self)
    }

    fn cell<'r>(&self, row: &'r Row, field: usize) -> &'r str {
        self.mapping[field]
            .and_then(|c| row.get(c))
            .map_or("", str::trim)
    }

    fn upsert_key(&self, row: &Row) -> Option<String> {
        let u = self.upsert.as_ref()?;
        Some(
            u.key
                .iter()
                .map(|i| self.cell(row, *i))
                .collect::<Vec<_>>()
                .join("\u{1f}"),
        )
    }

    /// Checks one row's values against the field rules: everything that depends on the
    /// row alone, so rows can be checked in parallel.
    fn check<'r>(&self, row: &'r Row) -> Checked<'r> {
        let mut values = Vec::with_capacity(self.fields.len());
        let mut violations = Vec::new();
        if row.len() == 1
            && let Some(error) = row.get(0).and_then(|v| v.strip_prefix('\u{0}'))
        {
            violations.push(Violation {
                field: String::new(),
                rule: "format".into(),
                reason: format!("the line is not a JSON object: {error}"),
            });
        }
        let delete = self
            .upsert
            .as_ref()
            .and_then(|u| u.op_column)
            .and_then(|c| row.get(c))
            .is_some_and(is_delete);
        for (i, (field, column)) in self.fields.iter().zip(&self.mapping).enumerate() {
            if delete && !self.upsert.as_ref().is_some_and(|u| u.key.contains(&i)) {
                values.push(Value::Null);
                continue;
            }
            let text = column.and_then(|c| row.get(c)).unwrap_or("");
            match coerce(field, text) {
                Ok(v) => values.push(v),
                Err((rule, reason)) => {
                    violations.push(Violation {
                        field: field.name.clone(),
                        rule: rule.into(),
                        reason,
                    });
                    values.push(Value::Null);
                }
            }
        }
        Checked {
            values,
            violations,
            delete,
        }
    }

    /// Checks one row; a good row goes into the batch being built, a bad one to quarantine.
    pub fn push(&mut self, line: u64, row: &Row) {
        let checked = self.check(row);
        self.accept(line, row, checked);
    }

    /// Checks a run of rows on every core, then takes them in file order.
    pub fn push_chunk(&mut self, rows: &[(u64, Row)]) {
        let checked: Vec<Checked<'_>> = rows
            .par_iter()
            .with_min_len(256)
            .map(|(_, row)| self.check(row))
            .collect();
        for ((line, row), checked) in rows.iter().zip(checked) {
            self.accept(*line, row, checked);
        }
    }

    /// The checks that depend on earlier rows (uniqueness), then the row's place: the batch
    /// or the quarantine.
    fn accept(&mut self, line: u64, row: &Row, checked: Checked<'_>) {
        let Checked {
            values,
            mut violations,
            delete,
        } = checked;
        self.tally.rows_read += 1;
        if violations.is_empty() {
            violations.extend(self.duplicates(row));
        }
        if !violations.is_empty() {
            for v in &violations {
                *self.tally.by_rule.entry(v.rule.clone()).or_default() += 1;
            }
            self.tally.quarantined += 1;
            let values = self
                .labels
                .iter()
                .cloned()
                .zip(row.iter().map(str::to_string))
                .collect();
            self.quarantine.push(Quarantined {
                line,
                violations,
                values,
            });
            return;
        }
        let upsert_key = self.upsert_key(row);
        for u in 0..self.unique.len() {
            let key = key_hash(self.cell(row, self.unique[u].0));
            self.unique[u].1.insert(key, line);
        }
        if let (Some(u), Some(key)) = (&mut self.upsert, upsert_key) {
            u.seen.insert(key_hash(&key), line);
            u.deletes.append_value(delete);
        }
        for (column, value) in self.columns.iter_mut().zip(values) {
            column.push(value);
        }
        self.pending += 1;
        self.tally.accepted += 1;
    }

    /// A value already taken in this file by a unique field, or by the upsert key.
    fn duplicates(&self, row: &Row) -> Vec<Violation> {
        if let Some(u) = &self.upsert {
            let key = self.upsert_key(row).unwrap_or_default();
            return u
                .seen
                .get(&key_hash(&key))
                .map(|first| Violation {
                    field: self.fields[u.key[0]].name.clone(),
                    rule: "unique".into(),
                    reason: format!(
                        "key {} is already on line {first}; an upsert file names each key once",
                        key.replace('\u{1f}', "/")
                    ),
                })
                .into_iter()
                .collect();
        }
        self.unique
            .iter()
            .filter_map(|(i, seen)| {
                let key = self.cell(row, *i);
                seen.get(&key_hash(key)).map(|first| Violation {
                    field: self.fields[*i].name.clone(),
                    rule: "unique".into(),
                    reason: format!(
                        "'{key}' is already on line {first}; {} must be unique",
                        self.fields[*i].label
                    ),
                })
            })
            .collect()
    }

    /// The rows built so far as one batch.
    pub fn batch(&mut self) -> RecordBatch {
        self.pending = 0;
        let mut arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        if let Some(u) = &mut self.upsert {
            arrays.push(Arc::new(u.deletes.finish()));
        }
        RecordBatch::try_new(self.schema.clone(), arrays).expect("columns follow the schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource() -> Resource {
        serde_json::from_value(serde_json::json!({"unit": "U", "name": "测试", "share_type": "unconditional", "open_type": "none", "update_cycle": "daily",
            "fields": [
                {"name": "person_id", "label": "公民身份号码", "type": "string", "role": "person_id", "unique": true, "required": true},
                {"name": "born", "label": "出生日期", "type": "date"},
                {"name": "gender", "label": "性别", "type": "string", "allowed_values": ["男", "女"]},
                {"name": "count", "label": "人数", "type": "integer"}]}))
        .unwrap()
    }

    fn row(values: &[&str]) -> Row {
        Row::from(values.to_vec())
    }

    fn labels(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn rules_quarantine_with_reasons_and_good_rows_become_typed() {
        let labels = labels(&["公民身份号码", "出生日期", "性别", "count"]);
        let mut loader = Loader::new(&resource(), &labels).unwrap();
        loader.push(
            2,
            &row(&["11010519491231002X", "1949年12月31日", "男", "3"]),
        );
        loader.push(3, &row(&["110105194912310021", "1949/12/31", "男", "3"]));
        loader.push(4, &row(&["440524188001010014", "tomorrow", "未知", "3.5"]));
        loader.push(5, &row(&["11010519491231002X", "1949-12-31", "女", ""]));
        loader.push(6, &row(&["", "", "", ""]));
        assert_eq!((loader.tally.accepted, loader.tally.quarantined), (1, 4));
        let q = &loader.quarantine;
        assert_eq!(q[0].line, 3);
        assert!(q[0].violations[0].reason.contains("check character"));
        assert_eq!(
            q[1].violations
                .iter()
                .map(|v| v.rule.as_str())
                .collect::<Vec<_>>(),
            vec!["type", "allowed_values", "type"]
        );
        assert_eq!(q[2].violations[0].rule, "unique");
        assert!(q[2].violations[0].reason.contains("line 2"));
        assert_eq!(q[3].violations[0].rule, "required");
        assert_eq!(loader.tally.by_rule["type"], 2);
        let batch = loader.batch();
        assert_eq!(batch.num_rows(), 1);
        let born = batch
            .column(1)
            .as_any()
            .downcast_ref::<deltalake::arrow::array::Date32Array>()
            .unwrap();
        assert_eq!(
            born.value(0),
            days_since_epoch(jiff::civil::Date::constant(1949, 12, 31))
        );
    }

    #[test]
    fn rows_checked_in_parallel_land_as_if_checked_one_by_one() {
        let labels = labels(&["公民身份号码", "出生日期", "性别", "count"]);
        let ids = [
            "11010519491231002X",
            "110105194912310021",
            "440524188001010014",
        ];
        let rows: Vec<(u64, Row)> = (0..5_000u64)
            .map(|i| {
                let id = ids[(i % 3) as usize];
                let born = if i % 7 == 0 { "tomorrow" } else { "1949-12-31" };
                (
                    i + 2,
                    row(&[id, born, if i % 5 == 0 { "未知" } else { "女" }, "1"]),
                )
            })
            .collect();
        let mut one_by_one = Loader::new(&resource(), &labels).unwrap();
        for (line, r) in &rows {
            one_by_one.push(*line, r);
        }
        let mut chunked = Loader::new(&resource(), &labels).unwrap();
        for chunk in rows.chunks(1_024) {
            chunked.push_chunk(chunk);
        }
        assert_eq!(chunked.tally.accepted, one_by_one.tally.accepted);
        assert_eq!(chunked.tally.by_rule, one_by_one.tally.by_rule);
        let lines = |l: &Loader| {
            l.quarantine
                .iter()
                .map(|q| (q.line, q.violations.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(lines(&chunked), lines(&one_by_one));
        assert_eq!(chunked.batch(), one_by_one.batch());
        // Each valid ID is accepted once; its repeats are caught across chunks.
        let valid = ids
            .iter()
            .filter(|id| citizen_id::validate(id).is_ok())
            .count();
        assert_eq!(chunked.tally.accepted, valid as u64);
        assert!(chunked.tally.by_rule["unique"] > 1_000);
    }

    #[test]
    fn missing_required_columns_are_named() {
        let err = Loader::new(&resource(), &labels(&["姓名", "性别"]))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("公民身份号码（person_id）"),
            "{err}"
        );
    }

    #[test]
    fn days_count_from_the_unix_epoch() {
        assert_eq!(days_since_epoch(jiff::civil::Date::constant(1970, 1, 2)), 1);
        assert_eq!(
            days_since_epoch(jiff::civil::Date::constant(1969, 12, 31)),
            -1
        );
    }
}
