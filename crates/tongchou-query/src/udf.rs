//! A grant's mask as a DataFusion scalar function. Registered only in the trusted context
//! that plans a governed leaf, so the user's SQL can neither call it nor see it.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Decimal128Array, FixedSizeBinaryBuilder, Float64Array,
    Int64Array, StringArray, new_null_array,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Date32Type, Decimal128Type, Float64Type, Int64Type};
use deltalake::datafusion::common::{DataFusionError, Result};
use deltalake::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use tongchou_audit::{SUBJECT_BYTES, SubjectKey};
use tongchou_mask::{Mask, UnitKey};

#[derive(Debug)]
pub struct MaskUdf {
    name: String,
    mask: Mask,
    key: UnitKey,
    signature: Signature,
}

impl MaskUdf {
    pub fn new(name: String, mask: Mask, key: UnitKey) -> MaskUdf {
        MaskUdf {
            name,
            mask,
            key,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl PartialEq for MaskUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for MaskUdf {}

impl Hash for MaskUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// The type a mask gives a column of `input` type: dates stay dates and numbers numbers
/// where the mask allows; `null` keeps the type; everything else becomes text.
pub fn masked_type(mask: &Mask, input: &DataType) -> DataType {
    match (mask, input) {
        (Mask::DateYear | Mask::DateMonth, DataType::Date32) => DataType::Date32,
        (Mask::Round { .. } | Mask::Bucket { .. }, DataType::Float64) => DataType::Float64,
        (Mask::Round { .. } | Mask::Bucket { .. }, DataType::Int64) => DataType::Int64,
        (Mask::Round { .. } | Mask::Bucket { .. }, DataType::Decimal128(p, s)) => {
            // One more digit before the point: rounding up or flooring down may carry.
            let scale = mask.decimal_scale(*s as u8);
            let integer = p.saturating_sub(*s as u8) + 1;
            DataType::Decimal128((integer + scale).min(38), scale as i8)
        }
        (Mask::Null, t) => t.clone(),
        _ => DataType::Utf8,
    }
}

fn date_of(days: i32) -> Option<jiff::civil::Date> {
    jiff::civil::Date::new(1970, 1, 1)
        .ok()?
        .checked_add(jiff::Span::new().days(i64::from(days)))
        .ok()
}

fn days_of(date: jiff::civil::Date) -> Option<i32> {
    let epoch = jiff::civil::Date::new(1970, 1, 1).ok()?;
    Some(epoch.until(date).ok()?.get_days())
}

impl MaskUdf {
    fn mask_array(&self, input: &ArrayRef) -> Result<ArrayRef> {
        let out = masked_type(&self.mask, input.data_type());
        let array: ArrayRef = match (&out, input.data_type()) {
            (_, _) if matches!(self.mask, Mask::Null) => new_null_array(&out, input.len()),
            (DataType::Date32, DataType::Date32) => Arc::new(
                input
                    .as_primitive::<Date32Type>()
                    .iter()
                    .map(|d| {
                        d.and_then(date_of)
                            .and_then(|d| self.mask.date(d))
                            .and_then(days_of)
                    })
                    .collect::<Date32Array>(),
            ),
            (DataType::Float64, DataType::Float64) => Arc::new(
                input
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| v.and_then(|v| self.mask.number(v)))
                    .collect::<Float64Array>(),
            ),
            (DataType::Decimal128(p, s), DataType::Decimal128(_, scale)) => Arc::new(
                input
                    .as_primitive::<Decimal128Type>()
                    .iter()
                    .map(|v| v.and_then(|v| self.mask.decimal(v, *scale as u8)))
                    .collect::<Decimal128Array>()
                    .with_precision_and_scale(*p, *s)?,
            ),
            (DataType::Int64, DataType::Int64) => Arc::new(
                input
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|v| v.and_then(|v| self.mask.number(v as f64)).map(|v| v as i64))
                    .collect::<Int64Array>(),
            ),
            _ => {
                let text = as_text(input)?;
                let values = text.values();
                if matches!(self.mask, Mask::Pseudonym) {
                    Arc::new(pseudonym_array(&self.key.pseudonyms(&values))?)
                } else {
                    Arc::new(
                        values
                            .iter()
                            .map(|v| v.and_then(|v| self.mask.text(v, &self.key)))
                            .collect::<StringArray>(),
                    )
                }
            }
        };
        Ok(array)
    }
}

/// Pseudonyms as one string array, built from their bytes (checked once, not per value).
fn pseudonym_array(made: &[Option<tongchou_mask::Pseudonym>]) -> Result<StringArray> {
    let mut bytes = Vec::with_capacity(made.len() * 21);
    let mut offsets = Vec::with_capacity(made.len() + 1);
    offsets.push(0i32);
    for pseudonym in made {
        if let Some(pseudonym) = pseudonym {
            bytes.extend_from_slice(pseudonym);
        }
        offsets.push(bytes.len() as i32);
    }
    let nulls = NullBuffer::from_iter(made.iter().map(Option::is_some));
    Ok(StringArray::try_new(
        OffsetBuffer::new(offsets.into()),
        bytes.into(),
        Some(nulls).filter(|n| n.null_count() > 0),
    )?)
}

/// The one column a function of the policy is called on, as an array.
fn only_column(args: ScalarFunctionArgs) -> Result<ArrayRef> {
    let rows = args.number_rows;
    args.args
        .into_iter()
        .next()
        .ok_or_else(|| DataFusionError::Plan("a policy function takes one column".into()))?
        .into_array(rows)
}

/// A column read as text: string columns as they are, others cast.
enum Text {
    View(ArrayRef),
    Plain(ArrayRef),
}

fn as_text(input: &ArrayRef) -> Result<Text> {
    Ok(match input.data_type() {
        DataType::Utf8View => Text::View(input.clone()),
        DataType::Utf8 => Text::Plain(input.clone()),
        _ => Text::Plain(arrow::compute::cast(input, &DataType::Utf8)?),
    })
}

impl Text {
    fn values(&self) -> Vec<Option<&str>> {
        match self {
            Text::View(array) => array.as_string_view().iter().collect(),
            Text::Plain(array) => array.as_string::<i32>().iter().collect(),
        }
    }
}

impl ScalarUDFImpl for MaskUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let input = args
            .first()
            .ok_or_else(|| DataFusionError::Plan("a mask takes one column".into()))?;
        Ok(masked_type(&self.mask, input))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Array(self.mask_array(&only_column(args)?)?))
    }
}

