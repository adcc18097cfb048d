//! The seed's scenarios 1, 3 and 6 as SQL on a demo district (the `nanhai` scale for the
//! record), in one run, like with like:
//!
//! - warm, from memory: governed (the engine every front door uses, as the granted analyst,
//!   ledger entry made durable; it keeps small tables decoded and their masked rows), raw
//!   DataFusion over `MemTable`s of the same tables (no grant, no masks), DuckDB over
//!   in-memory tables created from the same Parquet files;
//! - warm, from files: raw DataFusion over the Delta tables (DataFusion's defaults and the
//!   engine's Parquet settings, the faster counting), DuckDB over the current Parquet files;
//! - cold: the first statement of a freshly opened engine, session or DuckDB connection
//!   after the page cache is dropped.
//!
//! Warm figures are the median of `RUNS` runs after one to warm up; cold ones the median
//! of `COLD_RUNS` first statements.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use deltalake::datafusion::catalog::{
    CatalogProvider, MemTable, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use sqlx::Row;
use tongchou_audit::{ALLOWED, Audit, Entry};
use tongchou_query::Engine;
use tongchou_query::front::{render, statement_entry};
use tongchou_query::session::quoted;
use tongchou_store::DataDir;

const RUNS: usize = 15;
const COLD_RUNS: usize = 3;

struct Scenario {
    name: &'static str,
    user: &'static str,
    purpose: &'static str,
    /// (unit, resource) of each table the statement reads.
    tables: &'static [(&'static str, &'static str)],
    sql: &'static str,
}

const SCIENCE: &str = "佛山市南海区科学技术局";
const SOCIAL_INSURANCE: &str = "佛山市南海区社会保险基金管理局";
const TAX: &str = "国家税务总局佛山市南海区税务局";
const POWER: &str = "广东电网有限责任公司佛山南海供电局";
const EXIT_ENTRY: &str = "佛山市公安局南海分局出入境管理大队";
const ORGANISATION: &str = "中共佛山市南海区委组织部";

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "1 subsidy applicants with social-insurance arrears",
        user: "science_analyst",
        purpose: "subsidy_review",
        tables: &[
            (SCIENCE, "科技项目资助申请"),
            (SOCIAL_INSURANCE, "社会保险费欠缴明细"),
        ],
        sql: r#"SELECT a.application_no, a.applicant, a.credit_code, a.amount, d.months, d.amount AS arrears
FROM "佛山市南海区科学技术局"."科技项目资助申请" a
JOIN "佛山市南海区社会保险基金管理局"."社会保险费欠缴明细" d ON a.credit_code = d.credit_code
ORDER BY arrears DESC, a.application_no"#,
    },
    Scenario {
        name: "3 tax out of line with electricity use",
        user: "tax_analyst",
        purpose: "tax_administration",
        tables: &[
            (TAX, "企业纳税申报信息"),
            (POWER, "用电客户信息"),
            (POWER, "月度用电量"),
        ],
        sql: r#"WITH power AS (
  SELECT c.credit_code, sum(u.kwh) AS kwh
  FROM "广东电网有限责任公司佛山南海供电局"."用电客户信息" c
  JOIN "广东电网有限责任公司佛山南海供电局"."月度用电量" u ON u.account_no = c.account_no
  WHERE c.credit_code IS NOT NULL
  GROUP BY c.credit_code),
tax AS (
  SELECT taxpayer_id, sum(tax_paid) AS tax_paid
  FROM "国家税务总局佛山市南海区税务局"."企业纳税申报信息"
  GROUP BY taxpayer_id)
