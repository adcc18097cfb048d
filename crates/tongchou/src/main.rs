//! `tongchou`: one binary that runs the whole platform. It only parses the command line
//! and hands each command to the crate that does the work.

mod access_cmd;
mod catalog_cmd;
mod cli;
mod cli_audit;
mod demo;
mod exchange_cmd;
mod ledger_cmd;
mod progress;
mod query_cmd;

use std::process::ExitCode;

use clap::Parser;

/// Query planning allocates many small objects from every worker thread; glibc's arenas
/// spent a third of a point lookup's CPU on locks and consolidation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("错误 error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
