//! Access requests and the providing unit's decisions (统筹而不替代).
//!
//! A consumer files a request naming one resource, the fields, a purpose from the bureau's
//! list, the legal basis and the period. Only a steward of the providing unit answers it:
//! approval may narrow the fields, add a row filter, choose a mask per field and an expiry;
//! refusal carries a reason. An approval becomes a [`Grant`]; revocation takes effect on the
//! next statement. Requests unanswered after ten working days are flagged to the bureau.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use tongchou_model::{MASKS, Resource, Sensitivity, ShareType, UserRole, is_known_mask};
use tongchou_store::DataDir;

use crate::clock::{self, Calendar, parse_date, stamp};
use crate::policy::GrantedField;
use crate::{AccessError, Principal, Scope, actor_label, door_of, events, filter};

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct NewRequest {
    pub resource: String,
    pub fields: Vec<String>,
    /// A code from the bureau's purpose list.
    pub purpose: String,
    #[serde(default)]
    pub purpose_detail: String,
    #[serde(default)]
    pub legal_basis: String,
    /// First day of use (default today).
    #[serde(default)]
    pub from: Option<String>,
    /// Last day of use.
    #[serde(default)]
    pub until: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Request {
    pub id: i64,
    pub requester: String,
    pub unit: String,
    pub resource: String,
    pub resource_name: String,
    pub provider: String,
    pub fields: Vec<String>,
    pub purpose: String,
    pub purpose_detail: String,
    pub legal_basis: String,
    pub period_from: String,
    pub period_until: Option<String>,
    pub filed_at: String,
    /// pending, approved, refused or withdrawn.
    pub state: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub reason: Option<String>,
    /// The last day for the provider's answer (ten working days).
    pub answer_due: String,
    /// Still pending after `answer_due`: flagged to the bureau.
    pub overdue: bool,
    pub grant: Option<i64>,
}

/// A steward's approval; everything left out keeps what was requested (and the fields'
/// default masks). A sensitive field without a default mask needs a mask named here, or
/// `raw` with `raw_reason`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct Approval {
    pub fields: Option<Vec<String>>,
    pub row_filter: Option<String>,
    /// field → mask; `none` (or `raw`) gives the raw value.
    #[serde(default)]
    pub masks: BTreeMap<String, String>,
    /// Why sensitive fields are given raw; required when any is, and recorded.
    pub raw_reason: Option<String>,
    /// Last day the grant holds.
    pub until: Option<String>,
    /// `user` (the requester, default), `unit` (every user of the requesting unit) or
    /// `role:ROLE` (the requesting unit's users of that role).
    pub to: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Grant {
    pub id: i64,
    pub request: Option<i64>,
    pub resource: String,
    pub provider: String,
    pub unit: String,
    pub user: Option<String>,
    pub role: Option<String>,
    pub purpose: String,
    pub fields: Vec<GrantedField>,
    pub row_filter: Option<String>,
    pub valid_from: String,
    pub valid_until: Option<String>,
    pub granted_by: String,
    pub granted_at: String,
    pub revoked_by: Option<String>,
    pub revoked_at: Option<String>,
    pub revoke_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Purpose {
    pub code: String,
    pub label: String,
    pub label_en: String,
}

/// Which requests or grants to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Filed by (requests) or given to (grants) the user.
    Mine,
    /// Pending requests for the user's unit's resources.
    Queue,
    /// Everything concerning the user's unit's resources.
    Provided,
    /// Everything: the bureau and the operator.
    All,
}

impl View {
    pub fn parse(text: &str) -> Option<View> {
        Some(match text {
            "mine" => View::Mine,
            "queue" => View::Queue,
            "provided" => View::Provided,
            "all" => View::All,
            _ => return None,
        })
    }
}

async fn load_resource(pool: &SqlitePool, code: &str) -> Result<Resource, AccessError> {
    let body: Option<String> = sqlx::query_scalar("SELECT body FROM resources WHERE code = ?")
        .bind(code)
        .fetch_optional(pool)
        .await?;
    let body = body.ok_or_else(|| AccessError::NotFound(format!("resource {code}")))?;
    let mut resource: Resource = serde_json::from_str(&body)
        .map_err(|e| AccessError::Invalid(format!("resource {code} is unreadable: {e}")))?;
    resource.code = Some(code.to_string());
    Ok(resource)
}

async fn min_leader_level(pool: &SqlitePool, code: &str) -> Result<Option<i64>, AccessError> {
    Ok(sqlx::query_scalar::<_, Option<i64>>(
        "SELECT min_leader_level FROM resource_policies WHERE resource = ?",
    )
    .bind(code)
    .fetch_optional(pool)
    .await?
    .flatten())
}

pub async fn purposes(pool: &SqlitePool) -> Result<Vec<Purpose>, AccessError> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT code, label, label_en FROM purposes WHERE active = 1 ORDER BY code")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(code, label, label_en)| Purpose {
            code,
            label,
            label_en,
        })
        .collect())
}