SELECT t.taxpayer_id, t.tax_paid, p.kwh, CAST(t.tax_paid AS DOUBLE) / CAST(p.kwh AS DOUBLE) AS tax_per_kwh
FROM tax t JOIN power p ON p.credit_code = t.taxpayer_id
WHERE p.kwh > 0
ORDER BY tax_per_kwh, t.taxpayer_id
LIMIT 100"#,
    },
    Scenario {
        name: "6 officials' frequent trips to Macau",
        user: "procuratorate_analyst",
        purpose: "procuratorial_supervision",
        tables: &[(EXIT_ENTRY, "出入境记录"), (ORGANISATION, "公职人员名册")],
        sql: r#"SELECT r.person_id, r.name, r.unit, r.position, count(*) AS trips
FROM "佛山市公安局南海分局出入境管理大队"."出入境记录" e
JOIN "中共佛山市南海区委组织部"."公职人员名册" r ON e.person_id = r.person_id
WHERE e.direction = '出境' AND e.destination = '澳门'
GROUP BY r.person_id, r.name, r.unit, r.position
HAVING count(*) >= 4
ORDER BY trips DESC, r.person_id"#,
    },
];

/// Median seconds of `RUNS` runs after one to warm up, and the rows of the last.
async fn timed<F, Fut>(mut run: F) -> Result<(f64, u64)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    run().await?;
    let mut seconds = Vec::with_capacity(RUNS);
    let mut rows = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        rows = run().await?;
        seconds.push(start.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    Ok((seconds[RUNS / 2], rows))
}

/// The resource's code and Delta table directory.
async fn table_of(dir: &DataDir, unit: &str, name: &str) -> Result<std::path::PathBuf> {
    let code: String = sqlx::query(
        "SELECT r.code FROM resources r JOIN units u ON u.code = r.unit WHERE u.name = ? AND r.name = ?",
    )
    .bind(unit)
    .bind(name)
    .fetch_one(dir.metadata())
    .await
    .with_context(|| format!("{unit}.{name} is not in this district's catalog"))?
    .get("code");
    Ok(tongchou_exchange::table::table_dir(
        &dir.tables_dir(),
        &code,
    ))
}

/// The catalog's schema named after `unit`, made on first use.
fn unit_schema(catalog: &MemoryCatalogProvider, unit: &str) -> Result<Arc<dyn SchemaProvider>> {
    if let Some(schema) = catalog.schema(unit) {
        return Ok(schema);
    }
    let schema = Arc::new(MemorySchemaProvider::new());
    catalog.register_schema(unit, schema.clone())?;
    Ok(schema)
}

/// A plain DataFusion session with the scenario's Delta tables under the same names, with
/// DataFusion's default settings or those the governed engine reads Delta tables with.
async fn raw_session(dir: &DataDir, scenario: &Scenario, engines: bool) -> Result<SessionContext> {
    let config = if engines {
        tongchou_query::session::delta_scan_config()
    } else {
        SessionConfig::new()
    };
    let ctx = SessionContext::new_with_config(
        config.with_default_catalog_and_schema("tongchou", "public"),
    );
    let catalog = Arc::new(MemoryCatalogProvider::new());
    for (unit, name) in scenario.tables {
        let schema = unit_schema(&catalog, unit)?;
        let table = tongchou_exchange::table::open(&table_of(dir, unit, name).await?)
            .await?
            .context("the table has no data: run the demo first")?;
        schema.register_table(name.to_string(), table.table_provider().await?)?;
    }
    ctx.register_catalog("tongchou", catalog);
    Ok(ctx)
}

/// A plain DataFusion session over `MemTable`s holding the scenario's tables, decoded once,
/// in as many partitions as there are cores.
async fn memory_session(dir: &DataDir, scenario: &Scenario) -> Result<SessionContext> {
    let files = raw_session(dir, scenario, true).await?;
    let ctx = SessionContext::new_with_config(
        SessionConfig::new().with_default_catalog_and_schema("tongchou", "public"),
    );
    let catalog = Arc::new(MemoryCatalogProvider::new());
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    for (unit, name) in scenario.tables {
        let schema = unit_schema(&catalog, unit)?;
        let frame = files
            .table(format!("{}.{}", quoted(unit), quoted(name)))
            .await?;
        let arrow_schema = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await?;
        let mut partitions = vec![Vec::new(); cores];
        for (i, batch) in batches.into_iter().enumerate() {
            partitions[i % cores].push(batch);
        }
        let table = MemTable::try_new(arrow_schema, partitions)?;
        schema.register_table(name.to_string(), Arc::new(table))?;
    }
    ctx.register_catalog("tongchou", catalog);
    Ok(ctx)
}

