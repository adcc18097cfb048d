//! Subscriptions delivered as governed statements (DESIGN.md §5.7): subscribing asks the
//! same decision as a query, and a pull is the subscriber's statement over the resource —
//! its state the first time, its change feed after — under the same grant, masks and row
//! filter, with whom it touched. The file is recorded in the ledger before it is released,
//! and the cursor moves only once it is: a pull that cannot be traced delivers nothing and
//! can be repeated.

use std::path::Path;

use tongchou_audit::{Audit, Entry};
use tongchou_exchange::changes::{self, OutputFormat, Pulled, Subscription};

use crate::front::delivered_entry;
use crate::{Engine, QueryError};

/// Subscribes `unit` to resource `code` for `purpose`, as `user` may read it: refused,
/// with the decision's reason and the request to file, when a query would be.
pub async fn subscribe(
    engine: &Engine,
    user: &str,
    unit: &str,
    code: &str,
    purpose: &str,
) -> Result<Subscription, QueryError> {
    engine.decide(user, code, purpose).await?;
    Ok(changes::subscribe(engine.dir(), code, unit, Some(purpose)).await?)
}

/// What the door knows of a pull: who asks (the user, of `unit`), and the entry it starts
/// (front door, statement as sent).
pub struct PullRequest<'a> {
    pub user: &'a str,
    pub unit: &'a str,
    pub subscription: i64,
    pub format: OutputFormat,
    pub out: &'a Path,
    pub entry: Entry,
}

/// Writes what subscription `request.subscription` has not had yet to `request.out`, as
/// `request.user` may see it, records it, and moves the cursor.
pub async fn pull(
    engine: &Engine,
    audit: &Audit,
    request: PullRequest<'_>,
) -> Result<Pulled, QueryError> {
    let id = request.subscription;
    let sub = changes::subscription(engine.dir(), id)
        .await?
        .filter(|s| s.consumer == request.unit)
        .ok_or_else(|| {
            QueryError::NotFound(format!(
                "subscription {id} is not one of your unit's; list them with `tongchou exchange subscriptions`"
            ))
        })?;
    let purpose = sub.purpose.clone().ok_or_else(|| {
        QueryError::Refused(format!(
            "subscription {id} names no purpose; subscribe to {} again naming one",
            sub.resource
        ))
    })?;
    let to = engine.version(&sub.resource).await?;
    let after = u64::try_from(sub.cursor).ok();
    let (sql, answer) = engine
        .delivery(request.user, &purpose, &sub.resource, after, to)
        .await?;
    changes::write(
        &answer.batches,
        answer.schema.clone(),
        request.format,
        request.out,
    )?;
    let mut entry = request.entry;
    entry.purpose = Some(purpose);
    let digest = changes::file_digest(request.out)?;
    let mut entry = delivered_entry(audit, entry, &answer, digest);
    entry.detail = serde_json::json!({
        "subscription": id,
        "versions": [sub.cursor, to],
        "read": sql,
    });
    if let Err(e) = audit.record(&entry).await {
        let _ = std::fs::remove_file(request.out);
        return Err(QueryError::NotRecorded(e.to_string()));
    }
    changes::delivered(engine.dir(), id, to as i64, answer.rows).await?;
    Ok(Pulled {
        subscription: id,
        resource: sub.resource,
        from_version: sub.cursor,
        to_version: to as i64,
        rows: answer.rows,
        file: request.out.display().to_string(),
    })
}
