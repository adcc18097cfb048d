//! The PostgreSQL wire protocol (pgwire) as a front door of governed query, so `psql`,
//! `psycopg` and BI tools work unchanged:
//!
//! - sign-in with the platform's user name and password (sent as a cleartext password
//!   message — use it on 127.0.0.1 or behind TLS) or an API token with the `query` scope
//!   as the password; failures are throttled and recorded like any other sign-in;
//! - the *database* names the purpose (`psql -d procuratorial_supervision`);
//! - each statement runs in the same governed engine as REST and the CLI and is recorded
//!   in the ledger (front door `pg`) before the first row is sent; when the ledger cannot
//!   be written the statement fails.
//!
//! Simple query protocol only for now; the extended protocol answers with an error.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use async_trait::async_trait;
use futures::{Sink, SinkExt, stream};
use pgwire::api::auth::{
    DefaultServerParameterProvider, LoginInfo, StartupHandler, finish_authentication,
    protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::portal::Format;
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{QueryResponse, Response};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tongchou_access::Scope;
use tongchou_audit::{ALLOWED, Entry};
use tongchou_query::QueryError;
use tongchou_query::front::{outcome_of, render, statement_entry};

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
        QueryError::TooManyRows(_) => "54000",
        QueryError::Timeout(_) => "57014",
        _ => "XX000",
    }
}

/// Serves the PostgreSQL protocol on `addr` until the process stops.
pub async fn serve_pg(state: Arc<AppState>, addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let handlers = Arc::new(PgHandlers {
        startup: Arc::new(PgStartup {
            state: state.clone(),
            pids: RandomPidSecretKeyGenerator::default(),
        }),
        query: Arc::new(PgQuery { state }),
    });
    loop {
        let (socket, _) = listener.accept().await?;
        let handlers = handlers.clone();
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
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

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
}

struct PgStartup {
    state: Arc<AppState>,
    pids: RandomPidSecretKeyGenerator,
}

impl PgStartup {
    /// The password is the user's password, or an API token of that user with `query`.
    async fn check(&self, user: &str, password: &str, address: &str) -> Result<(), String> {
        if password.starts_with("tc_") {
            let principal = self
                .state
                .policy
                .authenticate(password)
                .await
                .map_err(|e| e.to_string())?;
            principal.require(Scope::Query).map_err(|e| e.to_string())?;
            if principal.user.name != user {
                return Err("the token is another user's".into());
            }
            return Ok(());
        }
        tongchou_access::credentials::check_password(&self.state.dir, user, password, address)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
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
                let checked = self.check(&user, &pwd.password, &address).await;
                // Sign-ins and failures were queued by the access crate: record them now.
                let _ = tongchou_audit::outbox::drain(&self.state.audit).await;
                if let Err(why) = checked {
                    return Err(user_error(
                        "28P01",
                        format!("sign-in refused for {user}: {why}"),
                    ));
                }
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
        let metadata = client.metadata();
        let user = metadata.get("user").cloned().unwrap_or_default();
        let purpose = metadata.get("database").cloned().unwrap_or_default();
        let s = &self.state;
        let mut entry = Entry::new("statement", "pg", ALLOWED);
        let (statement, named) = s.audit.redact(query);
        entry.statement = Some(statement);
        entry.subjects = named;
        entry.user = Some(user.clone());
        entry.unit = s
            .policy
            .current()
            .await
            .ok()
            .and_then(|set| set.user(&user).map(|u| u.unit.clone()));
        entry.purpose = Some(purpose.clone());
        let answer = match s.query.run(&user, &purpose, query).await {
            Ok(answer) => answer,
            Err(e) => {
                entry.outcome = outcome_of(&e).into();
                entry.reason = Some(e.to_string());
                if let Err(ledger) = s.audit.record(&entry).await {
                    return Err(user_error("58030", ledger.to_string()));
                }
                return Err(user_error(sqlstate(&e), e.to_string()));
            }
        };
        let delivered =
            render(&answer, "arrow").map_err(|e| user_error(sqlstate(&e), e.to_string()))?;
        let traced = statement_entry(&s.audit, entry, &answer, &delivered);
        s.audit
            .record(&traced)
            .await
            .map_err(|e| user_error("58030", e.to_string()))?;
        let fields = Arc::new(arrow_schema_to_pg_fields(
            &answer.schema,
            &Format::UnifiedText,
            None,
        )?);
        let mut rows = Vec::new();
        for batch in answer.batches {
            rows.extend(encode_recordbatch(fields.clone(), batch));
        }
        Ok(vec![Response::Query(QueryResponse::new(
            fields,
            stream::iter(rows),
        ))])
    }
}