/// The median of `COLD_RUNS` first statements, each after the page cache is dropped, of a
/// session made by `fresh` (its making not counted); and its rows.
async fn cold<S, F, Fut, R, RFut>(mut fresh: F, mut run: R) -> Result<(f64, u64)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<S>>,
    R: FnMut(S) -> RFut,
    RFut: std::future::Future<Output = Result<u64>>,
{
    let mut seconds = Vec::with_capacity(COLD_RUNS);
    let mut rows = 0;
    for _ in 0..COLD_RUNS {
        crate::drop_caches();
        let session = fresh().await?;
        let start = Instant::now();
        rows = run(session).await?;
        seconds.push(start.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    Ok((seconds[COLD_RUNS / 2], rows))
}

/// DuckDB's figures for `scenario`, over each table's current files.
struct Duck {
    /// Over `read_parquet` views: the first statement (cold when the cache was dropped
    /// before) and the warm median.
    files_first: f64,
    files: f64,
    /// Over in-memory tables created from the same files: the warm median, and the
    /// seconds the tables took to create.
    memory: f64,
    load: f64,
    rows: u64,
}

async fn duckdb(dir: &DataDir, scenario: &Scenario) -> Result<Duck> {
    let mut views = Vec::new();
    for (unit, name) in scenario.tables {
        let table = tongchou_exchange::table::open(&table_of(dir, unit, name).await?)
            .await?
            .context("the table has no data")?;
        let files: Vec<String> = table
            .get_file_uris()?
            .map(|uri| format!("'{}'", uri.trim_start_matches("file://")))
            .collect();
        views.push(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; CREATE VIEW {schema}.{table} AS SELECT * FROM read_parquet([{files}]);",
            schema = quoted(unit),
            table = quoted(name),
            files = files.join(", ")
        ));
    }
    let script = format!(
        r#"
import duckdb, json, sys, time
sql = {sql}
def median(db):
    db.execute(sql).fetchall()
    times, rows = [], 0
    for _ in range({RUNS}):
        start = time.perf_counter()
        rows = len(db.execute(sql).fetchall())
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2], rows
files = duckdb.connect()
files.execute({views})
start = time.perf_counter()
files.execute(sql).fetchall()
files_first = time.perf_counter() - start
files_median, rows = median(files)
memory = duckdb.connect()
start = time.perf_counter()
memory.execute({tables})
load = time.perf_counter() - start
memory_median, memory_rows = median(memory)
assert rows == memory_rows
print(json.dumps({{"files_first": files_first, "files": files_median, "memory": memory_median, "load": load, "rows": rows}}))
"#,
        views = serde_json::to_string(&views.join("\n"))?,
        tables = serde_json::to_string(&views.join("\n").replace("CREATE VIEW", "CREATE TABLE"))?,
        sql = serde_json::to_string(scenario.sql)?,
    );
    crate::drop_caches();
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .context("python3 with duckdb (pip install duckdb)")?;
    if !out.status.success() {
        bail!("DuckDB: {}", String::from_utf8_lossy(&out.stderr));
    }
    let result: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let number = |key: &str| result[key].as_f64().with_context(|| key.to_string());
    Ok(Duck {
        files_first: number("files_first")?,
        files: number("files")?,
        memory: number("memory")?,
        load: number("load")?,
        rows: result["rows"].as_u64().context("rows")?,
    })
}

/// One governed statement as a front door runs it: answer, rendered, entry made durable.
async fn governed(
    engine: &Engine,
    audit: &Audit,
    unit: &Option<String>,
    scenario: &Scenario,
) -> Result<u64> {
    let answer = engine
        .run(scenario.user, scenario.purpose, scenario.sql)
        .await?;
    let bytes = render(&answer, "arrow")?;
    let mut entry = Entry::new("statement", "bench", ALLOWED);
    entry.user = Some(scenario.user.into());
    entry.unit = unit.clone();
    entry.purpose = Some(scenario.purpose.into());
    entry.statement = Some(scenario.sql.into());
    audit
        .record(&statement_entry(audit, entry, &answer, &bytes))
        .await?;
    Ok(answer.rows)
}