/// Adds a purpose to the bureau's list: platform admins only.
pub async fn add_purpose(
    dir: &DataDir,
    by: Option<&Principal>,
    purpose: &Purpose,
) -> Result<(), AccessError> {
    if let Some(p) = by {
        p.require_admin("keep the list of purposes")?;
    }
    if purpose.code.is_empty()
        || !purpose
            .code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_')
        || purpose.label.trim().is_empty()
    {
        return Err(AccessError::Invalid(
            "a purpose needs a code of lowercase letters and '_' and a Chinese label".into(),
        ));
    }
    let mut tx = dir.metadata().begin().await?;
    sqlx::query("INSERT INTO purposes (code, label, label_en) VALUES (?, ?, ?) ON CONFLICT(code) DO UPDATE SET label = excluded.label, label_en = excluded.label_en, active = 1")
        .bind(&purpose.code)
        .bind(&purpose.label)
        .bind(&purpose.label_en)
        .execute(&mut *tx)
        .await?;
    events::record(
        &mut tx,
        door_of(by),
        &actor_label(by),
        "purpose_added",
        &purpose.code,
        serde_json::json!({"label": purpose.label}),
    )
    .await?;
    tx.commit().await?;
    dir.note_policy_change();
    Ok(())
}

fn check_period(
    from: Option<&str>,
    until: Option<&str>,
) -> Result<(jiff::civil::Date, Option<jiff::civil::Date>), AccessError> {
    let today = clock::today();
    let from = from.map(parse_date).transpose()?.unwrap_or(today);
    let until = until.map(parse_date).transpose()?;
    if let Some(until) = until {
        if until < today {
            return Err(AccessError::Invalid(format!(
                "the period ends on {until}, which has passed"
            )));
        }
        if until < from {
            return Err(AccessError::Invalid(format!(
                "the period ends ({until}) before it starts ({from})"
            )));
        }
    }
    Ok((from, until))
}

