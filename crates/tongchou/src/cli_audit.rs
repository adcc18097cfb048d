//! The command line as a front door of the ledger: a command that touches the data
//! directory is recorded before it runs (it does not run when the ledger cannot be
//! written), its failure is recorded after, and the access events it queued are moved
//! into the ledger before it exits.

use std::future::Future;
use std::path::Path;

use anyhow::Result;
use tongchou_audit::{ALLOWED, Audit, Entry, FAILED};
use tongchou_store::DataDir;

/// Who runs the command line: the operating-system account, as the platform has no
/// session here.
pub fn operator() -> String {
    format!(
        "operator:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

/// The command line with passwords, tokens and IDs of people or enterprises hidden.
pub fn statement(args: &[String]) -> String {
    let mut shown = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for arg in args.iter().skip(1) {
        let secret_flag = ["--password", "--token", "--secret"]
            .iter()
            .any(|f| arg == f || arg.starts_with(&format!("{f}=")));
        if hide_next || tongchou_audit::looks_like_identifier(arg) {
            shown.push("…".to_string());
        } else if let Some((flag, _)) = arg.split_once('=').filter(|_| secret_flag) {
            shown.push(format!("{flag}=…"));
        } else {
            shown.push(arg.clone());
        }
        hide_next = secret_flag && !arg.contains('=');
    }
    format!("tongchou {}", shown.join(" "))
}

/// An entry of this command line, of `kind`.
pub fn entry(kind: &str, outcome: &str) -> Entry {
    let mut entry = Entry::new(kind, "cli", outcome);
    entry.user = Some(operator());
    entry.statement = Some(statement(&std::env::args().collect::<Vec<_>>()));
    entry
}

/// Runs `command` as a recorded command of `kind`.
pub async fn audited<F, Fut>(data_dir: &Path, kind: &str, command: F) -> Result<()>
where
    F: FnOnce(Audit) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let dir = DataDir::open(data_dir).await?;
    let audit = Audit::open(&dir).await?;
    audit.record(&entry(kind, ALLOWED)).await?;
    let result = command(audit.clone()).await;
    let drained = tongchou_audit::outbox::drain(&audit).await;
    if let Err(e) = &result {
        let mut failed = entry(kind, FAILED);
        failed.reason = Some(format!("{e:#}"));
        audit.record(&failed).await?;
    }
    if let Err(e) = drained {
        eprintln!("注意 warning: access events wait in the outbox and are recorded next time: {e}");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn secrets_and_ids_stay_out_of_the_statement() {
        let shown = statement(&args(
            "tongchou ledger subject 44060519800101123X --json --password hunter2 --token=tc_abc",
        ));
        assert_eq!(
            shown,
            "tongchou ledger subject … --json --password … --token=…"
        );
        let shown = statement(&args("tongchou catalog search 91440605MA4UJ7XY1K"));
        assert_eq!(shown, "tongchou catalog search …");
        let shown = statement(&args("tongchou catalog show 440605-00001"));
        assert_eq!(shown, "tongchou catalog show 440605-00001");
    }
}
