//! Who is calling: the session cookie of a signed-in browser or an API token in the
//! `Authorization: Bearer` header, checked against the current access policy.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
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
            E::Throttled(..) | E::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::NotFound(_) | E::UnknownUser(_) => StatusCode::NOT_FOUND,
            E::Exists(_) => StatusCode::CONFLICT,
            E::BadName(_)
            | E::WeakPassword(_)
            | E::UnknownUnit(_)
            | E::BadLevel(_)
            | E::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            E::Db(_) | E::Hash(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut error = ApiError::new(status, e.to_string());
        error.retry_after = e.retry_after();
        error
    }
}

/// The credential a request carries, if any: the bearer token first, then the cookie.
pub fn credential(headers: &HeaderMap) -> Option<String> {
    bearer(headers).or_else(|| cookie(headers, SESSION_COOKIE))
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let text = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    Some(text.strip_prefix("Bearer ")?.trim().to_string())
}

/// A change sent from another site — by the browser's own word (`Sec-Fetch-Site`), or an
/// `Origin` other than the `Host` it was sent to. Reads (GET, HEAD) may come from anywhere.
pub fn cross_site(method: &Method, headers: &HeaderMap) -> bool {
    if method == Method::GET || method == Method::HEAD {
        return false;
    }
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if matches!(text("sec-fetch-site"), Some("cross-site" | "same-site")) {
        return true;
    }
    match (text(header::ORIGIN.as_str()), text(header::HOST.as_str())) {
        (Some(origin), Some(host)) => {
            let bare = origin
                .split_once("://")
                .map(|(_, rest)| rest)
                .unwrap_or(origin);
            bare != host
        }
        _ => false,
    }
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
        if bearer(&parts.headers).is_none() && cross_site(&parts.method, &parts.headers) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "a change sent from another site with the portal's session was refused; \
                 send it from the portal itself, or with an API token",
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(method: Method, headers: &[(&str, &str)]) -> bool {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        cross_site(&method, &map)
    }

    #[test]
    fn changes_from_other_sites_are_told_apart_from_our_own() {
        let host = ("host", "127.0.0.1:8080");
        let post = |headers: &[(&str, &str)]| sent(Method::POST, headers);
        assert!(!post(&[host, ("origin", "http://127.0.0.1:8080")]));
        assert!(!post(&[host, ("sec-fetch-site", "same-origin")]));
        assert!(!post(&[host]), "a non-browser client sends neither");
        assert!(post(&[host, ("origin", "https://evil.example")]));
        assert!(post(&[host, ("origin", "http://127.0.0.1:8081")]));
        assert!(post(&[host, ("sec-fetch-site", "cross-site")]));
        assert!(post(&[host, ("sec-fetch-site", "same-site")]));
        assert!(
            !sent(Method::GET, &[host, ("sec-fetch-site", "cross-site")]),
            "links from elsewhere still open pages"
        );
    }
}
