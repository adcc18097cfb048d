//! Turns the JSON form of a resource (from a file, the REST API or a workbook row) into a
//! [`Resource`], reporting every problem with where it is and what to do — not just the
//! first one, so a steward can fix a whole workbook in one pass.

use serde::Serialize;
use serde_json::{Map, Value};
use tongchou_model::{
    Classification, DataType, DecimalType, Field, OpenType, Resource, Role, Sensitivity,
    ShareMethod, ShareType, UpdateCycle, is_known_mask,
};

/// One thing wrong with the input, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Where the resource came from: "资源 3" for the 3rd of a JSON array, "信息资源 row 5".
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.at)?;
        if let Some(r) = &self.resource {
            write!(f, " 「{r}」")?;
        }
        if let Some(field) = &self.field {
            write!(f, ", {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

const RESOURCE_KEYS: [&str; 19] = [
    "code",
    "unit",
    "name",
    "abstract",
    "classification",
    "format",
    "share_type",
    "share_condition",
    "legal_basis",
    "share_method",
    "open_type",
    "open_condition",
    "update_cycle",
    "published",
    "related",
    "tags",
    "key",
    "fields",
    "summary",
];
const FIELD_KEYS: [&str; 12] = [
    "name",
    "label",
    "type",
    "description",
    "role",
    "required",
    "unique",
    "sensitivity",
    "default_mask",
    "allowed_values",
    "precision",
    "scale",
];

/// Collects problems for one resource.
pub struct Checker {
    at: String,
    resource: Option<String>,
    pub problems: Vec<Problem>,
}

impl Checker {
    pub fn new(at: impl Into<String>) -> Checker {
        Checker {
            at: at.into(),
            resource: None,
            problems: Vec::new(),
        }
    }

    pub fn problem(&mut self, field: Option<&str>, message: impl Into<String>) {
        self.problems.push(Problem {
            at: self.at.clone(),
            resource: self.resource.clone(),
            field: field.map(str::to_string),
            message: message.into(),
        });
    }
}

fn text(c: &mut Checker, obj: &Map<String, Value>, key: &str, required: bool) -> Option<String> {
    match obj.get(key) {
        None | Some(Value::Null) => {
            if required {
                c.problem(Some(key), "is required");
            }
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            if required {
                c.problem(Some(key), "is required and must not be blank");
            }
            None
        }
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(other) => {
            c.problem(Some(key), format!("must be text, found {other}"));
            None
        }
    }
}

fn choice<T: Copy>(
    c: &mut Checker,
    obj: &Map<String, Value>,
    key: &str,
    required: bool,
    parse: fn(&str) -> Option<T>,
    choices: fn() -> String,
) -> Option<T> {
    let value = text(c, obj, key, required)?;
    let parsed = parse(&value);
    if parsed.is_none() {
        c.problem(Some(key), format!("'{value}' is not one of: {}", choices()));
    }
    parsed
}

fn strings(c: &mut Checker, obj: &Map<String, Value>, key: &str) -> Vec<String> {
    match obj.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                other => {
                    c.problem(Some(key), format!("must be a list of text, found {other}"));
                    None
                }
            })
            .collect(),
        Some(other) => {
            c.problem(Some(key), format!("must be a list of text, found {other}"));
            Vec::new()
        }
    }
}

fn flag(c: &mut Checker, obj: &Map<String, Value>, key: &str, field: &str) -> bool {
    match obj.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            c.problem(
                Some(field),
                format!("{key} must be true or false, found {other}"),
            );
            false
        }
    }
}

/// A whole number from 0 to `max`, written as a number or as text (a workbook cell).
fn small_number(obj: &Map<String, Value>, key: &str, max: u8) -> Result<Option<u8>, String> {
    let number = match obj.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(v) => v.as_u64(),
    };
    number
        .filter(|n| *n <= u64::from(max))
        .map(|n| Some(n as u8))
        .ok_or_else(|| {
            format!(
                "{key} must be a whole number from 0 to {max}, found {}",
                obj[key]
            )
        })
}

