//! The command line: flags, subcommands, and which crate each one calls.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use tongchou_sim::Scale;
use tongchou_store::DataDir;

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
    /// Set up the simulated district and show it (演示): the README's main command.
    Demo(DemoArgs),
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
    /// Exit when set up instead of serving the portal.
    #[arg(long)]
    no_serve: bool,
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

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init => init(&cli.data_dir),
        Command::Demo(args) => demo(&cli.data_dir, &args),
        Command::Sim {
            command: SimCommand::Generate(args),
        } => generate(&args),
    }
}

fn init(data_dir: &Path) -> Result<()> {
    let existed = data_dir.join(tongchou_store::MARKER_FILE).exists();
    runtime()?.block_on(DataDir::init(data_dir))?;
    if existed {
        println!(
            "数据目录已存在 already initialised: {} (format version {})",
            data_dir.display(),
            tongchou_store::FORMAT_VERSION
        );
    } else {
        println!(
            "已创建数据目录 created data directory: {} (format version {})",
            data_dir.display(),
            tongchou_store::FORMAT_VERSION
        );
    }
    Ok(())
}

fn demo(data_dir: &Path, args: &DemoArgs) -> Result<()> {
    let scale = parse_scale(&args.scale)?;
    let dir = runtime()?.block_on(DataDir::init(data_dir))?;
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
    let truth: serde_json::Value = serde_json::from_slice(&std::fs::read(district.join(tongchou_sim::GROUND_TRUTH_FILE))?)
        .context("the demo district's ground truth cannot be read; delete the district/ folder of the data directory to regenerate it")?;
    let inventory = &truth["inventory"];
    println!(
        "南海区模拟数据 simulated district ({}, seed {}) in {}",
        truth["scale"].as_str().unwrap_or("?"),
        truth["seed"],
        district.display()
    );
    println!("  单位 units: {}", inventory["units"]);
    println!("  信息资源 resources: {}", inventory["resources"]);
    println!("  信息项 fields: {}", inventory["fields"]);
    println!("  记录 records: {}", inventory["records"]);
    if !args.no_serve {
        println!("（门户将在后续版本提供 the portal is not part of this build yet; exiting）");
    }
    Ok(())
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
