//! Every `/api` request and every portal page leaves a ledger entry, written by one
//! middleware so that no route can forget it (only the portal's static assets and
//! `/healthz` are not recorded):
//!
//! - a request that changes something is recorded *before* it runs (the handler does not
//!   run when the ledger cannot be written) and again with its outcome;
//! - a read is recorded after the handler has produced its answer and *before* the first
//!   byte of it leaves — when the ledger cannot be written the caller gets 503, not data;
//! - handlers add what only they know (resources, fields, rows, digest, subjects) as a
//!   [`Traced`] response extension, or record the entry themselves ([`Recorded`]) when it
//!   must happen in the middle of their work (a pull moves its cursor only once traced).
//!
//! Query values that could identify someone (`id`, `subject`) or be secret are replaced
//! by `…` in the recorded statement. Access events queued by the access crate are moved
//! into the ledger before the answer leaves.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tongchou_access::Door;
use tongchou_audit::{ALLOWED, DENIED, Entry, FAILED};

use crate::{ApiError, AppState};

/// What a handler knows about its answer, merged into the request's entry.
#[derive(Debug, Clone, Default)]
pub struct Traced(pub Entry);

/// The handler has recorded this request's entry itself.
#[derive(Debug, Clone, Copy)]
pub struct Recorded;

/// The text of an error answer, kept for the entry's reason.
#[derive(Debug, Clone)]
pub struct ErrorText(pub String);

const HIDDEN_QUERY_KEYS: [&str; 7] = [
    "id", "subject", "password", "token", "secret", "key", "licence",
];

/// `METHOD /path?query`, decoded as the server reads it, with identifying and secret
/// values hidden (`%69d=` is `id=`).
pub fn statement(method: &Method, uri: &axum::http::Uri) -> String {
    let mut text = format!("{method} {}", uri.path());
    if let Some(query) = uri.query() {
        let shown: Vec<String> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| {
                if HIDDEN_QUERY_KEYS.contains(&k.to_ascii_lowercase().as_str()) {
                    format!("{k}=…")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        text.push('?');
        text.push_str(&shown.join("&"));
    }
    text
}

/// Paths whose requests are not recorded: nothing there reads or changes data.
fn unrecorded(path: &str) -> bool {
    path == "/healthz" || path.starts_with("/static/") || path == "/favicon.ico"
}

/// POSTed requests that only read: a statement's text travels in the body.
fn reads_by_post(path: &str) -> bool {
    matches!(path, "/api/query" | "/console" | "/inspect/scan")
}

fn kind_of(method: &Method, path: &str) -> &'static str {
    let reads = method == Method::GET || method == Method::HEAD;
    if !path.starts_with("/api/") {
        return page_kind_of(reads, path);
    }
    match path {
        "/api/exchange/pull" => "pull",
        "/api/query" => "statement",
        "/api/exchange/quarantine" => "download",
        "/api/auth/sign-in" => "sign_in_attempt",
        "/api/auth/sign-out" => "sign_out",
        "/api/ledger/subject" => "subject_lookup",
        p if p.starts_with("/api/ledger") => "ledger_read",
        p if reads && p.starts_with("/api/catalog") => "catalog_read",
        _ if reads => "read",
        p if p.starts_with("/api/catalog") => "catalog_change",
        p if p.starts_with("/api/exchange/resources") => "load",
        p if p.starts_with("/api/exchange") => "exchange_change",
        p if p.starts_with("/api/access") => "access_change",
        p if p.starts_with("/api/users") || p.starts_with("/api/tokens") => "account_change",
        _ => "change",
    }
}

/// The portal's pages, in the vocabulary of the API's entries.
fn page_kind_of(reads: bool, path: &str) -> &'static str {
    match path {
        "/signin" if !reads => "sign_in_attempt",
        "/signout" => "sign_out",
        "/console" if !reads => "statement",
        "/ledger/subject" => "subject_lookup",
        p if p.starts_with("/ledger") => "ledger_read",
        "/load/data" | "/quarantine" if !reads => "load",
        p if !reads && (p.starts_with("/load") || p.starts_with("/register")) => "catalog_change",
        p if !reads && p.starts_with("/requests") => "access_change",
        "/inspect/report" if !reads => "finding",
        "/inspect/scan" => "scan",
        "/" | "/catalog" | "/resource" => "catalog_read",
        _ if reads => "page",
        _ => "change",
    }
}

