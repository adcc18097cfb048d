//! `cargo run --release -p tongchou-bench -- catalog`: the catalog's numbers (registration
//! of the full `nanhai` catalog, search latency over ten times it beside a SQLite LIKE scan
//! of the same metadata, inference speed and accuracy on the `small` district).
//! `-- access`: sign-in cost, token checks and access decisions with 100,000 grants.
//! `-- exchange [ROWS] [WORK_DIR]`: ingest and pull beside DuckDB.
//! `-- keys [ROWS] [WORK_DIR]`: an append's cost of checking keys against earlier versions.
//! `-- wire-overhead [WORK_DIR] [ROUNDS]`: auditing's cost on point lookups over the
//! PostgreSQL wire, against the same engine served with nothing recorded.
//! `-- portal [WORK_DIR]`: every portal page's p50/p95 on the `small` demo beside its REST call.

mod access;
mod audit_overhead;
mod exchange;
mod ledger;
mod ledger_growth;
mod machine_costs;
mod pg_lookup;
mod portal;
mod scenarios;
mod wire_overhead;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::Value;
use tongchou_catalog::{Actor, Batch, Catalog, SearchQuery};
use tongchou_model::ShareType;
use tongchou_sim::Scale;
use tongchou_store::DataDir;

/// The same allocator as the `tongchou` binary, so in-process numbers match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {cpu}")
}

const QUERIES: [&str; 16] = [
    "社保 欠费",
    "出入境",
    "不动产 登记",
    "户籍 人口",
    "营业执照",
    "用电",
    "纳税",
    "公职人员",
    "行政处罚",
    "补贴 发放",
    "统一社会信用代码",
    "检查记录",
    "credit_code",
    "Social Insurance",
    "学校",
    "许可 审批",
];

async fn catalog_bench() -> Result<()> {
    println!("machine: {}; date: {}", machine(), jiff_today());
    let tmp = tempfile::tempdir()?;
    let (units, resources) = tongchou_sim::catalog(Scale::Nanhai, 2015);
    let fields: usize = resources.iter().map(|r| r.fields.len()).sum();
    let file = serde_json::to_vec(&serde_json::json!({ "units": units, "resources": resources }))?;

    let catalog = Catalog::open(DataDir::init(&tmp.path().join("nanhai")).await?).await?;
    let started = Instant::now();
    let batch = Batch::from_json(&file).map_err(|p| anyhow::anyhow!("{p:?}"))?;
    let codes = catalog.register(batch, &Actor::Operator).await?;
    let register = started.elapsed();
    let inv = catalog.inventory().await?;
    println!(
        "register nanhai catalog: {} units, {} resources, {fields} fields in {:.2} s (target < 10 s)",
        inv.units,
        codes.len(),
        register.as_secs_f64()
    );
    if (inv.units, inv.resources, inv.fields) != (65, 1_083, 12_706) {
        bail!(
            "the nanhai catalog registered as {}/{}/{}",
            inv.units,
            inv.resources,
            inv.fields
        );
    }
    drop(catalog);

    // Ten times the seed's catalog: each resource registered ten times under varied names.
    let dir = DataDir::init(&tmp.path().join("tenfold")).await?;
    let catalog = Catalog::open(dir.clone()).await?;
    catalog.add_units(&units, &Actor::Operator).await?;
    let started = Instant::now();
    for copy in 0..10 {
        let batch = Batch {
            units: Vec::new(),
            problems: Vec::new(),
            resources: resources
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.code = None;
                    r.related.clear();
                    if copy > 0 {
                        r.name = format!("{}（第{}批）", r.name, copy + 1);
                    }
                    (String::new(), r)
                })
                .collect(),
        };
        catalog.register(batch, &Actor::Operator).await?;
    }
    let inv = catalog.inventory().await?;
    println!(
        "register tenfold catalog: {} resources, {} fields in {:.1} s",
        inv.resources,
        inv.fields,
        started.elapsed().as_secs_f64()
    );

    let mut tantivy = Vec::new();
    let mut hits_per_query = HashMap::new();
    for round in 0..60 {
        for (i, q) in QUERIES.iter().enumerate() {
            let query = SearchQuery {
                text: q.to_string(),
                share_type: (i % 4 == 3).then_some(ShareType::Conditional),
                limit: 20,
                ..Default::default()
            };
            let t = Instant::now();
            let hits = catalog.search(&query).await?;
            tantivy.push(t.elapsed());
            if round == 0 {
                hits_per_query.insert(*q, hits.len());
            }
        }
    }
    // Reference: the same words as substring scans over the same metadata in SQLite.
    let pool = dir.metadata();
    let mut like = Vec::new();
    for _ in 0..3 {
        for q in QUERIES {
            let words: Vec<String> = q
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(|w| format!("%{w}%"))
                .collect();
            let sql = match words.len() {
                1 => "SELECT code FROM resources WHERE body LIKE ?1 LIMIT 20",
                _ => "SELECT code FROM resources WHERE body LIKE ?1 AND body LIKE ?2 LIMIT 20",
            };
            let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
            for w in &words {
                query = query.bind(w);
            }
            let t = Instant::now();
            query.fetch_all(pool).await?;
            like.push(t.elapsed());
        }
    }
    tantivy.sort();
    like.sort();
    println!(
        "search over {} resources ({} queries): p50 {:.2} ms, p99 {:.2} ms (target p99 < 10 ms); SQLite LIKE scan of the same metadata: p50 {:.2} ms, p99 {:.2} ms; p99 ratio tantivy/LIKE = {:.3}",
        inv.resources,
        tantivy.len(),
        ms(percentile(&tantivy, 0.5)),
        ms(percentile(&tantivy, 0.99)),
        ms(percentile(&like, 0.5)),
        ms(percentile(&like, 0.99)),
        ms(percentile(&tantivy, 0.99)) / ms(percentile(&like, 0.99)),
    );
    println!("hits per query (of 20): {hits_per_query:?}");
    infer_bench(&tmp.path().join("small")).await
}

