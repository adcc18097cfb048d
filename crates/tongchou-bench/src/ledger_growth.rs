//! The ledger as the years pass: opening it, its newest entries and a page of a filtered
//! search on a ledger of tens of millions of entries, cold (page cache dropped) and warm,
//! each beside the whole read it replaced. The log and its index are measured one after the
//! other (a 50-million-entry log and its index do not fit this disk together); the index's
//! rows are written by SQL in the shape `index::catch_up` writes them.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use tongchou_audit::index::{self, Filter};
use tongchou_audit::{ALLOWED, Audit, DENIED, ORIGIN};
use tongchou_ledger::Ledger;
use tongchou_ledger::entry::{Entry, china_time};
use tongchou_store::DataDir;

use crate::access::report;

const UNITS: u64 = 65;
const RESOURCES: u64 = 1083;
const USERS: u64 = 2000;
/// One entry every 3 s: 50 million entries are 4.75 years.
const SPACING_MS: i64 = 3000;
const ENTRIES_PER_APPEND: u64 = 2000;
/// A checkpoint per 10,000 entries (the server signs one a minute while the log grows).
const APPENDS_PER_CHECKPOINT: u64 = 5;
/// 2026-01-01T00:00:00+08:00 minus five years, in milliseconds.
const START_MS: i64 = 1_609_430_400_000;

fn unit_code(u: u64) -> String {
    format!("1144060575{u:07}X")
}

fn resource_code(r: u64) -> String {
    format!("{:03}001002/{r:06}", r % UNITS)
}

/// Entry `i` as a front door writes it, without the statement text (≈ 230 bytes).
fn compact_entry(i: u64) -> Vec<u8> {
    let kind = ["pull", "sign_in", "download", "statement"][(i % 10).min(3) as usize];
    let outcome = if i.is_multiple_of(50) {
        DENIED
    } else {
        ALLOWED
    };
    let mut e = Entry::new(kind, ["rest", "pg", "portal"][i as usize % 3], outcome);
    e.time =
        china_time(jiff::Timestamp::from_millisecond(START_MS + i as i64 * SPACING_MS).unwrap());
    e.user = Some(user_of(i));
    e.unit = Some(unit_code((i * 31) % UNITS));
    e.purpose = Some(format!("purpose{}", i % 20));
    e.resources = vec![resource_code((i * 7) % RESOURCES)];
    e.rows = Some(i % 100);
    e.to_bytes()
}

fn user_of(i: u64) -> String {
    format!("analyst{}", (i * 7919) % USERS)
}

