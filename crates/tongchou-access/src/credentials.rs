//! Sign-in, browser sessions and scoped API tokens.
//!
//! A credential reads `ts_<id>_<secret>` (session) or `tc_<id>_<secret>` (token). Only the
//! SHA-256 of the secret is stored; checks compare digests in constant time. Wrong passwords
//! are throttled per account and per address, in the metadata database so every front door
//! and process shares the count.

use std::sync::OnceLock;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tongchou_model::UserRole;
use tongchou_store::DataDir;

use crate::clock::stamp;
use crate::events::Door;
use crate::users::{User, verify_password};
use crate::{AccessError, Policy, events};

/// What a credential may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read the catalog, own requests and grants.
    Read,
    /// Run statements and pull subscribed changes.
    Query,
    /// Register resources, load data, file requests.
    Write,
    /// Approve, refuse, revoke; set a resource's sharing policy.
    Decide,
    /// Manage accounts and the bureau's lists.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Read,
        Scope::Query,
        Scope::Write,
        Scope::Decide,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Query => "query",
            Scope::Write => "write",
            Scope::Decide => "decide",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    pub fn all() -> Scopes {
        Scopes(Scope::ALL.iter().fold(0, |bits, s| bits | s.bit()))
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Reads `read,query` or `all`.
    pub fn parse(text: &str) -> Result<Scopes, AccessError> {
        let mut bits = 0;
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            if word == "all" {
                return Ok(Scopes::all());
            }
            let scope = Scope::ALL
                .iter()
                .find(|s| s.as_str() == word)
                .ok_or_else(|| {
                    AccessError::Invalid(format!(
                        "scope '{word}' is not one of read, query, write, decide, admin, all"
                    ))
                })?;
            bits |= scope.bit();
        }
        if bits == 0 {
            return Err(AccessError::Invalid(
                "name at least one scope: read, query, write, decide, admin or all".into(),
            ));
        }
        Ok(Scopes(bits))
    }

    pub fn names(self) -> Vec<&'static str> {
        Scope::ALL
            .iter()
            .filter(|s| self.contains(**s))
            .map(|s| s.as_str())
            .collect()
    }
}

/// A browser session or an API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Session,
    Token,
}

impl CredentialKind {
    /// As stored in `credentials.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Session => "session",
            CredentialKind::Token => "token",
        }
    }

    /// How the credential's text begins.
    fn prefix(self) -> &'static str {
        match self {
            CredentialKind::Session => "ts",
            CredentialKind::Token => "tc",
        }
    }

    pub fn parse(stored: &str) -> Option<CredentialKind> {
        [CredentialKind::Session, CredentialKind::Token]
            .into_iter()
            .find(|k| k.as_str() == stored)
    }
}

/// The credential a principal came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRef {
    pub kind: CredentialKind,
    pub id: String,
}

/// Someone acting: a user, with the scopes of the credential they came with (all scopes for
/// a browser session or the operator acting `--as` a user at the CLI), through a door.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub scopes: Scopes,
    /// The credential used, if any (none at the CLI).
    pub credential: Option<CredentialRef>,
    /// Where the request came in, recorded with what it does.
    pub door: Door,
}

impl Principal {
    /// The operator at the CLI acting as `user`.
    pub fn acting_as(user: User) -> Principal {
        Principal {
            user,
            scopes: Scopes::all(),
            credential: None,
            door: Door::Cli,
        }
    }

    /// The operator at the CLI acting as the named (enabled) user.
    pub async fn of_user(pool: &sqlx::SqlitePool, name: &str) -> Result<Principal, AccessError> {
        Ok(Principal::acting_as(crate::get_user(pool, name).await?))
    }

    /// The bureau's business: a platform admin with the `admin` scope.
    pub fn require_admin(&self, action: &str) -> Result<(), AccessError> {
        self.require(Scope::Admin)?;
        if self.is(UserRole::PlatformAdmin) {
            Ok(())
        } else {
            Err(AccessError::Forbidden(format!(
                "only the bureau's platform admins {action}"
            )))
        }
    }