/// A decimal field's precision and scale (SQL's `DECIMAL(p, s)`), each optional.
fn decimal_digits(
    obj: &Map<String, Value>,
    data_type: Option<DataType>,
) -> Result<(Option<u8>, Option<u8>), String> {
    let max = DecimalType::MAX_PRECISION;
    let precision = small_number(obj, "precision", max)?;
    let scale = small_number(obj, "scale", max)?;
    if precision.is_none() && scale.is_none() {
        return Ok((None, None));
    }
    if data_type.is_some_and(|t| t != DataType::Decimal) {
        return Err("precision and scale apply only to decimal (数值型) fields".into());
    }
    match (precision, scale) {
        (Some(0), _) => Err(format!("precision must be from 1 to {max}")),
        (Some(p), Some(s)) if s > p => Err(format!(
            "scale {s} is more than the precision {p}: a decimal(p,s) keeps s of its p digits after the point"
        )),
        _ => Ok((precision, scale)),
    }
}

fn unknown_keys(c: &mut Checker, obj: &Map<String, Value>, known: &[&str], field: Option<&str>) {
    for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        c.problem(
            field.or(Some(key)),
            format!("unknown key '{key}'; known keys are {}", known.join(", ")),
        );
    }
}

/// True for names usable as SQL columns without quoting: ASCII letters, digits, '_'.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

pub fn is_resource_code(code: &str) -> bool {
    let Some((class, sequence)) = code.split_once('/') else {
        return false;
    };
    class.len() >= 6
        && class.starts_with(['1', '2', '3'])
        && class.bytes().all(|b| b.is_ascii_digit())
        && (1..=10).contains(&sequence.len())
        && sequence.bytes().all(|b| b.is_ascii_digit())
}

fn classification(c: &mut Checker, obj: &Map<String, Value>) -> Option<Classification> {
    let value = obj.get("classification").filter(|v| !v.is_null())?;
    let parsed: Option<Classification> = serde_json::from_value(value.clone()).ok();
    match parsed {
        Some(cl)
            if (1..=3).contains(&cl.class)
                && cl.item <= 99
                && cl.catalog <= 999
                && cl.subcatalog <= 999 =>
        {
            Some(cl)
        }
        _ => {
            c.problem(
                Some("classification"),
                "must be {\"class\": 1–3 (基础/主题/部门), \"item\": 0–99, \"catalog\": 0–999, \"subcatalog\": 0–999}",
            );
            None
        }
    }
}