fn provider_of(i: u64) -> String {
    unit_code((i * 7) % RESOURCES % UNITS)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub async fn run(work: &Path, entries: u64) -> Result<()> {
    if work.exists() {
        std::fs::remove_dir_all(work)?;
    }
    std::fs::create_dir_all(work)?;
    let cold = crate::drop_caches();
    if !cold {
        println!("(the page cache cannot be dropped here: cold figures are warm)");
    }
    log_phase(&work.join("log"), entries).await?;
    std::fs::remove_dir_all(work.join("log"))?;
    index_phase(&work.join("index"), entries).await?;
    std::fs::remove_dir_all(work)?;
    Ok(())
}

async fn log_phase(root: &Path, entries: u64) -> Result<()> {
    let dir = DataDir::init(root).await?;
    let (ledger_dir, config) = (dir.ledger_dir(), dir.config_dir());
    let mut ledger = Ledger::open(&ledger_dir, &config, ORIGIN)?;
    let start = Instant::now();
    let mut next = 1;
    while next <= entries {
        let last = (next + ENTRIES_PER_APPEND).min(entries + 1);
        let batch: Vec<Vec<u8>> = (next..last).map(compact_entry).collect();
        ledger.append(&batch)?;
        if (next / ENTRIES_PER_APPEND).is_multiple_of(APPENDS_PER_CHECKPOINT) {
            ledger.checkpoint()?;
        }
        next = last;
    }
    ledger.checkpoint()?;
    drop(ledger);
    let bytes = crate::ledger::dir_bytes(&ledger_dir)?;
    let checkpoint_bytes = std::fs::metadata(ledger_dir.join("checkpoints.log"))?.len();
    println!(
        "Log: {entries} entries, {:.2} GB on disk ({:.1} MB of {} checkpoints), written in {:.0} s",
        bytes as f64 / 1e9,
        checkpoint_bytes as f64 / 1e6,
        entries.div_ceil(ENTRIES_PER_APPEND * APPENDS_PER_CHECKPOINT) + 1,
        start.elapsed().as_secs_f64()
    );

    crate::drop_caches();
    let started = Instant::now();
    let audit = Audit::open(&dir).await?;
    let cold_open = started.elapsed();
    let started = Instant::now();
    audit.with_ledger(|l| tongchou_audit::tail(l, 20)).await?;
    let cold_tail = started.elapsed();
    drop(audit);
    crate::drop_caches();
    let (notes, cold_scan) = timed(|| tongchou_ledger::ledger::read_checkpoint_log(&ledger_dir));
    let notes = notes?.notes.len();
    println!(
        "  cold: open {:.1} ms, newest 20 entries {:.1} ms; reference: reading the {notes} checkpoints (what opening did before) {:.1} ms",
        ms(cold_open),
        ms(cold_tail),
        ms(cold_scan)
    );

    let (mut opens, mut tails, mut scans) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..20 {
        let started = Instant::now();
        let audit = Audit::open(&dir).await?;
        opens.push(started.elapsed());
        let started = Instant::now();
        let tail = audit.with_ledger(|l| tongchou_audit::tail(l, 20)).await?;
        tails.push(started.elapsed());
        assert_eq!(tail.len(), 20);
        drop(audit);
        scans.push(timed(|| tongchou_ledger::ledger::read_checkpoint_log(&ledger_dir)).1);
    }
    report(
        "warm: open (Audit::open, the ledger with its newest checkpoint)",
        opens,
    );
    report("warm: the newest 20 entries", tails);
    report("warm reference: reading every checkpoint", scans);
    let mut ledger = Ledger::open(&ledger_dir, &config, ORIGIN)?;
    let (_, covered) = timed(|| ledger.checkpoint());
    ledger.append(&[compact_entry(entries + 1)])?;
    let (_, signed) = timed(|| ledger.checkpoint());
    println!(
        "  a checkpoint already covering the log {:.2} ms; signing a new one {:.2} ms",
        ms(covered),
        ms(signed)
    );
    Ok(())
}

async fn populate_catalog(dir: &DataDir) -> Result<()> {
    let mut tx = dir.metadata().begin().await?;
    for u in 0..UNITS {
        sqlx::query(
            "INSERT INTO units (code, name, slug, seq, created_at) VALUES (?, ?, ?, ?, 'now')",
        )
        .bind(unit_code(u))
        .bind(format!("单位{u}"))
        .bind(format!("unit{u}"))
        .bind(u as i64)
        .execute(&mut *tx)
        .await?;
    }
    for r in 0..RESOURCES {
        sqlx::query("INSERT INTO resources (code, unit, name, share_type, open_type, update_cycle, field_count, version, body, registered_at, updated_at) VALUES (?, ?, ?, '', '', '', 0, 1, '{}', '', '')")
            .bind(resource_code(r))
            .bind(unit_code(r % UNITS))
            .bind(format!("资源{r}"))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Index rows `from..to`, as `compact_entry` would be indexed.
async fn index_rows(dir: &DataDir, from: u64, to: u64) -> Result<()> {
    let numbers =
        "WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?2) ";
    let at = format!("({START_MS} + i * {SPACING_MS})");
    let mut tx = dir.metadata().begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("{numbers} INSERT INTO ledger_entries (seq, time, at, kind, front_door, user, unit, purpose, outcome, rows, subjects) \
        SELECT i, strftime('%Y-%m-%dT%H:%M:%S.000+08:00', {at} / 1000, 'unixepoch', '+8 hours'), {at}, \
        CASE WHEN i % 10 < 3 THEN json_extract('[\"pull\",\"sign_in\",\"download\"]', '$[' || (i % 10) || ']') ELSE 'statement' END, \
        json_extract('[\"rest\",\"pg\",\"portal\"]', '$[' || (i % 3) || ']'), 'analyst' || ((i * 7919) % {USERS}), \
        printf('1144060575%07dX', (i * 31) % {UNITS}), 'purpose' || (i % 20), CASE WHEN i % 50 = 0 THEN 'denied' ELSE 'allowed' END, i % 100, 0 FROM n")))
        .bind(from as i64).bind(to as i64).execute(&mut *tx).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("{numbers} INSERT INTO ledger_entry_resources (resource, at, seq) \
        SELECT printf('%03d001002/%06d', ((i * 7) % {RESOURCES}) % {UNITS}, (i * 7) % {RESOURCES}), {at}, i FROM n")))
        .bind(from as i64).bind(to as i64).execute(&mut *tx).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "{numbers} INSERT INTO ledger_entry_providers (provider, at, seq) \
        SELECT printf('1144060575%07dX', ((i * 7) % {RESOURCES}) % {UNITS}), {at}, i FROM n"
    )))
    .bind(from as i64)
    .bind(to as i64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn index_phase(root: &Path, entries: u64) -> Result<()> {
    let dir = DataDir::init(root).await?;
    populate_catalog(&dir).await?;
    let audit = Audit::open(&dir).await?;
    index::search(&audit, &Filter::default()).await?;
    let start = Instant::now();
    let mut from = 1;
    while from <= entries {
        let to = (from + 1_000_000).min(entries + 1);
        index_rows(&dir, from, to).await?;
        from = to;
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(dir.metadata())
        .await?;
    let db = std::fs::metadata(root.join("metadata.sqlite"))?.len();
    println!(
        "Index: {entries} rows, {:.2} GB, written in {:.0} s",
        db as f64 / 1e9,
        start.elapsed().as_secs_f64()
    );
    check_rows_match_entries(&audit, entries).await?;

    let day = |days_ago: i64| {
        let at = START_MS + entries as i64 * SPACING_MS - days_ago * 86_400_000;
        china_time(jiff::Timestamp::from_millisecond(at).unwrap())[..10].to_string()
    };
    let some = |s: &str| Some(s.to_string());
    let back = (entries as i64 * SPACING_MS / 86_400_000 * 3 / 5).max(1);
    // A user and a providing unit whose resources they read.
    let (user, provider) = (user_of(entries / 2), provider_of(entries / 2));
    let searches: Vec<(&str, Filter)> = vec![
        ("newest page, no filter", Filter::default()),
        (
            "one user's newest page",
            Filter {
                user: Some(user.clone()),
                ..Filter::default()
            },
        ),
        (
            "one user, one day 60 % of the way back",
            Filter {
                user: Some(user.clone()),
                since: Some(day(back)),
                until: Some(day(back - 1)),
                ..Filter::default()
            },
        ),
        (
            "one resource's newest page",
            Filter {
                resource: Some(resource_code(500)),
                ..Filter::default()
            },
        ),
        (
            "a steward's page (the uses of the unit's resources)",
            Filter {
                provider: Some(provider.clone()),
                ..Filter::default()
            },
        ),
        (
            "a steward's page, one user",
            Filter {
                provider: Some(provider.clone()),
                user: Some(user.clone()),
                ..Filter::default()
            },
        ),
        (
            "denied pulls",
            Filter {
                kind: some("pull"),
                outcome: some("denied"),
                ..Filter::default()
            },
        ),
        (
            "a page deep in the past (before = a third of the way in)",
            Filter {
                before: Some(entries as i64 / 3),
                ..Filter::default()
            },
        ),
    ];
    println!("Searches (a page of 100, `index::search` with its catch-up), cold then 20 warm:");
    for (what, filter) in &searches {
        crate::drop_caches();
        let started = Instant::now();
        let found = index::search(&audit, filter).await?;
        let cold = started.elapsed();
        anyhow::ensure!(!found.is_empty(), "{what} found nothing");
        let mut warm = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            index::search(&audit, filter).await?;
            warm.push(started.elapsed());
        }
        let (p50, p99) = report(what, warm);
        println!(
            "    {} entries; cold {:.1} ms; warm p50 {:.2} ms, p99 {:.2} ms",
            found.len(),
            ms(cold),
            p50 / 1e3,
            p99 / 1e3
        );
    }
    let usage = [
        (
            "a steward's use summary, 7 days",
            Filter {
                provider: Some(provider.clone()),
                since: Some(day(7)),
                ..Filter::default()
            },
        ),
        (
            "the bureau's use summary, 7 days",
            Filter {
                since: Some(day(7)),
                ..Filter::default()
            },
        ),
    ];
    for (what, filter) in &usage {
        crate::drop_caches();
        let started = Instant::now();
        index::usage(&audit, filter).await?;
        let cold = started.elapsed();
        let started = Instant::now();
        index::usage(&audit, filter).await?;
        println!(
            "  {what}: cold {:.1} ms, warm {:.1} ms",
            ms(cold),
            ms(started.elapsed())
        );
    }
    let old_provider_page = "SELECT e.seq FROM ledger_entries e WHERE e.seq IN (SELECT er.seq FROM ledger_entry_resources er JOIN resources rs ON rs.code = er.resource WHERE rs.unit = ?) ORDER BY e.seq DESC LIMIT 100";
    let started = Instant::now();
    sqlx::query(old_provider_page)
        .bind(&provider)
        .fetch_all(audit.dir().metadata())
        .await?;
    println!(
        "  reference: a steward's page as the index answered it before (gather the unit's resources' entries, then sort), warm: {:.0} ms",
        ms(started.elapsed())
    );
    let started = Instant::now();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_entries")
        .fetch_one(audit.dir().metadata())
        .await?;
    println!(
        "  reference: one full scan of the entries (count(*) of {n}), warm: {:.0} ms",
        ms(started.elapsed())
    );
    Ok(())
}

/// The SQL-written rows are what `catch_up` would have written for the same entries.
async fn check_rows_match_entries(audit: &Audit, entries: u64) -> Result<()> {
    for i in [1, 2, 3, 9, 10, 50, entries / 2, entries] {
        let e = Entry::parse(&compact_entry(i))?;
        let row: (String, String, String, String, String, String) = sqlx::query_as(
            "SELECT time, kind, front_door, user, unit, outcome FROM ledger_entries WHERE seq = ?",
        )
        .bind(i as i64)
        .fetch_one(audit.dir().metadata())
        .await?;
        let want = (
            e.time,
            e.kind,
            e.front_door,
            e.user.unwrap(),
            e.unit.unwrap(),
            e.outcome,
        );
        anyhow::ensure!(row == want, "index row {i}: {row:?}, entry: {want:?}");
        let resource: String =
            sqlx::query_scalar("SELECT resource FROM ledger_entry_resources WHERE seq = ?")
                .bind(i as i64)
                .fetch_one(audit.dir().metadata())
                .await?;
        anyhow::ensure!(resource == e.resources[0], "resource of row {i}");
    }
    Ok(())
}
