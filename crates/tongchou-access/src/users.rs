//! User accounts that belong to units, with a role (and, for leaders, a level). Passwords
//! are stored only as Argon2id hashes; there is no default account.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::Serialize;
use sqlx::SqlitePool;
use tongchou_model::UserRole;

use tongchou_store::DataDir;

use crate::{AccessError, Principal, events};

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
pub struct User {
    pub name: String,
    pub unit: String,
    pub role: UserRole,
    pub level: Option<i64>,
}

fn valid_name(name: &str) -> bool {
    let count = name.chars().count();
    (2..=32).contains(&count)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Refuses a name no account can have, quoting at most its beginning: whatever is refused
/// is echoed into answers and the ledger, so it must stay small.
pub(crate) fn checked_name(name: &str) -> Result<(), AccessError> {
    if valid_name(name) {
        return Ok(());
    }
    let mut shown: String = name.chars().take(33).collect();
    if shown.len() < name.len() {
        shown.push('…');
    }
    Err(AccessError::BadName(shown))
}

/// Memory (KiB), passes and lanes of new password hashes, tuned so that a sign-in costs
/// 50–100 ms on the reference machine (see BENCHMARKS.md). Stored hashes carry their own
/// parameters, so changing these never locks anyone out.
const ARGON2_MEMORY_KIB: u32 = 40 * 1024;
const ARGON2_PASSES: u32 = 3;
const ARGON2_LANES: u32 = 1;
pub const ARGON2_PARAMS: &str = "m=40960 KiB, t=3, p=1";

fn hasher() -> Argon2<'static> {
    let params = argon2::Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_LANES, None)
        .expect("valid Argon2 parameters");
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// Hashes a password as it is (see [`crate::strength::check`] for what may be set).
pub fn hash_password(password: &str) -> Result<String, AccessError> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| AccessError::Hash(e.to_string()))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccessError::Hash(e.to_string()))
}

/// Hashes through the process's Argon2 gate, so setting passwords is bounded like signing in.
async fn hash_gated(password: &str) -> Result<String, AccessError> {
    let password = password.to_string();
    crate::gate::argon2()
        .run(move || hash_password(&password))
        .await?
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            hasher()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// The level stored for an account: leaders 1–10 (1 unless given), nobody else any.
fn checked_level(role: UserRole, level: Option<i64>) -> Result<Option<i64>, AccessError> {
    match (role, level) {
        (UserRole::Leader, None) => Ok(Some(1)),
        (UserRole::Leader, Some(n @ 1..=10)) => Ok(Some(n)),
        (UserRole::Leader, Some(n)) => Err(AccessError::BadLevel(format!("{n} is out of range"))),
        (_, Some(_)) => Err(AccessError::BadLevel(format!("a {role} has none"))),
        (_, None) => Ok(None),
    }
}

/// Adds an account: the bureau's platform admins (or the operator at the CLI) only.
pub async fn add_user(
    dir: &DataDir,
    by: Option<&Principal>,
    user: &User,
    password: &str,
) -> Result<(), AccessError> {
    if let Some(p) = by {
        p.require_admin("add accounts")?;
    }
    let pool = dir.metadata();
    checked_name(&user.name)?;
    crate::strength::check(&user.name, password)?;
    let level = checked_level(user.role, user.level)?;
    let unit: Option<String> = sqlx::query_scalar("SELECT code FROM units WHERE code = ?")
        .bind(&user.unit)
        .fetch_optional(pool)
        .await?;
    if unit.is_none() {
        return Err(AccessError::UnknownUnit(user.unit.clone()));
    }
    let hash = hash_gated(password).await?;
    let mut tx = pool.begin().await?;
    let result = sqlx::query("INSERT INTO users (name, unit, role, level, password_hash, created_at) VALUES (?, ?, ?, ?, ?, datetime('now'))")
        .bind(&user.name)
        .bind(&user.unit)
        .bind(user.role.as_str())
        .bind(level)
        .bind(hash)
        .execute(&mut *tx)
        .await;
    match result {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(AccessError::Exists(user.name.clone()));
        }
        other => other?,
    };
    events::record(
        &mut tx,
        crate::door_of(by),
        &crate::actor_label(by),
        "user_added",
        &user.name,
        serde_json::json!({"unit": user.unit, "role": user.role, "level": level}),
    )
    .await?;
    tx.commit().await?;
    dir.note_policy_change();
    Ok(())
}

