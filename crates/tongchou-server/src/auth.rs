//! Who is calling: the session cookie of a signed-in browser or an API token in the
//! `Authorization: Bearer` header, checked against the current access policy.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use tongchou_access::{AccessError, Door, Principal, Scope};
use tongchou_catalog::Actor;

use crate::{ApiError, AppState};

pub const SESSION_COOKIE: &str = "tongchou_session";

/// The authenticated caller of a request.
pub struct Caller(pub Principal);

/// The caller as the audit middleware authenticated it, for this request only.
#[derive(Clone)]
pub struct Authenticated(pub Principal);

impl Caller {
    pub fn require(&self, scope: Scope) -> Result<&Principal, ApiError> {
        self.0.require(scope)?;
        Ok(&self.0)
    }

    /// The caller as the catalog sees an actor.
    pub fn actor(&self) -> Actor {
        Actor::User {
            name: self.0.user.name.clone(),
            unit: self.0.user.unit.clone(),
            role: self.0.user.role,
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> ApiError {
        use AccessError as E;
        let status = match &e {
            E::Unauthenticated | E::BadCredentials => StatusCode::UNAUTHORIZED,
            E::Throttled(..) => StatusCode::TOO_MANY_REQUESTS,
            E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::NotFound(_) | E::UnknownUser(_) => StatusCode::NOT_FOUND,
            E::Exists(_) => StatusCode::CONFLICT,
            E::BadName(_)
            | E::WeakPassword
            | E::UnknownUnit(_)
            | E::BadLevel(_)
            | E::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            E::Db(_) | E::Hash(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

/// The credential a request carries, if any: the bearer token first, then the cookie.
pub fn credential(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION)
        && let Ok(text) = value.to_str()
        && let Some(token) = text.strip_prefix("Bearer ")
    {
        return Some(token.trim().to_string());
    }
    cookie(headers, SESSION_COOKIE)
}

/// The value of the cookie `name`, if the request carries it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Caller, ApiError> {
        if let Some(Authenticated(principal)) = parts.extensions.remove::<Authenticated>() {
            return Ok(Caller(principal));
        }
        let credential = credential(&parts.headers).ok_or(AccessError::Unauthenticated)?;
        Ok(Caller(
            state.policy.authenticate(&credential, Door::Rest).await?,
        ))
    }
}

/// The client's IP address, for throttling sign-ins.
pub struct ClientAddress(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &S,
    ) -> Result<ClientAddress, Self::Rejection> {
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        Ok(ClientAddress(address))
    }
}
