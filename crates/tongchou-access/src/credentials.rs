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
///
/// The attempt first takes one of the account's and the address's places in the window, in
/// one statement, so parallel attempts cannot all see room; it counts as a failure until
/// the password proves right, and only then is that one place given back — failures made
/// in parallel stay. Unknown names take places too and verify a decoy, so probing names
/// costs what guessing passwords does.
pub async fn check_password(
    dir: &DataDir,
    name: &str,
    password: &str,
    door: Door,
    address: &str,
) -> Result<User, AccessError> {
    crate::users::checked_name(name)?;
    let now = Timestamp::now().as_second();
    let Some(place) = reserve(dir, name, address, now).await? else {
        return Err(refusal(dir, name, address, now).await?);
    };
    let account = enabled_account(dir, name).await?;
    let hash = account.as_ref().map(|(_, hash)| hash.clone());
    let matches = match verify_gated(password, hash).await {
        Ok(matches) => matches,
        Err(busy) => {
            give_back(dir.metadata(), place).await?;
            return Err(busy);
        }
    };
    let attempt = Attempt {
        door,
        name,
        address,
        place,
        now,
    };
    settle(dir, attempt, account.map(|(user, _)| user), matches).await
}

/// One attempt with its place taken.
struct Attempt<'a> {
    door: Door,
    name: &'a str,
    address: &'a str,
    place: i64,
    now: i64,
}

async fn enabled_account(dir: &DataDir, name: &str) -> Result<Option<(User, String)>, AccessError> {
    let stored: Option<(String, String, String, Option<i64>, String)> = sqlx::query_as(
        "SELECT name, unit, role, level, password_hash FROM users WHERE name = ? AND disabled = 0",
    )
    .bind(name)
    .fetch_optional(dir.metadata())
    .await?;
    Ok(stored.map(|(name, unit, role, level, hash)| {
        (crate::users::row_to_user((name, unit, role, level)), hash)
    }))
}

/// Verifies through the Argon2 gate, against the decoy when there is no account.
async fn verify_gated(password: &str, hash: Option<String>) -> Result<bool, AccessError> {
    let password = password.to_string();
    crate::gate::argon2()
        .run(move || {
            let hash = hash.unwrap_or_else(|| decoy_hash().to_string());
            verify_password(&password, &hash)
        })
        .await
}

/// Records the attempt: a success gives back only its own place; a failure keeps it.
async fn settle(
    dir: &DataDir,
    attempt: Attempt<'_>,
    account: Option<User>,
    matches: bool,
) -> Result<User, AccessError> {
    let detail = json!({"address": attempt.address});
    let mut tx = dir.metadata().begin().await?;
    let result = match account {
        Some(user) if matches => {
            give_back(&mut *tx, attempt.place).await?;
            record_attempt(&mut tx, attempt.door, &user.name, true, detail).await?;
            Ok(user)
        }
        account => {
            sqlx::query("UPDATE sign_in_failures SET verified = 1 WHERE rowid = ?")
                .bind(attempt.place)
                .execute(&mut *tx)
                .await?;
            record_attempt(&mut tx, attempt.door, attempt.name, false, detail).await?;
            if account.is_some() {
                note_lockout(&mut tx, attempt.door, attempt.name, attempt.now).await?;
            }
            Err(AccessError::BadCredentials)
        }
    };
    tx.commit().await?;
    result
}

/// Takes a place for an attempt if the account and the address both have room in the
/// window: one statement, so SQLite decides it under its write lock, across processes.
async fn reserve(
    dir: &DataDir,
    name: &str,
    address: &str,
    now: i64,
) -> Result<Option<i64>, AccessError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO sign_in_failures (user, address, at, verified)
         SELECT ?1, ?2, ?3, 0
         WHERE (SELECT count(*) FROM sign_in_failures WHERE user = ?1 AND at > ?4) < ?5
           AND (SELECT count(*) FROM sign_in_failures WHERE address = ?2 AND at > ?4) < ?6
         RETURNING rowid",
    )
    .bind(name)
    .bind(address)
    .bind(now)
    .bind(now - FAILURE_WINDOW_SECONDS)
    .bind(MAX_FAILURES_PER_ACCOUNT)
    .bind(MAX_FAILURES_PER_ADDRESS)
    .fetch_optional(dir.metadata())
    .await?)
}

