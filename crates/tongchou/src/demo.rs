//! `tongchou demo`: the simulated district registered, loaded and staffed — accounts for
//! the seed's scenarios, their access requests filed and decided by the providing units'
//! stewards — then served.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tongchou_access::requests::{self, Approval, NewRequest};
use tongchou_access::{Principal, User};
use tongchou_model::{Field, Resource, Role, Sensitivity, UserRole};
use tongchou_store::DataDir;

pub const ACCOUNTS_FILE: &str = "demo-accounts.json";

/// One demo account as written to `demo-accounts.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DemoAccount {
    pub user: String,
    pub unit: String,
    pub unit_name: String,
    pub role: UserRole,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<i64>,
    pub password: String,
    /// What the account is for in the demo.
    pub scenario: String,
}

/// (user, unit slug, role, level, scenario).
const PEOPLE: [(&str, &str, UserRole, Option<i64>, &str); 19] = [
    (
        "admin",
        "data_bureau",
        UserRole::PlatformAdmin,
        None,
        "数据统筹局管理员 the bureau's admin",
    ),
    (
        "science_analyst",
        "science_technology",
        UserRole::Analyst,
        None,
        "补贴申请企业社保欠费核查 subsidy applicants with arrears",
    ),
    (
        "discipline_analyst",
        "discipline_inspection",
        UserRole::Analyst,
        None,
        "公职人员亲属房产 officials' relatives' properties",
    ),
    (
        "tax_analyst",
        "tax",
        UserRole::Analyst,
        None,
        "纳税与用电比对 tax versus electricity",
    ),
    (
        "procuratorate_analyst",
        "procuratorate",
        UserRole::Analyst,
        None,
        "公职人员频繁往返澳门 officials' trips to Macau",
    ),
    (
        "planning_analyst",
        "planning",
        UserRole::Analyst,
        None,
        "流动摊贩热点与市场规划 vendor hotspots",
    ),
    (
        "inspector",
        "emergency_management",
        UserRole::Inspector,
        None,
        "综合巡查核验执照 licence checks in the field",
    ),
    (
        "leader",
        "district_office",
        UserRole::Leader,
        Some(3),
        "区领导驾驶舱 leader's dashboards",
    ),
    (
        "household_steward",
        "household_registration",
        UserRole::Steward,
        None,
        "户籍数据管理员 provider",
    ),
    (
        "civil_affairs_steward",
        "civil_affairs",
        UserRole::Steward,
        None,
        "婚姻登记数据管理员 provider",
    ),
    (
        "exit_entry_steward",
        "exit_entry",
        UserRole::Steward,
        None,
        "出入境数据管理员 provider",
    ),
    (
        "market_steward",
        "market_regulation",
        UserRole::Steward,
        None,
        "市场监管数据管理员 provider",
    ),
    (
        "social_insurance_steward",
        "social_insurance",
        UserRole::Steward,
        None,
        "社保数据管理员 provider",
    ),
    (
        "tax_steward",
        "tax",
        UserRole::Steward,
        None,
        "税务数据管理员 provider",
    ),
    (
        "power_steward",
        "power_supply",
        UserRole::Steward,
        None,
        "供电数据管理员 provider",
    ),
    (
        "property_steward",
        "real_estate_registry",
        UserRole::Steward,
        None,
        "不动产数据管理员 provider",
    ),
    (
        "organisation_steward",
        "organisation",
        UserRole::Steward,
        None,
        "组织人事数据管理员 provider",
    ),
    (
        "urban_steward",
        "urban_management",
        UserRole::Steward,
        None,
        "城管数据管理员 provider",
    ),
    (
        "science_steward",
        "science_technology",
        UserRole::Steward,
        None,
        "科技局数据管理员 provider",
    ),
];

/// (requester, provider slug, resource name, purpose, row filter): approved by the
/// provider's steward with the masks of [`chosen_mask`] and other default masks.
const APPROVED: [(&str, &str, &str, &str, Option<&str>); 9] = [
    (
        "science_analyst",
        "social_insurance",
        "社会保险费欠缴明细",
        "subsidy_review",
        None,
    ),
    (
        "discipline_analyst",
        "organisation",
        "公职人员名册",
        "discipline_supervision",
        None,
    ),
    (
        "discipline_analyst",
        "household_registration",
        "户籍人口信息",
        "discipline_supervision",
        None,
    ),
    (
        "discipline_analyst",
        "civil_affairs",
        "婚姻登记信息",
        "discipline_supervision",
        None,
    ),
    (
        "discipline_analyst",
        "real_estate_registry",
        "不动产登记信息",
        "discipline_supervision",
        None,
    ),
    (
        "tax_analyst",
        "power_supply",
        "用电客户信息",
        "tax_administration",
        None,
    ),
    (
        "tax_analyst",
        "power_supply",
        "月度用电量",
        "tax_administration",
        None,
    ),
    (
        "procuratorate_analyst",
        "organisation",
        "公职人员名册",
        "procuratorial_supervision",
        None,
    ),
    (
        "procuratorate_analyst",
        "exit_entry",
        "出入境记录",
        "procuratorial_supervision",
        Some("destination = '澳门'"),
    ),
];

