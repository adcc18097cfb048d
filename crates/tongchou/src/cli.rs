//! The command line: flags, subcommands, and which crate each one calls.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use tongchou_sim::Scale;
use tongchou_store::DataDir;

use crate::access_cmd::{self, AccessCommand, TokenCommand, UserCommand};
use crate::catalog_cmd::{self, CatalogCommand};
use crate::cli_audit::audited;
use crate::exchange_cmd::{self, ExchangeCommand, IngestArgs, QuarantineCommand};
use crate::ledger_cmd::{self, LedgerCommand};
use crate::progress::Bar;

#[derive(Parser)]
#[command(
    name = "tongchou",
    version,
    about = "统筹 Tongchou: register, find, share, exchange and query government data without giving up control of it"
)]
pub struct Cli {
    /// The data directory (数据目录) holding everything the platform keeps.
    #[arg(
        long,
        global = true,
        env = "TONGCHOU_DATA",
        default_value = "./tongchou-data"
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the data directory (初始化数据目录).
    Init,
    /// Set up the simulated district, register its catalog and serve it (演示).
    Demo(DemoArgs),
    /// The resource catalog (资源目录): register, search, inventory.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Load a department file into a resource's table (汇入).
    Ingest(IngestArgs),
    /// Rows kept out of tables by validation (隔离区).
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Loads, versions and subscriptions (交换).
    Exchange {
        #[command(subcommand)]
        command: ExchangeCommand,
    },
    /// User accounts (用户).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API tokens for programs (令牌).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Access requests, the providing unit's decisions and grants (共享申请与授权).
    Access {
        #[command(subcommand)]
        command: AccessCommand,
    },
    /// Run one governed SQL statement as a user, for a purpose (查询).
    Query(crate::query_cmd::QueryArgs),
    /// The audit ledger: verify it, prove entries, see who used whose data (审计账本).
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Serve the REST API (and, later, the portal) (启动服务).
    Serve(ServeArgs),
    /// The simulated district (模拟区).
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
}

#[derive(Subcommand)]
enum SimCommand {
    /// Generate the district's department exports and ground truth (生成模拟数据).
    Generate(GenerateArgs),
}

#[derive(Args)]
struct DemoArgs {
    /// tiny, small or nanhai (the seed's 65 units, 1,083 resources, 12,706 fields).
    #[arg(long, default_value = "small")]
    scale: String,
    #[arg(long, default_value_t = 2015)]
    seed: u64,
    /// Exit when set up instead of serving.
    #[arg(long)]
    no_serve: bool,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Address of the web portal and REST API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: std::net::SocketAddr,
    /// Serve HTTPS with this certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Also serve the PostgreSQL wire protocol here (e.g. 127.0.0.1:15432); the database
    /// name is the purpose: `psql -h 127.0.0.1 -p 15432 -U USER -d PURPOSE`.
    #[arg(long)]
    pg: Option<std::net::SocketAddr>,
    /// Sign a ledger checkpoint this often (seconds) while the ledger grows.
    #[arg(long, default_value_t = 60)]
    checkpoint_every: u64,
}

