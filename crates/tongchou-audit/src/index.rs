//! The ledger's searchable copy in the metadata database: one row per entry (who, unit,
//! purpose, outcome, rows), its resources and its subjects. Derived only from the ledger,
//! caught up before every query, so it can be dropped and rebuilt at any time.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use serde::Serialize;
use sqlx::{QueryBuilder, Row, Sqlite};
use utoipa::ToSchema;

use tongchou_access::clock::{china, parse_date, start_of_day};

use crate::{Audit, AuditError, DENIED, Entry, SUBJECT_BYTES};

/// Entries copied per transaction while catching up.
const CATCH_UP_BATCH: u64 = 5000;

/// Copies the entries the index does not have yet.
pub async fn catch_up(audit: &Audit) -> Result<u64, AuditError> {
    let pool = audit.dir().metadata();
    let mut next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq) + 1, 0) FROM ledger_entries")
        .fetch_one(pool)
        .await?;
    let len = audit.with_ledger(|l| l.refresh().map(|()| l.len())).await?;
    let start = next as u64;
    while (next as u64) < len {
        let from = next as u64;
        let to = (from + CATCH_UP_BATCH).min(len);
        let entries = audit
            .with_ledger(move |l| {
                (from..to)
                    .map(|i| l.log().entry(i))
                    .collect::<std::io::Result<Vec<_>>>()
            })
            .await
            .map_err(tongchou_ledger::LedgerError::from)?;
        let mut tx = pool.begin().await?;
        for (i, bytes) in entries.iter().enumerate() {
            let seq = from as i64 + i as i64;
            // An entry that does not parse is still indexed by place, as "unreadable":
            // `ledger verify` says why.
            let entry = Entry::parse(bytes).unwrap_or_else(|_| Entry {
                kind: "unreadable".into(),
                front_door: "unknown".into(),
                outcome: "unknown".into(),
                ..Entry::default()
            });
            insert(&mut tx, seq, &entry).await?;
        }
        tx.commit().await?;
        next = to as i64;
    }
    Ok(len - start.min(len))
}

/// A moment as people write it for the ledger: RFC 3339, a day (`2026-11-27`,
/// `2026年11月27日`: its start) or a time of day in China (`2026-11-27 18:00`).
pub fn china_moment(text: &str) -> Option<jiff::Timestamp> {
    let text = text.trim();
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Some(at);
    }
    if let Ok(day) = parse_date(text) {
        return Some(start_of_day(day));
    }
    let civil = text
        .replacen(' ', "T", 1)
        .parse::<jiff::civil::DateTime>()
        .ok()?;
    civil.to_zoned(china()).ok().map(|z| z.timestamp())
}

/// An entry's time in milliseconds since 1970, the order of the index; 0 when unreadable.
fn at_of(time: &str) -> i64 {
    china_moment(time).map_or(0, |t| t.as_millisecond())
}

