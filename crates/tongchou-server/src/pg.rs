//! The PostgreSQL wire protocol (pgwire) as a front door of governed query, so `psql`,
//! `psycopg` and BI tools work unchanged:
//!
//! - sign-in with the platform's user name and password (sent as a cleartext password
//!   message — use it on 127.0.0.1, or with TLS: `serve --tls-cert/--tls-key` offers it
//!   here too) or an API token with the `query` scope as the password; failures are
//!   throttled and recorded like any other sign-in;
//! - the credential is checked again before every statement (a password sign-in opens a
//!   session for the connection): a revoked or expired token, a disabled account or a
//!   changed password refuses the next statement and closes the connection, as REST refuses
//!   the next request;
//! - the *database* names the purpose (`psql -d procuratorial_supervision`);
//! - each statement runs in the same governed engine as REST and the CLI and is recorded
//!   in the ledger (front door `pg`) before the first row is sent; when the ledger cannot
//!   be written the statement fails.
//!
//! Both the simple and the extended query protocol (Parse/Bind/Describe/Execute, as
//! psycopg and JDBC drivers use): parameters are bound by DataFusion after planning, never
//! spliced into the text; a statement is planned again at each execution, in the session
//! of that moment.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use bytes::BytesMut;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use futures::{Sink, SinkExt, stream};
use pgwire::api::Type;
use pgwire::api::auth::{
    DefaultServerParameterProvider, LoginInfo, StartupHandler, finish_authentication,
    protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::messages::startup::Authentication;
use pgwire::messages::{Message, PgWireBackendMessage, PgWireFrontendMessage};
use tongchou_access::credentials::{self, sign_in_with_token};
use tongchou_access::{AccessError, Door, Scope};
use tongchou_audit::{ALLOWED, DENIED, Entry, FAILED};
use tongchou_query::front::{outcome_of, statement_entry};
use tongchou_query::{Answer, QueryError};

use crate::AppState;

fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}

fn sqlstate(e: &QueryError) -> &'static str {
    match e {
        QueryError::Access(_) | QueryError::Refused(_) => "42501",
        QueryError::Sql(text) if text.contains("not found") => "42P01",
        QueryError::Sql(_) => "42601",
        QueryError::TooManyRows(_) | QueryError::Exhausted(_) => "54000",
        QueryError::Timeout(_) => "57014",
        _ => "XX000",
    }
}

/// Serves the PostgreSQL protocol on `addr` until the process stops; with `tls`, clients
/// may ask for TLS (`sslmode=require`) and get it with the HTTPS certificate.
pub async fn serve_pg(
    state: Arc<AppState>,
    addr: SocketAddr,
    tls: Option<&crate::Tls>,
) -> std::io::Result<()> {
    let acceptor = match tls {
        Some(tls) => {
            let mut config = (*tls.rustls().await?.get_inner()).clone();
            config.alpn_protocols = vec![b"postgresql".to_vec()];
            Some(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let handlers = Arc::new(PgHandlers {
        startup: Arc::new(PgStartup {
            state: state.clone(),
            pids: RandomPidSecretKeyGenerator::default(),
        }),
        query: Arc::new(PgQuery {
            state,
            dialect: PostgresCompatibilityParser::new(),
        }),
    });
    loop {
        let (socket, _) = listener.accept().await?;
        let (handlers, acceptor) = (handlers.clone(), acceptor.clone());
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, acceptor, handlers).await {
                eprintln!("pg: connection ended: {e}");
            }
        });
    }
}

struct PgHandlers {
    startup: Arc<PgStartup>,
    query: Arc<PgQuery>,
}

impl PgWireServerHandlers for PgHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.query.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
}

struct PgStartup {
    state: Arc<AppState>,
    pids: RandomPidSecretKeyGenerator,
}

/// What a connection signed in with, authenticated again before each statement: the API
/// token itself, or the secret of the session a password sign-in opened.
struct SignedIn(String);

impl PgStartup {
    /// The password is the user's password, or an API token of that user with `query`.
    async fn sign_in(
        &self,
        user: &str,
        password: &str,
        address: &str,
    ) -> Result<SignedIn, AccessError> {
        let (dir, policy) = (&self.state.dir, &self.state.policy);
        if password.starts_with("tc_") {
            sign_in_with_token(dir, policy, user, password, Scope::Query, Door::Pg, address)
                .await?;
            return Ok(SignedIn(password.to_string()));
        }
        let (_, session) = credentials::sign_in(dir, user, password, Door::Pg, address).await?;
        Ok(SignedIn(session.secret))
    }
}

