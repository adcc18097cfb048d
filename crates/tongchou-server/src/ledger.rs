//! The ledger over REST: who looked at a person (for the bureau, acting for citizens), use
//! by unit and purpose, denied attempts, unusual readers, the newest entries, proofs and
//! the signed checkpoint anyone may hold on to. A providing unit's stewards see the uses
//! of their own resources; the bureau's platform admins see everything.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use tongchou_access::Scope;
use tongchou_audit::index::{self, Filter, Listed, Unusual, Usage};
use tongchou_audit::{ALLOWED, AuditError, Entry};
use tongchou_model::UserRole;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::audit::Traced;
use crate::{ApiError, AppState, Caller};

type Shared = State<Arc<AppState>>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(subject))
        .routes(routes!(entries))
        .routes(routes!(usage))
        .routes(routes!(unusual))
        .routes(routes!(tail))
        .routes(routes!(proof))
        .routes(routes!(checkpoint))
}

fn failed(e: impl Into<AuditError>) -> ApiError {
    let e = e.into();
    let status = match e {
        AuditError::Filter(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, e.to_string())
}

fn require_bureau(caller: &Caller, what: &str) -> Result<(), ApiError> {
    caller.require(Scope::Read)?;
    if caller.0.is(UserRole::PlatformAdmin) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("only the bureau's platform admins {what}"),
        ))
    }
}

/// Admins see all; a steward sees the uses of their unit's resources only.
fn scoped(caller: &Caller, mut filter: Filter) -> Result<Filter, ApiError> {
    caller.require(Scope::Read)?;
    if caller.0.is(UserRole::PlatformAdmin) {
        return Ok(filter);
    }
    if caller.0.is(UserRole::Steward) {
        filter.provider = Some(caller.0.user.unit.clone());
        return Ok(filter);
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "the ledger is read by the bureau's admins, and by stewards for their own resources",
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SubjectParams {
    /// 公民身份号码 or 统一社会信用代码.
    pub id: String,
}

/// Every recorded access that touched one person or enterprise: when, which unit and
/// user, for what purpose (the citizen's view, as Estonia's Data Tracker gives it).
#[utoipa::path(get, path = "/api/ledger/subject", params(SubjectParams), responses((status = 200, body = Vec<Listed>)))]
pub async fn subject(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<SubjectParams>,
) -> Result<Response, ApiError> {
    require_bureau(&caller, "look up who used a person's data")?;
    let found = index::subject(&s.audit, &p.id).await.map_err(failed)?;
    // The lookup is itself a use of that person's data.
    let mut traced = Entry::new("subject_lookup", "rest", ALLOWED);
    traced.detail = serde_json::json!({ "looked_up": s.audit.subject(&p.id) });
    traced.rows = Some(found.len() as u64);
    Ok((Extension(Traced(traced)), Json(found)).into_response())
}

/// Entries by user, unit, resource, purpose, kind, outcome and time, newest first.
#[utoipa::path(get, path = "/api/ledger/entries", params(Filter), responses((status = 200, body = Vec<Listed>)))]
pub async fn entries(
    State(s): Shared,
    caller: Caller,
    Query(f): Query<Filter>,
) -> Result<Json<Vec<Listed>>, ApiError> {
    let f = scoped(&caller, f)?;
    Ok(Json(index::search(&s.audit, &f).await.map_err(failed)?))
}

/// Statements, pulls and downloads per unit and purpose.
#[utoipa::path(get, path = "/api/ledger/usage", params(Filter), responses((status = 200, body = Vec<Usage>)))]
pub async fn usage(
    State(s): Shared,
    caller: Caller,
    Query(f): Query<Filter>,
) -> Result<Json<Vec<Usage>>, ApiError> {
    let f = scoped(&caller, f)?;
    Ok(Json(index::usage(&s.audit, &f).await.map_err(failed)?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct UnusualParams {
    pub since: Option<String>,
    pub until: Option<String>,
    /// How many times the peers' median counts as unusual (default 5).
    pub factor: Option<f64>,
    /// The fewest subjects worth flagging (default 20).
    pub floor: Option<i64>,
}

/// Users who read far more people or enterprises than the others of their unit.
#[utoipa::path(get, path = "/api/ledger/unusual", params(UnusualParams), responses((status = 200, body = Vec<Unusual>)))]
pub async fn unusual(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<UnusualParams>,
) -> Result<Json<Vec<Unusual>>, ApiError> {
    require_bureau(&caller, "look for unusual use")?;
    let filter = Filter {
        since: p.since,
        until: p.until,
        ..Filter::default()
    };
    let found = index::unusual(
        &s.audit,
        &filter,
        p.factor.unwrap_or(5.0),
        p.floor.unwrap_or(20),
    )
    .await
    .map_err(failed)?;
    Ok(Json(found))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct TailParams {
    pub n: Option<u64>,
}

/// The newest entries as recorded, newest last.
#[utoipa::path(get, path = "/api/ledger/tail", params(TailParams), responses((status = 200, description = "Entries")))]
pub async fn tail(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<TailParams>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    require_bureau(&caller, "read the raw ledger")?;
    let n = p.n.unwrap_or(20).min(10_000);
    let entries = s
        .audit
        .with_ledger(move |l| tongchou_audit::tail(l, n))
        .await
        .map_err(failed)?;
    Ok(Json(entries))
}

/// The inclusion proof of one entry against the newest checkpoint, to check with
/// `tongchou ledger check-proof` anywhere.
#[utoipa::path(get, path = "/api/ledger/proof/{seq}", responses((status = 200, description = "tongchou-inclusion-proof/1")))]
pub async fn proof(
    State(s): Shared,
    caller: Caller,
    Path(seq): Path<u64>,
) -> Result<Json<tongchou_ledger::InclusionProof>, ApiError> {
    require_bureau(&caller, "hand out proofs of entries")?;
    let proof = s
        .audit
        .with_ledger(move |l| l.prove(seq))
        .await
        .map_err(|e| match e {
            tongchou_ledger::LedgerError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            other => failed(other),
        })?;
    Ok(Json(proof))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointReply {
    /// The C2SP signed note.
    pub checkpoint: String,
    pub verifier_key: String,
}

/// The newest signed checkpoint: keep it, and later ask for a consistency proof.
#[utoipa::path(get, path = "/api/ledger/checkpoint", responses((status = 200, body = CheckpointReply)))]
pub async fn checkpoint(
    State(s): Shared,
    caller: Caller,
) -> Result<Json<CheckpointReply>, ApiError> {
    caller.require(Scope::Read)?;
    let (checkpoint, key) = s
        .audit
        .with_ledger(|l| {
            l.checkpoint()
                .map(|c| (c, l.verifier().map(|v| v.encode())))
        })
        .await
        .map_err(failed)?;
    Ok(Json(CheckpointReply {
        checkpoint,
        verifier_key: key.unwrap_or_default(),
    }))
}