async fn insert(tx: &mut sqlx::SqliteConnection, seq: i64, e: &Entry) -> Result<(), sqlx::Error> {
    let at = at_of(&e.time);
    sqlx::query("INSERT OR REPLACE INTO ledger_entries (seq, time, at, kind, front_door, user, unit, purpose, outcome, rows, subjects) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(seq)
        .bind(&e.time)
        .bind(at)
        .bind(&e.kind)
        .bind(&e.front_door)
        .bind(&e.user)
        .bind(&e.unit)
        .bind(&e.purpose)
        .bind(&e.outcome)
        .bind(e.rows.map(|r| r as i64))
        .bind(e.subject_count.unwrap_or(e.subjects.len() as u64) as i64)
        .execute(&mut *tx)
        .await?;
    if let Some(digest) = &e.subject_set {
        sqlx::query("INSERT OR REPLACE INTO ledger_subject_sets (seq, digest) VALUES (?, ?)")
            .bind(seq)
            .bind(digest)
            .execute(&mut *tx)
            .await?;
    }
    for r in &e.resources {
        sqlx::query(
            "INSERT OR IGNORE INTO ledger_entry_resources (resource, at, seq) VALUES (?, ?, ?)",
        )
        .bind(r)
        .bind(at)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT OR IGNORE INTO ledger_entry_providers (provider, at, seq) SELECT unit, ?, ? FROM resources WHERE code = ?")
            .bind(at)
            .bind(seq)
            .bind(r)
            .execute(&mut *tx)
            .await?;
    }
    for s in &e.subjects {
        sqlx::query("INSERT OR IGNORE INTO ledger_subjects (subject, seq) VALUES (?, ?)")
            .bind(s)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// One entry as the index lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Listed {
    pub seq: i64,
    pub time: String,
    pub kind: String,
    pub front_door: String,
    pub user: Option<String>,
    pub unit: Option<String>,
    pub purpose: Option<String>,
    pub outcome: String,
    pub rows: Option<i64>,
    pub resources: Vec<String>,
}

/// What to list; every field narrows.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::IntoParams)]
pub struct Filter {
    pub user: Option<String>,
    pub unit: Option<String>,
    pub resource: Option<String>,
    pub purpose: Option<String>,
    pub kind: Option<String>,
    /// `allowed`, `denied` or `failed`.
    pub outcome: Option<String>,
    /// From this day or moment (RFC 3339 or YYYY-MM-DD), China time.
    pub since: Option<String>,
    /// Before this day or moment.
    pub until: Option<String>,
    /// Only the uses of resources of this providing unit.
    pub provider: Option<String>,
    /// Entries listed after this one (the last `seq` of the page before): the next page.
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

const LISTED_COLUMNS: &str = "SELECT e.seq, e.time, e.kind, e.front_door, e.user, e.unit, e.purpose, e.outcome, e.rows, (SELECT json_group_array(resource) FROM ledger_entry_resources r WHERE r.seq = e.seq) AS resources FROM ";

fn listed(row: &sqlx::sqlite::SqliteRow) -> Listed {
    Listed {
        seq: row.get("seq"),
        time: row.get("time"),
        kind: row.get("kind"),
        front_door: row.get("front_door"),
        user: row.get("user"),
        unit: row.get("unit"),
        purpose: row.get("purpose"),
        outcome: row.get("outcome"),
        rows: row.get("rows"),
        resources: serde_json::from_str(row.get::<&str, _>("resources")).unwrap_or_default(),
    }
}

/// A filter made ready for SQL: its times in milliseconds and the place a page goes on from.
struct Bounds {
    since: Option<i64>,
    until: Option<i64>,
    after: Option<(i64, i64)>,
}

fn moment(name: &str, text: &Option<String>) -> Result<Option<i64>, AuditError> {
    text.as_deref()
        .map(|t| {
            china_moment(t).map(|at| at.as_millisecond()).ok_or_else(|| {
                AuditError::Filter(format!(
                    "{name} '{t}' is not a day or a time: write 2026-11-27, 2026-11-27 18:00 or an RFC 3339 time"
                ))
            })
        })
        .transpose()
}

async fn bounds(audit: &Audit, f: &Filter) -> Result<Bounds, AuditError> {
    let after = match f.before {
        None => None,
        Some(seq) => Some((cursor_at(audit, f, seq).await?, seq)),
    };
    Ok(Bounds {
        since: moment("since", &f.since)?,
        until: moment("until", &f.until)?,
        after,
    })
}

/// Which index a listing walks, newest first: a resource's own, a providing unit's own
/// (a steward's page without gathering every resource of the unit), or the entries' (SQLite
/// picks among user, unit, purpose, kind, outcome and time). A user or unit narrows more
/// than a providing unit does, so with one of them the entries' index leads.
#[derive(PartialEq)]
enum Driver {
    Resource,
    Provider,
    Entries,
}

fn driver_of(f: &Filter) -> Driver {
    if f.resource.is_some() {
        Driver::Resource
    } else if f.provider.is_some() && f.user.is_none() && f.unit.is_none() {
        Driver::Provider
    } else {
        Driver::Entries
    }
}

/// The table alias whose (at, seq) orders the listing.
fn order_of(f: &Filter) -> &'static str {
    match driver_of(f) {
        Driver::Entries => "e",
        Driver::Resource | Driver::Provider => "d",
    }
}

/// The time of the entry a page goes on after, looked up among the entries the filter
/// selects: a steward cannot place a page by another unit's entry, nor learn from the
/// answer whether an entry they may not see exists.
async fn cursor_at(audit: &Audit, f: &Filter, seq: i64) -> Result<i64, AuditError> {
    let order = order_of(f);
    let unbounded = Bounds {
        since: None,
        until: None,
        after: None,
    };
    let mut q = QueryBuilder::<Sqlite>::new(format!("SELECT {order}.at FROM "));
    push_selection(&mut q, f, &unbounded);
    q.push(format_args!(" AND {order}.seq = ")).push_bind(seq);
    q.build_query_scalar::<i64>()
        .fetch_optional(audit.dir().metadata())
        .await?
        .ok_or_else(|| {
            AuditError::Filter(format!(
                "before {seq}: there is no entry {seq} in this listing to go on from"
            ))
        })
}

/// The entries a filter selects, joined in the order of the index that leads (see
/// [`Driver`]), so that a page stops after its last row.
fn push_selection(q: &mut QueryBuilder<Sqlite>, f: &Filter, b: &Bounds) {
    let driver = driver_of(f);
    match (&driver, &f.resource, &f.provider) {
        (Driver::Resource, Some(r), _) => {
            q.push("ledger_entry_resources d CROSS JOIN ledger_entries e ON e.seq = d.seq WHERE d.resource = ")
                .push_bind(r.clone());
        }
        (Driver::Provider, _, Some(p)) => {
            q.push("ledger_entry_providers d CROSS JOIN ledger_entries e ON e.seq = d.seq WHERE d.provider = ")
                .push_bind(p.clone());
        }
        _ => {
            q.push("ledger_entries e WHERE 1 = 1");
        }
    }
    let order = order_of(f);
    if let Some(p) = f.provider.as_ref().filter(|_| driver != Driver::Provider) {
        q.push(" AND EXISTS (SELECT 1 FROM ledger_entry_providers p WHERE p.provider = ")
            .push_bind(p.clone())
            .push(format_args!(
                " AND p.at = {order}.at AND p.seq = {order}.seq)"
            ));
    }
    let columns = [
        ("e.user", &f.user),
        ("e.unit", &f.unit),
        ("e.purpose", &f.purpose),
        ("e.kind", &f.kind),
        ("e.outcome", &f.outcome),
    ];
    for (column, value) in columns {
        if let Some(v) = value {
            q.push(format_args!(" AND {column} = "))
                .push_bind(v.clone());
        }
    }
    if let Some(since) = b.since {
        q.push(format_args!(" AND {order}.at >= ")).push_bind(since);
    }
    if let Some(until) = b.until {
        q.push(format_args!(" AND {order}.at < ")).push_bind(until);
    }
    if let Some((at, seq)) = b.after {
        q.push(format_args!(" AND ({order}.at, {order}.seq) < ("))
            .push_bind(at)
            .push(", ")
            .push_bind(seq)
            .push(")");
    }
}

/// Entries matching `filter`, newest first (by time, then by place in the ledger), at most
/// `limit` (100 unless asked, 100,000 at most); `before` goes on after a page.
pub async fn search(audit: &Audit, filter: &Filter) -> Result<Vec<Listed>, AuditError> {
    catch_up(audit).await?;
    let b = bounds(audit, filter).await?;
    let rows = listing("", filter, &b)
        .build()
        .fetch_all(audit.dir().metadata())
        .await?;
    Ok(rows.iter().map(listed).collect())
}

fn listing(prefix: &str, filter: &Filter, b: &Bounds) -> QueryBuilder<Sqlite> {
    let order = order_of(filter);
    let mut q = QueryBuilder::<Sqlite>::new(format!("{prefix}{LISTED_COLUMNS}"));
    push_selection(&mut q, filter, b);
    q.push(format_args!(
        " ORDER BY {order}.at DESC, {order}.seq DESC LIMIT "
    ))
    .push_bind(filter.limit.unwrap_or(100).clamp(1, 100_000));
    q
}

/// Every recorded access that touched the person or enterprise with this ID, oldest first:
/// the entries that list them, and those whose subject set holds them.
pub async fn subject(audit: &Audit, id: &str) -> Result<Vec<Listed>, AuditError> {
    catch_up(audit).await?;
    let hash = audit.subject_key().subject_bytes(id);
    let mut q = QueryBuilder::<Sqlite>::new(concat!(
        "SELECT e.seq, e.time, e.kind, e.front_door, e.user, e.unit, e.purpose, e.outcome, e.rows, ",
        "(SELECT json_group_array(resource) FROM ledger_entry_resources r WHERE r.seq = e.seq) AS resources ",
        "FROM ledger_entries e WHERE e.seq IN (SELECT seq FROM ledger_subjects WHERE subject = "
    ));
    q.push_bind(hex::encode(hash)).push(")");
    let sets = sets_holding(audit, &hash).await?;
    if !sets.is_empty() {
        q.push(" OR e.seq IN (SELECT seq FROM ledger_subject_sets WHERE digest IN (");
        let mut list = q.separated(", ");
        for digest in sets {
            list.push_bind(digest);
        }
        q.push("))");
    }
    q.push(" ORDER BY e.seq");
    let rows = q.build().fetch_all(audit.dir().metadata()).await?;
    Ok(rows.iter().map(listed).collect())
}

/// The digests of the subject sets that entries name and that hold `hash`, each set
/// checked against its digest first: a set changed beside the ledger is an error, not an
/// answer.
async fn sets_holding(
    audit: &Audit,
    hash: &[u8; SUBJECT_BYTES],
) -> Result<Vec<String>, AuditError> {
    let mut rows = sqlx::query_as::<_, (String, Vec<u8>)>(
        "SELECT digest, subjects FROM subject_sets WHERE digest IN (SELECT digest FROM ledger_subject_sets)",
    )
    .fetch(audit.dir().metadata());
    let mut holding = Vec::new();
    while let Some((digest, bytes)) = rows.try_next().await? {
        let subjects: Vec<[u8; SUBJECT_BYTES]> = bytes
            .chunks_exact(SUBJECT_BYTES)
            .map(|c| c.try_into().expect("chunks of the size"))
            .collect();
        if bytes.len() % SUBJECT_BYTES != 0 || crate::set_digest(&subjects) != digest {
            return Err(AuditError::SubjectSet(format!(
                "the subject set {digest} does not match its digest: it was changed beside the ledger"
            )));
        }
        if subjects.binary_search(hash).is_ok() {
            holding.push(digest);
        }
    }
    Ok(holding)
}

/// The kinds of entry that deliver data, counted as "use".
const USES: &str = "e.kind IN ('statement', 'pull', 'download', 'verification')";

/// Use of data per unit and purpose.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Usage {
    pub unit: Option<String>,
    pub purpose: Option<String>,
    pub entries: i64,
    pub denied: i64,
    pub rows: i64,
    pub subjects: i64,
}

pub async fn usage(audit: &Audit, filter: &Filter) -> Result<Vec<Usage>, AuditError> {
    catch_up(audit).await?;
    let b = bounds(audit, filter).await?;
    let mut q = QueryBuilder::<Sqlite>::new(
        "SELECT e.unit, e.purpose, count(*) AS entries, sum(e.outcome = ",
    );
    q.push_bind(DENIED)
        .push(") AS denied, COALESCE(sum(e.rows), 0) AS rows, sum(e.subjects) AS subjects FROM ");
    push_selection(&mut q, filter, &b);
    q.push(" AND ")
        .push(USES)
        .push(" GROUP BY e.unit, e.purpose ORDER BY entries DESC");
    let rows = q.build().fetch_all(audit.dir().metadata()).await?;
    Ok(rows
        .iter()
        .map(|r| Usage {
            unit: r.get("unit"),
            purpose: r.get("purpose"),
            entries: r.get("entries"),
            denied: r.get("denied"),
            rows: r.get("rows"),
            subjects: r.get("subjects"),
        })
        .collect())
}

/// A user who read far more people or enterprises than the others of their unit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Unusual {
    pub user: String,
    pub unit: Option<String>,
    pub subjects: i64,
    /// The median of the other users of the unit (of everyone, when alone in the unit).
    pub peer_median: f64,
    pub ratio: f64,
}