    pub fn require(&self, scope: Scope) -> Result<(), AccessError> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(AccessError::Forbidden(format!(
                "this token's scopes ({}) do not include '{}'",
                self.scopes.names().join(","),
                scope.as_str()
            )))
        }
    }

    pub fn is(&self, role: UserRole) -> bool {
        self.user.role == role
    }
}

pub const SESSION_HOURS: i64 = 12;
const FAILURE_WINDOW_SECONDS: i64 = 15 * 60;
const MAX_FAILURES_PER_ACCOUNT: i64 = 5;
const MAX_FAILURES_PER_ADDRESS: i64 = 20;

/// What a caller receives once: the credential in clear.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Issued {
    pub id: String,
    pub secret: String,
    pub user: String,
    pub scopes: Vec<&'static str>,
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub label: String,
    pub scopes: Vec<&'static str>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Splits `ts_<id>_<secret>` into its kind, id and secret.
pub fn split(credential: &str) -> Option<(CredentialKind, &str, &str)> {
    let (prefix, rest) = credential.split_once('_')?;
    let (id, secret) = rest.split_once('_')?;
    let kind = [CredentialKind::Session, CredentialKind::Token]
        .into_iter()
        .find(|k| k.prefix() == prefix)?;
    (id.len() == 16 && !secret.is_empty()).then_some((kind, id, secret))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

async fn issue(
    dir: &DataDir,
    door: Door,
    user: &str,
    kind: CredentialKind,
    label: &str,
    scopes: Scopes,
    expires_at: Option<Timestamp>,
) -> Result<Issued, AccessError> {
    let id = random_hex(8);
    let secret = random_hex(32);
    let mut tx = dir.metadata().begin().await?;
    sqlx::query("INSERT INTO credentials (id, kind, secret_hash, user, label, scopes, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(&id)
        .bind(kind.as_str())
        .bind(&digest(&secret)[..])
        .bind(user)
        .bind(label)
        .bind(scopes.names().join(","))
        .bind(stamp(Timestamp::now()))
        .bind(expires_at.map(stamp))
        .execute(&mut *tx)
        .await?;
    if kind == CredentialKind::Token {
        events::record(
            &mut tx,
            door,
            user,
            "token_created",
            &id,
            serde_json::json!({"label": label, "scopes": scopes.names(), "expires_at": expires_at.map(stamp)}),
        )
        .await?;
    }
    tx.commit().await?;
    dir.note_policy_change();
    Ok(Issued {
        secret: format!("{}_{id}_{secret}", kind.prefix()),
        id,
        user: user.to_string(),
        scopes: scopes.names(),
        expires_at: expires_at.map(stamp),
    })
}

/// A password hash of nobody's password, checked when the account does not exist so that a
/// wrong name takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        crate::users::hash_password(&random_hex(16)).expect("hashing a random password")
    })
}

async fn failures_since(
    dir: &DataDir,
    sql: &'static str,
    value: &str,
    since: i64,
) -> Result<(i64, i64), AccessError> {
    Ok(sqlx::query_as(sql)
        .bind(value)
        .bind(since)
        .fetch_one(dir.metadata())
        .await?)
}

/// Checks a password and opens a session (a browser's, or a PostgreSQL connection's).
/// `address` is the client's IP address, for throttling.
pub async fn sign_in(
    dir: &DataDir,
    name: &str,
    password: &str,
    door: Door,
    address: &str,
) -> Result<(User, Issued), AccessError> {
    let user = check_password(dir, name, password, door, address).await?;
    let expires = Timestamp::now() + SignedDuration::from_hours(SESSION_HOURS);
    let issued = issue(
        dir,
        door,
        name,
        CredentialKind::Session,
        "",
        Scopes::all(),
        Some(expires),
    )
    .await?;
    Ok((user, issued))
}

