//! The record of every sign-in, request, decision, grant change and revocation, written in
//! the same transaction as the change it records: the outbox from which the audit ledger
//! (`tongchou-audit`) takes each event, noting the entry it became.

use serde::Serialize;
use sqlx::{SqliteConnection, SqlitePool};

use crate::AccessError;
use crate::clock::stamp;

/// The front door a request came through, named by whoever received it and recorded with
/// every event the request causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Rest,
    Pg,
    Portal,
    Cli,
}

impl Door {
    /// As ledger entries and `access_events.front_door` name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Rest => "rest",
            Door::Pg => "pg",
            Door::Portal => "portal",
            Door::Cli => "cli",
        }
    }
}

pub async fn record(
    conn: &mut SqliteConnection,
    door: Door,
    actor: &str,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO access_events (at, actor, action, target, detail, front_door) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(stamp(jiff::Timestamp::now()))
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(detail.to_string())
    .bind(door.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Event {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
}

/// The newest `limit` events, newest first.
pub async fn recent(pool: &SqlitePool, limit: i64) -> Result<Vec<Event>, AccessError> {
    let rows: Vec<(i64, String, String, String, String, String)> = sqlx::query_as(
        "SELECT id, at, actor, action, target, detail FROM access_events ORDER BY id DESC LIMIT ?",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, at, actor, action, target, detail)| Event {
            id,
            at,
            actor,
            action,
            target,
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        })
        .collect())
}
