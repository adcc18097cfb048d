//! Proposes fields from a sample file: names, types and identifying roles detected by
//! content (checksums, number plans, Luhn, name and address shapes), each with the rule
//! and the share of sampled values that matched, for the steward to confirm or edit.

use serde::Serialize;
use tongchou_ids::{bank_card, citizen_id, credit_code, mobile};
use tongchou_model::{DataType, DecimalType, Role, Sensitivity};

use crate::sample::Sample;
use crate::values;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Suggestion {
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub data_type: DataType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    pub sensitivity: Sensitivity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_mask: Option<String>,
    /// Decimal fields: the digits in all and after the point the sample calls for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<u8>,
    pub required: bool,
    /// Why: which rule matched how many of the sampled values.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Inference {
    pub header_row: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub encoding: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    pub rows_sampled: usize,
    pub fields: Vec<Suggestion>,
}

/// 百家姓: the surnames that cover nearly all of the population.
const SURNAMES: &str = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤区麦关招岑庞谷甘欧温柯翁卓车骆陳黃張劉楊趙吳鄭謝許馮鄧蘇葉盧鍾譚關羅";
const COMPOUND_SURNAMES: [&str; 8] = [
    "欧阳", "司马", "诸葛", "上官", "司徒", "东方", "夏侯", "皇甫",
];
const ADMINISTRATIVE_MARKERS: [&str; 6] = ["省", "市", "区", "县", "镇", "街道"];
const LOCATOR_MARKERS: [&str; 5] = ["路", "街", "巷", "村", "号"];
const ENTERPRISE_SUFFIXES: [&str; 8] = [
    "公司",
    "厂",
    "商行",
    "中心",
    "店",
    "合作社",
    "事务所",
    "集团",
];

fn is_cjk(c: char) -> bool {
    ('\u{4e00}'..='\u{9fff}').contains(&c)
}

pub fn looks_like_person_name(v: &str) -> bool {
    let v: String = v.chars().filter(|c| *c != ' ' && *c != '·').collect();
    let n = v.chars().count();
    (2..=4).contains(&n)
        && v.chars().all(is_cjk)
        && (COMPOUND_SURNAMES.iter().any(|s| v.starts_with(s))
            || v.chars().next().is_some_and(|c| SURNAMES.contains(c)))
        && !ENTERPRISE_SUFFIXES.iter().any(|s| v.ends_with(s))
}

/// An address names an administrative area (省/市/区/县/镇/街道) and a place in it (路/街/巷/村/号);
/// the names of government bodies (…局, …处) name only the first.
pub fn looks_like_address(v: &str) -> bool {
    let places = v.replace("街道", "");
    v.chars().count() >= 6
        && ADMINISTRATIVE_MARKERS.iter().any(|m| v.contains(m))
        && LOCATOR_MARKERS.iter().any(|m| places.contains(m))
}

pub fn looks_like_enterprise(v: &str) -> bool {
    v.chars().count() >= 4 && ENTERPRISE_SUFFIXES.iter().any(|s| v.ends_with(s))
}

/// A landline with its area code set apart, e.g. 0757-86281234 (bare digit strings
/// starting with 0 are usually account numbers).
fn looks_like_landline(v: &str) -> bool {
    let Some((area, number)) = v.split_once(['-', ' ']) else {
        return false;
    };
    area.starts_with('0')
        && (3..=4).contains(&area.len())
        && (7..=8).contains(&number.len())
        && area
            .bytes()
            .chain(number.bytes())
            .all(|b| b.is_ascii_digit())
}

fn looks_like_email(v: &str) -> bool {
    let Some((user, domain)) = v.split_once('@') else {
        return false;
    };
    !user.is_empty() && domain.contains('.') && !domain.starts_with('.') && !v.contains(' ')
}

/// A content rule: the share of values it must match, and what it concludes.
struct Rule {
    what: &'static str,
    threshold: f64,
    matches: fn(&str) -> bool,
    data_type: DataType,
    role: Option<Role>,
}

