//! `tongchou ledger …`: verify the audit ledger, hand out and check proofs, and read it —
//! who looked at a person, use by unit and purpose, unusual readers, the newest entries.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tongchou_audit::index::{self, Filter};
use tongchou_audit::{ALLOWED, Audit};
use tongchou_ledger::NoteVerifier;
use tongchou_store::DataDir;

use crate::catalog_cmd::print_json;

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Check the whole ledger: records, order, tree, every checkpoint and key (校验).
    Verify {
        /// The ledger's published verifier key (text or a file holding it); by default the
        /// first key in config/ledger-verifiers.
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The proof that one entry is in the ledger, to check anywhere with `check-proof`.
    Prove {
        entry: u64,
        /// Write the proof here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The proof that today's ledger extends an old checkpoint (a file holding the note).
    Consistency {
        old_checkpoint: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a proof or an export without the data directory (核验证明).
    CheckProof {
        file: PathBuf,
        /// The verifier key to trust (text or file); by default the key in the proof.
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Who used the data of one person or enterprise: when, unit, user, purpose (谁查了我).
    Subject {
        /// 公民身份号码 or 统一社会信用代码.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// The newest entries.
    Tail {
        #[arg(short = 'n', default_value_t = 20)]
        n: u64,
        #[arg(long)]
        json: bool,
    },
    /// Entries by user, unit, resource, purpose, kind, outcome and time.
    Search {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long)]
        json: bool,
    },
    /// Statements, pulls and downloads per unit and purpose.
    Usage {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long)]
        json: bool,
    },
    /// Users who read far more people or enterprises than their unit's peers.
    Unusual {
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 5.0)]
        factor: f64,
        #[arg(long, default_value_t = 20)]
        floor: i64,
        #[arg(long)]
        json: bool,
    },
    /// Sign a checkpoint now and print it.
    Checkpoint,
    /// Print the verifier key to publish.
    Key,
    /// Replace the signing key (the old one signs over the change).
    RotateKey,
    /// A period's entries with their proofs, for an inspector.
    Export {
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
pub struct FilterArgs {
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    unit: Option<String>,
    #[arg(long)]
    resource: Option<String>,
    #[arg(long)]
    purpose: Option<String>,
    #[arg(long)]
    kind: Option<String>,
    /// allowed, denied or failed.
    #[arg(long)]
    outcome: Option<String>,
    /// YYYY-MM-DD or an RFC 3339 time (China time).
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    /// Only uses of this providing unit's resources.
    #[arg(long)]
    provider: Option<String>,
    /// The next page: entries listed after this one (the last seq shown).
    #[arg(long)]
    before: Option<i64>,
    #[arg(long, default_value_t = 100)]
    limit: i64,
}

impl From<FilterArgs> for Filter {
    fn from(a: FilterArgs) -> Filter {
        Filter {
            user: a.user,
            unit: a.unit,
            resource: a.resource,
            purpose: a.purpose,
            kind: a.kind,
            outcome: a.outcome,
            since: a.since,
            until: a.until,
            provider: a.provider,
            before: a.before,
            limit: Some(a.limit),
        }
    }
}

/// A key given as text or as a file holding it.
fn read_key(key: &str) -> Result<NoteVerifier> {
    let text = if Path::new(key).is_file() {
        std::fs::read_to_string(key).with_context(|| format!("cannot read {key}"))?
    } else {
        key.to_string()
    };
    NoteVerifier::decode(text.trim()).map_err(|e| anyhow::anyhow!("--key: {e}"))
}

fn write_or_print<T: serde::Serialize>(value: &T, out: Option<&Path>) -> Result<()> {
    match out {
        Some(path) => {
            std::fs::write(path, serde_json::to_string_pretty(value)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("已写入 written to {}", path.display());
            Ok(())
        }
        None => print_json(value),
    }
}

pub fn run(data_dir: &Path, command: LedgerCommand) -> Result<()> {
    match command {
        LedgerCommand::Verify { key, json } => verify(data_dir, key.as_deref(), json),
        LedgerCommand::CheckProof { file, key, json } => check_proof(&file, key.as_deref(), json),
        other => crate::cli::runtime()?.block_on(with_ledger(data_dir, other)),
    }
}

fn verify(data_dir: &Path, key: Option<&str>, json: bool) -> Result<()> {
    if !data_dir.join(tongchou_store::MARKER_FILE).exists() {
        bail!(
            "{} is not a Tongchou data directory; pass --data-dir",
            data_dir.display()
        );
    }
    let trusted = key.map(read_key).transpose()?;
    let started = std::time::Instant::now();
    let report = tongchou_ledger::verify::verify(
        &data_dir.join("ledger"),
        &data_dir.join("config"),
        trusted.as_ref(),
    )
    .context("cannot read the ledger")?;
    if json {
        print_json(&report)?;
    } else {
        println!(
            "{} entries in {} segments, {} checkpoints, {} keys — checked in {:.1} s",
            report.entries,
            report.segments,
            report.checkpoints,
            report.keys,
            started.elapsed().as_secs_f64()
        );
        for p in &report.problems {
            println!("  ✗ {}: {}", p.at, p.what);
        }
        if report.problems_not_listed > 0 {
            println!("  … and {} more", report.problems_not_listed);
        }
    }
    match report.problems.first() {
        None => {
            if !json {
                println!("账本完好 the ledger is intact");
            }
            Ok(())
        }
        Some(first) => bail!(
            "账本已被改动 the ledger is damaged — first at {}: {}",
            first.at,
            first.what
        ),
    }
}

fn check_proof(file: &Path, key: Option<&str>, json: bool) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let trusted = key.map(read_key).transpose()?;
    let checked = tongchou_ledger::check::check_proof(&text, trusted.as_ref())
        .map_err(|why| anyhow::anyhow!("证明无效 the proof does not hold: {why}"))?;
    if json {
        return print_json(&checked);
    }
    match checked.extends_size {
        Some(old) => println!(
            "证明成立 proven: the log '{}' of {} entries extends its log of {old}",
            checked.origin, checked.tree_size
        ),
        None => println!(
            "证明成立 proven: {} entr{} in the log '{}' of {} entries",
            checked.entries.len(),
            if checked.entries.len() == 1 {
                "y is"
            } else {
                "ies are"
            },
            checked.origin,
            checked.tree_size
        ),
    }
    if !checked.key_trusted {
        println!(
            "注意 checked with the key the proof carries ({}); compare it with the key the bureau publishes, or pass --key",
            checked.key
        );
    }
    Ok(())
}

async fn with_ledger(data_dir: &Path, command: LedgerCommand) -> Result<()> {
    let dir = DataDir::open(data_dir).await?;
    let audit = Audit::open(&dir).await?;
    match command {
        LedgerCommand::Prove { entry, out } => {
            let proof = audit.with_ledger(move |l| l.prove(entry)).await?;
            write_or_print(&proof, out.as_deref())
        }
        LedgerCommand::Consistency {
            old_checkpoint,
            out,
        } => {
            let old = std::fs::read_to_string(&old_checkpoint)
                .with_context(|| format!("cannot read {}", old_checkpoint.display()))?;
            let proof = audit.with_ledger(move |l| l.consistency(&old)).await?;
            write_or_print(&proof, out.as_deref())
        }
        LedgerCommand::Subject { id, json } => subject(&audit, &id, json).await,
        LedgerCommand::Tail { n, json } => {
            let entries = audit
                .with_ledger(move |l| tongchou_audit::tail(l, n))
                .await?;
            if json {
                return print_json(&entries);
            }
            for e in entries {
                println!("{e}");
            }
            Ok(())
        }
        LedgerCommand::Search { filter, json } => {
            let found = index::search(&audit, &filter.into()).await?;
            if json {
                return print_json(&found);
            }
            for e in found {
                println!(
                    "{:>8}  {}  {:<16} {:<8} {:<20} {:<10} {:<8} {}",
                    e.seq,
                    e.time,
                    e.kind,
                    e.front_door,
                    e.user.unwrap_or_default(),
                    e.unit.unwrap_or_default(),
                    e.outcome,
                    e.resources.join(",")
                );
            }
            Ok(())
        }
        LedgerCommand::Usage { filter, json } => {
            let usage = index::usage(&audit, &filter.into()).await?;
            if json {
                return print_json(&usage);
            }
            println!(
                "单位 unit      用途 purpose          次数 uses  拒绝 denied  行 rows  对象 subjects"
            );
            for u in usage {
                println!(
                    "{:<14} {:<20} {:>9} {:>11} {:>8} {:>13}",
                    u.unit.unwrap_or_default(),
                    u.purpose.unwrap_or_default(),
                    u.entries,
                    u.denied,
                    u.rows,
                    u.subjects
                );
            }
            Ok(())
        }
        LedgerCommand::Unusual {
            since,
            until,
            factor,
            floor,
            json,
        } => {
            let filter = Filter {
                since,
                until,
                ..Filter::default()
            };
            let found = index::unusual(&audit, &filter, factor, floor).await?;
            if json {
                return print_json(&found);
            }
            if found.is_empty() {
                println!("无异常 nobody read far more than their peers");
            }
            for u in found {
                println!(
                    "{} ({}): {} subjects, {:.1}× the peers' median of {}",
                    u.user,
                    u.unit.unwrap_or_default(),
                    u.subjects,
                    u.ratio,
                    u.peer_median
                );
            }
            Ok(())
        }
        LedgerCommand::Checkpoint => {
            let note = audit.with_ledger(|l| l.checkpoint()).await?;
            print!("{note}");
            Ok(())
        }
        LedgerCommand::Key => {
            let key = audit.with_ledger(|l| l.verifier()).await;
            println!(
                "{}",
                key.map(|k| k.encode())
                    .context("the ledger has no signing key")?
            );
            Ok(())
        }
        LedgerCommand::RotateKey => {
            audit
                .record(&crate::cli_audit::entry("key_rotation", ALLOWED))
                .await?;
            let key = audit.with_ledger(|l| l.rotate_key()).await?;
            println!("新密钥 new verifier key: {}", key.encode());
            Ok(())
        }
        LedgerCommand::Export { since, until, out } => {
            let filter = Filter {
                since: since.clone(),
                until: until.clone(),
                ..Filter::default()
            };
            let seqs = period_entries(&audit, filter).await?;
            let count = seqs.len();
            let export = audit
                .with_ledger(move |l| {
                    tongchou_audit::export(l, &seqs, since.as_deref(), until.as_deref())
                })
                .await?;
            write_or_print(&export, Some(&out))?;
            eprintln!("{count} entries with their proofs");
            Ok(())
        }
        LedgerCommand::Verify { .. } | LedgerCommand::CheckProof { .. } => unreachable!(),
    }
}

/// Every entry a filter selects, in ledger order, read page by page.
async fn period_entries(audit: &Audit, mut filter: Filter) -> Result<Vec<u64>> {
    const PAGE: i64 = 10_000;
    filter.limit = Some(PAGE);
    let mut seqs = Vec::new();
    loop {
        let page = index::search(audit, &filter).await?;
        seqs.extend(page.iter().map(|e| e.seq as u64));
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => filter.before = Some(last.seq),
            _ => break,
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

async fn subject(audit: &Audit, id: &str, json: bool) -> Result<()> {
    let found = index::subject(audit, id).await?;
    let mut lookup = crate::cli_audit::entry("subject_lookup", ALLOWED);
    lookup.rows = Some(found.len() as u64);
    lookup.detail = serde_json::json!({ "looked_up": audit.subject(id) });
    audit.record(&lookup).await?;
    if json {
        return print_json(&found);
    }
    if found.is_empty() {
        println!("没有记录 no recorded use of this person's or enterprise's data");
    }
    for e in found {
        println!(
            "{}  {}  {}  {}  {}  {}",
            e.time,
            e.unit.unwrap_or_default(),
            e.user.unwrap_or_default(),
            e.purpose.unwrap_or_else(|| "-".into()),
            e.kind,
            e.resources.join(",")
        );
    }
    Ok(())
}