#[async_trait]
impl StartupHandler for PgStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let pwd = pwd.into_password()?;
                let login = LoginInfo::from_client_info(client);
                let user = login.user().unwrap_or_default().to_string();
                let address = client.socket_addr().ip().to_string();
                let signed_in = self.sign_in(&user, &pwd.password, &address).await;
                // Sign-ins and failures were queued by the access crate: record them now.
                let _ = tongchou_audit::outbox::drain(&self.state.audit).await;
                let signed_in = signed_in.map_err(|why| {
                    user_error("28P01", format!("sign-in refused for {user}: {why}"))
                })?;
                client.session_extensions().insert(signed_in);
                let (pid, secret) = self.pids.generate(client);
                client.set_pid_and_secret_key(pid, secret);
                finish_authentication(client, &DefaultServerParameterProvider::default()).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

struct PgQuery {
    state: Arc<AppState>,
    dialect: PostgresCompatibilityParser,
}

/// Who a connection signed in as, with what, and the purpose (the database name).
struct Caller {
    user: String,
    purpose: String,
    credential: Option<Arc<SignedIn>>,
}

fn caller_of<C: ClientInfo>(client: &C) -> Caller {
    let metadata = client.metadata();
    Caller {
        user: metadata.get("user").cloned().unwrap_or_default(),
        purpose: metadata.get("database").cloned().unwrap_or_default(),
        credential: client.session_extensions().get::<SignedIn>(),
    }
}

/// Ends a connection whose credential no longer holds; the client must sign in again.
fn signed_out() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        "28000".into(),
        "凭据已失效 the credential this connection signed in with is no longer valid (token revoked or expired, account disabled, or password changed): sign in again".into(),
    )))
}

/// What drivers send around their queries that reads nothing: transaction brackets (every
/// statement here reads one snapshot, so they change nothing) and the client settings
/// psycopg, JDBC and BI tools set on connecting. Answered without effect; anything else,
/// `SET` of engine options included, goes to governed query, which refuses it.
fn client_ritual(sql: &str) -> Option<Response> {
    let words: Vec<String> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let first = words.first()?.as_str();
    match first {
        "begin" | "start" => Some(Response::TransactionStart(Tag::new("BEGIN"))),
        "commit" | "end" => Some(Response::TransactionEnd(Tag::new("COMMIT"))),
        "rollback" | "abort" => Some(Response::TransactionEnd(Tag::new("ROLLBACK"))),
        "set" => {
            let name = words
                .iter()
                .skip(1)
                .find(|w| !matches!(w.as_str(), "session" | "local"))?;
            let name = name.split(['=', ' ']).next()?;
            CLIENT_SETTINGS
                .contains(&name)
                .then(|| Response::Execution(Tag::new("SET")))
        }
        _ => None,
    }
}

const CLIENT_SETTINGS: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "extra_float_digits",
    "intervalstyle",
    "search_path",
    "statement_timeout",
    "timezone",
    "time",
    "names",
];

impl PgQuery {
    /// `sql` as DataFusion plans it: PostgreSQL's spellings that clients send for their
    /// catalog queries (`::regclass`, `= ANY(…)`, `OPERATOR(pg_catalog.~)`, unqualified
    /// `pg_class`, …) rewritten. Only statements that touch the catalog or use `::` casts
    /// are rewritten: the rest run exactly as through the other doors (and skip the cost).
    /// Text that does not parse as one statement is left for the engine to refuse.
    fn in_engine_dialect(&self, sql: &str) -> String {
        let lower = sql.to_ascii_lowercase();
        if !lower.contains("pg_") && !sql.contains("::") {
            return sql.to_string();
        }
        match self.dialect.parse(sql) {
            Ok(statements) if statements.len() == 1 => statements[0].to_string(),
            _ => sql.to_string(),
        }
    }

    /// The ledger entry of a statement, its text and parameters redacted.
    fn entry(&self, caller: &Caller, sql: &str, parameters: &[Option<String>]) -> Entry {
        let mut entry = Entry::new("statement", Door::Pg.as_str(), ALLOWED);
        let shown = if parameters.is_empty() {
            sql.to_string()
        } else {
            let values: Vec<&str> = parameters
                .iter()
                .map(|p| p.as_deref().unwrap_or("NULL"))
                .collect();
            format!("{sql} -- parameters: {}", values.join(", "))
        };
        let statement = self.state.audit.redact(&shown);
        entry.statement = Some(statement);
        entry.user = Some(caller.user.clone());
        entry.purpose = Some(caller.purpose.clone());
        entry
    }

