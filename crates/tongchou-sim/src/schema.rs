//! Builders for the catalog entries of generated resources, and the per-file bookkeeping
//! of planted mess (invalid identifiers, variant names).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tongchou_ids::{citizen_id, credit_code};
use tongchou_model::{DataType, Field, Role, Sensitivity};

use crate::output::TableWriter;
use crate::truth::{DuplicateRecord, InvalidRow};

pub fn field(name: &str, label: &str, data_type: DataType) -> Field {
    Field {
        name: name.to_string(),
        label: label.to_string(),
        data_type,
        description: None,
        role: None,
        required: false,
        unique: false,
        sensitivity: Sensitivity::Internal,
        default_mask: None,
        allowed_values: Vec::new(),
        precision: None,
        scale: None,
    }
}

pub fn text(name: &str, label: &str) -> Field {
    field(name, label, DataType::String)
}

/// Chainable refinements of a [`Field`].
pub trait FieldExt {
    fn role(self, role: Role) -> Self;
    fn required(self) -> Self;
    fn unique(self) -> Self;
    fn sensitivity(self, s: Sensitivity) -> Self;
    fn allowed(self, values: &[&str]) -> Self;
    /// A decimal field's digits in all and after the point.
    fn digits(self, precision: u8, scale: u8) -> Self;
}

impl FieldExt for Field {
    fn role(mut self, role: Role) -> Self {
        self.default_mask = role.default_mask().map(str::to_string);
        self.sensitivity = role.default_sensitivity();
        self.role = Some(role);
        self
    }
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn unique(mut self) -> Self {
        self.unique = true;
        self.required = true;
        self
    }
    fn sensitivity(mut self, s: Sensitivity) -> Self {
        self.sensitivity = s;
        self
    }
    fn allowed(mut self, values: &[&str]) -> Self {
        self.allowed_values = values.iter().map(|v| v.to_string()).collect();
        self
    }
    fn digits(mut self, precision: u8, scale: u8) -> Self {
        self.precision = Some(precision);
        self.scale = Some(scale);
        self
    }
}

/// Planted mess of one export, collected while it is written.
#[derive(Default)]
pub struct FileMess {
    pub invalid: Vec<InvalidRow>,
    pub duplicates: Vec<DuplicateRecord>,
}

impl FileMess {
    /// Returns `id`, or (at `rate`) a mistyped copy that fails its check, which is recorded
    /// as a row a validating load must quarantine.
    pub fn maybe_corrupt(
        &mut self,
        rng: &mut ChaCha8Rng,
        writer: &TableWriter,
        file: &str,
        field: &str,
        id: &str,
        rate: f64,
    ) -> String {
        if id.is_empty() || !rng.random_bool(rate) {
            return id.to_string();
        }
        let validate = |s: &str| -> Result<(), String> {
            if id.len() == 18
                && id.as_bytes()[..17].iter().all(u8::is_ascii_digit)
                && citizen_id::validate(id).is_ok()
            {
                citizen_id::validate(s).map_err(|e| e.to_string())
            } else {
                credit_code::validate(s).map_err(|e| e.to_string())
            }
        };
        loop {
            let corrupted = mistype(rng, id);
            if let Err(reason) = validate(&corrupted) {
                self.invalid.push(InvalidRow {
                    file: file.to_string(),
                    line: writer.next_line(),
                    field: field.to_string(),
                    value: corrupted.clone(),
                    reason,
                });
                return corrupted;
            }
        }
    }

    pub fn duplicate(
        &mut self,
        writer: &TableWriter,
        file: &str,
        entity: (&'static str, &str),
        variant: &'static str,
        value: &str,
    ) {
        self.duplicates.push(DuplicateRecord {
            file: file.to_string(),
            line: writer.next_line(),
            entity_type: entity.0,
            entity_id: entity.1.to_string(),
            variant,
            value: value.to_string(),
        });
    }
}

/// The typing mistakes clerks make: a wrong digit, two digits swapped, one left out.
fn mistype(rng: &mut ChaCha8Rng, id: &str) -> String {
    let mut chars: Vec<char> = id.chars().collect();
    match rng.random_range(0..3) {
        0 => {
            let i = rng.random_range(8..chars.len());
            chars[i] = if chars[i] == '7' { '1' } else { '7' };
        }
        1 => {
            let i = rng.random_range(6..chars.len() - 1);
            chars.swap(i, i + 1);
        }
        _ => {
            chars.remove(rng.random_range(6..chars.len()));
        }
    }
    chars.into_iter().collect()
}
