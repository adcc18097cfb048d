//! `tongchou catalog …`: the catalog at the command line.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use tongchou_catalog::{Actor, Batch, Catalog, CatalogError, Inventory, SearchQuery};
use tongchou_model::{OpenType, ShareType, Unit, UpdateCycle};
use tongchou_store::DataDir;

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Register resources from a catalog workbook (.xlsx) or JSON, all or nothing (登记).
    Register {
        #[arg(long)]
        file: PathBuf,
        /// Act as this user (a steward registers for their own unit).
        #[arg(long = "as")]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Replace a resource's metadata with a new version (修改).
    Update {
        code: String,
        #[arg(long)]
        file: PathBuf,
        #[arg(long = "as")]
        user: Option<String>,
    },
    /// Show one resource (查看).
    Show {
        code: String,
        #[arg(long)]
        json: bool,
    },
    /// List a resource's versions (版本).
    History {
        code: String,
        #[arg(long)]
        json: bool,
    },
    /// Compare two versions of a resource (比较).
    Diff { code: String, from: i64, to: i64 },
    /// Search the catalog in Chinese or English (检索).
    Search {
        query: String,
        #[arg(long)]
        unit: Option<String>,
        #[arg(long)]
        share_type: Option<String>,
        #[arg(long)]
        open_type: Option<String>,
        #[arg(long)]
        update_cycle: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// The inventory: units, resources, fields (清家底).
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// List units (单位).
    Units {
        #[arg(long)]
        json: bool,
    },
    /// Register a unit.
    AddUnit {
        #[arg(long)]
        code: String,
        #[arg(long)]
        name: String,
        /// Short ASCII name, the unit's SQL schema.
        #[arg(long)]
        slug: String,
        #[arg(long, default_value = "")]
        name_en: String,
        #[arg(long)]
        parent: Option<String>,
    },
    /// Write the empty catalog workbook to fill in Excel (模板).
    Template {
        #[arg(long)]
        out: PathBuf,
    },
    /// Export registered resources as a catalog workbook.
    Export {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        unit: Option<String>,
    },
    /// Propose fields and detect personal data from a sample file (CSV or XLSX) (推断).
    Infer {
        file: PathBuf,
        #[arg(long)]
        sheet: Option<String>,
        #[arg(long, default_value_t = 10_000)]
        rows: usize,
        /// Also write a draft resource (JSON) to complete and register.
        #[arg(long)]
        draft: Option<PathBuf>,
        #[arg(long, requires = "draft")]
        unit: Option<String>,
        #[arg(long, requires = "draft")]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

async fn open(data_dir: &Path) -> Result<Catalog> {
    Ok(Catalog::open(DataDir::open(data_dir).await?).await?)
}

async fn actor(catalog_dir: &Path, user: Option<String>) -> Result<Actor> {
    let Some(name) = user else {
        return Ok(Actor::Operator);
    };
    let dir = DataDir::open(catalog_dir).await?;
    let u = tongchou_access::get_user(dir.metadata(), &name).await?;
    Ok(Actor::User {
        name: u.name,
        unit: u.unit,
        role: u.role,
    })
}

fn read_batch(file: &Path) -> Result<Batch> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let batch = if tongchou_catalog::sample::is_workbook(&file.to_string_lossy()) {
        Batch::from_workbook(&bytes)
    } else {
        Batch::from_json(&bytes)
    };
    Ok(batch.map_err(CatalogError::Rejected)?)
}

fn choice<T>(
    value: Option<String>,
    parse: fn(&str) -> Option<T>,
    choices: fn() -> String,
    what: &str,
) -> Result<Option<T>> {
    value
        .map(|v| {
            parse(&v).ok_or_else(|| anyhow::anyhow!("{what} '{v}' is not one of {}", choices()))
        })
        .transpose()
}

pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn run(data_dir: &Path, command: CatalogCommand) -> Result<()> {
    match command {
        CatalogCommand::Register { file, user, json } => {
            let catalog = open(data_dir).await?;
            let actor = actor(data_dir, user).await?;
            let codes = catalog.register(read_batch(&file)?, &actor).await?;
            if json {
                print_json(
                    &serde_json::json!({ "code": codes.first(), "codes": codes, "registered": codes.len() }),
                )?;
            } else {
                for code in &codes {
                    println!("{code}");
                }
                eprintln!("已登记 registered {} resource(s)", codes.len());
            }
        }
        CatalogCommand::Update { code, file, user } => {
            let catalog = open(data_dir).await?;
            let actor = actor(data_dir, user).await?;
            let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&file)?)
                .context("the file is not valid JSON")?;
            let resource = tongchou_catalog::validate::resource(&code, &value)
                .map_err(CatalogError::Rejected)?;
            let version = catalog.update(&code, resource, &actor).await?;
            println!("{code} version {version}");
        }
        CatalogCommand::Show { code, json } => {
            let record = open(data_dir).await?.get(&code).await?;
            if json {
                return print_json(&record);
            }
            let r = &record.resource;
            println!(
                "{} 「{}」 v{}  {}",
                code, r.name, record.version, record.unit_name
            );
            println!("  摘要 abstract: {}", r.summary);
            println!(
                "  共享 share: {} / 开放 open: {} / 更新 update: {}",
                r.share_type.label_zh(),
                r.open_type.label_zh(),
                r.update_cycle.label_zh()
            );
            for f in &r.fields {
                println!(
                    "  - {} {} ({}) {}{}",
                    f.name,
                    f.label,
                    f.type_text(),
                    f.sensitivity.label_zh(),
                    f.role
                        .map(|x| format!(" [{}]", x.label_zh()))
                        .unwrap_or_default()
                );
            }
        }
        CatalogCommand::History { code, json } => {
            let history = open(data_dir).await?.history(&code).await?;
            if json {
                return print_json(&history);
            }
            for v in history {
                println!(
                    "v{}\t{}\t{}\t{}",
                    v.version, v.changed_at, v.changed_by, v.summary
                );
            }
        }
        CatalogCommand::Diff { code, from, to } => {
            for c in open(data_dir).await?.diff(&code, from, to).await? {
                println!("{}: {} → {}", c.path, c.from, c.to);
            }
        }
        CatalogCommand::Search {
            query,
            unit,
            share_type,
            open_type,
            update_cycle,
            limit,
            json,
        } => {
            let q = SearchQuery {
                text: query,
                unit,
                share_type: choice(
                    share_type,
                    ShareType::parse,
                    ShareType::choices,
                    "share type",
                )?,
                open_type: choice(open_type, OpenType::parse, OpenType::choices, "open type")?,
                update_cycle: choice(
                    update_cycle,
                    UpdateCycle::parse,
                    UpdateCycle::choices,
                    "update cycle",
                )?,
                limit,
            };
            let hits = open(data_dir).await?.search(&q).await?;
            if json {
                return print_json(&hits);
            }
            if hits.is_empty() {
                println!("未找到 nothing found");
            }
            for h in hits {
                println!(
                    "{}\t{}\t{}\t{}",
                    h.code,
                    h.name,
                    h.unit_name,
                    ShareType::parse(&h.share_type).map_or("", |s| s.label_zh())
                );
            }
        }
        CatalogCommand::Stats { json } => {
            let inventory = open(data_dir).await?.inventory().await?;
            if json {
                return print_json(&inventory);
            }
            print_inventory(&inventory);
        }
        CatalogCommand::Units { json } => {
            let units = open(data_dir).await?.units().await?;
            if json {
                return print_json(&units);
            }
            for u in units {
                println!(
                    "{}\t{}\t{}\t{} resources",
                    u.code, u.name, u.slug, u.resources
                );
            }
        }
        CatalogCommand::AddUnit {
            code,
            name,
            slug,
            name_en,
            parent,
        } => {
            let added = open(data_dir)
                .await?
                .add_units(
                    &[Unit {
                        code,
                        name,
                        name_en,
                        slug,
                        parent,
                    }],
                    &Actor::Operator,
                )
                .await?;
            println!("已登记单位 {added} unit(s) added");
        }
        CatalogCommand::Template { out } => {
            std::fs::write(&out, tongchou_catalog::workbook::template()?)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("模板已写入 template written to {}", out.display());
        }
        CatalogCommand::Export { out, unit } => {
            let catalog = open(data_dir).await?;
            let records = match unit {
                Some(u) => catalog.resources_of_unit(&u).await?,
                None => catalog.all_records().await?,
            };
            let resources: Vec<_> = records.into_iter().map(|r| r.resource).collect();
            std::fs::write(&out, tongchou_catalog::workbook::export(&resources)?)?;
            println!(
                "已导出 exported {} resources to {}",
                resources.len(),
                out.display()
            );
        }
        CatalogCommand::Infer {
            file,
            sheet,
            rows,
            draft,
            unit,
            name,
            json,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let sample = tongchou_catalog::sample::read(
                &file.to_string_lossy(),
                &bytes,
                sheet.as_deref(),
                rows,
            )?;
            let inference = tongchou_catalog::infer::infer(&sample);
            if let Some(path) = draft {
                let (Some(unit), Some(name)) = (unit, name) else {
                    bail!("--draft needs --unit and --name")
                };
                std::fs::write(
                    &path,
                    serde_json::to_string_pretty(&inference.draft(&unit, &name))?,
                )?;
                eprintln!(
                    "草稿已写入 draft written to {}: complete it, then `tongchou catalog register --file {}`",
                    path.display(),
                    path.display()
                );
            }
            if json {
                return print_json(&inference);
            }
            println!(
                "表头在第 {} 行 header on line {}; {} rows sampled",
                inference.header_row, inference.header_row, inference.rows_sampled
            );
            for f in &inference.fields {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    f.label,
                    f.name,
                    f.data_type,
                    f.role.map_or("-", |r| r.as_str()),
                    f.reasons.join("; ")
                );
            }
        }
    }
    Ok(())
}

pub fn print_inventory(inv: &Inventory) {
    println!("资源目录 catalog inventory");
    println!("  单位 units: {}", inv.units);
    println!("  信息资源 resources: {}", inv.resources);
    println!("  信息项 fields: {}", inv.fields);
    let share = |s: ShareType| inv.by_share_type.get(s.as_str()).copied().unwrap_or(0);
    println!(
        "  共享类型 share types: 无条件共享 {} / 有条件共享 {} / 不予共享 {}",
        share(ShareType::Unconditional),
        share(ShareType::Conditional),
        share(ShareType::None)
    );
    println!(
        "  未登记资源的单位 units that registered nothing: {}",
        inv.units_without_resources.len()
    );
    for u in inv.units_without_resources.iter().take(10) {
        println!("    - {}", u.name);
    }
    println!(
        "  尚未汇入数据的资源 resources without data yet: {}",
        inv.resources_without_data
    );
    println!("  数据记录 records in tables: {}", inv.records);
    println!(
        "  交换量 records delivered to subscribers: {}",
        inv.records_exchanged
    );
}
