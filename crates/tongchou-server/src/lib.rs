//! `tongchou serve`: the HTTP front door. axum on tokio, bound to 127.0.0.1 unless told
//! otherwise (TLS through rustls for anything else), serving the REST API (JSON) and its
//! OpenAPI document at `/openapi.json`. Every `/api` route but sign-in needs a session
//! cookie or an API token; what each caller may do is decided by `tongchou-access`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tongchou_access::Scope;
use tongchou_catalog::infer::Inference;
use tongchou_catalog::{
    Batch, Catalog, CatalogError, Change, Hit, Inventory, Problem, Record, SearchQuery, UnitInfo,
    VersionInfo,
};
use tongchou_model::{OpenType, Resource, ShareType, Unit, UpdateCycle};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

mod access;
mod audit;
mod auth;
mod exchange;
mod ledger;
pub mod limits;
mod pg;
mod query;

pub use pg::serve_pg;

pub use access::session_cookie;
pub use audit::{ErrorText, Traced};
pub use auth::{
    Authenticated, Caller, ClientAddress, SESSION_COOKIE, cookie, credential, cross_site,
};
pub use limits::{ServerLimits, Upload, blocking, field_text, store_upload};
pub use query::status_of;

/// Shared state of a running server.
pub struct AppState {
    pub dir: tongchou_store::DataDir,
    pub catalog: Catalog,
    pub policy: Arc<tongchou_access::Policy>,
    pub audit: tongchou_audit::Audit,
    pub query: tongchou_query::Engine,
    /// Session cookies are marked Secure when served over TLS.
    pub secure_cookies: bool,
    pub limits: ServerLimits,
}

impl AppState {
    pub async fn open(
        dir: tongchou_store::DataDir,
        secure_cookies: bool,
    ) -> Result<AppState, String> {
        let catalog = Catalog::open(dir.clone())
            .await
            .map_err(|e| e.to_string())?;
        let policy = Arc::new(
            tongchou_access::Policy::open(dir.clone())
                .await
                .map_err(|e| e.to_string())?,
        );
        let audit = tongchou_audit::Audit::open(&dir)
            .await
            .map_err(|e| e.to_string())?;
        let mut query =
            tongchou_query::Engine::open(dir.clone(), policy.clone(), audit.subject_key().clone())
                .map_err(|e| e.to_string())?;
        let limits = ServerLimits::read(&dir.config_dir())?;
        limits::clear_leftover_uploads(&dir.root().join("uploads"));
        // Kept tables and their masked views take half the ceiling; statements the rest.
        query.keep_tables_within(limits.cache_bytes());
        Ok(AppState {
            limits,
            dir,
            catalog,
            policy,
            audit,
            query,
            secure_cookies,
        })
    }
}

/// An API error: status, message and, for rejected input, every problem found.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    status: u16,
    pub error: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
    /// Seconds, sent as `Retry-After` when the answer is "not now".
    #[serde(skip)]
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status: status.as_u16(),
            error: error.into(),
            problems: Vec::new(),
            retry_after: None,
        }
    }

    fn rejected(problems: Vec<Problem>) -> ApiError {
        ApiError {
            status: 422,
            error: format!("{} problem(s); nothing was registered", problems.len()),
            problems,
            retry_after: None,
        }
    }
}