    /// The user a statement runs as: the connection's credential authenticated again (in
    /// memory), so that what REST refuses at the next request is refused here at the next
    /// statement. A refused statement is recorded as denied and ends the connection.
    async fn reauthenticated(
        &self,
        caller: &Caller,
        sql: &str,
        parameters: &[Option<String>],
    ) -> PgWireResult<String> {
        let checked = match &caller.credential {
            Some(signed_in) => self
                .state
                .policy
                .authenticate(&signed_in.0, Door::Pg)
                .await
                .and_then(|p| p.require(Scope::Query).map(|_| p)),
            None => Err(AccessError::Unauthenticated),
        };
        match checked {
            Ok(principal) if principal.user.name == caller.user => Ok(principal.user.name),
            refused => {
                let why = refused.map_or_else(
                    |e| e.to_string(),
                    |p| format!("the credential is {}'s", p.user.name),
                );
                let entry = self.entry(caller, sql, parameters);
                self.record_undelivered(entry, DENIED, why).await?;
                Err(signed_out())
            }
        }
    }

    /// Runs one statement through governed query, records it, and encodes the rows in
    /// `format`; a statement the ledger cannot record fails.
    async fn governed(
        &self,
        caller: Caller,
        sql: &str,
        parameters: &[Option<String>],
        format: &Format,
    ) -> PgWireResult<Response> {
        let user = self.reauthenticated(&caller, sql, parameters).await?;
        if let Some(answer) = client_ritual(sql) {
            return Ok(answer);
        }
        let s = &self.state;
        let entry = self.entry(&caller, sql, parameters);
        let planned = self.in_engine_dialect(sql);
        let answer = match s
            .query
            .run_with(&user, &caller.purpose, &planned, parameters)
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                self.record_undelivered(entry, outcome_of(&e), e.to_string())
                    .await?;
                return Err(user_error(sqlstate(&e), e.to_string()));
            }
        };
        let fields = Arc::new(arrow_schema_to_pg_fields(&answer.schema, format, None)?);
        let rows = match wire_rows(&fields, &answer) {
            Ok(rows) => rows,
            Err(e) => {
                self.record_undelivered(entry, FAILED, e.to_string())
                    .await?;
                return Err(e);
            }
        };
        let traced = statement_entry(&s.audit, entry, &answer, &rows.sent);
        s.audit
            .record(&traced)
            .await
            .map_err(|e| user_error("58030", e.to_string()))?;
        Ok(Response::Query(QueryResponse::new(
            fields,
            stream::iter(rows.messages.into_iter().map(Ok)),
        )))
    }

    /// Records a statement that delivers nothing; when the ledger cannot record it, that
    /// is the error the client gets.
    async fn record_undelivered(
        &self,
        mut entry: Entry,
        outcome: &str,
        reason: String,
    ) -> PgWireResult<()> {
        // A statement that ran takes its unit from the engine; this one looks it up.
        entry.unit = self
            .state
            .policy
            .current()
            .await
            .ok()
            .and_then(|set| set.user(entry.user.as_deref()?).map(|u| u.unit.clone()));
        entry.outcome = outcome.into();
        entry.reason = Some(reason);
        self.state
            .audit
            .record(&entry)
            .await
            .map(|_| ())
            .map_err(|ledger| user_error("58030", ledger.to_string()))
    }

    /// Parameter types and result columns of a statement, planned but not run.
    async fn describe(
        &self,
        caller: Caller,
        sql: &str,
        format: &Format,
    ) -> PgWireResult<(Vec<Type>, Vec<FieldInfo>)> {
        let user = self.reauthenticated(&caller, sql, &[]).await?;
        if client_ritual(sql).is_some() {
            return Ok((Vec::new(), Vec::new()));
        }
        let (types, schema) = self
            .state
            .query
            .describe(&user, &caller.purpose, &self.in_engine_dialect(sql))
            .await
            .map_err(|e| user_error(sqlstate(&e), e.to_string()))?;
        let types = types
            .iter()
            .map(|t| t.as_ref().map_or(Ok(Type::TEXT), into_pg_type))
            .collect::<PgWireResult<Vec<_>>>()?;
        Ok((types, arrow_schema_to_pg_fields(&schema, format, None)?))
    }
}

#[async_trait]
impl SimpleQueryHandler for PgQuery {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let response = self
            .governed(caller_of(client), query, &[], &Format::UnifiedText)
            .await?;
        Ok(vec![response])
    }
}

/// Statements of the extended protocol are kept as their text: each execution is planned
/// in the session of the moment, so a grant revoked between Parse and Execute holds.
struct SqlText;

#[async_trait]
impl QueryParser for SqlText {
    type Statement = String;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<String>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        Ok(Some(sql.to_string()))
    }

    fn get_parameter_types(&self, _statement: &String) -> PgWireResult<Vec<Type>> {
        Ok(Vec::new())
    }

    fn get_result_schema(
        &self,
        _statement: &String,
        _format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(Vec::new())
    }
}