fn outcome_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=399 => ALLOWED,
        401 | 403 | 404 | 429 => DENIED,
        _ => FAILED,
    }
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
}

pub async fn record_requests(
    State(s): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    if unrecorded(&path) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let door = if path.starts_with("/api/") {
        Door::Rest
    } else {
        Door::Portal
    };
    let mut entry = Entry::new(kind_of(&method, &path), door.as_str(), ALLOWED);
    entry.statement = Some(statement(&method, request.uri()));
    if let Some(credential) = crate::auth::credential(request.headers())
        && let Ok(principal) = s.policy.authenticate(&credential, door).await
    {
        entry.user = Some(principal.user.name.clone());
        entry.unit = Some(principal.user.unit.clone());
        // The handler's `Caller` takes it from here instead of checking again.
        request
            .extensions_mut()
            .insert(crate::auth::Authenticated(principal));
    }
    // A query statement reads, though it is POSTed.
    let changes = !(method == Method::GET || method == Method::HEAD || reads_by_post(&path));
    if changes {
        entry.detail = serde_json::json!({ "phase": "started" });
        if let Err(e) = s.audit.record(&entry).await {
            return unavailable(e);
        }
    }
    let mut response = next.run(request).await;
    let drained = tongchou_audit::outbox::drain(&s.audit).await;
    if response.extensions().get::<Recorded>().is_some() {
        return response;
    }
    let status = response.status();
    entry.time = tongchou_audit::now();
    entry.outcome = outcome_of(status).into();
    entry.detail = serde_json::json!({ "phase": if changes { "done" } else { "answered" }, "status": status.as_u16() });
    if let Some(Traced(extra)) = response.extensions_mut().remove::<Traced>() {
        merge(&mut entry, extra);
    }
    if let Some(ErrorText(text)) = response.extensions().get::<ErrorText>() {
        entry.reason = Some(text.clone());
    }
    if let Err(e) = s.audit.record(&entry).await {
        if changes {
            // The change is made and its start is in the ledger; say the rest is missing.
            response.headers_mut().insert(
                "x-tongchou-ledger",
                axum::http::HeaderValue::from_static("outcome-not-recorded"),
            );
            eprintln!(
                "ledger: the outcome of {:?} was not recorded: {e}",
                entry.statement
            );
            return response;
        }
        return unavailable(e);
    }
    if let Err(e) = drained {
        // The events stay queued in the database and are recorded by the next drain.
        eprintln!("ledger: access events wait in the outbox: {e}");
    }
    response
}

fn merge(entry: &mut Entry, extra: Entry) {
    if !extra.kind.is_empty() {
        entry.kind = extra.kind;
    }
    // A page can answer 200 around a statement that was refused: the statement decides.
    if !extra.outcome.is_empty() && extra.outcome != ALLOWED {
        entry.outcome = extra.outcome;
    }
    entry.purpose = extra.purpose.or(entry.purpose.take());
    if extra.statement.is_some() {
        entry.statement = extra.statement;
    }
    entry.resources = extra.resources;
    entry.fields = extra.fields;
    entry.masks = extra.masks;
    entry.row_filters = extra.row_filters;
    entry.rows = extra.rows;
    entry.result_digest = extra.result_digest;
    entry.subjects = extra.subjects;
    entry.subject_set = extra.subject_set;
    entry.subject_count = extra.subject_count;
    entry.subject_hashes = extra.subject_hashes;
    if !extra.detail.is_null() {
        entry.detail["handler"] = extra.detail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifying_and_secret_query_values_are_hidden() {
        let uri: axum::http::Uri = "/api/ledger/subject?id=44060519800101123X&limit=5"
            .parse()
            .unwrap();
        let text = statement(&Method::GET, &uri);
        assert_eq!(text, "GET /api/ledger/subject?id=…&limit=5");
        let encoded: axum::http::Uri =
            "/api/ledger/subject?%69d=44060519800101123X&q=%E5%8D%97%E6%B5%B7"
                .parse()
                .unwrap();
        let text = statement(&Method::GET, &encoded);
        assert_eq!(text, "GET /api/ledger/subject?id=…&q=南海");
        assert!(!text.contains("4406"));
        let uri: axum::http::Uri = "/api/x?Token=abc&q=税".parse().unwrap();
        assert_eq!(statement(&Method::POST, &uri), "POST /api/x?Token=…&q=税");
    }
}
