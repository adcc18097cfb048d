//! What auditing costs point lookups over the PostgreSQL wire (issue 6's number measured
//! where users meet it): `pgbench` sends the reviewer's lookups to `tongchou serve --pg`,
//! which records every statement durably, and — in alternating rounds on the same data —
//! to a reference that serves the same governed engine over the same pgwire library with
//! nothing recorded (and yields once before answering, which serves it faster). The
//! reference lives only in this bench (`tongchou-bench unaudited-pg`): the product has no
//! way to skip its ledger.

use std::fmt::Debug;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use async_trait::async_trait;
use futures::{Sink, stream};
use pgwire::api::portal::Format;
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{QueryResponse, Response};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use tongchou_query::Engine;
use tongchou_store::DataDir;

use crate::audit_overhead::{USER, lookups};
use crate::pg_lookup::{
    CLIENTS, Run, Server, Target, free_port, pgbench, start_tongchou, wait_for_port, write_scripts,
};

const ROUNDS: usize = 3;
const SECONDS: &str = "15";

pub async fn run(work: &Path, rounds: Option<usize>) -> Result<()> {
    let rounds = rounds.unwrap_or(ROUNDS);
    let lookups = lookups(work).await?;
    let scripts = write_scripts(work, &lookups)?;
    let (_audited_server, audited) = start_tongchou(&lookups.data)?;
    let port = free_port()?;
    let _unaudited_server = Server(
        Command::new(std::env::current_exe()?)
            .arg("unaudited-pg")
            .arg(&lookups.data)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .context("start the unaudited reference server")?,
    );
    wait_for_port(port)?;
    let unaudited = Target {
        port,
        user: USER.into(),
        password: None,
        database: audited.database.clone(),
    };
    println!(
        "Point lookups over the PostgreSQL wire, {} connections, {SECONDS} s per run, {rounds} rounds (the order alternates):",
        CLIENTS
    );
    // The comparison holds only if both do the same governed work: the same masked rows.
    let lookup = std::fs::read_to_string(&scripts[0])?;
    let (theirs, ours) = (answer(&unaudited, &lookup)?, answer(&audited, &lookup)?);
    ensure!(
        !ours.trim().is_empty() && ours == theirs,
        "the reference answers the lookup otherwise than the product:\n{theirs}\nvs\n{ours}"
    );
    for target in [&audited, &unaudited] {
        pgbench(target, &scripts, work, None, "3")?;
    }
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let audited_first = round % 2 == 0;
        for audited_now in [audited_first, !audited_first] {
            let (target, runs, label) = if audited_now {
                (&audited, &mut with, "tongchou serve --pg (audited)")
            } else {
                (&unaudited, &mut without, "same engine, nothing recorded")
            };
            let run = pgbench(target, &scripts, work, None, SECONDS)?;
            run.print(&format!("round {}: {label}", round + 1));
            runs.push(run);
        }
    }
    let mean = |runs: &[Run]| runs.iter().map(|r| r.tps).sum::<f64>() / runs.len() as f64;
    let ratio = mean(&with) / mean(&without);
    println!(
        "  audited ÷ unaudited (means {:.0} / {:.0} statements/s): {ratio:.3} — overhead {:.1} % (target < 10 %)",
        mean(&with),
        mean(&without),
        100.0 * (1.0 - ratio)
    );
    Ok(())
}

/// `sql`'s rows through `target`, as `psql` prints them unaligned.
fn answer(target: &Target, sql: &str) -> Result<String> {
    let mut command = Command::new("psql");
    command
        .args(["-X", "-A", "-t", "-h", "127.0.0.1"])
        .args(["-p", &target.port.to_string(), "-U", &target.user])
        .args(["-d", &target.database, "-c", sql]);
    if let Some(password) = &target.password {
        command.env("PGPASSWORD", password);
    }
    let out = command.output().context("run psql")?;
    ensure!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Serves `data`'s governed engine over pgwire on 127.0.0.1:`port`, simple protocol only,
/// with no sign-in (the caller is the startup message's user; its database, the purpose)
/// and nothing recorded.
pub async fn serve_unaudited(data: &Path, port: u16) -> Result<()> {
    let dir = DataDir::open(data).await?;
    let policy = Arc::new(tongchou_access::Policy::open(dir.clone()).await?);
    let handlers = Arc::new(Unaudited {
        query: Arc::new(UnauditedQuery(Engine::open(
            dir,
            policy,
            tongchou_audit::SubjectKey::generate(),
        )?)),
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (socket, _) = listener.accept().await?;
        let handlers = handlers.clone();
        tokio::spawn(async move { pgwire::tokio::process_socket(socket, None, handlers).await });
    }
}

struct Unaudited {
    query: Arc<UnauditedQuery>,
}

impl PgWireServerHandlers for Unaudited {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.query.clone()
    }
}

struct UnauditedQuery(Engine);

#[async_trait]
impl SimpleQueryHandler for UnauditedQuery {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let metadata = client.metadata();
        let (user, purpose) = (
            metadata.get("user").cloned().unwrap_or_default(),
            metadata.get("database").cloned().unwrap_or_default(),
        );
        let answer = self
            .0
            .run_with(&user, &purpose, query, &[])
            .await
            .map_err(|e| {
                PgWireError::UserError(Box::new(ErrorInfo::new(
                    "ERROR".into(),
                    "XX000".into(),
                    e.to_string(),
                )))
            })?;
        let fields = Arc::new(arrow_schema_to_pg_fields(
            &answer.schema,
            &Format::UnifiedText,
            None,
        )?);
        let rows: Vec<_> = answer
            .batches
            .into_iter()
            .flat_map(|batch| encode_recordbatch(fields.clone(), batch))
            .collect();
        // Yielding once before answering serves this bench 15–26 % faster here, with a
        // lower p99 (the task resumes after the worker has polled the sockets); the product
        // does not gain from it on disk (BENCHMARKS.md), so only the reference yields.
        tokio::task::yield_now().await;
        Ok(vec![Response::Query(QueryResponse::new(
            fields,
            stream::iter(rows),
        ))])
    }
}
