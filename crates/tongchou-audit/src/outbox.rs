//! Moving access events (sign-ins, requests, decisions, grants, accounts) from their outbox
//! table into the ledger. The access crate writes each event in the transaction of its
//! change; a front door drains the outbox before it answers, so an answer means the event
//! is in the ledger. When the ledger cannot be written the events wait in the outbox —
//! nothing is lost — and the next drain, in any process, records them.

use serde_json::{Value, json};
use sqlx::Row;

use crate::{ALLOWED, Audit, AuditError, DENIED, Entry};

/// Events moved per ledger batch.
const DRAIN_BATCH: i64 = 2000;

fn kind_of(action: &str) -> &str {
    match action {
        "sign_in" | "sign_in_failed" | "credential_revoked" | "token_created" => action,
        "account_locked" | "account_unlocked" => action,
        "request_filed" => "access_request",
        "request_approved" | "request_refused" => "decision",
        "request_withdrawn" => "access_request",
        "grant_revoked" | "policy_set" => "grant_change",
        "user_added" | "user_changed" | "password_changed" => "account_change",
        _ => "access_change",
    }
}

fn entry_of(row: &sqlx::sqlite::SqliteRow) -> Entry {
    let action: String = row.get("action");
    let detail: Value = serde_json::from_str(row.get::<&str, _>("detail")).unwrap_or(Value::Null);
    let at: String = row.get("at");
    let mut entry = Entry::new(
        kind_of(&action),
        row.get::<Option<&str>, _>("front_door")
            .unwrap_or("unknown"),
        if action == "sign_in_failed" {
            DENIED
        } else {
            ALLOWED
        },
    );
    if let Ok(t) = at.parse::<jiff::Timestamp>() {
        entry.time = tongchou_ledger::entry::china_time(t);
    }
    entry.user = Some(row.get("actor"));
    entry.unit = row.get("unit");
    entry.purpose = detail["purpose"].as_str().map(str::to_string);
    entry.reason = detail["reason"].as_str().map(str::to_string);
    if let Some(resource) = detail["resource"].as_str() {
        entry.resources = vec![resource.to_string()];
    }
    entry.detail = json!({
        "event": row.get::<i64, _>("id"),
        "action": action,
        "target": crate::hide_identifiers(row.get::<&str, _>("target")),
        "detail": detail,
    });
    entry
}

/// Moves every unrecorded access event into the ledger; returns how many.
pub async fn drain(audit: &Audit) -> Result<usize, AuditError> {
    let mut moved = 0;
    loop {
        // IMMEDIATE: one drain at a time across processes, so no event is recorded twice.
        let mut conn = audit.dir().metadata().acquire().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result = drain_batch(audit, &mut conn).await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        sqlx::query(end).execute(&mut *conn).await?;
        match result? {
            0 => return Ok(moved),
            n => moved += n,
        }
    }
}

async fn drain_batch(
    audit: &Audit,
    conn: &mut sqlx::SqliteConnection,
) -> Result<usize, AuditError> {
    let rows = sqlx::query(
        "SELECT e.id, e.at, e.actor, e.action, e.target, e.detail, e.front_door, u.unit
         FROM access_events e LEFT JOIN users u ON u.name = e.actor
         WHERE e.ledger_entry IS NULL ORDER BY e.id LIMIT ?",
    )
    .bind(DRAIN_BATCH)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let entries: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| Audit::without_identifiers(&entry_of(r)).to_bytes())
        .collect();
    let places = audit.committer().append_all(entries).await?;
    for (row, place) in rows.iter().zip(places) {
        sqlx::query("UPDATE access_events SET ledger_entry = ? WHERE id = ?")
            .bind(place as i64)
            .bind(row.get::<i64, _>("id"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(rows.len())
}
