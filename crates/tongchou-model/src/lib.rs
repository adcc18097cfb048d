//! The shared vocabulary of Tongchou (DESIGN.md §3) as serialisable types.
//!
//! A [`Resource`] is a registered data table with the catalog metadata of the national guide
//! 政务信息资源目录编制指南; its [`Field`]s carry type, sensitivity and identifying role. The
//! JSON form of these types is the public one: the REST body, `catalog register --file`,
//! and the simulated district's `catalog.json` all use it.

use serde::{Deserialize, Serialize};

/// A government body that provides or consumes data (单位 / 部门).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Unit {
    /// Unified social credit code of the unit (GB 32100, category 11 for organs).
    pub code: String,
    pub name: String,
    pub name_en: String,
    /// Short ASCII name, used as the unit's SQL schema.
    pub slug: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal / $zh:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The identifier used in JSON, CLI flags and SQL.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The Chinese term shown to people.
            pub fn label_zh(self) -> &'static str {
                match self { $($name::$variant => $zh),+ }
            }

            /// Accepts the identifier or the Chinese term.
            pub fn parse(text: &str) -> Option<$name> {
                let text = text.trim();
                $name::ALL.iter().copied().find(|v| v.as_str().eq_ignore_ascii_case(text) || v.label_zh() == text)
            }

            /// The accepted identifiers, for error messages.
            pub fn choices() -> String {
                $name::ALL.iter().map(|v| format!("{} ({})", v.as_str(), v.label_zh())).collect::<Vec<_>>().join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary!(
    /// 共享属性: who may get a resource without asking, after approval, or never.
    ShareType { Unconditional = "unconditional" / "无条件共享", Conditional = "conditional" / "有条件共享", None = "none" / "不予共享" }
);
vocabulary!(
    /// 开放属性: whether the public may get a resource.
    OpenType { Unconditional = "unconditional" / "无条件开放", Conditional = "conditional" / "有条件开放", None = "none" / "不予开放" }
);
vocabulary!(
    /// 共享方式.
    ShareMethod { Api = "api" / "接口共享", TableSync = "table_sync" / "库表交换", File = "file" / "文件下载" }
);
vocabulary!(
    /// 更新周期.
    UpdateCycle {
        Realtime = "realtime" / "实时",
        Daily = "daily" / "每日",
        Weekly = "weekly" / "每周",
        Monthly = "monthly" / "每月",
        Quarterly = "quarterly" / "每季度",
        HalfYearly = "half_yearly" / "每半年",
        Yearly = "yearly" / "每年",
        Irregular = "irregular" / "不定期",
    }
);
vocabulary!(
    /// The SQL type a field is stored as.
    DataType {
        String = "string" / "字符型",
        Integer = "integer" / "整数型",
        Decimal = "decimal" / "数值型",
        Date = "date" / "日期型",
        Timestamp = "timestamp" / "日期时间型",
        Boolean = "boolean" / "布尔型",
    }
);
vocabulary!(
    /// How sensitive a field is; secret fields are never granted.
    Sensitivity { Public = "public" / "公开", Internal = "internal" / "内部", Sensitive = "sensitive" / "敏感", Secret = "secret" / "涉密" }
);
vocabulary!(
    /// What a field identifies, when it identifies someone or something.
    Role {
        PersonId = "person_id" / "公民身份号码",
        EnterpriseId = "enterprise_id" / "统一社会信用代码",
        PersonName = "person_name" / "姓名",
        EnterpriseName = "enterprise_name" / "单位名称",
        Phone = "phone" / "手机号码",
        Address = "address" / "地址",
        BirthDate = "birth_date" / "出生日期",
        BankCard = "bank_card" / "银行卡号",
        Email = "email" / "电子邮箱",
        Coordinates = "coordinates" / "经纬度",
    }
);

vocabulary!(
    /// What a user account may do on the platform.
    UserRole {
        PlatformAdmin = "platform_admin" / "平台管理员",
        Steward = "steward" / "单位数据管理员",
        Analyst = "analyst" / "业务分析人员",
        Leader = "leader" / "领导",
        Inspector = "inspector" / "综合巡查员",
    }
);

impl Role {
    /// How sensitive data of this role is unless the steward says otherwise.
    pub fn default_sensitivity(self) -> Sensitivity {
        match self {
            Role::EnterpriseId | Role::EnterpriseName => Sensitivity::Public,
            Role::PersonId
            | Role::PersonName
            | Role::Phone
            | Role::Address
            | Role::BirthDate
            | Role::Email => Sensitivity::Sensitive,
            Role::BankCard => Sensitivity::Secret,
            Role::Coordinates => Sensitivity::Internal,
        }
    }

    /// The mask a steward would pick first for data of this role.
    pub fn default_mask(self) -> Option<&'static str> {
        match self {
            Role::PersonId => Some("citizen_id"),
            Role::PersonName => Some("chinese_name"),
            Role::Phone => Some("mobile"),
            Role::Address => Some("address_town"),
            Role::BirthDate => Some("date_year"),
            Role::BankCard => Some("bank_card"),
            Role::Email => Some("keep_first_last(1,0)"),
            Role::EnterpriseId | Role::EnterpriseName | Role::Coordinates => None,
        }
    }
}

