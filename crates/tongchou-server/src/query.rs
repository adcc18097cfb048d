//! `POST /api/query`: one governed statement as the caller, for a purpose. The answer is
//! built whole, then recorded in the ledger (by the audit middleware, with what this
//! handler adds) before its first byte leaves.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use tongchou_access::Scope;
use tongchou_audit::{ALLOWED, Entry};
use tongchou_query::QueryError;
use tongchou_query::front::{Csv, outcome_of, render_with, statement_entry};
use utoipa::ToSchema;

use crate::audit::Traced;
use crate::{ApiError, AppState, Caller};

#[derive(Debug, Deserialize, ToSchema)]
pub struct QueryBody {
    /// One query statement; resources are "单位名称"."资源名称".
    pub sql: String,
    /// A code of the bureau's purposes.
    pub purpose: String,
    /// json (default), csv or arrow.
    pub format: Option<String>,
    /// CSV as stored, for programs: text a spreadsheet would run as a formula (`=`, `+`,
    /// `-`, `@`, tab, carriage return first) is otherwise quoted with a leading `'`.
    #[serde(default)]
    pub raw: bool,
}

/// The HTTP status of a statement that did not run.
pub fn status_of(e: &QueryError) -> StatusCode {
    match e {
        QueryError::Access(_) | QueryError::Refused(_) => StatusCode::FORBIDDEN,
        QueryError::Sql(text) if text.contains("not found") => StatusCode::NOT_FOUND,
        QueryError::Sql(_) => StatusCode::BAD_REQUEST,
        QueryError::TooManyRows(_) | QueryError::Exhausted(_) => StatusCode::PAYLOAD_TOO_LARGE,
        QueryError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
        QueryError::NotFound(_) => StatusCode::NOT_FOUND,
        QueryError::NotRecorded(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Runs a governed statement.
#[utoipa::path(post, path = "/api/query", request_body = QueryBody, responses((status = 200, description = "The rows: a JSON array of objects, CSV, XLSX or Arrow IPC")))]
pub async fn query(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    Json(b): Json<QueryBody>,
) -> Result<Response, ApiError> {
    let principal = caller.require(Scope::Query)?;
    let format = b.format.unwrap_or_else(|| "json".into());
    let mut entry = Entry::new("statement", "rest", ALLOWED);
    let statement = s.audit.redact(&b.sql);
    entry.statement = Some(statement);
    entry.purpose = Some(b.purpose.clone());
    let answer = match s.query.run(&principal.user.name, &b.purpose, &b.sql).await {
        Ok(a) => a,
        Err(e) => {
            entry.outcome = outcome_of(&e).into();
            let mut response = ApiError::new(status_of(&e), e.to_string()).into_response();
            response.extensions_mut().insert(Traced(entry));
            return Ok(response);
        }
    };
    let csv = if b.raw { Csv::Raw } else { Csv::FormulaSafe };
    let bytes = render_with(&answer, &format, csv)
        .map_err(|e| ApiError::new(status_of(&e), e.to_string()))?;
    let traced = statement_entry(&s.audit, entry, &answer, &bytes);
    let content_type = match format.as_str() {
        "csv" => "text/csv; charset=utf-8",
        "arrow" => "application/vnd.apache.arrow.file",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/json",
    };
    Ok((
        Extension(Traced(traced)),
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::HeaderName::from_static("x-tongchou-rows"),
                answer.rows.to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}