impl From<tongchou_exchange::ExchangeError> for ApiError {
    fn from(e: tongchou_exchange::ExchangeError) -> ApiError {
        use tongchou_exchange::ExchangeError as E;
        match e {
            E::Catalog(c) => c.into(),
            E::BadFile(_) | E::Columns(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            E::Conflict(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            E::NotRecorded(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> ApiError {
        match e {
            CatalogError::Rejected(problems) => ApiError::rejected(problems),
            CatalogError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            CatalogError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, e.to_string()),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let reason = audit::ErrorText(self.error.clone());
        let retry_after = self.retry_after;
        let mut response = (
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Json(self),
        )
            .into_response();
        response.extensions_mut().insert(reason);
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;
pub(crate) type Shared = State<Arc<AppState>>;

#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    /// The first (or only) resource code.
    pub code: String,
    pub codes: Vec<String>,
    pub registered: usize,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct CodeParam {
    /// Resource code, e.g. 307001004/000012.
    pub code: String,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DiffParams {
    pub code: String,
    pub from: i64,
    pub to: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SearchParams {
    /// Words in Chinese or English; every word must match.
    #[serde(default)]
    pub q: String,
    pub unit: Option<String>,
    pub share_type: Option<String>,
    pub open_type: Option<String>,
    pub update_cycle: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct UnitParam {
    pub unit: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct InferParams {
    /// The sample's file name; `.xlsx` is read as a workbook, anything else as CSV.
    pub name: String,
    pub sheet: Option<String>,
    pub rows: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionReply {
    pub code: String,
    pub version: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnitsAdded {
    pub added: usize,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "统筹 Tongchou API",
        description = "Register, find, share, exchange and query government data without giving up control of it."
    ),
    components(schemas(
        ApiError,
        Registered,
        VersionReply,
        UnitsAdded,
        Resource,
        Unit,
        Record,
        Hit,
        Inventory,
        UnitInfo,
        VersionInfo,
        Change,
        Problem,
        Inference
    ))
)]
pub struct ApiDoc;

pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, Router::new())
}

/// The REST API and its OpenAPI document. Every route is registered with the path its
/// handler declares (`routes!`), so the document cannot leave one out.
pub fn api() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(list_units, add_units))
        .routes(routes!(list_resources, register))
        .routes(routes!(get_resource, update_resource))
        .routes(routes!(history))
        .routes(routes!(diff))
        .routes(routes!(search))
        .routes(routes!(stats))
        .routes(routes!(template))
        .routes(routes!(register_workbook))
        .routes(routes!(infer))
        .merge(exchange::routes())
        .merge(access::routes())
        .merge(ledger::routes())
        .routes(routes!(query::query))
}

/// The REST API with `pages` (the portal) beside it, all behind the ledger's middleware.
pub fn router_with(state: Arc<AppState>, pages: Router<Arc<AppState>>) -> Router {
    let (api, document) = api().split_for_parts();
    let document = serde_json::to_string(&document).expect("the OpenAPI document serialises");
    let openapi =
        get(move || async move { ([(header::CONTENT_TYPE, "application/json")], document) });
    Router::new()
        .merge(pages)
        .merge(api)
        .route("/openapi.json", openapi)
        // Bodies are bounded by route in `limits::bound_body`.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::bound_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record_requests,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::memory_ceiling,
        ))
        .with_state(state)
}

/// A certificate chain and private key in PEM files, for HTTPS and the PostgreSQL port.
#[derive(Clone)]
pub struct Tls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Serves until the process is stopped, over HTTPS when `tls` is given.
pub async fn serve(
    state: Arc<AppState>,
    pages: Router<Arc<AppState>>,
    addr: SocketAddr,
    tls: Option<Tls>,
) -> std::io::Result<()> {
    let app = router_with(state, pages).into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            axum::serve(listener, app).await
        }
        Some(tls) => {
            let config = tls.rustls().await?;
            axum_server::bind_rustls(addr, config).serve(app).await
        }
    }
}

impl Tls {
    /// The certificate and key, read for rustls.
    pub async fn rustls(&self) -> std::io::Result<axum_server::tls_rustls::RustlsConfig> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        axum_server::tls_rustls::RustlsConfig::from_pem_file(&self.cert, &self.key)
            .await
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "cannot read the TLS certificate {} and key {}: {e}",
                        self.cert.display(),
                        self.key.display()
                    ),
                )
            })
    }
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "The server is up", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/api/catalog/units", responses((status = 200, body = [UnitInfo])))]
async fn list_units(State(s): Shared, caller: Caller) -> ApiResult<Vec<UnitInfo>> {
    caller.require(Scope::Read)?;
    Ok(Json(s.catalog.units().await?))
}

#[utoipa::path(post, path = "/api/catalog/units", request_body = [Unit], responses((status = 200, body = UnitsAdded), (status = 422, body = ApiError)))]
async fn add_units(
    State(s): Shared,
    caller: Caller,
    Json(units): Json<Vec<Unit>>,
) -> ApiResult<UnitsAdded> {
    caller.require(Scope::Admin)?;
    Ok(Json(UnitsAdded {
        added: s.catalog.add_units(&units, &caller.actor()).await?,
    }))
}

#[utoipa::path(get, path = "/api/catalog/resources", params(UnitParam), responses((status = 200, body = [Record])))]
async fn list_resources(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<UnitParam>,
) -> ApiResult<Vec<Record>> {
    caller.require(Scope::Read)?;
    Ok(Json(match p.unit {
        Some(unit) => s.catalog.resources_of_unit(&unit).await?,
        None => s.catalog.all_records().await?,
    }))
}

async fn register_batch(
    s: &AppState,
    caller: &Caller,
    batch: Result<Batch, Vec<Problem>>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    caller.require(Scope::Write)?;
    let codes = s
        .catalog
        .register(batch.map_err(ApiError::rejected)?, &caller.actor())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            code: codes.first().cloned().unwrap_or_default(),
            registered: codes.len(),
            codes,
        }),
    ))
}

/// Registers one resource, an array of them, or `{"units": [...], "resources": [...]}`,
/// all or nothing. A resource code is generated when absent.
#[utoipa::path(post, path = "/api/catalog/resources", request_body = Resource, responses((status = 201, body = Registered), (status = 422, description = "Every problem, with its place", body = ApiError)))]
async fn register(
    State(s): Shared,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    caller.require(Scope::Write)?;
    register_batch(&s, &caller, Batch::from_json(&body)).await
}

#[utoipa::path(get, path = "/api/catalog/resource", params(CodeParam), responses((status = 200, body = Record), (status = 404, body = ApiError)))]
async fn get_resource(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<CodeParam>,
) -> ApiResult<Record> {
    caller.require(Scope::Read)?;
    Ok(Json(s.catalog.get(&p.code).await?))
}