/// Users whose distinct subjects in the period reach `factor` × their peers' median and
/// at least `floor`.
pub async fn unusual(
    audit: &Audit,
    filter: &Filter,
    factor: f64,
    floor: i64,
) -> Result<Vec<Unusual>, AuditError> {
    catch_up(audit).await?;
    let b = bounds(audit, filter).await?;
    let mut q = QueryBuilder::<Sqlite>::new(
        "SELECT e.user, e.unit, count(DISTINCT s.subject) AS subjects FROM (SELECT e.seq, e.user, e.unit FROM ",
    );
    push_selection(&mut q, filter, &b);
    q.push(" AND e.user IS NOT NULL AND ")
        .push(USES)
        .push(") e LEFT JOIN ledger_subjects s ON s.seq = e.seq GROUP BY e.user, e.unit");
    let rows = q.build().fetch_all(audit.dir().metadata()).await?;
    let readers: Vec<(String, Option<String>, i64)> = rows
        .iter()
        .map(|r| (r.get("user"), r.get("unit"), r.get("subjects")))
        .collect();
    let mut by_unit: BTreeMap<Option<String>, Vec<i64>> = BTreeMap::new();
    for (_, unit, n) in &readers {
        by_unit.entry(unit.clone()).or_default().push(*n);
    }
    let everyone: Vec<i64> = readers.iter().map(|r| r.2).collect();
    let mut found = Vec::new();
    for (user, unit, n) in &readers {
        let unit_counts = &by_unit[unit];
        let peers = if unit_counts.len() > 1 {
            unit_counts
        } else {
            &everyone
        };
        let peer_median = median_without(peers, *n);
        let ratio = *n as f64 / peer_median.max(1.0);
        if *n >= floor && ratio >= factor {
            found.push(Unusual {
                user: user.clone(),
                unit: unit.clone(),
                subjects: *n,
                peer_median,
                ratio,
            });
        }
    }
    found.sort_by(|a, b| b.ratio.total_cmp(&a.ratio));
    Ok(found)
}

