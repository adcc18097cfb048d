//! Point lookups over the PostgreSQL wire, audited: the science bureau's reviewer asks for
//! one enterprise's social-insurance arrears, from 16 `pgbench` connections, once as fast
//! as it goes and once held at 500 statements/s. The same scripts then run against
//! PostgreSQL serving the same rows (indexed on the key, as anyone would) for the ratio.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow::datatypes::DataType;

use crate::audit_overhead::{Lookups, PURPOSE, USER, lookups};

pub(crate) const CLIENTS: &str = "16";
const SECONDS: &str = "20";
const RATE: &str = "500";
/// How many enterprises the scripts pick among.
const SCRIPTS: usize = 64;

pub async fn run(work: &Path) -> Result<()> {
    let lookups = lookups(work).await?;
    let scripts = write_scripts(work, &lookups)?;
    let (server, tongchou) = start_tongchou(&lookups.data)?;
    println!(
        "Point lookups of one enterprise's arrears over the PostgreSQL wire ({} enterprises, {SCRIPTS} scripts), {CLIENTS} connections, {SECONDS} s per run:",
        lookups.codes.len()
    );
    pgbench(&tongchou, &scripts, work, None, "3")?;
    let ours_max = pgbench(&tongchou, &scripts, work, None, SECONDS)?;
    ours_max.print("Tongchou, audited, as fast as it goes");
    let ours_held = pgbench(&tongchou, &scripts, work, Some(RATE), SECONDS)?;
    ours_held.print("Tongchou, audited, held at 500/s");
    drop(server);

    let postgres = Postgres::start(work, &lookups).await?;
    let reference = Target {
        port: postgres.port,
        user: "postgres".into(),
        password: None,
        database: "postgres".into(),
    };
    pgbench(&reference, &scripts, work, None, "3")?;
    let theirs_max = pgbench(&reference, &scripts, work, None, SECONDS)?;
    theirs_max.print("PostgreSQL 15 (B-tree on the key), as fast as it goes");
    let theirs_held = pgbench(&reference, &scripts, work, Some(RATE), SECONDS)?;
    theirs_held.print("PostgreSQL 15 (B-tree on the key), held at 500/s");
    println!(
        "  Tongchou ÷ PostgreSQL throughput: {:.3}; p99 at 500/s: {:.2} ms vs {:.2} ms",
        ours_max.tps / theirs_max.tps,
        ours_held.p99_ms,
        theirs_held.p99_ms
    );
    Ok(())
}

/// `tongchou serve --pg` on the demo in `data`, and how the reviewer reaches it.
pub(crate) fn start_tongchou(data: &Path) -> Result<(Server, Target)> {
    let port = free_port()?;
    let server = Server(
        Command::new("target/release/tongchou")
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--http", &format!("127.0.0.1:{}", free_port()?)])
            .args(["--pg", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start target/release/tongchou serve")?,
    );
    wait_for_port(port)?;
    let target = Target {
        port,
        user: USER.into(),
        password: Some(demo_password(data, USER)?),
        database: PURPOSE.into(),
    };
    Ok((server, target))
}

/// A child process killed when dropped.
pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

pub(crate) struct Target {
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: Option<String>,
    pub(crate) database: String,
}

pub(crate) struct Run {
    pub(crate) tps: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
    count: usize,
}

impl Run {
    pub(crate) fn print(&self, label: &str) {
        println!(
            "  {label}: {:.0} statements/s, p50 {:.2} ms, p99 {:.2} ms ({} statements, {} failed)",
            self.tps, self.p50_ms, self.p99_ms, self.count, self.failed
        );
    }
}

pub(crate) fn write_scripts(work: &Path, lookups: &Lookups) -> Result<Vec<PathBuf>> {
    let dir = work.join("pgbench");
    std::fs::create_dir_all(&dir)?;
    let step = (lookups.codes.len() / SCRIPTS).max(1);
    lookups
        .codes
        .iter()
        .step_by(step)
        .take(SCRIPTS)
        .enumerate()
        .map(|(i, code)| {
            let path = dir.join(format!("lookup-{i}.sql"));
            std::fs::write(
                &path,
                format!(
                    "SELECT * FROM {} WHERE credit_code = '{code}';\n",
                    lookups.table
                ),
            )?;
            Ok(path)
        })
        .collect()
}

pub(crate) fn pgbench(
    target: &Target,
    scripts: &[PathBuf],
    work: &Path,
    rate: Option<&str>,
    seconds: &str,
) -> Result<Run> {
    let logs = work.join("pgbench-log");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs)?;
    let mut command = Command::new("pgbench");
    command
        .args(["-n", "-M", "simple", "-h", "127.0.0.1"])
        .args(["-p", &target.port.to_string(), "-U", &target.user])
        .args(["-c", CLIENTS, "-j", "2", "-T", seconds, "-l"])
        .arg("--log-prefix")
        .arg(logs.join("tx"))
        .current_dir(&logs)
        .env("PGDATABASE", &target.database);
    if let Some(password) = &target.password {
        command.env("PGPASSWORD", password);
    }
    if let Some(rate) = rate {
        command.args(["-R", rate]);
    }
    for script in scripts {
        command.arg("-f").arg(script);
    }
    let out = command.output().context("run pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "pgbench failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tps = text
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no tps in pgbench's report: {text}"))?;
    let failed = text
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut latencies: Vec<u64> = Vec::new();
    for file in std::fs::read_dir(&logs)? {
        let text = std::fs::read_to_string(file?.path())?;
        // client transaction latency_us script epoch_s epoch_us [lag_us]
        latencies.extend(
            text.lines()
                .filter_map(|l| l.split_whitespace().nth(2))
                .filter_map(|n| n.parse::<u64>().ok()),
        );
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default() as f64
            / 1000.0
    };
    Ok(Run {
        tps,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        failed,
        count: latencies.len(),
    })
}

/// One field (`password`, `unit_name`, …) of a demo account in `demo-accounts.json`.
pub(crate) fn demo_account_field(data: &Path, user: &str, field: &str) -> Result<String> {
    let accounts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("demo-accounts.json"))?)?;
    accounts
        .as_array()
        .and_then(|a| a.iter().find(|a| a["user"] == user))
        .and_then(|a| a[field].as_str())
        .map(str::to_string)
        .with_context(|| format!("no demo account {user} with a {field}"))
}

