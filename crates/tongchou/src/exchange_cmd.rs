//! `tongchou ingest`, `tongchou quarantine …`, `tongchou exchange …`: moving data.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tongchou_audit::Audit;
use tongchou_catalog::Catalog;
use tongchou_exchange::{Encoding, Mode, ReadOptions};
use tongchou_query::{Engine, deliver};
use tongchou_store::DataDir;

use crate::catalog_cmd::print_json;
use crate::progress::Bar;

#[derive(Args)]
pub struct IngestArgs {
    /// The resource code, e.g. 313001007/000007.
    pub resource: String,
    pub file: PathBuf,
    /// append, replace or upsert (by the resource's key; a column _op = D deletes).
    #[arg(long, default_value = "append")]
    pub mode: String,
    /// auto, utf-8 or gbk.
    #[arg(long, default_value = "auto")]
    pub encoding: String,
    /// The sheet of a workbook (default: the first).
    #[arg(long)]
    pub sheet: Option<String>,
    /// The 1-based line of the header (default: found below any title rows).
    #[arg(long)]
    pub header_row: Option<u64>,
    /// The file holds corrected quarantined rows: close the resource's open quarantine.
    #[arg(long)]
    pub resubmit: bool,
    #[arg(long = "as")]
    pub user: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum QuarantineCommand {
    /// The rows kept out of a resource's table, with line, field and reason (隔离区).
    List {
        resource: String,
        #[arg(long)]
        json: bool,
    },
    /// Write the quarantined rows as CSV, with their reasons and lines in the original file,
    /// to correct in Excel and load with `ingest --resubmit`.
    Export {
        resource: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ExchangeCommand {
    /// A resource's loads and table versions (版本).
    History {
        resource: String,
        #[arg(long)]
        json: bool,
    },
    /// A resource's table now: version, rows counted, last load (数据表).
    Info {
        resource: String,
        #[arg(long)]
        json: bool,
    },
    /// Subscribe your unit to a resource for a purpose you may read it for (订阅); prints
    /// the subscription id. (A resource's changes without a subscription are a query:
    /// `tongchou query … 'SELECT * FROM "单位"."资源$changes@v3"'`.)
    Subscribe {
        resource: String,
        /// The user subscribing; their unit is the consumer, their grants decide.
        #[arg(long = "as")]
        user: String,
        /// The consumer unit's code: the user's own (the default).
        #[arg(long)]
        unit: Option<String>,
        /// Why the unit takes the data: a code of `tongchou access purposes`.
        #[arg(long)]
        purpose: String,
        #[arg(long)]
        json: bool,
    },
    /// Pull what the subscription has not had yet, as the user may see it, and move the
    /// cursor (拉取).
    Pull {
        subscription: i64,
        #[arg(long = "as")]
        user: String,
        #[arg(long)]
        out: PathBuf,
        /// parquet, csv, json or arrow.
        #[arg(long, default_value = "parquet")]
        format: String,
        #[arg(long)]
        json: bool,
    },
    /// List subscriptions and their cursors.
    Subscriptions {
        #[arg(long)]
        json: bool,
    },
    /// Records delivered per day, resource, provider and consumer (交换量).
    Volume {
        #[arg(long)]
        json: bool,
    },
}

/// The governed engine, and `user`'s unit (refused when the account does not exist or is
/// disabled).
async fn governed(dir: &DataDir, audit: &Audit, user: &str) -> Result<(Engine, String)> {
    let policy = tongchou_access::Policy::open(dir.clone()).await?;
    let Some(unit) = policy.current().await?.user(user).map(|u| u.unit.clone()) else {
        bail!("user '{user}' does not exist or is disabled");
    };
    let engine = Engine::open(dir.clone(), Arc::new(policy), audit.subject_key().clone())?;
    Ok((engine, unit))
}

fn output_format(text: &str) -> Result<tongchou_exchange::changes::OutputFormat> {
    tongchou_exchange::changes::OutputFormat::parse(text)
        .ok_or_else(|| anyhow::anyhow!("unknown format '{text}': use parquet, csv, json or arrow"))
}

pub async fn ingest(data_dir: &Path, args: IngestArgs) -> Result<()> {
    let dir = DataDir::open(data_dir).await?;
    let catalog = Catalog::open(dir.clone()).await?;
    let Some(mode) = Mode::parse(&args.mode) else {
        bail!(
            "unknown mode '{}': use append, replace or upsert",
            args.mode
        )
    };
    let Some(encoding) = Encoding::parse(&args.encoding) else {
        bail!(
            "unknown encoding '{}': use auto, utf-8 or gbk",
            args.encoding
        )
    };
    let actor = match &args.user {
        Some(name) => tongchou_access::get_user(dir.metadata(), name).await?.name,
        None => "operator".to_string(),
    };
    let options = ReadOptions {
        encoding,
        sheet: args.sheet.clone(),
        header_row: args.header_row,
    };
    let bar = Arc::new(Bar::rows("汇入 loading"));
    let report = tongchou_exchange::ingest(
        &dir,
        &catalog,
        &tongchou_exchange::Load {
            resource: &args.resource,
            file: &args.file,
            mode,
            read: &options,
            actor: &actor,
        },
        bar.clone(),
    )
    .await;
    bar.finish();
    let report = report.with_context(|| {
        format!(
            "the load of {} failed; the table is unchanged",
            args.file.display()
        )
    })?;
    if args.resubmit {
        tongchou_exchange::close_quarantine(&dir, &args.resource, &report.load_id).await?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "已汇入 loaded {} → {} version {}",
            args.file.display(),
            report.resource,
            report.version
        );
        println!(
            "  读取 read {} rows; 接收 accepted {}; 隔离 quarantined {}; table now {} rows",
            report.rows_read, report.accepted, report.quarantined, report.rows
        );
        for (rule, n) in &report.by_rule {
            println!("  - {rule}: {n}");
        }
        if report.quarantined > 0 {
            println!(
                "  查看隔离行 see them with: tongchou quarantine list {}",
                report.resource
            );
        }
    }
    Ok(())
}

pub async fn quarantine(data_dir: &Path, command: QuarantineCommand) -> Result<()> {
    let dir = DataDir::open(data_dir).await?;
    match command {
        QuarantineCommand::List { resource, json } => {
            let entries = tongchou_exchange::quarantine(&dir, &resource).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                for e in entries {
                    println!("line {}\t{}\t{}", e.line, e.field, e.reason);
                }
            }
        }
        QuarantineCommand::Export { resource, out } => {
            let entries = tongchou_exchange::quarantine(&dir, &resource).await?;
            let mut writer = csv::Writer::from_path(&out)
                .with_context(|| format!("cannot write {}", out.display()))?;
            let mut seen = std::collections::BTreeSet::new();
            let mut header: Option<Vec<String>> = None;
            for e in entries.iter().filter(|e| seen.insert(e.id)) {
                let object = e.values.as_object().cloned().unwrap_or_default();
                let labels = header.get_or_insert_with(|| {
                    let labels: Vec<String> = object.keys().cloned().collect();
                    let mut row = labels.clone();
                    row.extend(["隔离原因".into(), "原文件行号".into()]);
                    let _ = writer.write_record(&row);
                    labels
                });
                let mut row: Vec<String> = labels
                    .iter()
                    .map(|l| {
                        object
                            .get(l)
                            .and_then(|v| v.as_str())
                            .unwrap_or("")
                            .to_string()
                    })
                    .collect();
                row.push(
                    entries
                        .iter()
                        .filter(|x| x.id == e.id)
                        .map(|x| x.reason.clone())
                        .collect::<Vec<_>>()
                        .join("; "),
                );
                row.push(e.line.to_string());
                writer.write_record(&row)?;
            }
            writer.flush()?;
            println!(
                "已导出 exported {} quarantined rows to {}: correct them, then `tongchou ingest {resource} {} --resubmit`",
                seen.len(),
                out.display(),
                out.display()
            );
        }
    }
    Ok(())
}

pub async fn exchange(
    data_dir: &Path,
    audit: tongchou_audit::Audit,
    command: ExchangeCommand,
) -> Result<()> {
    let dir = DataDir::open(data_dir).await?;
    match command {
        ExchangeCommand::History { resource, json } => {
            let loads = tongchou_exchange::loads(&dir, &resource).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&loads)?);
            } else {
                for l in loads {
                    println!(
                        "v{}\t{}\t{}\t+{} / 隔离 {}\t{} rows\t{}",
                        l.version, l.finished_at, l.mode, l.accepted, l.quarantined, l.rows, l.file
                    );
                }
            }
        }
        ExchangeCommand::Info { resource, json } => {
            let info = tongchou_exchange::info(&dir, &resource).await?;
            if json {
                return print_json(&info);
            }
            println!(
                "{} version {} rows {} last load {}",
                info.resource,
                info.version.map_or("-".into(), |v| v.to_string()),
                info.rows,
                info.last_load.unwrap_or_default()
            );
        }
        ExchangeCommand::Subscribe {
            resource,
            user,
            unit,
            purpose,
            json,
        } => {
            let (engine, own) = governed(&dir, &audit, &user).await?;
            if unit.as_ref().is_some_and(|u| u != &own) {
                bail!("{user} subscribes for their own unit ({own}) only");
            }
            let s = deliver::subscribe(&engine, &user, &own, &resource, &purpose).await?;
            if json {
                return print_json(&s);
            }
            println!("{}", s.id);
            eprintln!(
                "已订阅 subscribed {own} to {resource}; pull with `tongchou exchange pull {} --as {user} --out FILE`",
                s.id
            );
        }
        ExchangeCommand::Pull {
            subscription,
            user,
            out,
            format,
            json,
        } => {
            let (engine, unit) = governed(&dir, &audit, &user).await?;
            let mut entry = crate::cli_audit::entry("pull", tongchou_audit::ALLOWED);
            entry.user = Some(user.clone());
            entry.unit = Some(unit.clone());
            let request = deliver::PullRequest {
                user: &user,
                unit: &unit,
                subscription,
                format: output_format(&format)?,
                out: &out,
                entry,
            };
            let pulled = deliver::pull(&engine, &audit, request).await?;
            if json {
                return print_json(&pulled);
            }
            println!(
                "已拉取 pulled {} rows of {} (versions {}→{}) into {}",
                pulled.rows, pulled.resource, pulled.from_version, pulled.to_version, pulled.file
            );
        }
        ExchangeCommand::Subscriptions { json } => {
            let subs = tongchou_exchange::changes::subscriptions(&dir).await?;
            if json {
                return print_json(&subs);
            }
            for s in subs {
                println!(
                    "{}\t{}\t{}\tcursor {}",
                    s.id, s.resource, s.consumer, s.cursor
                );
            }
        }
        ExchangeCommand::Volume { json } => {
            let volume = tongchou_exchange::changes::volume(&dir).await?;
            if json {
                return print_json(&volume);
            }
            for v in volume {
                println!(
                    "{}\t{}\t{} → {}\t{}",
                    v.day, v.resource, v.provider, v.consumer, v.records
                );
            }
        }
    }
    Ok(())
}