/// Masks a grant or a field default may name (DESIGN.md §5); arguments in parentheses.
pub const MASKS: [&str; 15] = [
    "keep_first_last",
    "chinese_name",
    "citizen_id",
    "mobile",
    "address_district",
    "address_town",
    "bank_card",
    "date_year",
    "date_month",
    "round",
    "bucket",
    "null",
    "constant",
    "pseudonym",
    "fpe",
];

/// True when `mask` names a known mask, e.g. `mobile` or `keep_first_last(1,0)`.
pub fn is_known_mask(mask: &str) -> bool {
    let name = mask.split('(').next().unwrap_or("").trim();
    let args_ok = match mask.find('(') {
        None => true,
        Some(open) => mask.ends_with(')') && open < mask.len() - 1,
    };
    args_ok && MASKS.contains(&name)
}

/// 信息资源分类: 类 (1 digit), 项 (2), 目 (3), 细目 (3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Classification {
    pub class: u8,
    pub item: u8,
    pub catalog: u16,
    pub subcatalog: u16,
}

impl Classification {
    /// The 分类码, e.g. `307001004`.
    pub fn code(&self) -> String {
        format!(
            "{}{:02}{:03}{:03}",
            self.class, self.item, self.catalog, self.subcatalog
        )
    }

    /// Builds a resource code (分类码/顺序码).
    pub fn resource_code(&self, sequence: u32) -> String {
        format!("{}/{sequence:06}", self.code())
    }
}

/// 信息项: a column of a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub name: String,
    /// The Chinese label, also the usual column header of a department's export.
    pub label: String,
    #[serde(rename = "type")]
    pub data_type: DataType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unique: bool,
    #[serde(default = "default_sensitivity")]
    pub sensitivity: Sensitivity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mask: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_values: Vec<String>,
    /// Decimal fields: digits in all (1–38); unset, [`DecimalType::DEFAULT`]'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<u8>,
    /// Decimal fields: digits after the point (0–precision); unset, 0 when a precision is
    /// given (as SQL's `DECIMAL(p)`), else [`DecimalType::DEFAULT`]'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<u8>,
}

impl Field {
    /// The type as people read it: `decimal(18,2)` for decimals, else the type's name.
    pub fn type_text(&self) -> String {
        match self.data_type {
            DataType::Decimal => self.decimal_type().to_string(),
            other => other.to_string(),
        }
    }

    /// The exact type a decimal field's values are kept in.
    pub fn decimal_type(&self) -> DecimalType {
        match (self.precision, self.scale) {
            (None, None) => DecimalType::DEFAULT,
            (precision, scale) => DecimalType {
                precision: precision.unwrap_or(DecimalType::MAX_PRECISION),
                scale: scale.unwrap_or(0),
            },
        }
    }
}

/// A decimal field's digits in all and after the point (SQL's `DECIMAL(p, s)`), kept as
/// Arrow's Decimal128: amounts keep their cents, sums are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecimalType {
    pub precision: u8,
    pub scale: u8,
}