pub(crate) fn demo_password(data: &Path, user: &str) -> Result<String> {
    demo_account_field(data, user, "password")
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) fn wait_for_port(port: u16) -> Result<()> {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("nothing listens on port {port} after a minute");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A throwaway PostgreSQL cluster, run as the `postgres` system user, holding the raw
/// arrears rows under the same schema and table names.
struct Postgres {
    port: u16,
    _server: Server,
}

impl Postgres {
    async fn start(work: &Path, lookups: &Lookups) -> Result<Postgres> {
        let cluster = work.join("postgres");
        let _ = std::fs::remove_dir_all(&cluster);
        std::fs::create_dir_all(&cluster)?;
        as_postgres(Command::new("chown").arg("postgres").arg(&cluster), false)?;
        as_postgres(
            Command::new("initdb")
                .args(["-A", "trust", "-E", "UTF8", "--locale", "C", "-D"])
                .arg(cluster.join("data")),
            true,
        )?;
        let port = free_port()?;
        let server = Server(
            Command::new("runuser")
                .args(["-u", "postgres", "--", "postgres", "-D"])
                .arg(cluster.join("data"))
                .args(["-p", &port.to_string(), "-k"])
                .arg(&cluster)
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "max_connections=40",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("start postgres")?,
        );
        wait_for_port(port)?;
        std::thread::sleep(Duration::from_millis(500));
        let csv = cluster.join("arrears.csv");
        let (columns, rows) = raw_rows(lookups).await?;
        std::fs::write(&csv, rows)?;
        let (schema, _) = lookups
            .table
            .split_once("\".\"")
            .context("a quoted table name")?;
        let setup = format!(
            "CREATE SCHEMA {schema}\";\nCREATE TABLE {} ({columns});\n\\copy {} FROM '{}' WITH (FORMAT csv, HEADER true)\nCREATE INDEX ON {} (credit_code);\nANALYZE;\n",
            lookups.table,
            lookups.table,
            csv.display(),
            lookups.table
        );
        let out = psql_as_postgres(port).args(["-c", "SELECT 1"]).output()?;
        anyhow::ensure!(
            out.status.success(),
            "postgres: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut psql = psql_as_postgres(port).stdin(Stdio::piped()).spawn()?;
        use std::io::Write;
        psql.stdin
            .take()
            .context("psql's input")?
            .write_all(setup.as_bytes())?;
        anyhow::ensure!(psql.wait()?.success(), "loading PostgreSQL failed");
        Ok(Postgres {
            port,
            _server: server,
        })
    }
}

/// `psql` to the reference cluster as its superuser, stopping at the first error.
fn psql_as_postgres(port: u16) -> Command {
    let mut command = Command::new("psql");
    command
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .args(["-p", &port.to_string()]);
    command
}

fn as_postgres(command: &mut Command, switch_user: bool) -> Result<()> {
    let out = if switch_user {
        let program = command.get_program().to_owned();
        let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args)
            .output()?
    } else {
        command.output()?
    };
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The arrears table's raw rows as CSV (read by its steward), with PostgreSQL column
/// definitions.
async fn raw_rows(lookups: &Lookups) -> Result<(String, Vec<u8>)> {
    let steward: String = sqlx::query_scalar(
        "SELECT u.name FROM users u JOIN resources r ON r.unit = u.unit WHERE r.code = ? AND u.role = 'steward' LIMIT 1",
    )
    .bind(crate::audit_overhead::ARREARS)
    .fetch_one(lookups.dir.metadata())
    .await
    .context("the arrears table's steward")?;
    let answer = lookups
        .engine
        .run(
            &steward,
            PURPOSE,
            &format!("SELECT * FROM {}", lookups.table),
        )
        .await?;
    let columns = answer
        .schema
        .fields()
        .iter()
        .map(|f| {
            let kind = match f.data_type() {
                DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => "bigint",
                DataType::Float32 | DataType::Float64 => "double precision",
                DataType::Decimal128(..) | DataType::Decimal256(..) => "numeric",
                DataType::Date32 | DataType::Date64 => "date",
                DataType::Timestamp(..) => "timestamp",
                DataType::Boolean => "boolean",
                _ => "text",
            };
            format!("{} {kind}", tongchou_query::session::quoted(f.name()))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let csv = tongchou_query::front::render(&answer, "csv")?;
    Ok((columns, csv))
}
