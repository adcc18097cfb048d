//! `tongchou query --as USER --purpose P "SQL"`: one governed statement, recorded in the
//! audit ledger before its result is printed.

use std::path::Path;

use anyhow::{Result, bail};
use clap::Args;
use tongchou_audit::{ALLOWED, Audit, Entry};
use tongchou_query::Engine;
use tongchou_query::front::{Csv, outcome_of, render_with, statement_entry};
use tongchou_store::DataDir;

#[derive(Args)]
pub struct QueryArgs {
    /// The user the statement runs as; their grants decide what it sees.
    #[arg(long = "as")]
    user: String,
    /// Why: a code of `tongchou access purposes`.
    #[arg(long)]
    purpose: String,
    /// table (default), csv, json, or xlsx / arrow (binary: redirect to a file).
    #[arg(long, default_value = "table")]
    format: String,
    /// CSV as stored, for programs; otherwise text a spreadsheet would run as a formula
    /// (`=`, `+`, `-`, `@`, tab, carriage return first) gets a leading `'`.
    #[arg(long)]
    raw: bool,
    /// One query statement; resources are "单位名称"."资源名称".
    sql: String,
}

pub async fn run(data_dir: &Path, args: QueryArgs) -> Result<()> {
    let dir = DataDir::open(data_dir).await?;
    let audit = Audit::open(&dir).await?;
    let policy = tongchou_access::Policy::open(dir.clone()).await?;
    let unit = policy
        .current()
        .await?
        .user(&args.user)
        .map(|u| u.unit.clone());
    let engine = Engine::open(
        dir,
        std::sync::Arc::new(policy),
        audit.subject_key().clone(),
    )?;
    let mut entry = Entry::new("statement", "cli", ALLOWED);
    entry.user = Some(args.user.clone());
    entry.unit = unit;
    entry.purpose = Some(args.purpose.clone());
    let statement = audit.redact(&args.sql);
    entry.statement = Some(statement);
    match engine.run(&args.user, &args.purpose, &args.sql).await {
        Err(e) => {
            entry.outcome = outcome_of(&e).into();
            entry.reason = Some(e.to_string());
            audit.record(&entry).await?;
            bail!("查询被拒绝或失败 the statement was refused or failed: {e}")
        }
        Ok(answer) => {
            let csv = if args.raw { Csv::Raw } else { Csv::FormulaSafe };
            let bytes = render_with(&answer, &args.format, csv)?;
            audit
                .record(&statement_entry(&audit, entry, &answer, &bytes))
                .await?;
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
            Ok(())
        }
    }
}
