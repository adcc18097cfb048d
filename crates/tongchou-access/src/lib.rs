//! Identity and access (统筹而不替代: the providing unit decides).
//!
//! User accounts belong to units and carry a role (leaders also a level). People sign in for
//! a browser session; programs use scoped API tokens. Only hashes of passwords (Argon2id) and
//! of session and token secrets (SHA-256) are stored. Consumers file access requests naming
//! resources, fields and a purpose; the providing unit's steward approves — possibly
//! narrower — or refuses. Approved requests become grants, which an in-memory [`PolicySet`]
//! turns into the decision the query engine enforces for each statement. Every sign-in,
//! request, decision and revocation is recorded for the audit ledger.

pub mod clock;
pub mod credentials;
pub mod events;
pub mod filter;
mod gate;
pub mod policy;
pub mod requests;
pub mod strength;
pub mod users;

pub use credentials::{Principal, Scope, Scopes};
pub use events::Door;
pub use policy::{Access, Basis, GrantedField, Policy, PolicySet};
pub use requests::{Approval, Grant, NewRequest, Request};
pub use users::{User, add_user, get_user, hash_password, list_users, verify_password};

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "user name '{0}' is not allowed: use 2–32 letters, digits, '_', '-' or '.' (Chinese characters allowed)"
    )]
    BadName(String),
    #[error(
        "密码太弱 the password is too weak: {0}; use at least 10 characters that are not a common password, a run such as 1234567890 or qwertyuiop, a few characters repeated or the user name — several unrelated words work well"
    )]
    WeakPassword(&'static str),
    #[error("user '{0}' already exists")]
    Exists(String),
    #[error("unit {0} is not registered; list units with `tongchou catalog units`")]
    UnknownUnit(String),
    #[error("user '{0}' does not exist or is disabled; list users with `tongchou user list`")]
    UnknownUser(String),
    #[error("only leaders carry a level (1–10); {0}")]
    BadLevel(String),
    #[error("用户名或密码错误 wrong user name or password")]
    BadCredentials,
    #[error(
        "登录失败次数过多 too many failed sign-ins {0}; try again in {1} minute(s) or ask the bureau's admin"
    )]
    Throttled(&'static str, i64),
    #[error("登录繁忙 too many sign-ins are being checked at once; try again in {0} second(s)")]
    Busy(u64),
    #[error(
        "未登录或凭据失效 not signed in, or the session or token expired or was revoked: sign in again"
    )]
    Unauthenticated,
    #[error("无权操作 forbidden: {0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("metadata database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

impl AccessError {
    /// When to try again, in seconds, for an answer that means "not now".
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            AccessError::Throttled(_, minutes) => Some(minutes.unsigned_abs() * 60),
            AccessError::Busy(seconds) => Some(*seconds),
            _ => None,
        }
    }
}

/// Names who did something, for the record: a user, or the data directory's operator.
pub(crate) fn actor_label(principal: Option<&Principal>) -> String {
    principal
        .map(|p| p.user.name.clone())
        .unwrap_or_else(|| "operator".into())
}

/// The door something was done through: the principal's, or the operator's command line.
pub(crate) fn door_of(principal: Option<&Principal>) -> Door {
    principal.map_or(Door::Cli, |p| p.door)
}

#[cfg(test)]
mod rules_tests;