/// Checks a password with throttling and records the attempt; used by every front door.
pub async fn check_password(
    dir: &DataDir,
    name: &str,
    password: &str,
    door: Door,
    address: &str,
) -> Result<User, AccessError> {
    let now = Timestamp::now().as_second();
    let window_start = now - FAILURE_WINDOW_SECONDS;
    for (sql, value, limit, what) in [
        (
            "SELECT count(*), COALESCE(min(at), 0) FROM sign_in_failures WHERE user = ? AND at > ?",
            name,
            MAX_FAILURES_PER_ACCOUNT,
            "for this account",
        ),
        (
            "SELECT count(*), COALESCE(min(at), 0) FROM sign_in_failures WHERE address = ? AND at > ?",
            address,
            MAX_FAILURES_PER_ADDRESS,
            "from this address",
        ),
    ] {
        let (count, oldest) = failures_since(dir, sql, value, window_start).await?;
        if count >= limit {
            let wait = (oldest + FAILURE_WINDOW_SECONDS - now).max(60);
            return Err(AccessError::Throttled(what, (wait + 59) / 60));
        }
    }
    let stored: Option<(String, String, String, Option<i64>, String)> = sqlx::query_as(
        "SELECT name, unit, role, level, password_hash FROM users WHERE name = ? AND disabled = 0",
    )
    .bind(name)
    .fetch_optional(dir.metadata())
    .await?;
    let hash = stored
        .as_ref()
        .map(|s| s.4.clone())
        .unwrap_or_else(|| decoy_hash().to_string());
    let password = password.to_string();
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let mut tx = dir.metadata().begin().await?;
    let result = match stored {
        Some((name, unit, role, level, _)) if matches => {
            let user = crate::users::row_to_user((name, unit, role, level));
            sqlx::query("DELETE FROM sign_in_failures WHERE user = ?")
                .bind(&user.name)
                .execute(&mut *tx)
                .await?;
            record_attempt(&mut tx, door, &user.name, true, json!({"address": address})).await?;
            Ok(user)
        }
        _ => {
            sqlx::query("INSERT INTO sign_in_failures (user, address, at) VALUES (?, ?, ?)")
                .bind(name)
                .bind(address)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            record_attempt(&mut tx, door, name, false, json!({"address": address})).await?;
            Err(AccessError::BadCredentials)
        }
    };
    tx.commit().await?;
    result
}

async fn record_attempt(
    conn: &mut sqlx::SqliteConnection,
    door: Door,
    name: &str,
    succeeded: bool,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let action = if succeeded {
        "sign_in"
    } else {
        "sign_in_failed"
    };
    events::record(conn, door, name, action, name, detail).await
}

/// Signs `name` in with an API token in place of a password (the PostgreSQL door takes one
/// so): the token must be that user's and carry `scope`. Recorded like a password sign-in.
pub async fn sign_in_with_token(
    dir: &DataDir,
    policy: &Policy,
    name: &str,
    token: &str,
    scope: Scope,
    door: Door,
    address: &str,
) -> Result<Principal, AccessError> {
    let checked = policy.authenticate(token, door).await.and_then(|p| {
        p.require(scope)?;
        if p.user.name == name {
            Ok(p)
        } else {
            Err(AccessError::Forbidden("the token is another user's".into()))
        }
    });
    let detail = match &checked {
        Ok(p) => json!({"address": address, "token": p.credential.as_ref().map(|c| &c.id)}),
        Err(_) => json!({"address": address, "with": "token"}),
    };
    let mut conn = dir.metadata().acquire().await?;
    record_attempt(&mut conn, door, name, checked.is_ok(), detail).await?;
    checked
}