const RULES: [Rule; 13] = [
    Rule {
        what: "GB 11643 citizen ID with a valid check character",
        threshold: 0.9,
        matches: |v| citizen_id::validate(v).is_ok(),
        data_type: DataType::String,
        role: Some(Role::PersonId),
    },
    Rule {
        what: "GB 32100 unified social credit code with a valid check character",
        threshold: 0.9,
        matches: |v| credit_code::validate(v).is_ok(),
        data_type: DataType::String,
        role: Some(Role::EnterpriseId),
    },
    Rule {
        what: "mainland mobile or landline number",
        threshold: 0.9,
        matches: |v| mobile::is_mobile(v) || looks_like_landline(v),
        data_type: DataType::String,
        role: Some(Role::Phone),
    },
    Rule {
        what: "bank card number passing the Luhn check",
        threshold: 0.9,
        matches: bank_card::is_bank_card,
        data_type: DataType::String,
        role: Some(Role::BankCard),
    },
    Rule {
        what: "e-mail address",
        threshold: 0.9,
        matches: looks_like_email,
        data_type: DataType::String,
        role: Some(Role::Email),
    },
    Rule {
        what: "date (2015-06-09, 2015/6/9, 2015年6月9日 or 20150609)",
        threshold: 0.95,
        matches: |v| values::parse_date(v).is_some(),
        data_type: DataType::Date,
        role: None,
    },
    Rule {
        what: "date and time",
        threshold: 0.95,
        matches: |v| values::parse_timestamp(v).is_some(),
        data_type: DataType::Timestamp,
        role: None,
    },
    Rule {
        what: "yes/no (是/否)",
        threshold: 0.99,
        matches: |v| values::parse_bool(v).is_some(),
        data_type: DataType::Boolean,
        role: None,
    },
    Rule {
        what: "whole number",
        threshold: 0.99,
        matches: |v| values::parse_integer(v).is_some(),
        data_type: DataType::Integer,
        role: None,
    },
    Rule {
        what: "decimal number",
        threshold: 0.99,
        matches: |v| values::parse_decimal(v).is_ok(),
        data_type: DataType::Decimal,
        role: None,
    },
    Rule {
        what: "Chinese person name (common surname, 2–4 characters)",
        threshold: 0.8,
        matches: looks_like_person_name,
        data_type: DataType::String,
        role: Some(Role::PersonName),
    },
    Rule {
        what: "enterprise or organisation name (公司/厂/商行 …)",
        threshold: 0.8,
        matches: looks_like_enterprise,
        data_type: DataType::String,
        role: Some(Role::EnterpriseName),
    },
    Rule {
        what: "address (省/市/区/镇/路/号 …)",
        threshold: 0.8,
        matches: looks_like_address,
        data_type: DataType::String,
        role: Some(Role::Address),
    },
];

/// Usual English names of common column labels.
const LABEL_NAMES: [(&str, &str); 24] = [
    ("性别", "gender"),
    ("民族", "ethnic"),
    ("年龄", "age"),
    ("备注", "remark"),
    ("状态", "status"),
    ("金额", "amount"),
    ("数量", "quantity"),
    ("面积", "area"),
    ("类别", "category"),
    ("类型", "kind"),
    ("编号", "number"),
    ("记录编号", "record_no"),
    ("户号", "account_no"),
    ("经度", "longitude"),
    ("纬度", "latitude"),
    ("所属镇街", "town"),
    ("镇街", "town"),
    ("登记日期", "registered_on"),
    ("出生日期", "birth_date"),
    ("申请日期", "applied_on"),
    ("联系电话", "phone"),
    ("手机号码", "mobile"),
    ("姓名", "name"),
    ("住址", "address"),
];

fn proposed_name(label: &str, role: Option<Role>, index: usize) -> String {
    if crate::validate::is_identifier(label) {
        return label.to_ascii_lowercase();
    }
    if let Some((_, name)) = LABEL_NAMES.iter().find(|(l, _)| *l == label) {
        return name.to_string();
    }
    match role {
        Some(Role::PersonId) => "person_id".into(),
        Some(Role::EnterpriseId) => "credit_code".into(),
        Some(Role::PersonName) => "person_name".into(),
        Some(Role::EnterpriseName) => "enterprise_name".into(),
        Some(Role::Phone) => "phone".into(),
        Some(Role::Address) => "address".into(),
        Some(Role::BirthDate) => "birth_date".into(),
        Some(Role::BankCard) => "bank_card".into(),
        Some(Role::Email) => "email".into(),
        _ if label.ends_with("日期") => format!("date_{}", index + 1),
        _ => format!("col_{}", index + 1),
    }
}