async fn rows_of(ctx: &SessionContext, sql: &str) -> Result<u64> {
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(batches.iter().map(|b| b.num_rows() as u64).sum())
}

/// Runs the scenarios whose name starts with `only` (all when empty).
pub async fn run(data: &Path, only: &str) -> Result<()> {
    let dir = DataDir::open(data).await.with_context(|| {
        format!(
            "{}: run `tongchou demo --scale nanhai` first",
            data.display()
        )
    })?;
    let policy = Arc::new(tongchou_access::Policy::open(dir.clone()).await?);
    let audit = Audit::open(&dir).await?;
    let subject_key = audit.subject_key().clone();
    let engine = Engine::open(dir.clone(), policy.clone(), subject_key.clone())?;
    let mut warm_rows = Vec::new();
    let mut cold_rows = Vec::new();
    for scenario in SCENARIOS.iter().filter(|s| s.name.starts_with(only)) {
        let unit = policy
            .current()
            .await?
            .user(scenario.user)
            .map(|u| u.unit.clone());
        let (warm, rows) = timed(|| governed(&engine, &audit, &unit, scenario))
            .await
            .with_context(|| scenario.name)?;
        let (first, _) = cold(
            || async {
                Ok(Engine::open(
                    dir.clone(),
                    policy.clone(),
                    subject_key.clone(),
                )?)
            },
            |fresh| {
                let unit = unit.clone();
                let audit = &audit;
                async move { governed(&fresh, audit, &unit, scenario).await }
            },
        )
        .await?;
        let mut file_times = Vec::new();
        let mut counted = vec![rows];
        for engines in [false, true] {
            let ctx = raw_session(&dir, scenario, engines).await?;
            let (seconds, n) = timed(|| rows_of(&ctx, scenario.sql)).await?;
            file_times.push(seconds);
            counted.push(n);
        }
        let memory = memory_session(&dir, scenario).await?;
        let (in_memory, n) = timed(|| rows_of(&memory, scenario.sql)).await?;
        counted.push(n);
        let (raw_first, n) = cold(
            || raw_session(&dir, scenario, true),
            |ctx| async move { rows_of(&ctx, scenario.sql).await },
        )
        .await?;
        counted.push(n);
        let duck = duckdb(&dir, scenario).await?;
        counted.push(duck.rows);
        if counted.iter().any(|&n| n != rows) {
            bail!(
                "{}: the engines disagree on rows (governed, DataFusion files ×2, MemTable, cold, DuckDB): {counted:?}",
                scenario.name
            );
        }
        let files = file_times[0].min(file_times[1]);
        warm_rows.push(format!(
            "| {} | {rows} | {warm:.3} s | {in_memory:.3} s | {:.3} s (tables made in {:.1} s) | **{:.2}** | **{:.2}** | {:.3} / {:.3} s | {:.3} s | {:.2} | {:.2} |",
            scenario.name,
            duck.memory,
            duck.load,
            warm / in_memory,
            warm / duck.memory,
            file_times[0],
            file_times[1],
            duck.files,
            warm / files,
            warm / duck.files,
        ));
        cold_rows.push(format!(
            "| {} | {first:.3} s | {raw_first:.3} s | {:.3} s | **{:.2}** | **{:.2}** |",
            scenario.name,
            duck.files_first,
            first / raw_first,
            first / duck.files_first,
        ));
    }
    println!("Warm (median of {RUNS} after a warm-up):");
    println!(
        "| scenario | rows | governed | DataFusion MemTable | DuckDB in-memory tables | ÷ MemTable | ÷ DuckDB tables | DataFusion over Delta (defaults / engine's) | DuckDB over Parquet | ÷ DataFusion files | ÷ DuckDB files |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    warm_rows.iter().for_each(|r| println!("{r}"));
    println!(
        "Cold (first statement of a fresh engine / session / connection, page cache dropped; median of {COLD_RUNS}):"
    );
    println!(
        "| scenario | governed | DataFusion over Delta | DuckDB over Parquet | ÷ DataFusion | ÷ DuckDB |"
    );
    println!("|---|---|---|---|---|---|");
    cold_rows.iter().for_each(|r| println!("{r}"));
    Ok(())
}
