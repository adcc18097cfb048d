//! Turns text rows into typed Arrow batches by the catalog's field rules, and sends every
//! row that breaks a rule to quarantine with its line, field and reason.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Int64Builder, StringArray,
    StringBuilder, TimestampMicrosecondBuilder,
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
use crate::keys::{self, KeyIndex, Slot};
use crate::reader::{Row, lossy};

/// The Arrow schema of a resource's table, from its catalog fields.
pub fn arrow_schema(resource: &Resource) -> SchemaRef {
    Arc::new(Schema::new(
        resource
            .fields
            .iter()
            .map(|f| ArrowField::new(&f.name, arrow_type(f), true))
            .collect::<Vec<_>>(),
    ))
}

/// The Arrow type a field's values are kept in.
pub fn arrow_type(field: &Field) -> ArrowType {
    match field.data_type {
        DataType::String => ArrowType::Utf8,
        DataType::Integer => ArrowType::Int64,
        DataType::Decimal => {
            let d = field.decimal_type();
            ArrowType::Decimal128(d.precision, d.scale as i8)
        }
        DataType::Date => ArrowType::Date32,
        DataType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, None),
        DataType::Boolean => ArrowType::Boolean,
    }
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
    Decimal(Decimal128Builder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Boolean(BooleanBuilder),
}

/// A checked value; text borrows from the row it was read from.
#[derive(Clone, Copy)]
pub(crate) enum Value<'a> {
    Null,
    Text(&'a str),
    Integer(i64),
    /// Unscaled, at the field's scale.
    Decimal(i128),
    Date(i32),
    Timestamp(i64),
    Boolean(bool),
}

impl Column {
    /// A builder with room for `rows` values (and `bytes` of text), so that filling it
    /// does not grow it by copying.
    fn with_capacity(field: &Field, rows: usize, bytes: usize) -> Column {
        match field.data_type {
            DataType::String => Column::Text(StringBuilder::with_capacity(rows, bytes)),
            DataType::Integer => Column::Integer(Int64Builder::with_capacity(rows)),
            DataType::Decimal => Column::Decimal(
                Decimal128Builder::with_capacity(rows).with_data_type(arrow_type(field)),
            ),
            DataType::Date => Column::Date(Date32Builder::with_capacity(rows)),
            DataType::Timestamp => {
                Column::Timestamp(TimestampMicrosecondBuilder::with_capacity(rows))
            }
            DataType::Boolean => Column::Boolean(BooleanBuilder::with_capacity(rows)),
        }
    }

