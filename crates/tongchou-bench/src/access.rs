//! `tongchou-bench access`: sign-in cost (Argon2id), token checks and the per-statement
//! access decision with 100,000 grants in force, each beside the SQLite lookup a simpler
//! design would make per request.

use std::time::{Duration, Instant};

use anyhow::Result;
use jiff::Timestamp;
use tongchou_access::{Door, Policy, PolicySet, Principal, Scopes, credentials};
use tongchou_model::UserRole;
use tongchou_store::DataDir;

use crate::{micros, ms, percentile};

const UNITS: usize = 65;
const RESOURCES: usize = 1_083;
const USERS: usize = 1_300;
const GRANTS: usize = 100_000;
const TOKENS: usize = 2_000;
const LOOKUPS: usize = 200_000;

pub(crate) fn report(what: &str, mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    println!(
        "  {what}: p50 {:.2} µs, p99 {:.2} µs, max {:.1} µs ({} samples)",
        micros(p50),
        micros(p99),
        micros(*samples.last().unwrap()),
        samples.len()
    );
    (micros(p50), micros(p99))
}

async fn populate(dir: &DataDir) -> Result<()> {
    let mut tx = dir.metadata().begin().await?;
    for u in 0..UNITS {
        sqlx::query(
            "INSERT INTO units (code, name, slug, seq, created_at) VALUES (?, ?, ?, ?, 'now')",
        )
        .bind(format!("U{u}"))
        .bind(format!("单位{u}"))
        .bind(format!("unit{u}"))
        .bind(u as i64)
        .execute(&mut *tx)
        .await?;
    }
    for r in 0..RESOURCES {
        let unit = format!("U{}", r % UNITS);
        let fields: Vec<serde_json::Value> = (0..12)
            .map(|f| serde_json::json!({"name": format!("f{f}"), "label": format!("字段{f}"), "type": "string", "sensitivity": if f == 11 { "secret" } else { "internal" }}))
            .collect();
        let body = serde_json::json!({"unit": unit, "name": format!("资源{r}"), "abstract": "", "share_type": "conditional", "open_type": "none", "update_cycle": "monthly", "fields": fields});
        sqlx::query("INSERT INTO resources (code, unit, name, share_type, open_type, update_cycle, field_count, version, body, registered_at, updated_at) VALUES (?, ?, ?, 'conditional', 'none', 'monthly', 12, 1, ?, 'now', 'now')")
            .bind(format!("R{r}"))
            .bind(&unit)
            .bind(format!("资源{r}"))
            .bind(body.to_string())
            .execute(&mut *tx)
            .await?;
    }
    // Users share one hash: hashing 1,300 passwords is not what is measured here.
    let hash = tongchou_access::hash_password("benchmark password")?;
    for u in 0..USERS {
        sqlx::query("INSERT INTO users (name, unit, role, password_hash, created_at) VALUES (?, ?, 'analyst', ?, 'now')")
            .bind(format!("user{u}"))
            .bind(format!("U{}", u % UNITS))
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
    }
    let fields = r#"[{"name":"f0"},{"name":"f1","mask":"chinese_name"},{"name":"f2","mask":"pseudonym"},{"name":"f3"},{"name":"f4"},{"name":"f5"}]"#;
    for g in 0..GRANTS {
        let user = g % USERS;
        let resource = (g * 7 + 1) % RESOURCES;
        sqlx::query("INSERT INTO grants (resource, provider, unit, user, purpose, fields, row_filter, valid_from, valid_until, granted_by, granted_at) VALUES (?, ?, ?, ?, 'statistics', ?, 'f3 = ''x''', '2000-01-01T00:00:00Z', '2999-01-01T00:00:00Z', 'bench', 'now')")
            .bind(format!("R{resource}"))
            .bind(format!("U{}", resource % UNITS))
            .bind(format!("U{}", user % UNITS))
            .bind(format!("user{user}"))
            .bind(fields)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

fn argon2_costs() -> Result<()> {
    let mut hashes = Vec::new();
    let mut verifies = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        let hash = tongchou_access::hash_password(&format!("correct horse battery {i}"))?;
        hashes.push(started.elapsed());
        let started = Instant::now();
        assert!(tongchou_access::verify_password(
            &format!("correct horse battery {i}"),
            &hash
        ));
        verifies.push(started.elapsed());
    }
    hashes.sort();
    verifies.sort();
    println!(
        "sign-in (Argon2id {}): verify p50 {:.1} ms, p95 {:.1} ms; hash p50 {:.1} ms",
        tongchou_access::users::ARGON2_PARAMS,
        ms(percentile(&verifies, 0.5)),
        ms(percentile(&verifies, 0.95)),
        ms(percentile(&hashes, 0.5))
    );
    Ok(())
}

pub async fn run() -> Result<()> {
    argon2_costs()?;
    let tmp = tempfile::tempdir()?;
    let dir = DataDir::init(&tmp.path().join("data")).await?;
    let started = Instant::now();
    populate(&dir).await?;
    println!(
        "populated {UNITS} units, {RESOURCES} resources, {USERS} users, {GRANTS} grants in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut secrets = Vec::with_capacity(TOKENS);
    for t in 0..TOKENS {
        let who = Principal::of_user(dir.metadata(), &format!("user{}", t % USERS)).await?;
        let issued =
            credentials::create_token(&dir, &who, "bench", Scopes::parse("read,query")?, Some(30))
                .await?;
        secrets.push(issued.secret);
    }
    let started = Instant::now();
    let set = PolicySet::load(&dir).await?;
    let reload = started.elapsed();
    println!(
        "policy reload after a change ({GRANTS} grants, {TOKENS} tokens): {:.0} ms",
        ms(reload)
    );
    let policy = Policy::open(dir.clone()).await?;

    println!("token check ({TOKENS} tokens, {LOOKUPS} checks):");
    let mut samples = Vec::with_capacity(LOOKUPS);
    for i in 0..LOOKUPS {
        let secret = &secrets[(i * 7919) % TOKENS];
        let started = Instant::now();
        let principal = policy.authenticate(secret, Door::Rest).await?;
        samples.push(started.elapsed());
        debug_assert_eq!(principal.user.role, UserRole::Analyst);
    }
    let (_, token_p99) = report(
        "Tongchou (generation check + SHA-256 + constant-time compare)",
        samples,
    );
    let mut samples = Vec::with_capacity(LOOKUPS / 10);
    for i in 0..LOOKUPS / 10 {
        let secret = &secrets[(i * 7919) % TOKENS];
        let id = &secret[3..19];
        let started = Instant::now();
        let row: Option<(Vec<u8>, String)> = sqlx::query_as(
            "SELECT secret_hash, user FROM credentials WHERE id = ? AND revoked_at IS NULL",
        )
        .bind(id)
        .fetch_optional(dir.metadata())
        .await?;
        samples.push(started.elapsed());
        assert!(row.is_some());
    }
    let (_, sqlite_p99) = report("reference: one SQLite point lookup per request", samples);
    println!(
        "  ratio p99 Tongchou ÷ SQLite lookup: {:.2}",
        token_p99 / sqlite_p99
    );

    println!("access decision per statement ({GRANTS} grants in force, {LOOKUPS} decisions):");
    let now = Timestamp::now();
    let mut samples = Vec::with_capacity(LOOKUPS);
    let mut granted = 0;
    for i in 0..LOOKUPS {
        let user = format!("user{}", i % USERS);
        let resource = format!("R{}", (i * 7 + 1) % RESOURCES);
        let started = Instant::now();
        let decision = set.decide(&user, &resource, "statistics", now);
        samples.push(started.elapsed());
        granted += usize::from(decision.is_ok());
    }
    let (_, decide_p99) = report("PolicySet::decide", samples);
    let mut samples = Vec::with_capacity(LOOKUPS);
    for i in 0..LOOKUPS {
        let user = format!("user{}", (i * 31) % USERS);
        let resource = format!("R{}", (i * 13) % RESOURCES);
        let started = Instant::now();
        let _ = policy.decide(&user, &resource, "statistics").await;
        samples.push(started.elapsed());
    }
    report("Policy::decide (with the generation check)", samples);
    let mut samples = Vec::with_capacity(LOOKUPS / 10);
    for i in 0..LOOKUPS / 10 {
        let user = format!("user{}", i % USERS);
        let resource = format!("R{}", (i * 7 + 1) % RESOURCES);
        let started = Instant::now();
        let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as("SELECT id, fields, row_filter FROM grants WHERE resource = ? AND unit = (SELECT unit FROM users WHERE name = ?) AND (user IS NULL OR user = ?) AND purpose = 'statistics' AND revoked_at IS NULL")
            .bind(&resource)
            .bind(&user)
            .bind(&user)
            .fetch_all(dir.metadata())
            .await?;
        samples.push(started.elapsed());
        std::hint::black_box(rows);
    }
    let (_, sqlite_p99) = report(
        "reference: the same grant lookup in SQLite (indexed)",
        samples,
    );
    println!(
        "  ratio p99 Tongchou ÷ SQLite lookup: {:.2}; {granted} of {LOOKUPS} decisions granted",
        decide_p99 / sqlite_p99
    );
    Ok(())
}
