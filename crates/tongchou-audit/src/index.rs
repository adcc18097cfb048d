//! The ledger's searchable copy in the metadata database: one row per entry (who, unit,
//! purpose, outcome, rows), its resources and its subjects. Derived only from the ledger,
//! caught up before every query, so it can be dropped and rebuilt at any time.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use serde::Serialize;
use sqlx::{QueryBuilder, Row, Sqlite};
use utoipa::ToSchema;

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

async fn insert(tx: &mut sqlx::SqliteConnection, seq: i64, e: &Entry) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT OR REPLACE INTO ledger_entries (seq, time, kind, front_door, user, unit, purpose, outcome, rows, subjects) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(seq)
        .bind(&e.time)
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
        sqlx::query("INSERT OR IGNORE INTO ledger_entry_resources (resource, seq) VALUES (?, ?)")
            .bind(r)
            .bind(seq)
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
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
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
    pub limit: Option<i64>,
}

const LISTED_COLUMNS: &str = "SELECT e.seq, e.time, e.kind, e.front_door, e.user, e.unit, e.purpose, e.outcome, e.rows, (SELECT json_group_array(resource) FROM ledger_entry_resources r WHERE r.seq = e.seq) AS resources FROM ledger_entries e";

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

fn push_filter(q: &mut QueryBuilder<Sqlite>, f: &Filter) {
    q.push(" WHERE 1 = 1");
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
    if let Some(since) = &f.since {
        q.push(" AND e.time >= ").push_bind(since.clone());
    }
    if let Some(until) = &f.until {
        q.push(" AND e.time < ").push_bind(until.clone());
    }
    if let Some(r) = &f.resource {
        q.push(" AND e.seq IN (SELECT seq FROM ledger_entry_resources WHERE resource = ")
            .push_bind(r.clone())
            .push(")");
    }
    if let Some(p) = &f.provider {
        q.push(" AND e.seq IN (SELECT er.seq FROM ledger_entry_resources er JOIN resources rs ON rs.code = er.resource WHERE rs.unit = ")
            .push_bind(p.clone())
            .push(")");
    }
}

/// Entries matching `filter`, newest first.
pub async fn search(audit: &Audit, filter: &Filter) -> Result<Vec<Listed>, AuditError> {
    catch_up(audit).await?;
    let mut q = QueryBuilder::<Sqlite>::new(LISTED_COLUMNS);
    push_filter(&mut q, filter);
    q.push(" ORDER BY e.seq DESC LIMIT ")
        .push_bind(filter.limit.unwrap_or(100).clamp(1, 100_000));
    let rows = q.build().fetch_all(audit.dir().metadata()).await?;
    Ok(rows.iter().map(listed).collect())
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
    let mut q = QueryBuilder::<Sqlite>::new(
        "SELECT e.unit, e.purpose, count(*) AS entries, sum(e.outcome = ",
    );
    q.push_bind(DENIED)
        .push(") AS denied, COALESCE(sum(e.rows), 0) AS rows, sum(e.subjects) AS subjects FROM ledger_entries e");
    push_filter(&mut q, filter);
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
    let mut q = QueryBuilder::<Sqlite>::new(
        "SELECT e.user, e.unit, count(DISTINCT s.subject) AS subjects FROM ledger_entries e LEFT JOIN ledger_subjects s ON s.seq = e.seq",
    );
    push_filter(&mut q, filter);
    q.push(" AND e.user IS NOT NULL AND ")
        .push(USES)
        .push(" GROUP BY e.user, e.unit");
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

    #[test]
    fn the_median_leaves_the_reader_out() {
        assert_eq!(median_without(&[5, 5, 500], 500), 5.0);
        assert_eq!(median_without(&[2, 4, 6, 100], 100), 4.0);
        assert_eq!(median_without(&[7], 7), 0.0);
    }
}