    /// A builder for the next batch, sized after `built` with some room to spare.
    fn like(field: &Field, built: &ArrayRef) -> Column {
        let bytes = built
            .as_any()
            .downcast_ref::<StringArray>()
            .map_or(0, |a| a.values().len());
        Column::with_capacity(field, built.len() + built.len() / 8, bytes + bytes / 8)
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

/// A decimal value at the field's scale, exactly; one that would need rounding or more
/// digits than the field allows is refused, never altered.
fn decimal(field: &Field, t: &str) -> Result<i128, (&'static str, String)> {
    let allowed = field.decimal_type();
    match values::parse_decimal(t) {
        Err(values::NotDecimal::NotANumber) => Err(("type", format!("'{t}' is not a number"))),
        parsed => parsed.ok().and_then(|d| d.fit(allowed)).ok_or_else(|| {
            (
                "precision",
                format!(
                    "{}（{}） '{t}' does not fit {allowed}: at most {} digits before the point and {} after",
                    field.label,
                    field.name,
                    allowed.integer_digits(),
                    allowed.scale
                ),
            )
        }),
    }
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
                let whole = values::parse_decimal(t).ok()?.rescaled(0)?;
                i64::try_from(whole).ok()
            })
            .map(Value::Integer)
            .ok_or_else(|| ("type", format!("'{t}' is not a whole number")))?,
        DataType::Decimal => Value::Decimal(decimal(field, t)?),
        DataType::Date => values::parse_date(t)
            .map(|d| Value::Date(days_since_epoch(d)))
            .ok_or_else(|| {
                (
                    "type",
                    format!("'{t}' is not a date (2015-06-09, 2015/6/9, 2015年6月9日 or 20150609)"),
                )
            })?,
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
            .ok_or_else(|| ("type", format!("'{t}' is not a date and time")))?,
        DataType::Boolean => values::parse_bool(t)
            .map(Value::Boolean)
            .ok_or_else(|| ("type", format!("'{t}' is not yes/no (是/否, true/false)")))?,
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

/// A quarantined value is kept up to this many characters (a cell holds at most 32,767;
/// a longer value is cut, marked, so a page or an export of the quarantine stays small).
pub const QUARANTINE_VALUE_CHARS: usize = 32_767;

fn kept_in_quarantine(value: String) -> String {
    match value.char_indices().nth(QUARANTINE_VALUE_CHARS) {
        Some((end, _)) => format!("{}…[{} bytes in the file]", &value[..end], value.len()),
        None => value,
    }
}

/// Builds batches from rows; keeps quarantined rows aside.
pub struct Loader {
    fields: Vec<Field>,
    mapping: Vec<Option<usize>>,
    labels: Vec<String>,
    columns: Vec<Column>,
    schema: SchemaRef,
    /// The values no two rows may share: the key's and each other unique field's.
    slots: Vec<Slot>,
    /// The values of each slot this load has claimed, with the line claiming them.
    seen: Vec<Seen>,
    /// The lines of the rows claiming values, with their key, in file order (when there
    /// are unique fields beside a key: the index keeps each value's row key).
    owners: Vec<(u64, KeyHash)>,
    /// What earlier versions hold, unless the load replaces them.
    pub prior: Option<Prior>,
    pending: usize,
    /// Upserts: the key fields, the column marking deletes, and the delete flags built.
    upsert: Option<Upsert>,
    pub tally: Tally,
    pub quarantine: Vec<Quarantined>,
    /// The last chunk's value buffer, kept for the next: a fresh one would be fresh pages
    /// for the kernel to zero on every chunk.
    scratch: Vec<Value<'static>>,
}

/// An empty vector for values borrowing from other rows, keeping `values`' allocation:
/// std collects a vector's own iterator in place when the element layouts match (if it
/// ever did not, this would only allocate).
fn recycle<'b>(mut values: Vec<Value<'_>>) -> Vec<Value<'b>> {
    values.clear();
    values.into_iter().map(|_| Value::Null).collect()
}

/// What the field rules found in one row (its values go to the chunk's value buffer).
struct Outcome {
    violations: Vec<Violation>,
    delete: bool,
}

/// The first line of each value seen, by a 128-bit hash of the value, in shards: a value
/// always falls in the same shard, so shards can be checked in parallel, each in file
/// order. (The lookups miss the cache; serial, they were the load's slowest step.)
struct Seen(Vec<HashMap<KeyHash, u64, BuildHasherDefault<Prehashed>>>);

const SHARDS: usize = 16;

impl Seen {
    fn new() -> Seen {
        Seen((0..SHARDS).map(|_| HashMap::default()).collect())
    }

    fn shard(key: &KeyHash) -> usize {
        (key.1 % SHARDS as u64) as usize
    }

    fn get(&self, key: &KeyHash) -> Option<u64> {
        self.0[Seen::shard(key)].get(key).copied()
    }

    fn insert(&mut self, key: KeyHash, line: u64) {
        self.0[Seen::shard(&key)].insert(key, line);
    }

    fn reserve(&mut self, rows: usize) {
        let per_shard = rows / SHARDS + rows / SHARDS / 16;
        for shard in &mut self.0 {
            shard.reserve(per_shard.saturating_sub(shard.len()));
        }
    }
}

/// A value's 128-bit hash as two words, so that the map's entries take 24 bytes, not 32.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(crate) struct KeyHash(u64, u64);

impl KeyHash {
    /// No value: a deleting row's unique fields, which it neither claims nor checks.
    const ABSENT: KeyHash = KeyHash(0, 0);

    pub(crate) fn wide(self) -> u128 {
        (u128::from(self.1) << 64) | u128::from(self.0)
    }
}

/// Marks a claimed line as a row an upsert deletes (lines stay far below).
const DELETED: u64 = 1 << 63;

/// What a row's value repeats: a row earlier in the file, or a row of an earlier version.
#[derive(Clone, Copy)]
enum Earlier {
    Line(u64),
    Version(keys::Entry),
}