fn field(c: &mut Checker, index: usize, value: &Value) -> Option<Field> {
    let Value::Object(obj) = value else {
        c.problem(Some(&format!("fields[{}]", index + 1)), "must be an object");
        return None;
    };
    let name = text(c, obj, "name", false);
    let place = format!("信息项 {} ({})", index + 1, name.as_deref().unwrap_or("?"));
    let before = c.problems.len();
    unknown_keys(c, obj, &FIELD_KEYS, Some(&place));
    let within = |c: &mut Checker, key: &str, message: String| {
        c.problem(Some(&place), format!("{key} {message}"))
    };
    match &name {
        None => within(c, "name", "is required".into()),
        Some(n) if !is_identifier(n) => within(
            c,
            "name",
            format!(
                "'{n}' must start with a letter and use only ASCII letters, digits and '_' (max 63); put the Chinese name in label"
            ),
        ),
        _ => {}
    }
    let label = match obj.get("label").and_then(Value::as_str).map(str::trim) {
        Some(l) if !l.is_empty() => Some(l.to_string()),
        _ => {
            within(c, "label", "(the Chinese name) is required".into());
            None
        }
    };
    let data_type = match obj.get("type").and_then(Value::as_str) {
        None => {
            within(
                c,
                "type",
                format!("is required: one of {}", DataType::choices()),
            );
            None
        }
        Some(t) => DataType::parse(t).or_else(|| {
            within(
                c,
                "type",
                format!("'{t}' is not one of {}", DataType::choices()),
            );
            None
        }),
    };
    let role = match obj
        .get("role")
        .and_then(Value::as_str)
        .filter(|r| !r.trim().is_empty())
    {
        None => None,
        Some(r) => Role::parse(r).or_else(|| {
            within(
                c,
                "role",
                format!("'{r}' is not one of {}", Role::choices()),
            );
            None
        }),
    };
    let sensitivity = match obj
        .get("sensitivity")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
    {
        None => role.map_or(Sensitivity::Internal, Role::default_sensitivity),
        Some(s) => Sensitivity::parse(s).unwrap_or_else(|| {
            within(
                c,
                "sensitivity",
                format!("'{s}' is not one of {}", Sensitivity::choices()),
            );
            Sensitivity::Internal
        }),
    };
    let default_mask = match obj
        .get("default_mask")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        None => role.and_then(Role::default_mask).map(str::to_string),
        Some(m) if is_known_mask(m) => Some(m.to_string()),
        Some(m) => {
            within(
                c,
                "default_mask",
                format!(
                    "'{m}' is not a known mask: {}",
                    tongchou_model::MASKS.join(", ")
                ),
            );
            None
        }
    };
    let description = text(c, obj, "description", false);
    let required = flag(c, obj, "required", &place);
    let unique = flag(c, obj, "unique", &place);
    let allowed_values = strings(c, obj, "allowed_values");
    let (precision, scale) = decimal_digits(obj, data_type).unwrap_or_else(|message| {
        c.problem(Some(&place), message);
        (None, None)
    });
    if c.problems.len() > before {
        return None;
    }
    Some(Field {
        name: name?,
        label: label?,
        data_type: data_type?,
        description,
        role,
        required: required || unique,
        unique,
        sensitivity,
        default_mask,
        allowed_values,
        precision,
        scale,
    })
}