async fn give_back<'c>(conn: impl sqlx::SqliteExecutor<'c>, place: i64) -> Result<(), AccessError> {
    sqlx::query("DELETE FROM sign_in_failures WHERE rowid = ?")
        .bind(place)
        .execute(conn)
        .await?;
    Ok(())
}

/// Why an attempt found no room, and for how long.
async fn refusal(
    dir: &DataDir,
    name: &str,
    address: &str,
    now: i64,
) -> Result<AccessError, AccessError> {
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
        let (count, oldest): (i64, i64) = sqlx::query_as(sql)
            .bind(value)
            .bind(now - FAILURE_WINDOW_SECONDS)
            .fetch_one(dir.metadata())
            .await?;
        if count >= limit {
            let wait = (oldest + FAILURE_WINDOW_SECONDS - now).max(60);
            return Ok(AccessError::Throttled(what, (wait + 59) / 60));
        }
    }
    Ok(AccessError::Throttled("for this account", 1))
}

/// Records `account_locked` when this failure is the one that fills the account's window,
/// so the bureau sees each lockout once, with the addresses that caused it.
async fn note_lockout(
    tx: &mut sqlx::SqliteConnection,
    door: Door,
    name: &str,
    now: i64,
) -> Result<(), AccessError> {
    let (failures, oldest, addresses): (i64, i64, String) = sqlx::query_as(
        "SELECT count(*), COALESCE(min(at), 0), COALESCE(group_concat(DISTINCT address), '')
         FROM sign_in_failures WHERE user = ? AND at > ? AND verified = 1",
    )
    .bind(name)
    .bind(now - FAILURE_WINDOW_SECONDS)
    .fetch_one(&mut *tx)
    .await?;
    if failures == MAX_FAILURES_PER_ACCOUNT {
        let detail = json!({"failures": failures, "until": lock_end(oldest), "addresses": addresses.split(',').collect::<Vec<_>>()});
        events::record(tx, door, name, "account_locked", name, detail).await?;
    }
    Ok(())
}

/// When a lockout whose oldest failure came at `oldest` ends by itself.
fn lock_end(oldest: i64) -> String {
    Timestamp::from_second(oldest + FAILURE_WINDOW_SECONDS)
        .map(stamp)
        .unwrap_or_default()
}

/// An account that wrong passwords have locked, until the window passes or an admin lifts it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Lockout {
    pub user: String,
    pub failures: i64,
    pub until: String,
    /// The addresses the failures came from.
    pub addresses: Vec<String>,
}

/// The accounts locked now (existing accounts only: unknown names lock nobody).
pub async fn lockouts(pool: &sqlx::SqlitePool) -> Result<Vec<Lockout>, AccessError> {
    let now = Timestamp::now().as_second();
    let rows: Vec<(String, i64, i64, String)> = sqlx::query_as(
        "SELECT f.user, count(*), min(f.at), group_concat(DISTINCT f.address)
         FROM sign_in_failures f JOIN users u ON u.name = f.user
         WHERE f.at > ? GROUP BY f.user HAVING count(*) >= ? ORDER BY f.user",
    )
    .bind(now - FAILURE_WINDOW_SECONDS)
    .bind(MAX_FAILURES_PER_ACCOUNT)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user, failures, oldest, addresses)| Lockout {
            user,
            failures,
            until: lock_end(oldest),
            addresses: addresses.split(',').map(str::to_string).collect(),
        })
        .collect())
}

/// Lifts a lockout by forgetting the account's failures: the bureau's platform admins (or
/// the operator at the CLI), e.g. when a stranger's guesses locked someone out. Returns how
/// many failures were forgotten.
pub async fn unlock(dir: &DataDir, by: Option<&Principal>, name: &str) -> Result<u64, AccessError> {
    if let Some(p) = by {
        p.require_admin("lift sign-in lockouts")?;
    }
    crate::users::checked_name(name)?;
    let mut tx = dir.metadata().begin().await?;
    let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    if known.is_none() {
        return Err(AccessError::UnknownUser(name.to_string()));
    }
    let cleared = sqlx::query("DELETE FROM sign_in_failures WHERE user = ?")
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    events::record(
        &mut tx,
        crate::door_of(by),
        &crate::actor_label(by),
        "account_unlocked",
        name,
        json!({"failures_cleared": cleared}),
    )
    .await?;
    tx.commit().await?;
    Ok(cleared)
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
    crate::users::checked_name(name)?;
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
