//! What auditing costs governed query: the seed's "one enterprise's social-insurance
//! arrears" point lookup by the science bureau's reviewer, run by 16 concurrent clients
//! through the governed engine, once as the front doors run it (answer rendered, ledger
//! entry built and made durable before the answer would leave) and once without the
//! ledger, in the same process on the same data. The ratio is the overhead.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sqlx::Row;
use tongchou_audit::{ALLOWED, Audit, Entry};
use tongchou_query::Engine;
use tongchou_query::front::{render, statement_entry};
use tongchou_store::DataDir;

use crate::access::report;

pub const USER: &str = "science_analyst";
pub const PURPOSE: &str = "subsidy_review";
pub const ARREARS: &str = "313001007/000007";
const CLIENTS: usize = 16;
const SECONDS: u64 = 10;
const PROFILED_SECONDS: u64 = 20;

/// The demo's arrears table, and the enterprises in it, as the reviewer sees them.
pub struct Lookups {
    pub data: PathBuf,
    pub dir: DataDir,
    pub engine: Arc<Engine>,
    /// `"unit"."resource"`, quoted for SQL.
    pub table: String,
    pub codes: Arc<Vec<String>>,
}

/// Sets up the small demo in `work/data` (once) and finds the lookups' keys.
pub async fn lookups(work: &Path) -> Result<Lookups> {
    let data = work.join("data");
    if !data.join("tongchou.toml").exists() {
        let status = std::process::Command::new("target/release/tongchou")
            .args(["--data-dir"])
            .arg(&data)
            .args(["demo", "--scale", "small", "--no-serve"])
            .stdout(std::process::Stdio::null())
            .status()
            .context("run target/release/tongchou (cargo build --release first)")?;
        anyhow::ensure!(status.success(), "the demo did not set up");
    }
    let dir = DataDir::open(&data).await?;
    let row = sqlx::query("SELECT r.name, u.name AS unit FROM resources r JOIN units u ON u.code = r.unit WHERE r.code = ?")
        .bind(ARREARS)
        .fetch_one(dir.metadata())
        .await?;
    let table = format!(
        "{}.{}",
        tongchou_query::session::quoted(&row.get::<String, _>("unit")),
        tongchou_query::session::quoted(&row.get::<String, _>("name"))
    );
    let policy = Arc::new(tongchou_access::Policy::open(dir.clone()).await?);
    // The ledger's own key is not needed to measure: any key hashes subjects at one cost.
    let engine = Arc::new(Engine::open(
        dir.clone(),
        policy,
        tongchou_audit::SubjectKey::generate(),
    )?);
    let codes = engine
        .run(
            USER,
            PURPOSE,
            &format!("SELECT DISTINCT credit_code FROM {table}"),
        )
        .await?;
    let codes = codes
        .batches
        .iter()
        .flat_map(|b| {
            let c =
                arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).expect("text");
            c.as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .expect("strings")
                .iter()
                .flatten()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    Ok(Lookups {
        data,
        dir,
        engine,
        table,
        codes: Arc::new(codes),
    })
}

/// `clients` concurrent clients (16 unless given); with `only`, that one path for a
/// while (to watch with a profiler).
pub async fn run(work: &Path, clients: Option<usize>, only: Option<&str>) -> Result<()> {
    let clients = clients.unwrap_or(CLIENTS);
    let Lookups {
        dir,
        engine,
        table,
        codes,
        ..
    } = lookups(work).await?;
    let audit = Audit::open(&dir).await?;
    let only = only.map(After::named).transpose()?;
    let seconds = if only.is_some() {
        PROFILED_SECONDS
    } else {
        SECONDS
    };
    println!(
        "Point lookups of one enterprise's arrears ({} enterprises in {table}), {clients} clients, {seconds} s each:",
        codes.len()
    );
    if let Some(path) = only {
        measure(&engine, &audit, &table, &codes, path, clients, seconds).await?;
        return Ok(());
    }
    let mut results = Vec::new();
    for path in [After::Plain, After::Audited, After::Plain, After::Audited] {
        results.push((
            path,
            measure(&engine, &audit, &table, &codes, path, clients, SECONDS).await?,
        ));
    }
    let best = |p: After| {
        results
            .iter()
            .filter(|(x, _)| *x == p)
            .map(|(_, r)| *r)
            .fold(0.0f64, f64::max)
    };
    let (plain, audited) = (best(After::Plain), best(After::Audited));
    println!(
        "  best of two: without the ledger {plain:.0}/s, audited {audited:.0}/s — audited ÷ plain {:.3} (overhead {:.1}%)",
        audited / plain,
        (1.0 - audited / plain) * 100.0
    );
    println!("  where the overhead goes (one run each):");
    for path in [After::Built, After::Queued] {
        let rate = measure(&engine, &audit, &table, &codes, path, clients, SECONDS).await?;
        println!("    ÷ plain {:.3}", rate / plain);
    }
    Ok(())
}

/// What a statement does after its answer is rendered.
#[derive(Clone, Copy, PartialEq)]
enum After {
    /// Nothing: the answer would leave.
    Plain,
    /// No entry; the client only lets the others run before its next statement, as a
    /// statement that waits for anything does.
    Yielded,
    /// Its ledger entry is built and serialized, not written.
    Built,
    /// The entry is handed to the committing thread, not waited for.
    Queued,
    /// The entry is durable before the answer would leave (the front doors' path).
    Audited,
}

impl After {
    fn named(name: &str) -> Result<After> {
        Ok(match name {
            "plain" => After::Plain,
            "yielded" => After::Yielded,
            "built" => After::Built,
            "queued" => After::Queued,
            "audited" => After::Audited,
            other => {
                anyhow::bail!("no path {other:?}: say plain, yielded, built, queued or audited")
            }
        })
    }

    fn label(self) -> &'static str {
        match self {
            After::Plain => "without the ledger",
            After::Yielded => "without the ledger, yielding after each statement",
            After::Built => "entry built, not written",
            After::Queued => "entry queued, not waited for",
            After::Audited => "audited (front-door path)",
        }
    }
}