impl User {
    /// Whether a resource opened only to leaders of `level` or above is open to this user.
    pub fn clears_leader_level(&self, level: i64) -> bool {
        self.role == UserRole::Leader && self.level.unwrap_or(0) >= level
    }
}

pub(crate) fn row_to_user(
    (name, unit, role, level): (String, String, String, Option<i64>),
) -> User {
    User {
        name,
        unit,
        role: UserRole::parse(&role).unwrap_or(UserRole::Analyst),
        level,
    }
}

pub async fn get_user(pool: &SqlitePool, name: &str) -> Result<User, AccessError> {
    sqlx::query_as::<_, (String, String, String, Option<i64>)>(
        "SELECT name, unit, role, level FROM users WHERE name = ? AND disabled = 0",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?
    .map(row_to_user)
    .ok_or_else(|| AccessError::UnknownUser(name.to_string()))
}

pub async fn list_users(pool: &SqlitePool) -> Result<Vec<User>, AccessError> {
    Ok(sqlx::query_as::<_, (String, String, String, Option<i64>)>(
        "SELECT name, unit, role, level FROM users ORDER BY unit, name",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(row_to_user)
    .collect())
}

/// What an admin may change about an account.
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::ToSchema)]
pub struct UserChange {
    pub role: Option<UserRole>,
    pub level: Option<i64>,
    pub disabled: Option<bool>,
}

/// Changes a role, level or disables an account: only the bureau's platform admins (or the
/// operator at the CLI) may, and nobody may change their own account this way.
pub async fn change_user(
    dir: &DataDir,
    by: Option<&Principal>,
    name: &str,
    change: &UserChange,
) -> Result<User, AccessError> {
    if let Some(p) = by {
        p.require_admin("change accounts")?;
        if p.user.name == name {
            return Err(AccessError::Forbidden(
                "nobody changes their own role, level or status; ask another admin".into(),
            ));
        }
    }
    let pool = dir.metadata();
    let mut user = sqlx::query_as::<_, (String, String, String, Option<i64>)>(
        "SELECT name, unit, role, level FROM users WHERE name = ?",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?
    .map(row_to_user)
    .ok_or_else(|| AccessError::UnknownUser(name.to_string()))?;
    user.role = change.role.unwrap_or(user.role);
    let kept = if user.role == UserRole::Leader {
        user.level
    } else {
        None
    };
    user.level = checked_level(user.role, change.level.or(kept))?;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE users SET role = ?, level = ?, disabled = COALESCE(?, disabled) WHERE name = ?",
    )
    .bind(user.role.as_str())
    .bind(user.level)
    .bind(change.disabled)
    .bind(name)
    .execute(&mut *tx)
    .await?;
    if change.disabled == Some(true) {
        revoke_credentials(&mut tx, name, None).await?;
    }
    events::record(
        &mut tx,
        crate::door_of(by),
        &crate::actor_label(by),
        "user_changed",
        name,
        serde_json::json!({"role": user.role, "level": user.level, "disabled": change.disabled}),
    )
    .await?;
    tx.commit().await?;
    dir.note_policy_change();
    Ok(user)
}

