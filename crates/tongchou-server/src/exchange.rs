//! The exchange over HTTP: multipart upload into a resource's table, its quarantine and
//! loads, subscriptions, and streamed downloads of changes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Multipart, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use tongchou_access::Scope;
use tongchou_exchange::changes::{self, OutputFormat};
use tongchou_exchange::{Encoding, Mode, ReadOptions};
use tongchou_query::deliver;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::audit::Traced;
use crate::query::status_of;
use crate::{ApiError, ApiResult, AppState, Caller, Shared, Upload, store_upload};

/// Loads and quarantines (which hold raw rows) belong to the providing unit's stewards and
/// the bureau's admins.
async fn require_provider(s: &AppState, caller: &Caller, code: &str) -> Result<(), ApiError> {
    let provider = s.catalog.get(code).await?.resource.unit;
    if caller.actor().may_provide_for(&provider) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("only stewards of the providing unit {provider} load and fix resource {code}"),
        ))
    }
}

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(ingest))
        .routes(routes!(quarantine))
        .routes(routes!(loads))
        .routes(routes!(subscribe))
        .routes(routes!(pull))
        .routes(routes!(volume))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct IngestParams {
    pub resource: String,
    /// append, replace or upsert.
    pub mode: Option<String>,
    /// auto, utf-8 or gbk.
    pub encoding: Option<String>,
    pub sheet: Option<String>,
    pub header_row: Option<u64>,
}

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// The form's one part named `file`, stored; other parts (a browser's form sends its
/// fields too) are read within the field limit and ignored.
async fn one_file(s: &AppState, form: &mut Multipart) -> Result<Upload, ApiError> {
    let (mut upload, mut others) = (None, 0);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad(format!("the upload is not valid multipart: {e}")))?
    {
        if field.name() != Some("file") {
            others += 1;
            if others > MAX_OTHER_PARTS {
                return Err(bad(format!(
                    "the form has over {MAX_OTHER_PARTS} parts besides the file"
                )));
            }
            crate::field_text(field, s.limits.field_bytes()).await?;
        } else if upload.is_some() {
            return Err(bad(
                "send one file per load: the form has a second part named 'file'".into(),
            ));
        } else {
            let uploads = s.dir.root().join("uploads");
            upload = Some(store_upload(&uploads, field, s.limits.upload_bytes()).await?);
        }
    }
    upload.ok_or_else(|| bad("no multipart field named 'file'".into()))
}

const MAX_OTHER_PARTS: usize = 16;

/// Loads the uploaded file (multipart field `file`) into the resource's table. The upload
/// is streamed to disk first, so memory stays bounded whatever its size.
#[utoipa::path(post, path = "/api/exchange/ingest", params(IngestParams), request_body(content_type = "multipart/form-data", content = Vec<u8>),
    responses((status = 200, description = "The load report (accepted, quarantined, version …)"), (status = 422, body = ApiError)))]