fn password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let groups: Vec<String> = (0..3)
        .map(|_| {
            (0..4)
                .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
                .collect()
        })
        .collect();
    groups.join("-")
}

async fn unit_of(dir: &DataDir, slug: &str) -> Result<(String, String)> {
    sqlx::query_as("SELECT code, name FROM units WHERE slug = ?")
        .bind(slug)
        .fetch_optional(dir.metadata())
        .await?
        .with_context(|| format!("the demo catalog has no unit '{slug}'"))
}

async fn resource(dir: &DataDir, unit: &str, name: &str) -> Result<Resource> {
    let (code, body): (String, String) =
        sqlx::query_as("SELECT code, body FROM resources WHERE unit = ? AND name = ?")
            .bind(unit)
            .bind(name)
            .fetch_optional(dir.metadata())
            .await?
            .with_context(|| format!("the demo catalog has no resource '{name}'"))?;
    let mut resource: Resource = serde_json::from_str(&body)?;
    resource.code = Some(code);
    Ok(resource)
}

/// Creates the demo's accounts, requests and decisions once, and returns the accounts.
pub async fn staff(dir: &DataDir) -> Result<Vec<DemoAccount>> {
    let path = dir.root().join(ACCOUNTS_FILE);
    if path.exists() {
        let bytes = std::fs::read(&path)?;
        return serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is damaged; delete it and the demo's users",
                path.display()
            )
        });
    }
    let mut accounts = Vec::new();
    for (name, slug, role, level, scenario) in PEOPLE {
        let (unit, unit_name) = unit_of(dir, slug).await?;
        let account = DemoAccount {
            user: name.into(),
            unit,
            unit_name,
            role,
            level,
            password: password(),
            scenario: scenario.into(),
        };
        let user = User {
            name: account.user.clone(),
            unit: account.unit.clone(),
            role,
            level,
        };
        tongchou_access::add_user(dir, None, &user, &account.password).await?;
        accounts.push(account);
    }
    file_and_decide(dir, &accounts).await?;
    tongchou_store::write_durably(&path, serde_json::to_string_pretty(&accounts)?.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(accounts)
}

async fn file_and_decide(dir: &DataDir, accounts: &[DemoAccount]) -> Result<()> {
    for (requester, provider, name, purpose, row_filter) in APPROVED {
        let (unit, _) = unit_of(dir, provider).await?;
        let resource = resource(dir, &unit, name).await?;
        let fields: Vec<String> = resource
            .fields
            .iter()
            .filter(|f| f.sensitivity != Sensitivity::Secret)
            .map(|f| f.name.clone())
            .collect();
        let new = NewRequest {
            resource: resource.code.clone().unwrap_or_default(),
            fields,
            purpose: purpose.into(),
            purpose_detail: "演示场景 demo scenario".into(),
            legal_basis: "《政务信息资源共享管理暂行办法》".into(),
            from: None,
            until: None,
        };
        let id = requests::file_request(
            dir,
            &Principal::of_user(dir.metadata(), requester).await?,
            &new,
        )
        .await?;
        let steward = accounts
            .iter()
            .find(|a| a.unit == unit && a.role == UserRole::Steward)
            .context("every providing unit of the demo has a steward")?;
        let approval = Approval {
            masks: resource
                .fields
                .iter()
                .filter_map(|f| Some((f.name.clone(), chosen_mask(f)?.to_string())))
                .collect(),
            row_filter: row_filter.map(str::to_string),
            until: Some(format!(
                "{}-12-31",
                tongchou_access::clock::today().year() + 1
            )),
            ..Default::default()
        };
        requests::approve(
            dir,
            &Principal::of_user(dir.metadata(), &steward.user).await?,
            id,
            &approval,
        )
        .await?;
    }
    leader_only_tax_returns(dir).await
}

/// The mask the demo's stewards choose where the default will not do: keyed pseudonyms for
/// person IDs, and the first and last characters of sensitive fields that have no default
/// mask (document numbers), which an approval must not leave raw.
fn chosen_mask(field: &Field) -> Option<&'static str> {
    if field.role == Some(Role::PersonId) {
        Some("pseudonym")
    } else if field.sensitivity == Sensitivity::Sensitive && field.default_mask.is_none() {
        Some("keep_first_last(1,2)")
    } else {
        None
    }
}