/// Loads every export of the demo district that has not been loaded yet.
pub async fn load_district(dir: &DataDir, catalog: &Catalog, district: &Path) -> Result<()> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(district.join(tongchou_sim::MANIFEST_FILE))?)?;
    let exports = manifest["exports"].as_array().cloned().unwrap_or_default();
    let pending: Vec<&serde_json::Value> = {
        let mut out = Vec::new();
        for e in &exports {
            let code = e["resource_code"].as_str().unwrap_or_default();
            if tongchou_exchange::loads(dir, code).await?.is_empty() {
                out.push(e);
            }
        }
        out
    };
    if pending.is_empty() {
        return Ok(());
    }
    let total: u64 = pending
        .iter()
        .map(|e| e["rows"].as_u64().unwrap_or(0))
        .sum();
    let bar = Arc::new(Bar::rows("汇入 loading"));
    bar.set_length(total);
    let started = std::time::Instant::now();
    let (mut accepted, mut quarantined) = (0u64, 0u64);
    for e in pending {
        let code = e["resource_code"].as_str().unwrap_or_default();
        let options = ReadOptions {
            encoding: Encoding::Auto,
            sheet: e["sheet"].as_str().map(str::to_string),
            header_row: e["header_row"].as_u64().filter(|h| *h > 0),
        };
        let report = tongchou_exchange::ingest(
            dir,
            catalog,
            &tongchou_exchange::Load {
                resource: code,
                file: &district.join(e["file"].as_str().unwrap_or_default()),
                mode: Mode::Append,
                read: &options,
                actor: "demo",
            },
            bar.clone(),
        )
        .await?;
        accepted += report.accepted;
        quarantined += report.quarantined;
    }
    bar.finish();
    let truth: serde_json::Value = serde_json::from_slice(&std::fs::read(
        district.join(tongchou_sim::GROUND_TRUTH_FILE),
    )?)?;
    let planted: std::collections::BTreeSet<(String, u64)> = truth["invalid_rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["file"].as_str().unwrap_or("").to_string(),
                r["line"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    println!(
        "已汇入 loaded {accepted} records into {} tables in {:.0} s; 隔离 quarantined {quarantined} rows (planted invalid rows: {})",
        exports.len(),
        started.elapsed().as_secs_f64(),
        planted.len()
    );
    Ok(())
}