/// Creates an API token for `principal.user`. Tokens are created from a session or the CLI,
/// never from another token, and never with scopes the role cannot use.
pub async fn create_token(
    dir: &DataDir,
    principal: &Principal,
    label: &str,
    scopes: Scopes,
    valid_days: Option<i64>,
) -> Result<Issued, AccessError> {
    if principal
        .credential
        .as_ref()
        .is_some_and(|c| c.kind == CredentialKind::Token)
    {
        return Err(AccessError::Forbidden(
            "a token cannot create tokens; sign in or use the CLI".into(),
        ));
    }
    if scopes.contains(Scope::Admin) && !principal.is(UserRole::PlatformAdmin) {
        return Err(AccessError::Forbidden(
            "only platform admins may hold the 'admin' scope".into(),
        ));
    }
    let days = valid_days.unwrap_or(90);
    if !(1..=366).contains(&days) {
        return Err(AccessError::Invalid(
            "a token is valid for 1 to 366 days".into(),
        ));
    }
    let expires = Timestamp::now() + SignedDuration::from_hours(24 * days);
    issue(
        dir,
        principal.door,
        &principal.user.name,
        CredentialKind::Token,
        label,
        scopes,
        Some(expires),
    )
    .await
}

pub async fn list_tokens(dir: &DataDir, user: &str) -> Result<Vec<TokenInfo>, AccessError> {
    let rows: Vec<TokenRow> =
        sqlx::query_as("SELECT id, label, scopes, created_at, expires_at, revoked_at FROM credentials WHERE user = ? AND kind = 'token' ORDER BY created_at")
            .bind(user)
            .fetch_all(dir.metadata())
            .await?;
    Ok(rows
        .into_iter()
        .map(|r| TokenInfo {
            id: r.id,
            label: r.label,
            scopes: Scopes::parse(&r.scopes).unwrap_or(Scopes(0)).names(),
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        })
        .collect())
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    label: String,
    scopes: String,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
}

/// Revokes a session or token: its owner, or a platform admin.
pub async fn revoke_credential(
    dir: &DataDir,
    principal: Option<&Principal>,
    id: &str,
) -> Result<(), AccessError> {
    let owner: Option<String> = sqlx::query_scalar("SELECT user FROM credentials WHERE id = ?")
        .bind(id)
        .fetch_optional(dir.metadata())
        .await?;
    let owner = owner.ok_or_else(|| AccessError::NotFound(format!("token {id}")))?;
    if let Some(p) = principal
        && p.user.name != owner
        && !p.is(UserRole::PlatformAdmin)
    {
        return Err(AccessError::Forbidden(format!(
            "token {id} belongs to someone else"
        )));
    }
    let mut tx = dir.metadata().begin().await?;
    sqlx::query("UPDATE credentials SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
        .bind(stamp(Timestamp::now()))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    events::record(
        &mut tx,
        crate::door_of(principal),
        &crate::actor_label(principal),
        "credential_revoked",
        id,
        serde_json::json!({"owner": owner}),
    )
    .await?;
    tx.commit().await?;
    dir.note_policy_change();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scopes_parse_and_refuse_unknown_words() {
        let s = Scopes::parse("read, query").unwrap();
        assert!(s.contains(Scope::Read) && s.contains(Scope::Query) && !s.contains(Scope::Decide));
        assert_eq!(s.names(), ["read", "query"]);
        assert_eq!(Scopes::parse("all").unwrap(), Scopes::all());
        assert!(Scopes::parse("root").is_err());
        assert!(Scopes::parse("").is_err());
    }

    proptest! {
        #[test]
        fn only_well_formed_credentials_split(
            text in prop_oneof!["\\PC{0,60}", "(ts|tc|tx|t)_[0-9a-f]{15,17}_[0-9a-f]{0,3}"]
        ) {
            let well_formed = (text.starts_with("ts_") || text.starts_with("tc_"))
                && text.len() > 20
                && text.as_bytes()[19] == b'_';
            match split(&text) {
                Some((kind, id, secret)) => {
                    let expected = [kind.prefix(), "_", id, "_", secret].concat();
                    prop_assert_eq!(&expected, &text);
                    prop_assert!(well_formed);
                }
                None => prop_assert!(!well_formed || text.as_bytes()[3..19].contains(&b'_')),
            }
        }
    }

    #[test]
    fn issued_credentials_split_back() {
        let text = format!("tc_{}_{}", random_hex(8), random_hex(32));
        let (kind, id, secret) = split(&text).unwrap();
        assert_eq!(
            (kind, id.len(), secret.len()),
            (CredentialKind::Token, 16, 64)
        );
    }
}