fn suggest(label: &str, values: &[&str], index: usize) -> Suggestion {
    let filled: Vec<&str> = values
        .iter()
        .copied()
        .filter(|v| !v.trim().is_empty())
        .collect();
    let mut reasons = Vec::new();
    let (mut data_type, mut role) = (DataType::String, None);
    if filled.is_empty() {
        reasons.push(format!(
            "all {} sampled values are empty: kept as text",
            values.len()
        ));
    } else if let Some((rule, hits)) = RULES
        .iter()
        .map(|r| (r, filled.iter().filter(|v| (r.matches)(v)).count()))
        .find(|(r, hits)| *hits as f64 >= r.threshold * filled.len() as f64)
    {
        data_type = rule.data_type;
        role = rule.role;
        reasons.push(format!(
            "{}: {hits} of {} non-empty sampled values ({:.1}%)",
            rule.what,
            filled.len(),
            100.0 * hits as f64 / filled.len() as f64
        ));
    } else {
        reasons.push(format!(
            "no rule matched most of the {} non-empty sampled values: text",
            filled.len()
        ));
    }
    if data_type == DataType::Date && (label.contains("出生") || label.contains("生日")) {
        role = Some(Role::BirthDate);
        reasons.push(format!("label '{label}' names a birth date"));
    }
    if data_type == DataType::Decimal && (label.contains("经度") || label.contains("纬度")) {
        role = Some(Role::Coordinates);
        reasons.push(format!("label '{label}' names a coordinate"));
    }
    let sensitivity = role.map_or(Sensitivity::Internal, Role::default_sensitivity);
    let decimal = (data_type == DataType::Decimal).then(|| decimal_type(&filled));
    if let Some(d) = decimal {
        reasons.push(format!(
            "{d}: the sample's places after the point, room for {} digits before it",
            d.integer_digits()
        ));
    }
    Suggestion {
        name: proposed_name(label, role, index),
        label: label.to_string(),
        data_type,
        role,
        sensitivity,
        default_mask: role.and_then(Role::default_mask).map(str::to_string),
        precision: decimal.map(|d| d.precision),
        scale: decimal.map(|d| d.scale),
        required: !values.is_empty() && filled.len() == values.len(),
        reasons,
    }
}

/// Decimal places as many as the sample writes (`1234.50` keeps its cents); digits in all
/// at least 18 — a sample is small, next month's amounts may be larger.
fn decimal_type(values: &[&str]) -> DecimalType {
    let (integer, scale) = values
        .iter()
        .filter_map(|v| values::parse_decimal(v).ok())
        .fold((0, 0), |(i, s), d| {
            (d.integer_digits().max(i), d.scale.max(s))
        });
    let max = u32::from(DecimalType::MAX_PRECISION);
    let scale = scale.min(max);
    DecimalType {
        precision: (integer + scale).clamp(18, max) as u8,
        scale: scale as u8,
    }
}

/// Infers one suggestion per column of the sample.
pub fn infer(sample: &Sample) -> Inference {
    let mut fields: Vec<Suggestion> = sample
        .labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let column: Vec<&str> = sample
                .rows
                .iter()
                .map(|r| r.get(i).map_or("", String::as_str))
                .collect();
            let label = if label.is_empty() {
                format!("第{}列", i + 1)
            } else {
                label.clone()
            };
            suggest(&label, &column, i)
        })
        .collect();
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for f in &mut fields {
        let n = seen.entry(f.name.clone()).or_default();
        *n += 1;
        if *n > 1 {
            f.name = format!("{}_{}", f.name, n);
        }
    }
    Inference {
        header_row: sample.header_row,
        encoding: sample.encoding,
        sheet: sample.sheet.clone(),
        rows_sampled: sample.rows.len(),
        fields,
    }
}