/// The keyed hash under which the ledger indexes a person or enterprise, of each raw ID:
/// the governed leaf's hidden column, taken from raw rows whatever the grant shows.
pub struct SubjectUdf {
    key: SubjectKey,
    signature: Signature,
}

pub const SUBJECT_UDF: &str = "governed_subject";

impl std::fmt::Debug for SubjectUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(SUBJECT_UDF)
    }
}

impl SubjectUdf {
    pub fn new(key: SubjectKey) -> SubjectUdf {
        SubjectUdf {
            key,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    fn hash_array(&self, input: &ArrayRef) -> Result<ArrayRef> {
        let text = as_text(input)?;
        let mut out = FixedSizeBinaryBuilder::with_capacity(input.len(), SUBJECT_BYTES as i32);
        // IDs recur across a batch's rows (a person's many crossings): one HMAC each.
        let mut made: HashMap<&str, [u8; SUBJECT_BYTES]> = HashMap::new();
        for value in text.values() {
            match value.filter(|v| !v.trim().is_empty()) {
                Some(id) => {
                    out.append_value(made.entry(id).or_insert_with(|| self.key.subject_bytes(id)))?
                }
                None => out.append_null(),
            }
        }
        Ok(Arc::new(out.finish()))
    }
}

impl PartialEq for SubjectUdf {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SubjectUdf {}

impl Hash for SubjectUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        SUBJECT_UDF.hash(state);
    }
}

impl ScalarUDFImpl for SubjectUdf {
    fn name(&self) -> &str {
        SUBJECT_UDF
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::FixedSizeBinary(SUBJECT_BYTES as i32))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Array(self.hash_array(&only_column(args)?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udf(spec: &str) -> MaskUdf {
        MaskUdf::new(
            "m".into(),
            Mask::parse(spec).unwrap(),
            UnitKey::new([3; 32]),
        )
    }

    #[test]
    fn columns_are_masked_keeping_their_types_where_the_mask_allows() {
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![Some(3790), None]));
        let out = udf("date_month").mask_array(&dates).unwrap();
        assert_eq!(out.data_type(), &DataType::Date32);
        let month = date_of(out.as_primitive::<Date32Type>().value(0)).unwrap();
        assert_eq!((month.year(), month.month(), month.day()), (1980, 5, 1));
        assert!(out.is_null(1));

        let money: ArrayRef = Arc::new(Float64Array::from(vec![12_345.6]));
        let out = udf("bucket(1000)").mask_array(&money).unwrap();
        assert_eq!(out.as_primitive::<Float64Type>().value(0), 12_000.0);

        let arrears: ArrayRef = Arc::new(
            Decimal128Array::from(vec![Some(123_450), None, Some(-99_999)])
                .with_precision_and_scale(18, 2)
                .unwrap(),
        );
        let shown = |spec: &str| {
            let out = udf(spec).mask_array(&arrears).unwrap();
            let text = (0..out.len())
                .map(|i| arrow::util::display::array_value_to_string(&out, i).unwrap())
                .collect::<Vec<_>>();
            (out.data_type().clone(), text)
        };
        assert_eq!(
            shown("round(0)"),
            (
                DataType::Decimal128(17, 0),
                vec!["1235".into(), "".into(), "-1000".into()]
            )
        );
        assert_eq!(
            shown("bucket(1000)"),
            (
                DataType::Decimal128(19, 2),
                vec!["1000.00".into(), "".into(), "-1000.00".into()]
            )
        );

        let ids: ArrayRef = Arc::new(StringArray::from(vec!["44060519800101123X"]));
        let out = udf("citizen_id").mask_array(&ids).unwrap();
        assert_eq!(out.as_string::<i32>().value(0), "440605********123X");
        let out = udf("null").mask_array(&ids).unwrap();
        assert!(out.is_null(0));
    }

