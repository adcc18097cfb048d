//! Identity and access: user accounts that belong to units, with a role (and, for leaders,
//! a level). Passwords are stored only as Argon2id hashes; there is no default account.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::Serialize;
use sqlx::SqlitePool;
use tongchou_model::UserRole;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "user name '{0}' is not allowed: use 2–32 letters, digits, '_', '-' or '.' (Chinese characters allowed)"
    )]
    BadName(String),
    #[error("the password is too short: use at least 10 characters")]
    WeakPassword,
    #[error("user '{0}' already exists")]
    Exists(String),
    #[error("unit {0} is not registered; list units with `tongchou catalog units`")]
    UnknownUnit(String),
    #[error("user '{0}' does not exist")]
    UnknownUser(String),
    #[error("only leaders carry a level (1–10); {0}")]
    BadLevel(String),
    #[error("metadata database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

#[derive(Debug, Clone, Serialize, PartialEq)]
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

/// Argon2id with the crate's defaults (19 MiB, 2 passes): about 50–100 ms here.
pub fn hash_password(password: &str) -> Result<String, AccessError> {
    if password.chars().count() < 10 {
        return Err(AccessError::WeakPassword);
    }
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| AccessError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccessError::Hash(e.to_string()))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

pub async fn add_user(pool: &SqlitePool, user: &User, password: &str) -> Result<(), AccessError> {
    if !valid_name(&user.name) {
        return Err(AccessError::BadName(user.name.clone()));
    }
    match (user.role, user.level) {
        (UserRole::Leader, Some(1..=10)) | (UserRole::Leader, None) => {}
        (UserRole::Leader, Some(n)) => {
            return Err(AccessError::BadLevel(format!("{n} is out of range")));
        }
        (_, Some(_)) => return Err(AccessError::BadLevel(format!("a {} has none", user.role))),
        (_, None) => {}
    }
    let unit: Option<String> = sqlx::query_scalar("SELECT code FROM units WHERE code = ?")
        .bind(&user.unit)
        .fetch_optional(pool)
        .await?;
    if unit.is_none() {
        return Err(AccessError::UnknownUnit(user.unit.clone()));
    }
    let hash = hash_password(password)?;
    let level = if user.role == UserRole::Leader {
        Some(user.level.unwrap_or(1))
    } else {
        None
    };
    let result = sqlx::query("INSERT INTO users (name, unit, role, level, password_hash, created_at) VALUES (?, ?, ?, ?, ?, datetime('now'))")
        .bind(&user.name)
        .bind(&user.unit)
        .bind(user.role.as_str())
        .bind(level)
        .bind(hash)
        .execute(pool)
        .await;
    match result {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(AccessError::Exists(user.name.clone()))
        }
        other => other.map(|_| ()).map_err(AccessError::from),
    }
}

fn row_to_user((name, unit, role, level): (String, String, String, Option<i64>)) -> User {
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
        add_user(dir.metadata(), &user, "correct horse battery")
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
            add_user(dir.metadata(), &user, "correct horse battery").await,
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
            add_user(dir.metadata(), &user, "short").await,
            Err(AccessError::WeakPassword)
        ));
        user.unit = "NOPE".into();
        assert!(matches!(
            add_user(dir.metadata(), &user, "long enough pass").await,
            Err(AccessError::UnknownUnit(_))
        ));
        user.unit = "U1".into();
        user.level = Some(3);
        assert!(matches!(
            add_user(dir.metadata(), &user, "long enough pass").await,
            Err(AccessError::BadLevel(_))
        ));
        user.name = "a b".into();
        assert!(matches!(
            add_user(dir.metadata(), &user, "long enough pass").await,
            Err(AccessError::BadName(_))
        ));
    }
}