/// Sets a new password: the user themself, proving the old one (checked as a sign-in is:
/// throttled and recorded), or a platform admin (or the operator at the CLI). Every
/// session of the account ends, so whoever signed in with the old password — a browser or
/// a PostgreSQL connection — must sign in again; API tokens stay.
pub async fn change_password(
    dir: &DataDir,
    by: Option<&Principal>,
    name: &str,
    old: Option<&str>,
    new: &str,
    address: &str,
) -> Result<(), AccessError> {
    crate::strength::check(name, new)?;
    let door = crate::door_of(by);
    match by {
        Some(p) if p.user.name == name => {
            let old = old.ok_or_else(|| {
                AccessError::Invalid("give your current password to change it".into())
            })?;
            crate::credentials::check_password(dir, name, old, door, address).await?;
        }
        Some(p) => p.require_admin("set other people's passwords")?,
        None => {}
    }
    let hash = hash_gated(new).await?;
    let mut tx = dir.metadata().begin().await?;
    let changed = sqlx::query("UPDATE users SET password_hash = ? WHERE name = ?")
        .bind(hash)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    if changed.rows_affected() == 0 {
        return Err(AccessError::UnknownUser(name.to_string()));
    }
    let ended = revoke_credentials(&mut tx, name, Some("session")).await?;
    events::record(
        &mut tx,
        door,
        &crate::actor_label(by),
        "password_changed",
        name,
        serde_json::json!({"sessions_ended": ended}),
    )
    .await?;
    tx.commit().await?;
    dir.note_policy_change();
    Ok(())
}

/// Revokes `user`'s live credentials (of one `kind`, or all); returns how many.
async fn revoke_credentials(
    tx: &mut sqlx::SqliteConnection,
    user: &str,
    kind: Option<&str>,
) -> Result<u64, sqlx::Error> {
    let revoked = sqlx::query(
        "UPDATE credentials SET revoked_at = ? WHERE user = ? AND (? IS NULL OR kind = ?) AND revoked_at IS NULL",
    )
    .bind(crate::clock::stamp(jiff::Timestamp::now()))
    .bind(user)
    .bind(kind)
    .bind(kind)
    .execute(tx)
    .await?;
    Ok(revoked.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn dir_with_unit() -> (tempfile::TempDir, tongchou_store::DataDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tongchou_store::DataDir::init(&tmp.path().join("d"))
            .await
            .unwrap();
        sqlx::query("INSERT INTO units (code, name, slug, seq, created_at) VALUES ('U1', '科学技术局', 'science', 1, 'now')")
            .execute(dir.metadata())
            .await
            .unwrap();
        (tmp, dir)
    }

    #[tokio::test]
    async fn users_are_stored_with_hashed_passwords() {
        let (_tmp, dir) = dir_with_unit().await;
        let user = User {
            name: "张科员".into(),
            unit: "U1".into(),
            role: UserRole::Analyst,
            level: None,
        };
        add_user(&dir, None, &user, "correct horse battery")
            .await
            .unwrap();
        assert_eq!(get_user(dir.metadata(), "张科员").await.unwrap(), user);
        let hash: String = sqlx::query_scalar("SELECT password_hash FROM users")
            .fetch_one(dir.metadata())
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$") && !hash.contains("correct horse"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(matches!(
            add_user(&dir, None, &user, "correct horse battery").await,
            Err(AccessError::Exists(_))
        ));
    }

    #[tokio::test]
    async fn bad_accounts_are_refused() {
        let (_tmp, dir) = dir_with_unit().await;
        let mut user = User {
            name: "li".into(),
            unit: "U1".into(),
            role: UserRole::Analyst,
            level: None,
        };
        assert!(matches!(
            add_user(&dir, None, &user, "short").await,
            Err(AccessError::WeakPassword(_))
        ));
        user.unit = "NOPE".into();
        assert!(matches!(
            add_user(&dir, None, &user, "long enough pass").await,
            Err(AccessError::UnknownUnit(_))
        ));
        user.unit = "U1".into();
        user.level = Some(3);
        assert!(matches!(
            add_user(&dir, None, &user, "long enough pass").await,
            Err(AccessError::BadLevel(_))
        ));
        user.name = "a b".into();
        assert!(matches!(
            add_user(&dir, None, &user, "long enough pass").await,
            Err(AccessError::BadName(_))
        ));
    }
}