    #[test]
    fn subjects_are_the_ledger_hashes_of_raw_ids_and_blanks_are_nobody() {
        let key = SubjectKey::generate();
        let ids: ArrayRef = Arc::new(StringArray::from(vec![
            Some("44060519800101123x"),
            None,
            Some("  "),
        ]));
        let out = SubjectUdf::new(key.clone()).hash_array(&ids).unwrap();
        let out = out.as_fixed_size_binary();
        assert_eq!(out.value(0), key.subject_bytes("44060519800101123X"));
        assert!(out.is_null(1) && out.is_null(2));
    }

    #[test]
    fn pseudonyms_of_string_views_keep_nulls_and_match_the_key() {
        let ids = vec![
            Some("44060519800101123X"),
            None,
            Some("440605198001011240"),
            None,
        ];
        let key = UnitKey::new([3; 32]);
        for input in [
            Arc::new(arrow::array::StringViewArray::from(ids.clone())) as ArrayRef,
            Arc::new(StringArray::from(ids.clone())),
        ] {
            let out = udf("pseudonym").mask_array(&input).unwrap();
            let out = out.as_string::<i32>();
            let got: Vec<Option<&str>> = out.iter().collect();
            let want: Vec<Option<String>> =
                ids.iter().map(|v| v.map(|v| key.pseudonym(v))).collect();
            assert_eq!(got, want.iter().map(|v| v.as_deref()).collect::<Vec<_>>());
        }
    }
}