pub async fn ingest(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<IngestParams>,
    mut form: Multipart,
) -> Result<Response, ApiError> {
    caller.require(Scope::Write)?;
    require_provider(&s, &caller, &p.resource).await?;
    let mode = Mode::parse(p.mode.as_deref().unwrap_or("append"))
        .ok_or_else(|| bad("mode must be append, replace or upsert".into()))?;
    let encoding = Encoding::parse(p.encoding.as_deref().unwrap_or("auto"))
        .ok_or_else(|| bad("encoding must be auto, utf-8 or gbk".into()))?;
    let upload = one_file(&s, &mut form).await?;
    let options = ReadOptions {
        encoding,
        sheet: p.sheet,
        header_row: p.header_row,
    };
    let result = tongchou_exchange::ingest(
        &s.dir,
        &s.catalog,
        &tongchou_exchange::Load {
            resource: &p.resource,
            file: &upload.path,
            mode,
            read: &options,
            actor: &caller.0.user.name,
        },
        Arc::new(()),
    )
    .await;
    // The report names the file as the steward sent it, not where the server kept it.
    let mut report = result?;
    report.file = upload.name.clone();
    Ok(Json(report).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ResourceParam {
    pub resource: String,
}

/// The open quarantine of a resource: line, field, reason and the row as read.
#[utoipa::path(get, path = "/api/exchange/quarantine", params(ResourceParam), responses((status = 200, description = "Quarantined rows")))]
pub async fn quarantine(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<ResourceParam>,
) -> ApiResult<Vec<tongchou_exchange::QuarantineEntry>> {
    caller.require(Scope::Read)?;
    require_provider(&s, &caller, &p.resource).await?;
    Ok(Json(
        tongchou_exchange::quarantine(&s.dir, &p.resource).await?,
    ))
}

/// A resource's loads, newest first: the providing unit's stewards and the bureau's.
#[utoipa::path(get, path = "/api/exchange/loads", params(ResourceParam), responses((status = 200, description = "Loads and versions"), (status = 403, body = ApiError)))]
pub async fn loads(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<ResourceParam>,
) -> ApiResult<Vec<tongchou_exchange::LoadInfo>> {
    caller.require(Scope::Read)?;
    require_provider(&s, &caller, &p.resource).await?;
    Ok(Json(tongchou_exchange::loads(&s.dir, &p.resource).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscribeBody {
    pub resource: String,
    /// The consumer unit's code; the caller's own unit when left out.
    pub unit: Option<String>,
    /// Why the unit takes the data: a code of the bureau's purposes. Every pull is a
    /// governed statement for it.
    pub purpose: String,
}

/// Subscribes the caller's unit to a resource, for a purpose under which the caller may
/// read it: refused (403, naming the request to file) where a query would be.
#[utoipa::path(post, path = "/api/exchange/subscriptions", request_body = SubscribeBody, responses((status = 200, description = "The subscription with its cursor"), (status = 403, body = ApiError)))]
pub async fn subscribe(
    State(s): Shared,
    caller: Caller,
    Json(b): Json<SubscribeBody>,
) -> Result<Response, ApiError> {
    let principal = caller.require(Scope::Query)?;
    let unit = &principal.user.unit;
    if b.unit.as_ref().is_some_and(|u| u != unit) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("you subscribe for your own unit ({unit}) only"),
        ));
    }
    let subscribed = deliver::subscribe(
        &s.query,
        &principal.user.name,
        unit,
        &b.resource,
        &b.purpose,
    )
    .await
    .map_err(|e| ApiError::new(status_of(&e), e.to_string()))?;
    let traced = tongchou_audit::Entry {
        resources: vec![b.resource],
        purpose: Some(b.purpose),
        ..Default::default()
    };
    Ok((Extension(Traced(traced)), Json(subscribed)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct PullParams {
    pub subscription: i64,
    /// parquet (default), csv, json or arrow.
    pub format: Option<String>,
}

/// Streams what the subscription has not had yet — the resource as the caller may see it
/// the first time, its changes after — and moves the cursor.
#[utoipa::path(get, path = "/api/exchange/pull", params(PullParams), responses((status = 200, description = "The rows as a governed query returns them, with _change and _version columns", content_type = "application/octet-stream"), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn pull(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<PullParams>,
) -> Result<Response, ApiError> {
    let principal = caller.require(Scope::Query)?;
    let format_name = p.format.unwrap_or_else(|| "parquet".into());
    let format = OutputFormat::parse(&format_name).ok_or_else(|| {
        bad(format!(
            "format '{format_name}' is not parquet, csv, json or arrow"
        ))
    })?;
    let downloads = s.dir.root().join("uploads");
    tokio::fs::create_dir_all(&downloads)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let path = downloads.join(format!(
        "pull-{}-{}.{format_name}",
        p.subscription,
        jiff::Timestamp::now().as_nanosecond()
    ));
    let user = &principal.user;
    let mut entry = tongchou_audit::Entry::new("pull", "rest", tongchou_audit::ALLOWED);
    entry.user = Some(user.name.clone());
    entry.unit = Some(user.unit.clone());
    entry.statement = Some(format!(
        "GET /api/exchange/pull?subscription={}&format={format_name}",
        p.subscription
    ));
    let request = deliver::PullRequest {
        user: &user.name,
        unit: &user.unit,
        subscription: p.subscription,
        format,
        out: &path,
        entry,
    };
    let pulled = match deliver::pull(&s.query, &s.audit, request).await {
        Ok(pulled) => pulled,
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(ApiError::new(status_of(&e), e.to_string()));
        }
    };
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // Unlinked at once: the open handle streams it, and nothing is left behind.
    let _ = tokio::fs::remove_file(&path).await;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let content_type = match format {
        OutputFormat::Csv => "text/csv; charset=utf-8",
        OutputFormat::Json => "application/x-ndjson",
        OutputFormat::Arrow => "application/vnd.apache.arrow.file",
        OutputFormat::Parquet => "application/vnd.apache.parquet",
    };
    Ok((
        Extension(crate::audit::Recorded),
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::HeaderName::from_static("x-tongchou-rows"),
                pulled.rows.to_string(),
            ),
            (
                header::HeaderName::from_static("x-tongchou-version"),
                pulled.to_version.to_string(),
            ),
        ],
        body,
    )
        .into_response())
}

/// Records delivered, per day, resource, provider and consumer: everything to the bureau's
/// admins, to others what their own unit provided or received.
#[utoipa::path(get, path = "/api/exchange/volume", responses((status = 200, description = "Exchange volume")))]
pub async fn volume(State(s): Shared, caller: Caller) -> ApiResult<Vec<changes::Volume>> {
    let principal = caller.require(Scope::Read)?;
    let all = changes::volume(&s.dir).await?;
    if principal.is(tongchou_model::UserRole::PlatformAdmin) {
        return Ok(Json(all));
    }
    let unit = &principal.user.unit;
    Ok(Json(
        all.into_iter()
            .filter(|v| &v.provider == unit || &v.consumer == unit)
            .collect(),
    ))
}