/// The tax bureau opens its returns to leaders of level 3 or above; the leader's request
/// waits in the tax steward's queue.
async fn leader_only_tax_returns(dir: &DataDir) -> Result<()> {
    let (tax, _) = unit_of(dir, "tax").await?;
    let returns = resource(dir, &tax, "企业纳税申报信息").await?;
    let code = returns.code.clone().unwrap_or_default();
    let steward = Principal::of_user(dir.metadata(), "tax_steward").await?;
    requests::set_min_leader_level(dir, Some(&steward), &code, Some(3)).await?;
    let new = NewRequest {
        resource: code,
        fields: vec![
            "taxpayer_id".into(),
            "taxpayer_name".into(),
            "period".into(),
            "revenue".into(),
            "tax_paid".into(),
        ],
        purpose: "decision_support".into(),
        purpose_detail: "区重点企业税收分析 tax of the district's key enterprises".into(),
        ..Default::default()
    };
    requests::file_request(
        dir,
        &Principal::of_user(dir.metadata(), "leader").await?,
        &new,
    )
    .await?;
    Ok(())
}

/// How to sign in, for the demo's last words.
pub fn print_accounts(accounts: &[DemoAccount], root: &Path) {
    println!(
        "登录 sign in: open the portal address printed below in a browser (浏览器打开下方门户地址) and sign in with an account; programs: POST /api/auth/sign-in {{\"name\": USER, \"password\": PASSWORD}}, or an API token from `tongchou token create --as USER --scopes read,query`"
    );
    println!(
        "演示账号 demo accounts (also in {}):",
        root.join(ACCOUNTS_FILE).display()
    );
    for a in accounts {
        println!(
            "  {:<24} {:<16} {:<14} {}  — {}",
            a.user,
            a.password,
            a.role.label_zh(),
            a.unit_name,
            a.scenario
        );
    }
}

/// The seed's scenario "officials' frequent trips to Macau", run once as SQL by the
/// procuratorate's analyst under the grants above and recorded like any statement, so the
/// ledger (and `ledger subject`) has real uses to show. Returns one official's ID.
pub async fn macau_trips(dir: &DataDir, audit: &tongchou_audit::Audit) -> Result<Option<String>> {
    const SQL: &str = r#"SELECT r.person_id, r.name, r.unit, r.position, count(*) AS trips
FROM "佛山市公安局南海分局出入境管理大队"."出入境记录" e
JOIN "中共佛山市南海区委组织部"."公职人员名册" r ON e.person_id = r.person_id
WHERE e.direction = '出境'
GROUP BY r.person_id, r.name, r.unit, r.position
HAVING count(*) >= 4
ORDER BY trips DESC"#;
    const USER: &str = "procuratorate_analyst";
    const PURPOSE: &str = "procuratorial_supervision";
    let policy = std::sync::Arc::new(tongchou_access::Policy::open(dir.clone()).await?);
    let unit = policy.current().await?.user(USER).map(|u| u.unit.clone());
    let engine = tongchou_query::Engine::open(dir.clone(), policy, audit.subject_key().clone())?;
    let answer = match engine.run(USER, PURPOSE, SQL).await {
        Ok(answer) => answer,
        // Scales without these resources have no such scenario.
        Err(tongchou_query::QueryError::Sql(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let bytes = tongchou_query::front::render(&answer, "table")?;
    let mut entry = tongchou_audit::Entry::new("statement", "cli", tongchou_audit::ALLOWED);
    entry.user = Some(USER.into());
    entry.unit = unit;
    entry.purpose = Some(PURPOSE.into());
    entry.statement = Some(SQL.into());
    let entry = tongchou_query::front::statement_entry(audit, entry, &answer, &bytes);
    audit.record(&entry).await?;
    println!(
        "场景查询 scenario statement: officials' trips to Macau, {} officials found, as {USER}",
        answer.rows
    );
    Ok(planted_official_touched(dir, audit, &answer))
}

/// A frequent traveller planted by the simulator (its ground truth) whom the statement
/// touched, to show `ledger subject` with.
fn planted_official_touched(
    dir: &DataDir,
    audit: &tongchou_audit::Audit,
    answer: &tongchou_query::Answer,
) -> Option<String> {
    let truth = std::fs::read(
        dir.root()
            .join("district")
            .join(tongchou_sim::GROUND_TRUTH_FILE),
    )
    .ok()?;
    let truth: serde_json::Value = serde_json::from_slice(&truth).ok()?;
    truth["scenarios"]["frequent_macau_travellers"]
        .as_array()?
        .iter()
        .filter_map(|case| case["person_id"].as_str())
        .find(|id| {
            let hash = audit.subject_key().subject_bytes(id);
            answer.subjects.binary_search(&hash).is_ok()
        })
        .map(str::to_string)
}