/// What earlier versions hold, and the files their loads read (to name a row's place).
pub struct Prior {
    pub index: KeyIndex,
    pub files: HashMap<u64, String>,
}

/// How far ahead of its lookup a value's filter block is fetched: enough lookups in
/// flight to hide memory's latency.
const PREFETCH_AHEAD: usize = 16;

impl Prior {
    /// For each of a chunk's values (`stride` slots a row), the row of an earlier version
    /// that holds it. An upsert replaces the row of its key, so its key collides with
    /// nothing, nor its unique values with the row it replaces.
    fn holders(&self, keys: &[KeyHash], stride: usize, upsert: bool) -> Vec<Option<keys::Entry>> {
        let skip_key = upsert && self.index.has_key();
        let wanted =
            |j: usize| keys[j] != KeyHash::ABSENT && !(skip_key && j.is_multiple_of(stride));
        let mut found = vec![None; keys.len()];
        found
            .par_chunks_mut(1024)
            .enumerate()
            .for_each(|(c, found)| {
                let start = c * 1024;
                for (k, place) in found.iter_mut().enumerate() {
                    let ahead = start + k + PREFETCH_AHEAD;
                    if ahead < keys.len() && wanted(ahead) {
                        self.index.prefetch(ahead % stride, keys[ahead]);
                    }
                    let j = start + k;
                    if !wanted(j) {
                        continue;
                    }
                    let owner = keys[j - j % stride].wide();
                    *place = (self.index.holds(j % stride, keys[j]))
                        .filter(|e| !(upsert && e.owner == owner));
                }
            });
        found
    }

    fn place(&self, e: &keys::Entry) -> String {
        match (e.line, self.files.get(&e.version)) {
            (0, _) => format!(
                "in version {} (its line is not known: the key index was rebuilt from the table)",
                e.version
            ),
            (line, Some(file)) => format!("in version {}, line {line} of {file}", e.version),
            (line, None) => format!("in version {}, line {line}", e.version),
        }
    }
}

impl std::hash::Hash for KeyHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

/// The map's keys are already uniform hashes: taking their low bits is enough, and
/// hashing them again would cost the (serial) uniqueness check more than the lookup.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Upsert {
    key: Vec<usize>,
    op_column: Option<usize>,
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

fn key_hash(value: &str) -> KeyHash {
    split(twox_hash::XxHash3_128::oneshot(value.as_bytes()))
}

fn split(hash: u128) -> KeyHash {
    KeyHash(hash as u64, (hash >> 64) as u64)
}

impl Value<'_> {
    /// Feeds the value to a hash, typed: the same value read from the file or from the
    /// table (when the key index is rebuilt) hashes the same.
    fn feed(self, h: &mut twox_hash::XxHash3_128) {
        let (tag, bytes): (u8, [u8; 8]) = match self {
            Value::Null => (0, [0; 8]),
            Value::Text(t) => {
                h.write(&[1]);
                h.write(&(t.len() as u64).to_le_bytes());
                return h.write(t.as_bytes());
            }
            Value::Integer(n) => (2, n.to_le_bytes()),
            Value::Decimal(n) => {
                h.write(&[3]);
                return h.write(&n.to_le_bytes());
            }
            Value::Date(n) => (4, i64::from(n).to_le_bytes()),
            Value::Timestamp(n) => (5, n.to_le_bytes()),
            Value::Boolean(b) => (6, u64::from(b).to_le_bytes()),
        };
        h.write(&[tag]);
        h.write(&bytes);
    }
}