#[derive(Args)]
struct GenerateArgs {
    /// tiny (seconds, for tests), small (the demo) or nanhai (the seed's full scale).
    #[arg(long, default_value = "small")]
    scale: String,
    #[arg(long, default_value_t = 2015)]
    seed: u64,
    /// Output directory; must not exist yet.
    #[arg(long)]
    out: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub fn parse_scale(text: &str) -> Result<Scale> {
    match Scale::parse(text) {
        Some(scale) => Ok(scale),
        None => bail!("unknown scale '{text}': use tiny, small or nanhai"),
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn run(cli: Cli) -> Result<()> {
    let dir = &cli.data_dir;
    match cli.command {
        Command::Init => init(dir),
        Command::Demo(args) => runtime()?.block_on(demo(dir, &args)),
        Command::Catalog { command } => {
            runtime()?.block_on(audited(dir, "catalog", |_| catalog_cmd::run(dir, command)))
        }
        Command::User { command } => runtime()?.block_on(audited(dir, "account_change", |_| {
            access_cmd::user(dir, command)
        })),
        Command::Token { command } => runtime()?.block_on(audited(dir, "account_change", |_| {
            access_cmd::token(dir, command)
        })),
        Command::Access { command } => {
            runtime()?.block_on(audited(dir, "access", |_| access_cmd::access(dir, command)))
        }
        Command::Ingest(args) => {
            runtime()?.block_on(audited(dir, "load", |_| exchange_cmd::ingest(dir, args)))
        }
        Command::Quarantine { command } => runtime()?.block_on(audited(dir, "quarantine", |_| {
            exchange_cmd::quarantine(dir, command)
        })),
        Command::Exchange { command } => runtime()?.block_on(audited(dir, "exchange", |audit| {
            exchange_cmd::exchange(dir, audit, command)
        })),
        Command::Ledger { command } => ledger_cmd::run(dir, command),
        Command::Query(args) => runtime()?.block_on(crate::query_cmd::run(dir, args)),
        Command::Serve(args) => runtime()?.block_on(serve(dir, &args)),
        Command::Sim {
            command: SimCommand::Generate(args),
        } => generate(&args),
    }
}

fn init(data_dir: &Path) -> Result<()> {
    let existed = data_dir.join(tongchou_store::MARKER_FILE).exists();
    runtime()?.block_on(DataDir::init(data_dir))?;
    let what = if existed {
        "数据目录已存在 already initialised"
    } else {
        "已创建数据目录 created data directory"
    };
    println!(
        "{what}: {} (format version {})",
        data_dir.display(),
        tongchou_store::FORMAT_VERSION
    );
    Ok(())
}

async fn demo(data_dir: &Path, args: &DemoArgs) -> Result<()> {
    let scale = parse_scale(&args.scale)?;
    let dir = DataDir::init(data_dir).await?;
    let audit = tongchou_audit::Audit::open(&dir).await?;
    audit
        .record(&crate::cli_audit::entry(
            "demo_setup",
            tongchou_audit::ALLOWED,
        ))
        .await?;
    let district = dir.root().join("district");
    if !district.exists() {
        println!(
            "正在生成模拟区 generating the {} district …",
            scale.as_str()
        );
        let bar = Bar::rows("生成 generating");
        let result = tongchou_sim::generate(scale, args.seed, &district, &bar);
        bar.finish();
        result?;
    }
    let catalog = tongchou_catalog::Catalog::open(dir.clone()).await?;
    if catalog.inventory().await?.resources == 0 {
        let started = std::time::Instant::now();
        let bytes = std::fs::read(district.join(tongchou_sim::CATALOG_FILE)).context("the demo district has no catalog.json; delete the district/ folder of the data directory to regenerate it")?;
        let batch = tongchou_catalog::Batch::from_json(&bytes)
            .map_err(tongchou_catalog::CatalogError::Rejected)?;
        let codes = catalog
            .register(batch, &tongchou_catalog::Actor::Operator)
            .await?;
        println!(
            "已登记目录 registered {} resources of 65 units in {:.1} s",
            codes.len(),
            started.elapsed().as_secs_f64()
        );
    }
    exchange_cmd::load_district(&dir, &catalog, &district).await?;
    catalog_cmd::print_inventory(&catalog.inventory().await?);
    let accounts = crate::demo::staff(&dir).await?;
    crate::demo::print_accounts(&accounts, dir.root());
    tongchou_audit::outbox::drain(&audit).await?;
    if let Some(official) = crate::demo::macau_trips(&dir, &audit).await? {
        println!(
            "谁查了我 who looked at this (simulated) official: tongchou --data-dir {} ledger subject {official}",
            dir.root().display()
        );
    }
    audit.with_ledger(|l| l.checkpoint()).await?;
    if args.no_serve {
        return Ok(());
    }
    drop(catalog);
    serve(data_dir, &args.serve).await
}

async fn serve(data_dir: &Path, args: &ServeArgs) -> Result<()> {
    let dir = DataDir::open(data_dir).await?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tongchou_server::Tls {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let state = tongchou_server::AppState::open(dir, tls.is_some())
        .await
        .map_err(anyhow::Error::msg)?;
    state
        .audit
        .keep_checkpointing(std::time::Duration::from_secs(args.checkpoint_every));
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!(
        "统筹 Tongchou 门户 portal at {scheme}://{}/  (REST API under /api, OpenAPI at /openapi.json; Ctrl-C to stop)",
        args.http
    );
    if !args.http.ip().is_loopback() && tls.is_none() {
        eprintln!(
            "注意 warning: listening on {} without TLS — passwords and tokens would cross the network in clear; add --tls-cert and --tls-key",
            args.http.ip()
        );
    }
    let state = std::sync::Arc::new(state);
    let state_for_pg = state.clone();
    if let Some(pg) = args.pg {
        if !pg.ip().is_loopback() && tls.is_none() {
            eprintln!(
                "注意 warning: the PostgreSQL port {pg} takes passwords in clear; keep it on 127.0.0.1 or add --tls-cert and --tls-key"
            );
        }
        let offered = if tls.is_some() { ", TLS offered" } else { "" };
        println!("PostgreSQL 协议 wire protocol at {pg} (database = purpose{offered})");
        let pg_tls = tls.clone();
        tokio::spawn(async move {
            if let Err(e) = tongchou_server::serve_pg(state_for_pg, pg, pg_tls.as_ref()).await {
                eprintln!("错误 error: cannot serve PostgreSQL on {pg}: {e}");
                std::process::exit(1);
            }
        });
    }
    tongchou_server::serve(state, tongchou_portal::routes(), args.http, tls)
        .await
        .with_context(|| format!("cannot serve on {}", args.http))
}

fn generate(args: &GenerateArgs) -> Result<()> {
    let scale = parse_scale(&args.scale)?;
    let bar = Bar::rows("生成 generating");
    let started = std::time::Instant::now();
    let summary = tongchou_sim::generate(scale, args.seed, &args.out, &bar);
    bar.finish();
    let summary = summary?;
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        let mut value = serde_json::to_value(&summary)?;
        value["seconds"] = serde_json::json!(seconds);
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("模拟区已生成 district generated in {}", args.out.display());
        println!("  单位 units {:>12}", summary.units);
        println!("  信息资源 resources {:>6}", summary.resources);
        println!("  信息项 fields {:>11}", summary.fields);
        println!("  记录 records {:>12}", summary.records);
        println!("  无效行 invalid rows {:>5}", summary.invalid_rows);
        println!(
            "  {} files, {:.1} MB, {:.1} s ({:.0} records/s)",
            summary.files,
            summary.bytes as f64 / 1e6,
            seconds,
            summary.records as f64 / seconds
        );
    }
    Ok(())
}