impl Inference {
    /// A resource in the JSON form, ready for the steward to complete and register.
    pub fn draft(&self, unit: &str, name: &str) -> serde_json::Value {
        let fields: Vec<serde_json::Value> = self
            .fields
            .iter()
            .map(|f| {
                let mut v = serde_json::json!({
                    "name": f.name, "label": f.label, "type": f.data_type, "required": f.required,
                    "sensitivity": f.sensitivity,
                });
                if let Some(role) = f.role {
                    v["role"] = serde_json::json!(role);
                }
                if let Some(mask) = &f.default_mask {
                    v["default_mask"] = serde_json::json!(mask);
                }
                if let (Some(precision), Some(scale)) = (f.precision, f.scale) {
                    v["precision"] = serde_json::json!(precision);
                    v["scale"] = serde_json::json!(scale);
                }
                v
            })
            .collect();
        serde_json::json!({
            "unit": unit, "name": name, "abstract": "", "share_type": "conditional",
            "share_condition": "（请填写共享条件）", "legal_basis": "（请填写共享依据）",
            "open_type": "none", "update_cycle": "irregular", "fields": fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(label: &str, values: &[&str]) -> Suggestion {
        suggest(label, values, 0)
    }

    #[test]
    fn identifiers_are_detected_by_checksum() {
        let ids = [
            "11010519491231002X",
            "440524188001010014",
            "110105194912310021",
        ];
        let s = column("证件号", &ids);
        assert_eq!(s.role, None, "two of three valid is below 90%");
        let s = column("证件号", &ids[..2]);
        assert_eq!(s.role, Some(Role::PersonId));
        assert_eq!(s.name, "person_id");
        assert!(s.reasons[0].contains("2 of 2"), "{:?}", s.reasons);
        assert_eq!(
            column("代码", &["91350100M000100Y43"]).role,
            Some(Role::EnterpriseId)
        );
    }

    #[test]
    fn personal_data_and_types() {
        assert_eq!(
            column("电话", &["13812341234", "0757-86281234", ""]).role,
            Some(Role::Phone)
        );
        assert_eq!(
            column("卡号", &["4111111111111111"]).role,
            Some(Role::BankCard)
        );
        assert_eq!(column("邮箱", &["li@example.cn"]).role, Some(Role::Email));
        assert_eq!(
            column("姓名", &["陈伟明", "欧阳娜娜", "梁静"]).role,
            Some(Role::PersonName)
        );
        assert_eq!(
            column("地址", &["佛山市南海区桂城街道南海大道北23号"]).role,
            Some(Role::Address)
        );
        assert_eq!(
            column("登记机关", &["佛山市南海区市场监督管理局"]).role,
            None
        );
        assert_eq!(column("园区", &["桂城街道产业园区12"]).role, None);
        assert_eq!(
            column("单位", &["佛山市南海区锦华五金有限公司"]).role,
            Some(Role::EnterpriseName)
        );
        let born = column("出生日期", &["1980年3月5日", "1981/4/6"]);
        assert_eq!(
            (born.data_type, born.role),
            (DataType::Date, Some(Role::BirthDate))
        );
        assert_eq!(column("数量", &["12", "7"]).data_type, DataType::Integer);
        assert_eq!(
            column("户号", &["030510000001", "030510000002"]).data_type,
            DataType::String
        );
        assert_eq!(column("金额", &["12.5", "7"]).data_type, DataType::Decimal);
        let arrears = column("欠费金额", &["1234.50", "0.1", "88"]);
        assert_eq!((arrears.precision, arrears.scale), (Some(18), Some(2)));
        let longitude = column("经度", &["113.1234567"]);
        assert_eq!((longitude.precision, longitude.scale), (Some(18), Some(7)));
        assert_eq!(column("数量", &["12"]).scale, None);
        assert_eq!(
            column("时间", &["2015-03-02 18:35:00"]).data_type,
            DataType::Timestamp
        );
        assert_eq!(
            column("是否有效", &["是", "否"]).data_type,
            DataType::Boolean
        );
        let empty = column("备注", &["", ""]);
        assert!(!empty.required && empty.data_type == DataType::String);
    }

    #[test]
    fn draft_is_a_registrable_resource_once_completed() {
        let sample = Sample {
            header_row: 1,
            labels: vec!["姓名".into(), "姓名".into()],
            rows: vec![vec!["陈伟".into(), "李强".into()]],
            encoding: None,
            sheet: None,
        };
        let inference = infer(&sample);
        assert_eq!(inference.fields[1].name, "name_2");
        let mut draft = inference.draft("U1", "测试资源");
        assert!(draft["fields"][0].get("precision").is_none());
        draft["share_type"] = serde_json::json!("unconditional");
        let r = crate::validate::resource("draft", &draft).unwrap();
        assert_eq!(r.fields.len(), 2);
    }
}