async fn infer_bench(out: &std::path::Path) -> Result<()> {
    tongchou_sim::generate(Scale::Small, 2015, out, &())?;
    let manifest: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json"))?)?;
    let catalog: Value = serde_json::from_slice(&std::fs::read(out.join("catalog.json"))?)?;
    let resources: HashMap<&str, &Value> = catalog["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["code"].as_str().unwrap(), r))
        .collect();
    let mut counts: HashMap<String, (usize, usize, usize)> = HashMap::new();
    let mut times = Vec::new();
    for entry in manifest["exports"].as_array().unwrap() {
        if entry["format"] == "ndjson" {
            continue;
        }
        let path = out.join(entry["file"].as_str().unwrap());
        let bytes = std::fs::read(&path)?;
        let t = Instant::now();
        let sample = tongchou_catalog::sample::read(&path.to_string_lossy(), &bytes, None, 10_000)?;
        let inference = tongchou_catalog::infer::infer(&sample);
        if sample.rows.len() == 10_000 {
            times.push((
                t.elapsed(),
                path.file_name().unwrap().to_string_lossy().into_owned(),
                bytes.len(),
            ));
        }
        let truth = resources[entry["resource_code"].as_str().unwrap()]["fields"]
            .as_array()
            .unwrap();
        for (f, s) in truth.iter().zip(&inference.fields) {
            let roles: Vec<&str> = [
                "person_id",
                "enterprise_id",
                "phone",
                "person_name",
                "address",
                "bank_card",
            ]
            .to_vec();
            for role in roles {
                let actual = f["role"].as_str() == Some(role);
                let predicted = s.role.map(|r| r.as_str()) == Some(role);
                let c = counts.entry(role.to_string()).or_default();
                match (actual, predicted) {
                    (true, true) => c.0 += 1,
                    (false, true) => c.1 += 1,
                    (true, false) => c.2 += 1,
                    _ => {}
                }
            }
        }
    }
    times.sort();
    let (slowest, name, size) = times.last().cloned().unwrap();
    println!(
        "inference on 10,000-row samples: {} files, slowest {:.0} ms ({name}, {:.1} MB file read whole), median {:.0} ms (target < 1 s)",
        times.len(),
        ms(slowest),
        size as f64 / 1e6,
        ms(times[times.len() / 2].0)
    );
    let mut roles: Vec<_> = counts.into_iter().collect();
    roles.sort();
    for (role, (tp, fp, fn_)) in roles {
        println!(
            "  {role}: precision {:.3}, recall {:.3} ({tp} columns right, {fp} false, {fn_} missed)",
            tp as f64 / (tp + fp).max(1) as f64,
            tp as f64 / (tp + fn_).max(1) as f64
        );
    }
    Ok(())
}

fn jiff_today() -> String {
    std::process::Command::new("date")
        .arg("-u")
        .arg("+%F")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The directory argument at `position`, or `default` under the system's temporary directory.
/// Writes dirty pages out and drops the page cache, so that the next reads come from the
/// disk; false where that is not allowed (then "cold" figures are warm ones).
pub(crate) fn drop_caches() -> bool {
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn work_dir(args: &[String], position: usize, default: &str) -> std::path::PathBuf {
    args.get(position)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(default))
}

/// `[ROWS] [WORK_DIR]` (10 M rows by default), once the machine and date are printed.
fn rows_and_work(args: &[String], default: &str) -> (u64, std::path::PathBuf) {
    println!("machine: {}; date: {}", machine(), jiff_today());
    let rows = args
        .get(2)
        .and_then(|r| r.parse().ok())
        .unwrap_or(10_000_000);
    (rows, work_dir(args, 3, default))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Runtime::new()?;
    match args.get(1).map(String::as_str) {
        Some("catalog") => runtime.block_on(catalog_bench()),
        Some("access") => {
            println!("machine: {}; date: {}", machine(), jiff_today());
            runtime.block_on(access::run())
        }
        Some("exchange") => {
            let (rows, work) = rows_and_work(&args, "tongchou-bench-exchange");
            exchange::run(rows, &work)
        }
        Some("keys") => {
            let (rows, work) = rows_and_work(&args, "tongchou-bench-keys");
            exchange::keys(rows, &work)
        }
        Some("audit-overhead") => {
            let work = work_dir(&args, 2, "tongchou-bench-audit");
            println!("machine: {}; date: {}", machine(), jiff_today());
            machine_costs::print(&work)?;
            let clients = args.get(3).map(|c| c.parse()).transpose()?;
            let only = args.get(4).map(String::as_str);
            runtime.block_on(audit_overhead::run(&work, clients, only))
        }
        Some("pg-lookup") => {
            let work = work_dir(&args, 2, "tongchou-bench-audit");
            println!("machine: {}; date: {}", machine(), jiff_today());
            runtime.block_on(pg_lookup::run(&work))
        }
        Some("wire-overhead") => {
            let work = work_dir(&args, 2, "tongchou-bench-audit");
            println!("machine: {}; date: {}", machine(), jiff_today());
            machine_costs::print(&work)?;
            let rounds = args.get(3).map(|r| r.parse()).transpose()?;
            runtime.block_on(wire_overhead::run(&work, rounds))
        }
        Some("machine-costs") => {
            println!("machine: {}; date: {}", machine(), jiff_today());
            machine_costs::print(&work_dir(&args, 2, "tongchou-bench-machine"))
        }
        Some("unaudited-pg") => {
            let (Some(data), Some(port)) = (args.get(2), args.get(3)) else {
                bail!(
                    "usage: tongchou-bench unaudited-pg DATA_DIR PORT (started by wire-overhead)"
                );
            };
            runtime.block_on(wire_overhead::serve_unaudited(data.as_ref(), port.parse()?))
        }
        Some("portal") => {
            let work = work_dir(&args, 2, "tongchou-bench-portal");
            println!("machine: {}; date: {}", machine(), jiff_today());
            portal::run(&work)
        }
        Some("scenarios") => {
            let data = work_dir(&args, 2, "nanhai-data");
            println!("machine: {}; date: {}", machine(), jiff_today());
            let only = args.get(3).map(String::as_str).unwrap_or("");
            runtime.block_on(scenarios::run(&data, only))
        }
        Some("ledger") => {
            let number = |i: usize, default: u64| {
                args.get(i).and_then(|r| r.parse().ok()).unwrap_or(default)
            };
            let work = work_dir(&args, 4, "tongchou-bench-ledger");
            println!("machine: {}; date: {}", machine(), jiff_today());
            let result = ledger::run(&work, number(2, 100_000_000), number(3, 10_000_000));
            let _ = std::fs::remove_dir_all(&work);
            result
        }
        Some("ledger-growth") => {
            let entries = args
                .get(2)
                .and_then(|n| n.parse().ok())
                .unwrap_or(50_000_000);
            let work = work_dir(&args, 3, "tongchou-bench-ledger-growth");
            println!("machine: {}; date: {}", machine(), jiff_today());
            runtime.block_on(ledger_growth::run(&work, entries))
        }
        _ => bail!(
            "usage: tongchou-bench catalog | access | exchange [ROWS] [WORK_DIR] | keys [ROWS] [WORK_DIR] | ledger [TREE_SIZE] [VERIFY_ENTRIES] [WORK_DIR] | ledger-growth [ENTRIES] [WORK_DIR] | audit-overhead [WORK_DIR] [CLIENTS] [plain|yielded|built|queued|audited] | pg-lookup [WORK_DIR] | wire-overhead [WORK_DIR] [ROUNDS] | machine-costs [DIR] | portal [WORK_DIR] | scenarios [NANHAI_DATA_DIR] [SCENARIO]"
        ),
    }
}