/// The hash of a row's values in a slot's fields (one text field: the text's own hash).
pub(crate) fn slot_hash(values: &[Value<'_>], fields: &[usize]) -> KeyHash {
    if let [field] = fields
        && let Value::Text(text) = values[*field]
    {
        return key_hash(text);
    }
    let mut h = twox_hash::XxHash3_128::new();
    for field in fields {
        values[*field].feed(&mut h);
    }
    split(h.finish_128())
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
        let slots = keys::slots(resource);
        let unmapped = (slots.iter().filter(|s| s.is_key))
            .flat_map(|s| s.fields.iter())
            .find(|f| mapping[**f].is_none());
        if let Some(f) = unmapped {
            let field = &resource.fields[*f];
            return Err(ExchangeError::Columns(format!(
                "the file has no column for the key field {}（{}）",
                field.label, field.name
            )));
        }
        Ok(Loader {
            seen: slots.iter().map(|_| Seen::new()).collect(),
            slots,
            owners: Vec::new(),
            prior: None,
            fields: resource.fields.clone(),
            mapping,
            labels: labels.to_vec(),
            columns: resource
                .fields
                .iter()
                .map(|f| Column::with_capacity(f, 0, 0))
                .collect(),
            scratch: Vec::new(),
            schema: arrow_schema(resource),
            pending: 0,
            upsert: None,
            tally: Tally::default(),
            quarantine: Vec::new(),
        })
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Sizes the uniqueness index for about `rows` rows at once: growing it by doubling
    /// would rehash it a dozen times and have the kernel zero twice its final memory.
    pub fn expect_rows(&mut self, rows: usize) {
        for seen in &mut self.seen {
            seen.reserve(rows);
        }
    }

    /// Rows waiting in the builders.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Prepares an upsert by the resource's key: rows with the same key replace the
    /// table's row; rows marked D (or 删除) in an `_op` column delete it.
    pub fn for_upsert(mut self, resource: &Resource) -> Result<Loader, ExchangeError> {
        if !self.slots.first().is_some_and(|s| s.is_key) {
            return Err(ExchangeError::Columns(format!(
                "「{}」 has no key fields in the catalog; set `key` (e.g. [\"credit_code\"]) to upsert",
                resource.name
            )));
        }
        let key = self.slots[0].fields.clone();
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
            deletes: BooleanBuilder::new(),
        });
        Ok(self)
    }

    /// The trimmed text of a field in a row: empty when the file has no column for it or
    /// its bytes are not UTF-8 (such a row is quarantined by its check).
    fn cell<'r>(&self, row: &'r Row, field: usize) -> &'r str {
        self.mapping[field]
            .and_then(|c| row.get(c))
            .and_then(|b| std::str::from_utf8(b).ok())
            .map_or("", str::trim)
    }

    /// A slot's values in a row as the file has them, for a person to find.
    fn shown(&self, row: &Row, slot: &Slot) -> String {
        (slot.fields.iter())
            .map(|f| self.cell(row, *f))
            .collect::<Vec<_>>()
            .join("/")
    }

    fn hash_keys(&self, values: &[Value<'_>], delete: bool, keys: &mut [KeyHash]) {
        for (slot, key) in self.slots.iter().zip(keys) {
            *key = if delete && !slot.is_key {
                KeyHash::ABSENT
            } else {
                slot_hash(values, &slot.fields)
            };
        }
    }

    /// Checks one row against the field rules — everything that depends on the row alone,
    /// so that rows can be checked in parallel — writing its values into `values` and the
    /// hashes of its unique values into `keys`.
    fn check<'r>(&self, row: &'r Row, values: &mut [Value<'r>], keys: &mut [KeyHash]) -> Outcome {
        let mut violations = Vec::new();
        if row.len() == 1
            && let Some(error) = row.get(0).and_then(|v| v.strip_prefix(b"\0"))
        {
            violations.push(Violation {
                field: String::new(),
                rule: "format".into(),
                reason: format!("the line is not a JSON object: {}", lossy(error)),
            });
        }
        let delete = self
            .upsert
            .as_ref()
            .and_then(|u| u.op_column)
            .and_then(|c| row.get(c))
            .and_then(|b| std::str::from_utf8(b).ok())
            .is_some_and(is_delete);
        for (i, (field, column)) in self.fields.iter().zip(&self.mapping).enumerate() {
            if delete && !self.upsert.as_ref().is_some_and(|u| u.key.contains(&i)) {
                continue;
            }
            let bytes = column.and_then(|c| row.get(c)).unwrap_or(b"");
            let checked = std::str::from_utf8(bytes)
                .map_err(|_| {
                    (
                        "encoding",
                        format!(
                            "{}（{}） '{}' has bytes that are not UTF-8; if the file is in GBK, load it with --encoding gbk",
                            field.label,
                            field.name,
                            lossy(bytes)
                        ),
                    )
                })
                .and_then(|text| coerce(field, text));
            match checked {
                Ok(v) => values[i] = v,
                Err((rule, reason)) => violations.push(Violation {
                    field: field.name.clone(),
                    rule: rule.into(),
                    reason,
                }),
            }
        }
        if violations.is_empty() {
            self.hash_keys(values, delete, keys);
        }
        Outcome { violations, delete }
    }

    /// Takes a run of rows: checks them on every core, settles uniqueness and quarantine
    /// in file order, then builds the accepted rows' columns on every core.
    pub fn push_chunk(&mut self, rows: &[(u64, Row)]) {
        let width = self.fields.len().max(1);
        let stride = self.slots.len().max(1);
        let mut values = recycle(std::mem::take(&mut self.scratch));
        values.resize(rows.len() * width, Value::Null);
        let mut keys = vec![KeyHash::default(); rows.len() * stride];
        let outcomes: Vec<Outcome> = {
            let this = &*self;
            rows.par_iter()
                .zip(values.par_chunks_mut(width))
                .zip(keys.par_chunks_mut(stride))
                .with_min_len(256)
                .map(|(((_, row), values), keys)| this.check(row, values, keys))
                .collect()
        };
        let repeats = self.claim(rows, &outcomes, &keys);
        let mut accepted = Vec::with_capacity(rows.len());
        for (i, (((line, row), outcome), repeats)) in
            rows.iter().zip(outcomes).zip(repeats).enumerate()
        {
            if self.accept(*line, row, outcome, repeats) {
                accepted.push(i);
            }
        }
        self.columns
            .par_iter_mut()
            .enumerate()
            .for_each(|(field, column)| {
                for i in &accepted {
                    column.push(values[i * width + field]);
                }
            });
        self.pending += accepted.len();
        self.scratch = recycle(values);
    }

    /// Settles uniqueness for the rows that passed their checks, in file order: for each
    /// row, the values (slot, where first seen) it repeats — in this file or in an earlier
    /// version; a row that repeats none has claimed its values.
    fn claim(
        &mut self,
        rows: &[(u64, Row)],
        outcomes: &[Outcome],
        keys: &[KeyHash],
    ) -> Vec<Vec<(usize, Earlier)>> {
        let mut repeats = vec![Vec::new(); rows.len()];
        let stride = self.slots.len();
        let passed = (0..rows.len()).filter(|i| outcomes[*i].violations.is_empty());
        let upsert = self.upsert.is_some();
        let holders = (self.prior.as_ref()).map(|p| p.holders(keys, stride.max(1), upsert));
        let holder = |j: usize| holders.as_ref().and_then(|h| h[j]);
        let mark = |i: usize| rows[i].0 | if outcomes[i].delete { DELETED } else { 0 };
        if stride == 1 {
            let mut by_shard = vec![Vec::new(); SHARDS];
            passed.for_each(|i| by_shard[Seen::shard(&keys[i])].push(i));
            let found: Vec<(usize, Earlier)> = (self.seen[0].0.par_iter_mut())
                .zip(by_shard)
                .flat_map_iter(|(shard, taking)| {
                    taking
                        .into_iter()
                        .filter_map(move |i| match shard.entry(keys[i]) {
                            Entry::Occupied(first) => {
                                Some((i, Earlier::Line(*first.get() & !DELETED)))
                            }
                            Entry::Vacant(free) => {
                                let earlier = holder(i);
                                if earlier.is_none() {
                                    free.insert(mark(i));
                                }
                                earlier.map(|e| (i, Earlier::Version(e)))
                            }
                        })
                })
                .collect();
            for (i, earlier) in found {
                repeats[i].push((0, earlier));
            }
        } else {
            let has_key = self.slots.first().is_some_and(|s| s.is_key);
            for i in passed {
                let row_keys = &keys[i * stride..(i + 1) * stride];
                let found: Vec<(usize, Earlier)> = (row_keys.iter().enumerate())
                    .filter(|(_, key)| **key != KeyHash::ABSENT)
                    .filter_map(|(s, key)| {
                        let line = self.seen[s].get(key).map(|l| Earlier::Line(l & !DELETED));
                        line.or_else(|| holder(i * stride + s).map(Earlier::Version))
                            .map(|earlier| (s, earlier))
                    })
                    .collect();
                if found.is_empty() {
                    for (seen, key) in self.seen.iter_mut().zip(row_keys) {
                        if *key != KeyHash::ABSENT {
                            seen.insert(*key, mark(i));
                        }
                    }
                    if has_key {
                        self.owners.push((rows[i].0, row_keys[0]));
                    }
                }
                repeats[i] = found;
            }
        }
        repeats
    }

    /// A row's place, once its checks and uniqueness are settled: the batch (true) or the
    /// quarantine.
    fn accept(
        &mut self,
        line: u64,
        row: &Row,
        outcome: Outcome,
        repeats: Vec<(usize, Earlier)>,
    ) -> bool {
        let Outcome {
            mut violations,
            delete,
        } = outcome;
        self.tally.rows_read += 1;
        violations.extend(
            repeats
                .into_iter()
                .map(|(slot, earlier)| self.repeated(row, line, slot, earlier)),
        );
        if !violations.is_empty() {
            for v in &violations {
                *self.tally.by_rule.entry(v.rule.clone()).or_default() += 1;
            }
            self.tally.quarantined += 1;
            let values = self
                .labels
                .iter()
                .cloned()
                .zip(row.iter().map(|v| kept_in_quarantine(lossy(v))))
                .collect();
            self.quarantine.push(Quarantined {
                line,
                violations,
                values,
            });
            return false;
        }
        if let Some(u) = &mut self.upsert {
            u.deletes.append_value(delete);
        }
        self.tally.accepted += 1;
        true
    }

    /// Why the row on `line`, repeating its value of `slot` found `earlier`, is kept out;
    /// both rows named.
    fn repeated(&self, row: &Row, line: u64, slot: usize, earlier: Earlier) -> Violation {
        let slot = &self.slots[slot];
        let shown = self.shown(row, slot);
        let (place, this) = match (earlier, &self.prior) {
            (Earlier::Line(first), _) => (format!("on line {first}"), String::new()),
            (Earlier::Version(e), Some(prior)) => {
                (prior.place(&e), format!("; this is line {line}"))
            }
            (Earlier::Version(e), None) => (format!("in version {}", e.version), String::new()),
        };
        let field = &self.fields[slot.fields[0]];
        let (rule, reason) = if slot.is_key {
            let why = match (earlier, &self.upsert) {
                (Earlier::Line(_), Some(_)) => "; an upsert file names each key once",
                (Earlier::Line(_), None) => "; a key names one row",
                _ => "",
            };
            (
                "duplicate_key",
                format!("key {shown} is already {place}{why}{this}"),
            )
        } else {
            let why = format!("{} must be unique", field.label);
            (
                "unique",
                format!("'{shown}' is already {place}; {why}{this}"),
            )
        };
        Violation {
            field: field.name.clone(),
            rule: rule.into(),
            reason,
        }
    }

    /// The values this load's accepted rows claimed, per slot, for the key index (the
    /// loader forgets them).
    pub fn landed(&mut self) -> Vec<Vec<keys::Entry>> {
        let owners = std::mem::take(&mut self.owners);
        let has_key = self.slots.first().is_some_and(|s| s.is_key);
        let owner = |slot: usize, line: u64| match has_key && slot > 0 {
            true => owners[owners.partition_point(|(l, _)| *l < line)].1.wide(),
            false => 0,
        };
        (self.seen.iter_mut().enumerate())
            .map(|(slot, seen)| {
                let mut entries = Vec::with_capacity(seen.0.iter().map(HashMap::len).sum());
                let claimed = seen.0.iter_mut().flat_map(|shard| shard.drain());
                entries.extend(claimed.map(|(hash, mark)| keys::Entry {
                    hash: hash.wide(),
                    owner: owner(slot, mark & !DELETED),
                    version: 0,
                    line: mark & !DELETED,
                    gone: mark & DELETED != 0,
                }));
                entries
            })
            .collect()
    }

    /// The rows built so far as one batch.
    pub fn batch(&mut self) -> RecordBatch {
        self.pending = 0;
        let mut arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        self.columns = (self.fields.iter().zip(&arrays))
            .map(|(f, built)| Column::like(f, built))
            .collect();
        if let Some(u) = &mut self.upsert {
            arrays.push(Arc::new(u.deletes.finish()));
        }
        RecordBatch::try_new(self.schema.clone(), arrays).expect("columns follow the schema")
    }
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Strategy;

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

    impl Loader {
        fn push(&mut self, line: u64, row: &Row) {
            self.push_chunk(&[(line, row.clone())]);
        }
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

    fn two_keys() -> Resource {
        serde_json::from_value(serde_json::json!({"unit": "U", "name": "双键", "share_type": "unconditional", "open_type": "none", "update_cycle": "daily", "key": ["a"],
            "fields": [
                {"name": "a", "label": "甲", "type": "string", "unique": true},
                {"name": "b", "label": "乙", "type": "string", "unique": true}]}))
        .unwrap()
    }

    fn repeats(loader: &Loader) -> Vec<(u64, Vec<String>)> {
        loader
            .quarantine
            .iter()
            .map(|q| {
                (
                    q.line,
                    q.violations.iter().map(|v| v.field.clone()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn a_row_repeating_any_unique_field_claims_none_of_its_values() {
        let mut loader = Loader::new(&two_keys(), &labels(&["a", "b"])).unwrap();
        loader.push_chunk(&[
            (2, row(&["a1", "b1"])),
            (3, row(&["a2", "b1"])),
            (4, row(&["a2", "b2"])),
            (5, row(&["a1", "b1"])),
        ]);
        assert_eq!(loader.tally.accepted, 2);
        assert_eq!(
            repeats(&loader),
            vec![(3, vec!["b".into()]), (5, vec!["a".into(), "b".into()])]
        );
        assert!(loader.quarantine[0].violations[0].reason.contains("line 2"));
    }

    #[test]
    fn an_upsert_file_names_each_key_once() {
        let labels = labels(&["a", "b", "_op"]);
        let mut loader = Loader::new(&two_keys(), &labels)
            .unwrap()
            .for_upsert(&two_keys())
            .unwrap();
        loader.push_chunk(&[
            (2, row(&["a1", "b1", ""])),
            (3, row(&["a2", "b1", "D"])),
            (4, row(&["a1", "b9", ""])),
        ]);
        assert_eq!(
            loader.tally.accepted, 2,
            "b repeats, but only the key counts"
        );
        assert_eq!(repeats(&loader), vec![(4, vec!["a".into()])]);
        assert!(
            loader.quarantine[0].violations[0]
                .reason
                .contains("key a1 is already on line 2"),
            "{:?}",
            loader.quarantine
        );
        let batch = loader.batch();
        let deletes = batch
            .column_by_name(DELETE_FLAG)
            .unwrap()
            .as_any()
            .downcast_ref::<deltalake::arrow::array::BooleanArray>()
            .unwrap();
        assert_eq!(
            deletes.iter().collect::<Vec<_>>(),
            vec![Some(false), Some(true)]
        );
    }

    #[test]
    fn values_that_are_not_utf8_are_quarantined_as_read_not_altered() {
        let labels = labels(&["公民身份号码", "出生日期", "性别", "count"]);
        let mut loader = Loader::new(&resource(), &labels).unwrap();
        let gbk_name = b"\xc4\xd0"; // 男 in GBK
        let rows = vec![
            (2, row(&["11010519491231002X", "1949-12-31", "男", "1"])),
            (
                3,
                Row::from(vec![
                    &b"110105194912310021"[..],
                    b"1949-12-31",
                    gbk_name,
                    b"1",
                ]),
            ),
        ];
        loader.push_chunk(&rows);
        assert_eq!((loader.tally.accepted, loader.tally.quarantined), (1, 1));
        let q = &loader.quarantine[0];
        let encoding = q.violations.iter().find(|v| v.rule == "encoding").unwrap();
        assert_eq!((q.line, encoding.field.as_str()), (3, "gender"));
        assert!(encoding.reason.contains("--encoding gbk"), "{q:?}");
        assert_eq!(q.values["性别"], "\u{fffd}\u{fffd}");
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

    fn money(precision: u8, scale: u8) -> Resource {
        serde_json::from_value(serde_json::json!({"unit": "U", "name": "欠费", "share_type": "unconditional", "open_type": "none", "update_cycle": "daily",
            "fields": [{"name": "amount", "label": "欠费金额", "type": "decimal", "precision": precision, "scale": scale}]}))
        .unwrap()
    }

    /// The values of a load's one decimal column as Arrow writes them (CSV, JSON, tables).
    fn loaded(resource: &Resource, texts: &[&str]) -> (Vec<String>, Loader) {
        let mut loader = Loader::new(resource, &labels(&["欠费金额"])).unwrap();
        let rows: Vec<(u64, Row)> = (texts.iter().enumerate())
            .map(|(i, t)| (i as u64 + 2, row(&[t])))
            .collect();
        loader.push_chunk(&rows);
        let batch = loader.batch();
        let options = deltalake::arrow::util::display::FormatOptions::default();
        let shown =
            deltalake::arrow::util::display::ArrayFormatter::try_new(batch.column(0), &options)
                .unwrap();
        let values = (0..batch.num_rows())
            .map(|i| shown.value(i).to_string())
            .collect();
        (values, loader)
    }

    #[test]
    fn decimals_land_exactly_and_too_wide_ones_are_quarantined_with_the_allowed_digits() {
        let (values, loader) = loaded(
            &money(18, 2),
            &[
                "1234.50",
                "0.1",
                "1,000",
                "-0.20",
                "12345678901234567",
                "0.125",
                "abc",
            ],
        );
        assert_eq!(values, ["1234.50", "0.10", "1000.00", "-0.20"]);
        let rules: Vec<(&str, &str)> = (loader.quarantine.iter())
            .map(|q| {
                (
                    q.violations[0].rule.as_str(),
                    q.violations[0].reason.as_str(),
                )
            })
            .collect();
        assert_eq!(rules[0].0, "precision");
        assert_eq!(
            rules[0].1,
            "欠费金额（amount） '12345678901234567' does not fit decimal(18,2): at most 16 digits before the point and 2 after"
        );
        assert!(
            rules[1].1.contains("'0.125' does not fit decimal(18,2)"),
            "{rules:?}"
        );
        assert_eq!(rules[2], ("type", "'abc' is not a number"));
    }

    /// The canonical text of `unscaled` at `scale`: what Arrow prints, written by hand.
    fn canonical(unscaled: i128, scale: u8) -> String {
        let digits = unscaled.unsigned_abs().to_string();
        let digits = format!(
            "{}{digits}",
            "0".repeat((scale as usize + 1).saturating_sub(digits.len()))
        );
        let (whole, places) = digits.split_at(digits.len() - scale as usize);
        let sign = if unscaled < 0 { "-" } else { "" };
        match scale {
            0 => format!("{sign}{whole}"),
            _ => format!("{sign}{whole}.{places}"),
        }
    }

    fn within(precision: u8) -> impl proptest::strategy::Strategy<Value = i128> {
        let limit = 10i128.pow(u32::from(precision));
        -limit + 1..limit
    }

    proptest::proptest! {
        #[test]
        fn any_decimal_within_its_field_round_trips_as_text(
            (precision, scale, unscaled) in (1u8..=38)
                .prop_flat_map(|p| (proptest::strategy::Just(p), 0..=p))
                .prop_flat_map(|(p, s)| (proptest::strategy::Just(p), proptest::strategy::Just(s), within(p)))
        ) {
            let text = canonical(unscaled, scale);
            let (values, loader) = loaded(&money(precision, scale), &[&text]);
            proptest::prop_assert_eq!(values, vec![text]);
            proptest::prop_assert!(loader.quarantine.is_empty());
        }

        #[test]
        fn a_decimal_over_its_precision_is_refused(
            (precision, scale) in (1u8..=37).prop_flat_map(|p| (proptest::strategy::Just(p), 0..=p)),
            lead in 1u8..=9,
        ) {
            let too_wide = format!("{lead}{}", "0".repeat(usize::from(precision - scale)));
            let (values, loader) = loaded(&money(precision, scale), &[&too_wide]);
            proptest::prop_assert!(values.is_empty());
            proptest::prop_assert_eq!(&loader.quarantine[0].violations[0].rule, "precision");
        }
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