/// The median of `counts` with one occurrence of `own` left out.
fn median_without(counts: &[i64], own: i64) -> f64 {
    let mut others = counts.to_vec();
    if let Some(at) = others.iter().position(|&c| c == own) {
        others.remove(at);
    }
    if others.is_empty() {
        return 0.0;
    }
    others.sort_unstable();
    let mid = others.len() / 2;
    if others.len() % 2 == 1 {
        others[mid] as f64
    } else {
        (others[mid - 1] + others[mid]) as f64 / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read of more people than an entry lists keeps them in a set beside the ledger:
    /// `subject` finds its entry, and a set changed after the fact is named, not believed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn big_reads_are_found_by_their_subject_set_and_a_changed_set_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tongchou_store::DataDir::init(&tmp.path().join("d"))
            .await
            .unwrap();
        std::fs::write(
            dir.config_dir().join(crate::SETTINGS_FILE),
            "subject_rows = 2\n",
        )
        .unwrap();
        let audit = Audit::open(&dir).await.unwrap();
        let ids = [
            "44060519800101123X",
            "440605198001011240",
            "440605198001011259",
        ];
        let hashes = ids
            .iter()
            .map(|id| audit.subject_key().subject_bytes(id))
            .collect();
        let mut entry = Entry::new("pull", "rest", crate::ALLOWED);
        audit.set_subjects(&mut entry, hashes);
        assert!(entry.subjects.is_empty() && entry.subject_count == Some(3));
        let seq = audit.record(&entry).await.unwrap() as i64;
        let mut small = Entry::new("statement", "rest", crate::ALLOWED);
        audit.set_subjects(&mut small, vec![audit.subject_key().subject_bytes(ids[0])]);
        assert_eq!(small.subjects.len(), 1);
        let small_seq = audit.record(&small).await.unwrap() as i64;

        let found: Vec<i64> = subject(&audit, ids[0])
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(found, [seq, small_seq]);
        let found: Vec<i64> = subject(&audit, ids[2])
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(found, [seq]);
        assert!(
            subject(&audit, "440605199912310000")
                .await
                .unwrap()
                .is_empty()
        );

        // Someone removes a person from the set beside the ledger.
        let digest = entry.subject_set.clone().unwrap();
        let kept: Vec<u8> = entry
            .subject_hashes
            .iter()
            .skip(1)
            .flatten()
            .copied()
            .collect();
        sqlx::query("UPDATE subject_sets SET subjects = ? WHERE digest = ?")
            .bind(kept)
            .bind(&digest)
            .execute(dir.metadata())
            .await
            .unwrap();
        let err = subject(&audit, ids[1]).await.unwrap_err().to_string();
        assert!(err.contains("changed beside the ledger"), "{err}");
    }

    async fn audit_with_two_providers() -> (tempfile::TempDir, Audit) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tongchou_store::DataDir::init(&tmp.path().join("d"))
            .await
            .unwrap();
        for (i, unit) in ["U1", "U2"].iter().enumerate() {
            sqlx::query(
                "INSERT INTO units (code, name, slug, seq, created_at) VALUES (?, ?, ?, ?, '')",
            )
            .bind(unit)
            .bind(format!("单位{i}"))
            .bind(unit.to_lowercase())
            .bind(i as i64)
            .execute(dir.metadata())
            .await
            .unwrap();
        }
        for (code, unit) in [("R1", "U1"), ("R2", "U1"), ("R3", "U2")] {
            sqlx::query("INSERT INTO resources (code, unit, name, share_type, open_type, update_cycle, field_count, version, body, registered_at, updated_at) VALUES (?, ?, ?, '', '', '', 0, 1, '{}', '', '')")
                .bind(code)
                .bind(unit)
                .bind(code)
                .execute(dir.metadata())
                .await
                .unwrap();
        }
        let audit = Audit::open(&dir).await.unwrap();
        (tmp, audit)
    }

    /// 60 entries over three days; every fifth carries a time 2.5 hours older than its
    /// neighbours' (an event recorded late, from the outbox).
    fn planted(i: i64) -> Entry {
        let start = jiff::Timestamp::from_second(1_795_000_000).unwrap();
        let late = if i % 5 == 4 { 9_000_000 } else { 0 };
        let mut e = Entry::new(
            ["statement", "pull", "sign_in"][i as usize % 3],
            "rest",
            crate::ALLOWED,
        );
        e.time = tongchou_ledger::entry::china_time(
            jiff::Timestamp::from_millisecond(start.as_millisecond() + i * 4_000_000 - late)
                .unwrap(),
        );
        e.user = Some(format!("user{}", i % 4));
        e.resources = match i % 4 {
            0 => vec!["R1".into()],
            1 => vec!["R2".into(), "R3".into()],
            2 => vec!["R3".into()],
            _ => vec![],
        };
        e
    }

    fn provider_of(resource: &str) -> &str {
        if resource == "R3" { "U2" } else { "U1" }
    }

    /// What a filter should list, worked out from the entries themselves.
    fn expected(entries: &[(i64, Entry)], f: &Filter) -> Vec<i64> {
        let at = |e: &Entry| at_of(&e.time);
        let since = f
            .since
            .as_deref()
            .map(|t| china_moment(t).unwrap().as_millisecond());
        let until = f
            .until
            .as_deref()
            .map(|t| china_moment(t).unwrap().as_millisecond());
        let mut found: Vec<&(i64, Entry)> = entries
            .iter()
            .filter(|(_, e)| f.user.as_ref().is_none_or(|u| e.user.as_ref() == Some(u)))
            .filter(|(_, e)| f.kind.as_ref().is_none_or(|k| &e.kind == k))
            .filter(|(_, e)| f.resource.as_ref().is_none_or(|r| e.resources.contains(r)))
            .filter(|(_, e)| {
                f.provider
                    .as_ref()
                    .is_none_or(|p| e.resources.iter().any(|r| provider_of(r) == p))
            })
            .filter(|(_, e)| since.is_none_or(|s| at(e) >= s) && until.is_none_or(|u| at(e) < u))
            .collect();
        found.sort_by_key(|(seq, e)| std::cmp::Reverse((at(e), *seq)));
        found.iter().map(|(seq, _)| *seq).collect()
    }

    /// Every filter, read a page of 7 at a time with `before`, lists exactly the entries
    /// it selects, newest first, each once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_walked_with_before_list_each_selected_entry_once_newest_first() {
        let (_tmp, audit) = audit_with_two_providers().await;
        let mut entries = Vec::new();
        for i in 0..60 {
            let e = planted(i);
            let seq = audit.record(&e).await.unwrap() as i64;
            entries.push((seq, e));
        }
        let day = |d: &str| Some(d.to_string());
        let filters = [
            Filter::default(),
            Filter {
                user: day("user1"),
                ..Filter::default()
            },
            Filter {
                kind: day("pull"),
                ..Filter::default()
            },
            Filter {
                resource: day("R3"),
                ..Filter::default()
            },
            Filter {
                provider: day("U1"),
                ..Filter::default()
            },
            Filter {
                provider: day("U2"),
                resource: day("R2"),
                ..Filter::default()
            },
            Filter {
                provider: day("U1"),
                user: day("user0"),
                ..Filter::default()
            },
            Filter {
                since: day("2026-11-19"),
                until: day("2026-11-20 12:00"),
                ..Filter::default()
            },
            Filter {
                resource: day("R1"),
                since: day("2026-11-19T06:00:00+08:00"),
                ..Filter::default()
            },
        ];
        for filter in filters {
            let mut walked = Vec::new();
            let mut page = Filter {
                limit: Some(7),
                ..filter.clone()
            };
            loop {
                let got = search(&audit, &page).await.unwrap();
                walked.extend(got.iter().map(|e| e.seq));
                match got.last() {
                    Some(last) if got.len() == 7 => page.before = Some(last.seq),
                    _ => break,
                }
            }
            walked.retain(|&seq| seq != 0); // the ledger's start, recorded now
            let want = expected(&entries, &filter);
            assert!(!want.is_empty(), "{filter:?} selects something");
            assert_eq!(walked, want, "{filter:?}");
        }
        let err = search(
            &audit,
            &Filter {
                since: day("last week"),
                ..Filter::default()
            },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, AuditError::Filter(_)) && err.to_string().contains("2026-11-27"),
            "{err}"
        );
        let err = search(
            &audit,
            &Filter {
                before: Some(10_000),
                ..Filter::default()
            },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("no entry 10000"), "{err}");
        // An entry of another providing unit cannot place a U2 page, and is answered as
        // one that does not exist.
        let r1_only = entries
            .iter()
            .find(|(_, e)| e.resources == ["R1"])
            .unwrap()
            .0;
        let other = Filter {
            provider: day("U2"),
            before: Some(r1_only),
            ..Filter::default()
        };
        let err = search(&audit, &other).await.unwrap_err();
        let said = format!("no entry {r1_only} in this listing");
        assert!(err.to_string().contains(&said), "{err}");
    }

    /// No page reads the whole index: every filter is served by an index in the order of
    /// the listing (no sort of what it found, no scan of a table without an index).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_filter_pages_by_an_index_without_sorting() {
        let (_tmp, audit) = audit_with_two_providers().await;
        let some = |v: &str| Some(v.to_string());
        let b = Bounds {
            since: Some(1),
            until: Some(2),
            after: Some((1, 1)),
        };
        let unbounded = Bounds {
            since: None,
            until: None,
            after: None,
        };
        let filters = [
            Filter::default(),
            Filter {
                user: some("u"),
                ..Filter::default()
            },
            Filter {
                unit: some("U1"),
                ..Filter::default()
            },
            Filter {
                purpose: some("p"),
                ..Filter::default()
            },
            Filter {
                kind: some("pull"),
                ..Filter::default()
            },
            Filter {
                outcome: some("denied"),
                ..Filter::default()
            },
            Filter {
                resource: some("R1"),
                ..Filter::default()
            },
            Filter {
                provider: some("U1"),
                ..Filter::default()
            },
            Filter {
                provider: some("U1"),
                resource: some("R1"),
                user: some("u"),
                ..Filter::default()
            },
            Filter {
                user: some("u"),
                kind: some("pull"),
                outcome: some("allowed"),
                ..Filter::default()
            },
        ];
        for f in &filters {
            for bounds in [&b, &unbounded] {
                let plan: Vec<String> = listing("EXPLAIN QUERY PLAN ", f, bounds)
                    .build()
                    .fetch_all(audit.dir().metadata())
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get::<String, _>("detail"))
                    .collect();
                for step in &plan {
                    let full_scan = step.starts_with("SCAN") && !step.contains("INDEX");
                    assert!(
                        !full_scan && !step.contains("TEMP B-TREE"),
                        "{f:?}: {plan:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn moments_are_read_in_china_time_and_a_day_is_its_start() {
        let ms = |t: &str| china_moment(t).map(|at| at.as_millisecond());
        let start = ms("2026-11-27T00:00:00+08:00").unwrap();
        assert_eq!(ms("2026-11-27"), Some(start));
        assert_eq!(ms("2026-11-26T16:00:00Z"), Some(start));
        assert_eq!(ms("2026-11-27 18:00"), Some(start + 18 * 3_600_000));
        assert_eq!(
            ms("2026-11-27T18:00:00.5"),
            Some(start + 18 * 3_600_000 + 500)
        );
        assert_eq!(
            ms(&tongchou_ledger::entry::china_time(
                jiff::Timestamp::from_millisecond(start + 7).unwrap()
            )),
            Some(start + 7)
        );
        assert_eq!(ms("2026年11月27日"), Some(start));
        assert_eq!(ms("yesterday"), None);
        assert_eq!(ms("2026-13-01"), None);
    }

    #[test]
    fn the_median_leaves_the_reader_out() {
        assert_eq!(median_without(&[5, 5, 500], 500), 5.0);
        assert_eq!(median_without(&[2, 4, 6, 100], 100), 4.0);
        assert_eq!(median_without(&[7], 7), 0.0);
    }
}