/// A result's rows as `DataRow` messages, and the bytes they make on the wire — what the
/// ledger's digest covers, so that whoever captured the answer can check it.
struct WireRows {
    messages: Vec<DataRow>,
    sent: BytesMut,
}

fn wire_rows(fields: &Arc<Vec<FieldInfo>>, answer: &Answer) -> PgWireResult<WireRows> {
    let mut rows = WireRows {
        messages: Vec::with_capacity(answer.rows as usize),
        sent: BytesMut::new(),
    };
    for batch in &answer.batches {
        for row in encode_recordbatch(fields.clone(), batch.clone()) {
            let row = row?;
            row.encode(&mut rows.sent)?;
            rows.messages.push(row);
        }
    }
    Ok(rows)
}

/// A bound parameter as text (binary-format parameters decoded by their declared type).
fn parameter_text(portal: &Portal<String>, i: usize) -> PgWireResult<Option<String>> {
    let Some(Some(bytes)) = portal.parameters.get(i) else {
        return Ok(None);
    };
    if !portal.parameter_format.is_binary(i) {
        return Ok(Some(String::from_utf8_lossy(bytes).into_owned()));
    }
    let declared = portal
        .statement
        .parameter_types
        .get(i)
        .cloned()
        .flatten()
        .unwrap_or(Type::TEXT);
    let text = match declared {
        Type::INT2 => portal
            .parameter::<i16>(i, &declared)?
            .map(|v| v.to_string()),
        Type::INT4 => portal
            .parameter::<i32>(i, &declared)?
            .map(|v| v.to_string()),
        Type::INT8 => portal
            .parameter::<i64>(i, &declared)?
            .map(|v| v.to_string()),
        Type::FLOAT4 => portal
            .parameter::<f32>(i, &declared)?
            .map(|v| v.to_string()),
        Type::FLOAT8 => portal
            .parameter::<f64>(i, &declared)?
            .map(|v| v.to_string()),
        Type::BOOL => portal
            .parameter::<bool>(i, &declared)?
            .map(|v| v.to_string()),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::UNKNOWN => {
            portal.parameter::<String>(i, &declared)?
        }
        Type::DATE => portal
            .parameter::<chrono::NaiveDate>(i, &declared)?
            .map(|v| v.to_string()),
        Type::TIMESTAMP => portal
            .parameter::<chrono::NaiveDateTime>(i, &declared)?
            .map(|v| v.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
        Type::TIMESTAMPTZ => portal
            .parameter::<chrono::DateTime<chrono::FixedOffset>>(i, &declared)?
            .map(|v| v.to_rfc3339()),
        other => {
            return Err(user_error(
                "22P03",
                format!(
                    "parameter ${} of type {other} in binary format is not understood; send it as text",
                    i + 1
                ),
            ));
        }
    };
    Ok(text)
}

#[async_trait]
impl ExtendedQueryHandler for PgQuery {
    type Statement = String;
    type QueryParser = SqlText;

    fn query_parser(&self) -> Arc<SqlText> {
        Arc::new(SqlText)
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        target: &StoredStatement<String>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = String>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (types, fields) = self
            .describe(caller_of(client), &target.statement, &Format::UnifiedText)
            .await?;
        Ok(DescribeStatementResponse::new(types, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        target: &Portal<String>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = String>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (_, fields) = self
            .describe(
                caller_of(client),
                &target.statement.statement,
                &target.result_column_format,
            )
            .await?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<String>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = String>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let parameters = (0..portal.parameter_len())
            .map(|i| parameter_text(portal, i))
            .collect::<PgWireResult<Vec<_>>>()?;
        self.governed(
            caller_of(client),
            &portal.statement.statement,
            &parameters,
            &portal.result_column_format,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_rituals_are_answered_and_engine_settings_are_not() {
        for ritual in [
            "BEGIN",
            "begin;",
            "START TRANSACTION READ ONLY",
            "COMMIT",
            "ROLLBACK",
            "SET extra_float_digits = 3",
            "SET application_name = 'DBeaver 24.1'",
            "SET SESSION TimeZone TO 'Asia/Shanghai'",
            "set datestyle to ISO",
        ] {
            assert!(client_ritual(ritual).is_some(), "{ritual}");
        }
        for statement in [
            "SET datafusion.execution.batch_size = 1",
            "SET datafusion.optimizer.max_passes=0",
            "SELECT 1",
            "SETTINGS",
            "",
        ] {
            assert!(client_ritual(statement).is_none(), "{statement}");
        }
    }
}