fn secret_or_unknown(resource: &Resource, fields: &[String]) -> Result<(), AccessError> {
    let code = resource.code.as_deref().unwrap_or("");
    for name in fields {
        match resource.fields.iter().find(|f| &f.name == name) {
            None => {
                return Err(AccessError::Invalid(format!(
                    "resource {code} has no field '{name}'; its fields are {}",
                    resource
                        .fields
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Some(f) if f.sensitivity == Sensitivity::Secret => {
                return Err(AccessError::Forbidden(format!(
                    "field '{name}' ({}) of resource {code} is 涉密 secret and is never granted",
                    f.label
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Files a request; returns its id.
pub async fn file_request(
    dir: &DataDir,
    by: &Principal,
    new: &NewRequest,
) -> Result<i64, AccessError> {
    by.require(Scope::Write)?;
    bounded("purpose_detail", &new.purpose_detail)?;
    bounded("legal_basis", &new.legal_basis)?;
    let pool = dir.metadata();
    let resource = load_resource(pool, &new.resource).await?;
    let code = &new.resource;
    if resource.unit == by.user.unit {
        return Err(AccessError::Invalid(format!(
            "your unit provides resource {code}: no request is needed"
        )));
    }
    if resource.share_type == ShareType::None {
        return Err(AccessError::Forbidden(format!(
            "resource {code} ({}) is 不予共享 not shared: no request can be filed",
            resource.name
        )));
    }
    if let Some(level) = min_leader_level(pool, code).await?
        && !by.user.clears_leader_level(level)
    {
        return Err(AccessError::Forbidden(format!(
            "resource {code} is opened only to leaders of level {level} or above"
        )));
    }
    let mut fields: Vec<String> = Vec::new();
    for f in &new.fields {
        let f = f.trim().to_string();
        if !f.is_empty() && !fields.contains(&f) {
            fields.push(f);
        }
    }
    if fields.is_empty() {
        return Err(AccessError::Invalid(
            "name the fields you need (--fields a,b)".into(),
        ));
    }
    secret_or_unknown(&resource, &fields)?;
    let known: Option<String> =
        sqlx::query_scalar("SELECT code FROM purposes WHERE code = ? AND active = 1")
            .bind(&new.purpose)
            .fetch_optional(pool)
            .await?;
    if known.is_none() {
        let list = purposes(pool).await?;
        return Err(AccessError::Invalid(format!(
            "purpose '{}' is not on the bureau's list: {}",
            new.purpose,
            list.iter()
                .map(|p| format!("{} ({})", p.code, p.label))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let (from, until) = check_period(new.from.as_deref(), new.until.as_deref())?;
    let pending: Option<i64> = sqlx::query_scalar("SELECT id FROM access_requests WHERE requester = ? AND resource = ? AND purpose = ? AND state = 'pending'")
        .bind(&by.user.name)
        .bind(code)
        .bind(&new.purpose)
        .fetch_optional(pool)
        .await?;
    if let Some(id) = pending {
        return Err(AccessError::Invalid(format!(
            "request #{id} for the same resource and purpose is still pending; withdraw it first"
        )));
    }
    let mut tx = pool.begin().await?;
    let id: i64 = sqlx::query_scalar("INSERT INTO access_requests (requester, unit, resource, provider, fields, purpose, purpose_detail, legal_basis, period_from, period_until, filed_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending') RETURNING id")
        .bind(&by.user.name)
        .bind(&by.user.unit)
        .bind(code)
        .bind(&resource.unit)
        .bind(serde_json::to_string(&fields).expect("serialises"))
        .bind(&new.purpose)
        .bind(new.purpose_detail.trim())
        .bind(new.legal_basis.trim())
        .bind(from.to_string())
        .bind(until.map(|d| d.to_string()))
        .bind(stamp(Timestamp::now()))
        .fetch_one(&mut *tx)
        .await?;
    events::record(
        &mut tx,
        by.door,
        &by.user.name,
        "request_filed",
        &format!("request/{id}"),
        serde_json::json!({"resource": code, "fields": fields, "purpose": new.purpose, "unit": by.user.unit}),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

#[derive(sqlx::FromRow)]
struct RequestRow {
    id: i64,
    requester: String,
    unit: String,
    resource: String,
    provider: String,
    fields: String,
    purpose: String,
    purpose_detail: String,
    legal_basis: String,
    period_from: String,
    period_until: Option<String>,
    filed_at: String,
    state: String,
    decided_by: Option<String>,
    decided_at: Option<String>,
    reason: Option<String>,
    grant_id: Option<i64>,
    resource_name: Option<String>,
}

macro_rules! request_sql {
    ($tail:literal) => {
        concat!(
            "SELECT q.id, q.requester, q.unit, q.resource, q.provider, q.fields, q.purpose, q.purpose_detail, q.legal_basis, q.period_from, q.period_until, q.filed_at, q.state, q.decided_by, q.decided_at, q.reason, (SELECT g.id FROM grants g WHERE g.request = q.id) AS grant_id, (SELECT r.name FROM resources r WHERE r.code = q.resource) AS resource_name FROM access_requests q ",
            $tail
        )
    };
}

fn to_request(row: RequestRow, calendar: &Calendar, now: Timestamp) -> Request {
    let filed = clock::parse_stamp(&row.filed_at).unwrap_or(now);
    let due = calendar.answer_due(filed);
    Request {
        overdue: row.state == "pending" && clock::end_of_day(due) <= now,
        answer_due: due.to_string(),
        id: row.id,
        requester: row.requester,
        unit: row.unit,
        resource: row.resource,
        resource_name: row.resource_name.unwrap_or_default(),
        provider: row.provider,
        fields: serde_json::from_str(&row.fields).unwrap_or_default(),
        purpose: row.purpose,
        purpose_detail: row.purpose_detail,
        legal_basis: row.legal_basis,
        period_from: row.period_from,
        period_until: row.period_until,
        filed_at: row.filed_at,
        state: row.state,
        decided_by: row.decided_by,
        decided_at: row.decided_at,
        reason: row.reason,
        grant: row.grant_id,
    }
}

pub async fn get_request(pool: &SqlitePool, id: i64) -> Result<Request, AccessError> {
    let row: Option<RequestRow> = sqlx::query_as(request_sql!("WHERE q.id = ?"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    let calendar = Calendar::load(pool).await?;
    row.map(|r| to_request(r, &calendar, Timestamp::now()))
        .ok_or_else(|| AccessError::NotFound(format!("request #{id}")))
}

/// Who may list what: everyone their own; stewards (and the bureau's admins) their unit's
/// queue and what it provides; only the bureau's admins everything.
fn authorize_view(by: &Principal, view: View, what: &str) -> Result<(), AccessError> {
    by.require(Scope::Read)?;
    match view {
        View::Mine => Ok(()),
        View::All if by.is(UserRole::PlatformAdmin) => Ok(()),
        View::All => Err(AccessError::Forbidden(format!(
            "only the bureau's platform admins see every {what}"
        ))),
        View::Queue | View::Provided
            if matches!(by.user.role, UserRole::Steward | UserRole::PlatformAdmin) =>
        {
            Ok(())
        }
        View::Queue | View::Provided => Err(AccessError::Forbidden(format!(
            "only stewards see their unit's {what}s"
        ))),
    }
}

/// Requests as `view` shows them to `by` (the operator sees all).
pub async fn list_requests(
    pool: &SqlitePool,
    by: Option<&Principal>,
    view: View,
    overdue_only: bool,
) -> Result<Vec<Request>, AccessError> {
    if let Some(p) = by {
        authorize_view(p, view, "request")?;
    }
    let (sql, bind) = match (by, view) {
        (None, _) | (_, View::All) => (request_sql!("ORDER BY q.id"), None),
        (Some(p), View::Mine) => (
            request_sql!("WHERE q.requester = ? ORDER BY q.id"),
            Some(p.user.name.clone()),
        ),
        (Some(p), View::Queue) => (
            request_sql!("WHERE q.provider = ? AND q.state = 'pending' ORDER BY q.id"),
            Some(p.user.unit.clone()),
        ),
        (Some(p), View::Provided) => (
            request_sql!("WHERE q.provider = ? ORDER BY q.id"),
            Some(p.user.unit.clone()),
        ),
    };
    let mut query = sqlx::query_as::<_, RequestRow>(sql);
    if let Some(value) = bind {
        query = query.bind(value);
    }
    let rows = query.fetch_all(pool).await?;
    let calendar = Calendar::load(pool).await?;
    let now = Timestamp::now();
    Ok(rows
        .into_iter()
        .map(|r| to_request(r, &calendar, now))
        .filter(|r| !overdue_only || r.overdue)
        .collect())
}

/// The providing unit decides (统筹而不替代): its stewards, nobody else — not the bureau.
fn require_providing_steward(
    by: &Principal,
    provider: &str,
    action: &str,
) -> Result<(), AccessError> {
    if by.is(UserRole::Steward) && by.user.unit == provider {
        Ok(())
    } else {
        Err(AccessError::Forbidden(format!(
            "only a steward of the providing unit {provider} {action}"
        )))
    }
}

/// The request, if `by` is a steward of its providing unit and it is still pending.
async fn pending_for_steward(
    pool: &SqlitePool,
    by: &Principal,
    id: i64,
) -> Result<Request, AccessError> {
    by.require(Scope::Decide)?;
    let request = get_request(pool, id).await?;
    require_providing_steward(by, &request.provider, &format!("decides request #{id}"))?;
    if request.state != "pending" {
        return Err(AccessError::Invalid(format!(
            "request #{id} is already {}",
            request.state
        )));
    }
    Ok(request)
}

/// Approves a request, possibly narrower than asked; returns the grant.
pub async fn approve(
    dir: &DataDir,
    by: &Principal,
    id: i64,
    approval: &Approval,
) -> Result<Grant, AccessError> {
    let pool = dir.metadata();
    let request = pending_for_steward(pool, by, id).await?;
    let resource = load_resource(pool, &request.resource).await?;
    let fields = approval.fields.clone().unwrap_or(request.fields.clone());
    if fields.is_empty() {
        return Err(AccessError::Invalid(
            "an approval gives at least one field; refuse the request instead".into(),
        ));
    }
    if let Some(extra) = fields.iter().find(|f| !request.fields.contains(f)) {
        return Err(AccessError::Invalid(format!(
            "field '{extra}' was not requested; approve a subset of {}",
            request.fields.join(", ")
        )));
    }
    secret_or_unknown(&resource, &fields)?;
    if let Some(stray) = approval.masks.keys().find(|f| !fields.contains(f)) {
        return Err(AccessError::Invalid(format!(
            "a mask names '{stray}', which this approval does not grant"
        )));
    }
    let (granted, raw) = chosen_masks(&resource, &fields, approval)?;
    let raw_reason = raw_reason(&raw, approval)?;
    let all_fields: Vec<&str> = resource.fields.iter().map(|f| f.name.as_str()).collect();
    let row_filter = approval
        .row_filter
        .as_deref()
        .filter(|f| !f.trim().is_empty())
        .map(|f| filter::validate(f, &all_fields))
        .transpose()?;
    let requested_until = request
        .period_until
        .as_deref()
        .map(parse_date)
        .transpose()?;
    let until = match approval.until.as_deref().map(parse_date).transpose()? {
        Some(day) if requested_until.is_some_and(|r| day > r) => {
            return Err(AccessError::Invalid(format!(
                "the request asked until {}; an approval may end earlier, not later",
                requested_until.expect("checked")
            )));
        }
        Some(day) if day < clock::today() => {
            return Err(AccessError::Invalid(format!("{day} has passed")));
        }
        Some(day) => Some(day),
        None => requested_until,
    };
    let (user, role) = match approval.to.as_deref().unwrap_or("user") {
        "user" => (Some(request.requester.clone()), None),
        "unit" => (None, None),
        other => match other.strip_prefix("role:").and_then(UserRole::parse) {
            Some(role) => (None, Some(role.as_str())),
            None => {
                return Err(AccessError::Invalid(format!(
                    "grant to 'user', 'unit' or 'role:ROLE' (e.g. role:analyst), not '{other}'"
                )));
            }
        },
    };
    let now = Timestamp::now();
    let valid_from = clock::start_of_day(parse_date(&request.period_from)?).max(now);
    let valid_until = until.map(clock::end_of_day);
    let fields_json = serde_json::to_string(&granted).expect("serialises");
    let mut tx = pool.begin().await?;
    let grant_id: i64 = sqlx::query_scalar("INSERT INTO grants (request, resource, provider, unit, user, role, purpose, fields, row_filter, valid_from, valid_until, granted_by, granted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id")
        .bind(id)
        .bind(&request.resource)
        .bind(&request.provider)
        .bind(&request.unit)
        .bind(&user)
        .bind(role)
        .bind(&request.purpose)
        .bind(&fields_json)
        .bind(&row_filter)
        .bind(stamp(valid_from))
        .bind(valid_until.map(stamp))
        .bind(&by.user.name)
        .bind(stamp(now))
        .fetch_one(&mut *tx)
        .await?;
    close_pending(&mut tx, id, "approved", &by.user.name, None).await?;
    events::record(
        &mut tx,
        by.door,
        &by.user.name,
        "request_approved",
        &format!("request/{id}"),
        serde_json::json!({"grant": grant_id, "resource": request.resource, "unit": request.unit,
            "user": user, "role": role, "fields": granted, "row_filter": row_filter, "valid_until": valid_until.map(stamp),
            "raw": raw, "raw_reason": raw_reason}),
    )
    .await?;
    tx.commit().await?;
    dir.note_policy_change();
    get_grant(pool, grant_id).await
}

/// The mask of each granted field, and the sensitive fields given raw. A sensitive field
/// the approval names no mask for takes its default mask; without one the steward must
/// choose — it is never given raw silently.
fn chosen_masks(
    resource: &Resource,
    fields: &[String],
    approval: &Approval,
) -> Result<(Vec<GrantedField>, Vec<String>), AccessError> {
    let mut granted = Vec::with_capacity(fields.len());
    let (mut raw, mut unchosen) = (Vec::new(), Vec::new());
    for name in fields {
        let field = resource
            .fields
            .iter()
            .find(|f| &f.name == name)
            .expect("checked by the caller");
        let sensitive = matches!(
            field.sensitivity,
            Sensitivity::Sensitive | Sensitivity::Secret
        );
        let mask = match approval.masks.get(name).map(|m| m.trim()) {
            Some("none" | "raw") => {
                if sensitive {
                    raw.push(name.clone());
                }
                None
            }
            Some(mask) if is_known_mask(mask) => Some(mask.to_string()),
            Some(mask) => {
                return Err(AccessError::Invalid(format!(
                    "mask '{mask}' for '{name}' is unknown; masks are {} (or none)",
                    MASKS.join(", ")
                )));
            }
            None if sensitive && field.default_mask.is_none() => {
                unchosen.push(format!("{name} ({})", field.label));
                None
            }
            None => field.default_mask.clone(),
        };
        granted.push(GrantedField {
            name: name.clone(),
            mask,
        });
    }
    if !unchosen.is_empty() {
        return Err(AccessError::Invalid(format!(
            "these fields are marked sensitive and have no default mask: {}; choose a mask for each ({}), or `raw` with a reason for giving them raw",
            unchosen.join(", "),
            MASKS.join(", ")
        )));
    }
    Ok((granted, raw))
}

/// The steward's reason for giving sensitive fields raw: required when any is.
/// Free text a person writes into a request or decision; longer is refused before it is
/// stored.
pub const MAX_TEXT_CHARS: usize = 2_000;

fn bounded(what: &str, text: &str) -> Result<(), AccessError> {
    let count = text.chars().count();
    if count > MAX_TEXT_CHARS {
        return Err(AccessError::Invalid(format!(
            "{what} has {count} characters; at most {MAX_TEXT_CHARS} are kept: shorten it"
        )));
    }
    Ok(())
}

fn raw_reason(raw: &[String], approval: &Approval) -> Result<Option<String>, AccessError> {
    bounded("raw_reason", approval.raw_reason.as_deref().unwrap_or(""))?;
    if raw.is_empty() {
        return Ok(None);
    }
    match approval.raw_reason.as_deref().map(str::trim) {
        Some(reason) if !reason.is_empty() => Ok(Some(reason.to_string())),
        _ => Err(AccessError::Invalid(format!(
            "sensitive fields given raw ({}) need a reason, recorded with the decision (raw_reason)",
            raw.join(", ")
        ))),
    }
}

pub async fn refuse(
    dir: &DataDir,
    by: &Principal,
    id: i64,
    reason: &str,
) -> Result<Request, AccessError> {
    bounded("reason", reason)?;
    let pool = dir.metadata();
    pending_for_steward(pool, by, id).await?;
    if reason.trim().is_empty() {
        return Err(AccessError::Invalid(
            "a refusal gives its reason (--reason)".into(),
        ));
    }
    decide_without_grant(dir, by, id, "refused", reason.trim()).await
}

/// Withdraws one's own pending request.
pub async fn withdraw(dir: &DataDir, by: &Principal, id: i64) -> Result<Request, AccessError> {
    by.require(Scope::Write)?;
    let request = get_request(dir.metadata(), id).await?;
    if request.requester != by.user.name {
        return Err(AccessError::Forbidden(format!(
            "request #{id} was filed by someone else"
        )));
    }
    if request.state != "pending" {
        return Err(AccessError::Invalid(format!(
            "request #{id} is already {}",
            request.state
        )));
    }
    decide_without_grant(dir, by, id, "withdrawn", "").await
}

/// Ends a pending request in `state`; fails if someone decided it meanwhile.
async fn close_pending(
    conn: &mut sqlx::SqliteConnection,
    id: i64,
    state: &str,
    actor: &str,
    reason: Option<&str>,
) -> Result<(), AccessError> {
    let updated = sqlx::query("UPDATE access_requests SET state = ?, decided_by = ?, decided_at = ?, reason = ? WHERE id = ? AND state = 'pending'")
        .bind(state)
        .bind(actor)
        .bind(stamp(Timestamp::now()))
        .bind(reason)
        .bind(id)
        .execute(conn)
        .await?;
    if updated.rows_affected() == 1 {
        Ok(())
    } else {
        Err(AccessError::Invalid(format!(
            "request #{id} was decided meanwhile"
        )))
    }
}

async fn decide_without_grant(
    dir: &DataDir,
    by: &Principal,
    id: i64,
    state: &str,
    reason: &str,
) -> Result<Request, AccessError> {
    let pool = dir.metadata();
    let mut tx = pool.begin().await?;
    close_pending(&mut tx, id, state, &by.user.name, Some(reason)).await?;
    events::record(
        &mut tx,
        by.door,
        &by.user.name,
        &format!("request_{state}"),
        &format!("request/{id}"),
        serde_json::json!({"reason": reason}),
    )
    .await?;
    tx.commit().await?;
    get_request(pool, id).await
}

macro_rules! grant_sql {
    ($tail:literal) => {
        concat!(
            "SELECT id, request, resource, provider, unit, user, role, purpose, fields, row_filter, valid_from, valid_until, granted_by, granted_at, revoked_by, revoked_at, revoke_reason FROM grants ",
            $tail
        )
    };
}

#[derive(sqlx::FromRow)]
struct GrantRow {
    id: i64,
    request: Option<i64>,
    resource: String,
    provider: String,
    unit: String,
    user: Option<String>,
    role: Option<String>,
    purpose: String,
    fields: String,
    row_filter: Option<String>,
    valid_from: String,
    valid_until: Option<String>,
    granted_by: String,
    granted_at: String,
    revoked_by: Option<String>,
    revoked_at: Option<String>,
    revoke_reason: Option<String>,
}

fn to_grant(row: GrantRow) -> Grant {
    Grant {
        id: row.id,
        request: row.request,
        resource: row.resource,
        provider: row.provider,
        unit: row.unit,
        user: row.user,
        role: row.role,
        purpose: row.purpose,
        fields: serde_json::from_str(&row.fields).unwrap_or_default(),
        row_filter: row.row_filter,
        valid_from: row.valid_from,
        valid_until: row.valid_until,
        granted_by: row.granted_by,
        granted_at: row.granted_at,
        revoked_by: row.revoked_by,
        revoked_at: row.revoked_at,
        revoke_reason: row.revoke_reason,
    }
}

pub async fn get_grant(pool: &SqlitePool, id: i64) -> Result<Grant, AccessError> {
    sqlx::query_as::<_, GrantRow>(grant_sql!("WHERE id = ?"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(to_grant)
        .ok_or_else(|| AccessError::NotFound(format!("grant #{id}")))
}

/// Grants as `view` shows them to `by` (the operator sees all).
pub async fn list_grants(
    pool: &SqlitePool,
    by: Option<&Principal>,
    view: View,
) -> Result<Vec<Grant>, AccessError> {
    if let Some(p) = by {
        authorize_view(p, view, "grant")?;
    }
    let rows: Vec<GrantRow> = match (by, view) {
        (None, _) | (_, View::All) => {
            sqlx::query_as(grant_sql!("ORDER BY id"))
                .fetch_all(pool)
                .await?
        }
        (Some(p), View::Mine) => {
            sqlx::query_as(grant_sql!(
                "WHERE unit = ? AND (user IS NULL OR user = ?) AND (role IS NULL OR role = ?) ORDER BY id"
            ))
            .bind(&p.user.unit)
            .bind(&p.user.name)
            .bind(p.user.role.as_str())
            .fetch_all(pool)
            .await?
        }
        (Some(p), View::Queue | View::Provided) => {
            sqlx::query_as(grant_sql!("WHERE provider = ? ORDER BY id"))
                .bind(&p.user.unit)
                .fetch_all(pool)
                .await?
        }
    };
    Ok(rows.into_iter().map(to_grant).collect())
}

/// Revokes a grant: a steward of the providing unit (or the operator). Takes effect on the
/// next statement.
pub async fn revoke(
    dir: &DataDir,
    by: Option<&Principal>,
    grant_id: i64,
    reason: &str,
) -> Result<Grant, AccessError> {
    bounded("reason", reason)?;
    let pool = dir.metadata();
    let grant = get_grant(pool, grant_id).await?;
    if let Some(p) = by {
        p.require(Scope::Decide)?;
        require_providing_steward(p, &grant.provider, &format!("revokes grant #{grant_id}"))?;
    }
    if grant.revoked_at.is_some() {
        return Err(AccessError::Invalid(format!(
            "grant #{grant_id} is already revoked"
        )));
    }
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE grants SET revoked_by = ?, revoked_at = ?, revoke_reason = ? WHERE id = ? AND revoked_at IS NULL")
        .bind(actor_label(by))
        .bind(stamp(Timestamp::now()))
        .bind(reason)
        .bind(grant_id)
        .execute(&mut *tx)
        .await?;
    events::record(
        &mut tx,
        door_of(by),
        &actor_label(by),
        "grant_revoked",
        &format!("grant/{grant_id}"),
        serde_json::json!({"resource": grant.resource, "unit": grant.unit, "reason": reason}),
    )
    .await?;
    tx.commit().await?;
    dir.note_policy_change();
    get_grant(pool, grant_id).await
}

/// Opens a resource only to leaders of at least `level` (or lifts that with `None`):
/// a steward of the providing unit (or the operator).
pub async fn set_min_leader_level(
    dir: &DataDir,
    by: Option<&Principal>,
    code: &str,
    level: Option<i64>,
) -> Result<(), AccessError> {
    let pool = dir.metadata();
    let resource = load_resource(pool, code).await?;
    if let Some(p) = by {
        p.require(Scope::Decide)?;
        require_providing_steward(
            p,
            &resource.unit,
            &format!("sets the policy of resource {code}"),
        )?;
    }
    if level.is_some_and(|l| !(1..=10).contains(&l)) {
        return Err(AccessError::Invalid(
            "leader levels run from 1 to 10".into(),
        ));
    }
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO resource_policies (resource, min_leader_level, updated_by, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(resource) DO UPDATE SET min_leader_level = excluded.min_leader_level, updated_by = excluded.updated_by, updated_at = excluded.updated_at")
        .bind(code)
        .bind(level)
        .bind(actor_label(by))
        .bind(stamp(Timestamp::now()))
        .execute(&mut *tx)
        .await?;
    events::record(
        &mut tx,
        door_of(by),
        &actor_label(by),
        "policy_set",
        code,
        serde_json::json!({"min_leader_level": level}),
    )
    .await?;
    tx.commit().await?;
    dir.note_policy_change();
    Ok(())
}
