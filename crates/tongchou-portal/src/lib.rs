//! The portal: the platform in the browser for the officials of every department. Pages are
//! rendered on the server (maud) in Chinese first, with an English switch; charts are SVG
//! drawn on the server; the stylesheet and icon are compiled into the binary, so the portal
//! runs on networks without internet. Forms work without JavaScript (there is none).
//!
//! Every page goes through the same decisions as the REST API — the catalog, the access
//! policy, the governed query engine — and through the ledger's middleware, which records
//! each page view with the viewer; pages that read data add what they read.

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tongchou_access::{Door, Principal, Scope};
use tongchou_model::UserRole;
use tongchou_server::{AppState, Authenticated, cross_site};

mod catalog;
mod chart;
mod console;
mod home;
mod inspect;
mod ledger;
mod load;
mod page;
mod requests;
mod sign;

pub use page::Lang;

pub(crate) type Shared = axum::extract::State<Arc<AppState>>;

/// The portal's routes, to be served beside the REST API.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(home::page))
        .route("/accounts/{name}/unlock", post(home::unlock))
        .route("/signin", get(sign::form).post(sign::sign_in))
        .route("/signout", post(sign::sign_out))
        .route("/lang/{to}", get(sign::switch_language))
        .route("/catalog", get(catalog::search))
        .route("/resource", get(catalog::resource))
        .route("/load", get(load::page))
        .route("/load/workbook", post(load::workbook))
        .route("/load/sample", post(load::sample))
        .route("/register", post(load::register))
        .route("/load/data", post(load::data))
        .route("/quarantine", get(load::quarantine).post(load::resubmit))
        .route("/requests", get(requests::page).post(requests::file))
        .route("/requests/new", get(requests::form))
        .route("/requests/{id}/approve", post(requests::approve))
        .route("/requests/{id}/refuse", post(requests::refuse))
        .route("/console", get(console::page).post(console::run))
        .route("/ledger", get(ledger::page))
        .route("/ledger/subject", get(ledger::subject))
        .route("/inspect", get(inspect::page))
        .route("/inspect/report", post(inspect::report))
        .route("/inspect/scan", post(inspect::scan))
        .route("/static/portal.css", get(stylesheet))
        .route("/static/icon.svg", get(icon))
        .route("/favicon.ico", get(icon))
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../assets/portal.css"),
    )
}

async fn icon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../assets/icon.svg"),
    )
}

/// The signed-in person looking at a page, and the language they read.
pub struct Viewer {
    pub principal: Principal,
    pub lang: Lang,
}

impl Viewer {
    pub fn name(&self) -> &str {
        &self.principal.user.name
    }

    pub fn unit(&self) -> &str {
        &self.principal.user.unit
    }

    pub fn is(&self, role: UserRole) -> bool {
        self.principal.is(role)
    }

    /// The credential's scopes hold here as over REST; a browser session holds them all.
    pub fn require(&self, scope: Scope) -> Result<(), Box<Response>> {
        self.principal.require(scope).map_err(|e| {
            Box::new(page::refused(
                self,
                StatusCode::FORBIDDEN,
                self.lang.t("无权操作", "Not permitted"),
                "",
                &e.to_string(),
            ))
        })
    }
}

/// Where an anonymous visitor is sent: the sign-in page, then back.
fn to_sign_in(parts: &Parts) -> Response {
    let back = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|_| parts.method == Method::GET)
        .unwrap_or("/");
    Redirect::to(&format!("/signin?next={}", page::url_encode(back))).into_response()
}

/// A form posted from another site is refused (a signed-in one, and the sign-in itself): the
/// session cookie is SameSite=Strict, and the browser's own word is checked as well.
pub(crate) fn from_another_site(lang: Lang) -> Response {
    page::failure(
        lang,
        StatusCode::FORBIDDEN,
        "这个表单来自其他网站，已拒绝。请在统筹门户内重新提交。 A form from another site was refused; submit it again from within the portal.",
    )
}

impl FromRequestParts<Arc<AppState>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Viewer, Response> {
        let lang = Lang::of(&parts.headers);
        if cross_site(&parts.method, &parts.headers) {
            return Err(from_another_site(lang));
        }
        if let Some(Authenticated(principal)) = parts.extensions.remove::<Authenticated>() {
            return Ok(Viewer { principal, lang });
        }
        let Some(credential) = tongchou_server::credential(&parts.headers) else {
            return Err(to_sign_in(parts));
        };
        match state.policy.authenticate(&credential, Door::Portal).await {
            Ok(principal) => Ok(Viewer { principal, lang }),
            Err(_) => Err(to_sign_in(parts)),
        }
    }
}