async fn measure(
    engine: &Arc<Engine>,
    audit: &Audit,
    table: &str,
    codes: &Arc<Vec<String>>,
    path: After,
    clients: usize,
    seconds: u64,
) -> Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (engine, audit, codes, stop, done) = (
            engine.clone(),
            audit.clone(),
            codes.clone(),
            stop.clone(),
            done.clone(),
        );
        let table = table.to_string();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = client;
            while !stop.load(Ordering::Relaxed) {
                let code = &codes[i % codes.len()];
                let sql = format!("SELECT * FROM {table} WHERE credit_code = '{code}'");
                let t = Instant::now();
                let answer = engine.run(USER, PURPOSE, &sql).await?;
                let bytes = render(&answer, "json")?;
                if path == After::Yielded {
                    tokio::task::yield_now().await;
                }
                if !matches!(path, After::Plain | After::Yielded) {
                    let mut entry = Entry::new("statement", "pg", ALLOWED);
                    entry.user = Some(USER.into());
                    entry.purpose = Some(PURPOSE.into());
                    let statement = audit.redact(&sql);
                    entry.statement = Some(statement);
                    let entry = statement_entry(&audit, entry, &answer, &bytes);
                    match path {
                        After::Built => drop(std::hint::black_box(entry.to_bytes())),
                        After::Queued => {
                            let committer = audit.committer().clone();
                            tokio::spawn(async move { committer.append(entry.to_bytes()).await });
                        }
                        _ => {
                            audit.record(&entry).await?;
                        }
                    }
                }
                latencies.push(t.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
                i += clients;
            }
            anyhow::Ok(latencies)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let label = path.label();
    println!("  {label}: {rate:.0} statements/s");
    report(&format!("{label}, latency"), latencies);
    Ok(rate)
}