impl DecimalType {
    pub const MAX_PRECISION: u8 = 38;
    /// For fields that declare nothing: room for any amount, area or reading, and six
    /// places — coordinates (经纬度) have six; money declares two.
    pub const DEFAULT: DecimalType = DecimalType {
        precision: 38,
        scale: 6,
    };

    /// Digits allowed before the point.
    pub fn integer_digits(self) -> u8 {
        self.precision - self.scale
    }
}

impl std::fmt::Display for DecimalType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "decimal({},{})", self.precision, self.scale)
    }
}

fn default_sensitivity() -> Sensitivity {
    Sensitivity::Internal
}

/// 信息资源: a registered data table with its catalog metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The providing unit's code.
    pub unit: String,
    pub name: String,
    #[serde(rename = "abstract", default)]
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    pub share_type: ShareType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_method: Option<ShareMethod>,
    pub open_type: OpenType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_condition: Option<String>,
    pub update_cycle: UpdateCycle,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Fields whose values identify a row, for upserts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
    pub fields: Vec<Field>,
}

/// Receives a long job's progress: a terminal bar, or nothing (`()`). Called from whichever
/// thread does the work, between batches, so it must be cheap and must not block. `start`
/// is called once, by whoever runs the whole job, with the rows it expects (the job may run
/// past them); `advance` with the rows done since the previous call — a delta, never a
/// running total — by the job or by any part of it (one export of a district's generation,
/// one file's load among many), so that parts add up on one bar.
pub trait Progress: Send + Sync {
    fn start(&self, estimated_rows: u64);
    fn advance(&self, rows: u64);
}

impl Progress for () {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_parses_identifiers_and_chinese() {
        assert_eq!(ShareType::parse("有条件共享"), Some(ShareType::Conditional));
        assert_eq!(ShareType::parse("NONE"), Some(ShareType::None));
        assert_eq!(
            UpdateCycle::parse("half_yearly"),
            Some(UpdateCycle::HalfYearly)
        );
        assert_eq!(UpdateCycle::parse("hourly"), None);
        assert!(Role::choices().contains("person_id (公民身份号码)"));
    }

    #[test]
    fn minimal_resource_json_is_accepted_and_unknown_keys_refused() {
        let json = r#"{"unit":"114406050000000001","name":"社会保险费欠缴明细","abstract":"",
            "share_type":"conditional","open_type":"none","update_cycle":"monthly",
            "fields":[{"name":"credit_code","label":"统一社会信用代码","type":"string","role":"enterprise_id","required":true,"sensitivity":"internal"}]}"#;
        let r: Resource = serde_json::from_str(json).unwrap();
        assert_eq!(r.fields[0].role, Some(Role::EnterpriseId));
        let typo = json.replace("\"abstract\"", "\"abstact\"");
        assert!(serde_json::from_str::<Resource>(&typo).is_err());
    }

    #[test]
    fn a_decimal_field_keeps_its_declared_digits_or_the_default() {
        let field = |extra: serde_json::Value| -> Field {
            let mut v =
                serde_json::json!({"name": "amount", "label": "欠费金额", "type": "decimal"});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value(v).unwrap()
        };
        let money = field(serde_json::json!({"precision": 18, "scale": 2}));
        assert_eq!(money.decimal_type().to_string(), "decimal(18,2)");
        assert_eq!(money.decimal_type().integer_digits(), 16);
        assert_eq!(
            field(serde_json::json!({})).decimal_type(),
            DecimalType::DEFAULT
        );
        assert_eq!(
            field(serde_json::json!({"precision": 10}))
                .decimal_type()
                .to_string(),
            "decimal(10,0)"
        );
        assert_eq!(
            field(serde_json::json!({"scale": 3}))
                .decimal_type()
                .to_string(),
            "decimal(38,3)"
        );
        let json = serde_json::to_value(field(serde_json::json!({}))).unwrap();
        assert!(json.get("precision").is_none(), "{json}");
    }

    #[test]
    fn resource_code_has_classification_and_sequence() {
        let c = Classification {
            class: 3,
            item: 7,
            catalog: 1,
            subcatalog: 4,
        };
        assert_eq!(c.resource_code(12), "307001004/000012");
    }
}