/// Replaces a resource's metadata; a new version is recorded when anything changed.
#[utoipa::path(put, path = "/api/catalog/resource", params(CodeParam), request_body = Resource, responses((status = 200, body = VersionReply), (status = 422, body = ApiError)))]
async fn update_resource(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<CodeParam>,
    body: Bytes,
) -> ApiResult<VersionReply> {
    caller.require(Scope::Write)?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let resource =
        tongchou_catalog::validate::resource(&p.code, &value).map_err(ApiError::rejected)?;
    let version = s.catalog.update(&p.code, resource, &caller.actor()).await?;
    Ok(Json(VersionReply {
        code: p.code,
        version,
    }))
}

#[utoipa::path(get, path = "/api/catalog/history", params(CodeParam), responses((status = 200, body = [VersionInfo])))]
async fn history(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<CodeParam>,
) -> ApiResult<Vec<VersionInfo>> {
    caller.require(Scope::Read)?;
    Ok(Json(s.catalog.history(&p.code).await?))
}

#[utoipa::path(get, path = "/api/catalog/diff", params(DiffParams), responses((status = 200, body = [Change])))]
async fn diff(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<DiffParams>,
) -> ApiResult<Vec<Change>> {
    caller.require(Scope::Read)?;
    Ok(Json(s.catalog.diff(&p.code, p.from, p.to).await?))
}

fn parse_filter<T>(
    value: Option<String>,
    parse: fn(&str) -> Option<T>,
    choices: fn() -> String,
    name: &str,
) -> Result<Option<T>, ApiError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            parse(&v).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("{name} '{v}' is not one of {}", choices()),
                )
            })
        })
        .transpose()
}

/// Search in Chinese or English, ranked, with filters.
#[utoipa::path(get, path = "/api/catalog/search", params(SearchParams), responses((status = 200, body = [Hit]), (status = 400, body = ApiError)))]
async fn search(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<SearchParams>,
) -> ApiResult<Vec<Hit>> {
    caller.require(Scope::Read)?;
    let query = SearchQuery {
        text: p.q,
        unit: p.unit.filter(|u| !u.is_empty()),
        share_type: parse_filter(
            p.share_type,
            ShareType::parse,
            ShareType::choices,
            "share_type",
        )?,
        open_type: parse_filter(p.open_type, OpenType::parse, OpenType::choices, "open_type")?,
        update_cycle: parse_filter(
            p.update_cycle,
            UpdateCycle::parse,
            UpdateCycle::choices,
            "update_cycle",
        )?,
        limit: p.limit.unwrap_or(20).min(500),
    };
    Ok(Json(s.catalog.search(&query).await?))
}

#[utoipa::path(get, path = "/api/catalog/stats", responses((status = 200, body = Inventory)))]
async fn stats(State(s): Shared, caller: Caller) -> ApiResult<Inventory> {
    caller.require(Scope::Read)?;
    Ok(Json(s.catalog.inventory().await?))
}

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// The catalog workbook template to fill in Excel.
#[utoipa::path(get, path = "/api/catalog/template.xlsx", responses((status = 200, content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = Vec<u8>)))]
async fn template(caller: Caller) -> Result<Response, ApiError> {
    caller.require(Scope::Read)?;
    let bytes = tongchou_catalog::workbook::template()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, XLSX),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"catalog-template.xlsx\"",
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Registers a filled-in catalog workbook (the request body is the .xlsx file), all or nothing.
#[utoipa::path(post, path = "/api/catalog/workbook", request_body(content = Vec<u8>, content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"), responses((status = 201, body = Registered), (status = 422, body = ApiError)))]
async fn register_workbook(
    State(s): Shared,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    caller.require(Scope::Write)?;
    let batch = blocking(move || Batch::from_workbook(&body)).await;
    register_batch(&s, &caller, batch).await
}

/// Proposes fields and detects personal data in a sample file (the request body).
#[utoipa::path(post, path = "/api/catalog/infer", params(InferParams), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 200, body = Inference), (status = 400, body = ApiError)))]
async fn infer(caller: Caller, Query(p): Query<InferParams>, body: Bytes) -> ApiResult<Inference> {
    caller.require(Scope::Read)?;
    let rows = p.rows.unwrap_or(10_000).min(100_000);
    let sample =
        blocking(move || tongchou_catalog::sample::read(&p.name, &body, p.sheet.as_deref(), rows))
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(Json(tongchou_catalog::infer::infer(&sample)))
}

#[cfg(test)]
mod tests {
    /// Every `/api` route is registered through `routes!`, which documents it: a plain
    /// `Router::route` would serve a path the OpenAPI document does not list.
    #[test]
    fn no_api_route_is_registered_outside_the_document() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for file in std::fs::read_dir(src).unwrap().flatten() {
            let text = std::fs::read_to_string(file.path()).unwrap();
            assert!(
                !text.contains(".route(\"/api"),
                "{} registers an /api route without its OpenAPI path",
                file.path().display()
            );
        }
    }
}