/// Checks one resource in its JSON form; `at` says where it came from.
pub fn resource(at: &str, value: &Value) -> Result<Resource, Vec<Problem>> {
    let mut c = Checker::new(at);
    let Value::Object(obj) = value else {
        c.problem(None, "a resource must be a JSON object");
        return Err(c.problems);
    };
    c.resource = obj.get("name").and_then(Value::as_str).map(str::to_string);
    unknown_keys(&mut c, obj, &RESOURCE_KEYS, None);
    let code = text(&mut c, obj, "code", false);
    if let Some(code) = &code
        && !is_resource_code(code)
    {
        c.problem(Some("code"), format!("'{code}' is not a resource code (分类码/顺序码, e.g. 307001004/000012); leave it out to have one generated"));
    }
    let unit = text(&mut c, obj, "unit", true);
    let name = text(&mut c, obj, "name", true);
    if name.as_ref().is_some_and(|n| n.chars().count() > 100) {
        c.problem(Some("name"), "is longer than 100 characters");
    }
    let summary = text(&mut c, obj, "abstract", false)
        .or_else(|| text(&mut c, obj, "summary", false))
        .unwrap_or_default();
    let classification = classification(&mut c, obj);
    if let (Some(code), Some(cl)) = (&code, &classification)
        && is_resource_code(code)
        && !code.starts_with(&format!("{}/", cl.code()))
    {
        c.problem(
            Some("code"),
            format!(
                "'{code}' does not begin with its classification code {}",
                cl.code()
            ),
        );
    }
    let share_type = choice(
        &mut c,
        obj,
        "share_type",
        true,
        ShareType::parse,
        ShareType::choices,
    );
    let share_condition = text(&mut c, obj, "share_condition", false);
    let legal_basis = text(&mut c, obj, "legal_basis", false);
    let share_method = choice(
        &mut c,
        obj,
        "share_method",
        false,
        ShareMethod::parse,
        ShareMethod::choices,
    );
    let open_type = choice(
        &mut c,
        obj,
        "open_type",
        true,
        OpenType::parse,
        OpenType::choices,
    );
    let open_condition = text(&mut c, obj, "open_condition", false);
    let update_cycle = choice(
        &mut c,
        obj,
        "update_cycle",
        true,
        UpdateCycle::parse,
        UpdateCycle::choices,
    );
    let published = text(&mut c, obj, "published", false);
    if let Some(p) = &published
        && p.parse::<jiff::civil::Date>().is_err()
    {
        c.problem(
            Some("published"),
            format!("'{p}' is not a date like 2015-06-09"),
        );
    }
    if share_type == Some(ShareType::Conditional) && share_condition.is_none() {
        c.problem(
            Some("share_condition"),
            "a conditional-share resource must state its sharing condition (共享条件)",
        );
    }
    if matches!(share_type, Some(ShareType::Conditional | ShareType::None)) && legal_basis.is_none()
    {
        c.problem(
            Some("legal_basis"),
            "a resource not shared unconditionally must state its legal basis (共享依据)",
        );
    }
    if open_type == Some(OpenType::Conditional) && open_condition.is_none() {
        c.problem(
            Some("open_condition"),
            "a conditionally open resource must state its open condition (开放条件)",
        );
    }
    let related = strings(&mut c, obj, "related");
    let tags = strings(&mut c, obj, "tags");
    let key = strings(&mut c, obj, "key");
    let fields: Vec<Field> = match obj.get("fields") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| field(&mut c, i, v))
            .collect(),
        _ => {
            c.problem(
                Some("fields"),
                "at least one field (信息项) with name, label and type is required",
            );
            Vec::new()
        }
    };
    let mut seen = std::collections::HashSet::new();
    let raw_names = obj
        .get("fields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| f.get("name")?.as_str());
    for name in raw_names {
        if !seen.insert(name.to_ascii_lowercase()) {
            c.problem(
                Some(&format!("信息项 {name}")),
                "the field name is used twice",
            );
        }
    }
    for k in &key {
        if !fields.iter().any(|f| &f.name == k) {
            c.problem(
                Some("key"),
                format!("key field '{k}' is not one of the resource's fields"),
            );
        }
    }
    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    Ok(Resource {
        code,
        unit: unit.expect("checked"),
        name: name.expect("checked"),
        summary,
        classification,
        format: text(&mut c, obj, "format", false),
        share_type: share_type.expect("checked"),
        share_condition,
        legal_basis,
        share_method,
        open_type: open_type.expect("checked"),
        open_condition,
        update_cycle: update_cycle.expect("checked"),
        published,
        related,
        tags,
        key,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        json!({"unit": "U1", "name": "社会保险费欠缴明细", "abstract": "欠费单位", "share_type": "conditional",
               "share_condition": "比对核查", "legal_basis": "《社会保险法》", "open_type": "none", "update_cycle": "monthly",
               "fields": [{"name": "credit_code", "label": "统一社会信用代码", "type": "string", "role": "enterprise_id", "required": true}]})
    }

    fn messages(v: &Value) -> Vec<String> {
        resource("资源 1", v)
            .unwrap_err()
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn a_minimal_resource_is_accepted_with_role_defaults() {
        let r = resource("资源 1", &minimal()).unwrap();
        assert_eq!(r.fields[0].sensitivity, Sensitivity::Public);
        let mut v = minimal();
        v["fields"][0]["role"] = json!("person_id");
        let r = resource("资源 1", &v).unwrap();
        assert_eq!(r.fields[0].sensitivity, Sensitivity::Sensitive);
        assert_eq!(r.fields[0].default_mask.as_deref(), Some("citizen_id"));
    }

    #[test]
    fn chinese_enumeration_values_are_accepted() {
        let mut v = minimal();
        v["share_type"] = json!("有条件共享");
        v["update_cycle"] = json!("每月");
        assert!(resource("资源 1", &v).is_ok());
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let mut v = minimal();
        v["share_type"] = json!("partly");
        v["update_cycle"] = json!("hourly");
        v["colour"] = json!("red");
        v["fields"] = json!([{"name": "credit code", "label": "代码"}, {"name": "x", "label": "", "type": "varchar"}]);
        let m = messages(&v);
        assert!(
            m.iter()
                .any(|s| s
                    .contains("share_type: 'partly' is not one of: unconditional (无条件共享)")),
            "{m:?}"
        );
        assert!(
            m.iter().any(|s| s.contains("update_cycle: 'hourly'")),
            "{m:?}"
        );
        assert!(
            m.iter().any(|s| s.contains("unknown key 'colour'")),
            "{m:?}"
        );
        assert!(
            m.iter().any(|s| s
                .contains("信息项 1 (credit code): name 'credit code' must start with a letter")),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|s| s.contains("信息项 1 (credit code): type is required")),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|s| s.contains("信息项 2 (x): label (the Chinese name) is required")),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|s| s.contains("信息项 2 (x): type 'varchar' is not one of")),
            "{m:?}"
        );
        assert!(
            m.iter()
                .all(|s| s.starts_with("资源 1 「社会保险费欠缴明细」")),
            "{m:?}"
        );
    }

    #[test]
    fn sharing_rules_need_conditions_and_legal_basis() {
        let mut v = minimal();
        v.as_object_mut().unwrap().remove("share_condition");
        v.as_object_mut().unwrap().remove("legal_basis");
        v["open_type"] = json!("conditional");
        let m = messages(&v);
        assert!(m.iter().any(|s| s.contains("share_condition")));
        assert!(m.iter().any(|s| s.contains("legal_basis")));
        assert!(m.iter().any(|s| s.contains("open_condition")));
        v["share_type"] = json!("unconditional");
        v["open_type"] = json!("none");
        assert!(resource("资源 1", &v).is_ok());
    }

    #[test]
    fn codes_masks_dates_and_duplicates_are_checked() {
        let mut v = minimal();
        v["code"] = json!("ABC");
        v["published"] = json!("2015-13-01");
        v["fields"][0]["default_mask"] = json!("rot13");
        v["fields"] = json!([v["fields"][0].clone(), v["fields"][0].clone()]);
        v["key"] = json!(["licence"]);
        let m = messages(&v);
        for expected in [
            "'ABC' is not a resource code",
            "'2015-13-01' is not a date",
            "'rot13' is not a known mask",
            "used twice",
            "key field 'licence'",
        ] {
            assert!(m.iter().any(|s| s.contains(expected)), "{expected}: {m:?}");
        }
        let mut v = minimal();
        v["code"] = json!("307001004/000012");
        v["classification"] = json!({"class": 3, "item": 7, "catalog": 1, "subcatalog": 5});
        assert!(messages(&v)[0].contains("does not begin with its classification code 307001005"));
    }

    #[test]
    fn decimal_fields_declare_precision_and_scale_within_bounds() {
        let with = |extra: Value| {
            let mut v = minimal();
            let mut field = json!({"name": "amount", "label": "欠费金额", "type": "decimal"});
            field
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v["fields"] = json!([field]);
            v
        };
        let r = resource("资源 1", &with(json!({"precision": 18, "scale": "2"}))).unwrap();
        assert_eq!(r.fields[0].decimal_type().to_string(), "decimal(18,2)");
        for (extra, expected) in [
            (
                json!({"precision": 39}),
                "precision must be a whole number from 0 to 38",
            ),
            (json!({"precision": 0}), "precision must be from 1 to 38"),
            (
                json!({"precision": 4, "scale": 6}),
                "scale 6 is more than the precision 4",
            ),
            (json!({"scale": -1}), "scale must be a whole number"),
            (
                json!({"type": "string", "scale": 2}),
                "apply only to decimal",
            ),
        ] {
            let m = messages(&with(extra));
            assert!(m.iter().any(|s| s.contains(expected)), "{expected}: {m:?}");
        }
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("credit_code") && is_identifier("_x1"));
        assert!(
            !is_identifier("1x")
                && !is_identifier("信用代码")
                && !is_identifier("a-b")
                && !is_identifier("")
        );
        assert!(is_resource_code("101001001/000001"));
        assert!(
            !is_resource_code("401001001/000001")
                && !is_resource_code("101001001")
                && !is_resource_code("101/1")
        );
    }
}
