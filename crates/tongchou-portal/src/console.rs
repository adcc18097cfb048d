//! The query console: SQL over the resources the viewer may read for a purpose, listed
//! beside the editor; results as a table, or exported as CSV or XLSX. Statements run in
//! the governed engine exactly as over REST and are recorded with what they read.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use tongchou_access::Scope;
use tongchou_access::requests::{self, View};
use tongchou_audit::{ALLOWED, Entry};
use tongchou_query::front::{outcome_of, render, statement_entry};
use tongchou_query::session::quoted;
use tongchou_query::{Answer, QueryError};
use tongchou_server::{AppState, Traced};

use crate::page::{Lang, frame, grouped, purpose_select, respond};
use crate::{Shared, Viewer};

/// Rows shown on a page; exports carry the whole answer.
const SHOWN_ROWS: usize = 500;

/// A statement run for a page, with the ledger entry the page's response must carry.
pub struct GovernedRead {
    pub answer: Answer,
    pub traced: Traced,
}

/// A statement that did not run: what to tell the viewer, and what the ledger keeps.
pub struct Failed {
    pub message: String,
    pub status: StatusCode,
    pub traced: Traced,
}

impl GovernedRead {
    /// Runs `sql` as the viewer for `purpose`, for a page: the ledger's digest is of the
    /// rows in JSON.
    pub async fn run(
        s: &AppState,
        viewer: &Viewer,
        purpose: &str,
        sql: &str,
        parameters: &[Option<String>],
    ) -> Result<GovernedRead, String> {
        Self::run_as(s, viewer, purpose, sql, parameters, "json")
            .await
            .map(|(read, _)| read)
            .map_err(|f| f.message)
    }

    /// Runs `sql` and renders the answer in `format` (the bytes the ledger digests).
    pub async fn run_as(
        s: &AppState,
        viewer: &Viewer,
        purpose: &str,
        sql: &str,
        parameters: &[Option<String>],
        format: &str,
    ) -> Result<(GovernedRead, Vec<u8>), Box<Failed>> {
        let mut entry = Entry::new("statement", viewer.principal.door.as_str(), ALLOWED);
        let statement = s.audit.redact(sql);
        entry.statement = Some(statement);
        entry.purpose = Some(purpose.to_string());
        let failed = |e: QueryError, mut entry: Entry| {
            entry.outcome = outcome_of(&e).into();
            entry.reason = Some(e.to_string());
            Box::new(Failed {
                message: e.to_string(),
                status: tongchou_server::status_of(&e),
                traced: Traced(entry),
            })
        };
        if let Err(e) = viewer.principal.require(Scope::Query) {
            return Err(failed(e.into(), entry));
        }
        let answer = match s
            .query
            .run_with(viewer.name(), purpose, sql, parameters)
            .await
        {
            Ok(a) => a,
            Err(e) => return Err(failed(e, entry)),
        };
        let bytes = match render(&answer, format) {
            Ok(b) => b,
            Err(e) => return Err(failed(e, entry)),
        };
        let traced = Traced(statement_entry(&s.audit, entry, &answer, &bytes));
        Ok((GovernedRead { answer, traced }, bytes))
    }
}

/// The answer's first `limit` rows as text, nulls empty.
pub fn answer_rows(answer: &Answer, limit: usize) -> Vec<Vec<String>> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default().with_null("");
    let mut rows: Vec<Vec<String>> = Vec::new();
    for batch in &answer.batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        for row in 0..batch.num_rows() {
            if rows.len() >= limit {
                return rows;
            }
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    rows
}

/// The answer's first rows as an HTML table.
pub fn answer_table(lang: Lang, answer: &Answer, limit: usize) -> Markup {
    let rows = answer_rows(answer, limit);
    html! {
        div.scroll {
            table.results {
                thead { tr { @for f in answer.schema.fields() { th scope="col" { (f.name()) } } } }
                tbody { @for row in &rows { tr { @for v in row { td { (v) } } } } }
            }
        }
        p.count {
            (lang.t("共 ", "")) (grouped(answer.rows as i64)) (lang.t(" 行", " rows"))
            @if (answer.rows as usize) > rows.len() { (lang.t("，显示前 ", "; the first ")) (rows.len()) (lang.t(" 行", " shown")) }
        }
    }
}

#[derive(Deserialize, Default)]
pub struct ConsoleForm {
    purpose: Option<String>,
    #[serde(default)]
    sql: String,
    /// html (default), csv or xlsx.
    format: Option<String>,
}

/// The purpose of the viewer's first grant in force — on `resource`, or on anything —
/// to preview or query through.
pub async fn granted_purpose(
    s: &AppState,
    viewer: &Viewer,
    resource: Option<&str>,
) -> Option<String> {
    requests::list_grants(s.dir.metadata(), Some(&viewer.principal), View::Mine)
        .await
        .ok()?
        .into_iter()
        .find(|g| g.revoked_at.is_none() && resource.is_none_or(|code| g.resource == code))
        .map(|g| g.purpose)
}

async fn console(
    s: &AppState,
    viewer: &Viewer,
    form: &ConsoleForm,
    result: Markup,
    status: StatusCode,
) -> Response {
    let lang = viewer.lang;
    let purposes = requests::purposes(s.dir.metadata())
        .await
        .unwrap_or_default();
    let purpose = match form.purpose.clone().filter(|p| !p.is_empty()) {
        Some(p) => p,
        None => granted_purpose(s, viewer, None)
            .await
            .or_else(|| purposes.first().map(|p| p.code.clone()))
            .unwrap_or_default(),
    };
    let readable = s
        .query
        .readable(viewer.name(), &purpose)
        .await
        .unwrap_or_default();
    let sql = if form.sql.is_empty() {
        readable
            .first()
            .map(|(unit, name, _)| {
                format!("SELECT * FROM {}.{} LIMIT 20", quoted(unit), quoted(name))
            })
            .unwrap_or_default()
    } else {
        form.sql.clone()
    };
    let body = html! {
        div.console {
            form.editor method="post" action="/console" {
                (purpose_select(lang, &purposes, Some(&purpose)))
                label for="sql" { (lang.t("SQL 查询语句", "SQL statement")) }
                textarea id="sql" name="sql" rows="8" spellcheck="false" required { (sql) }
                div.actions {
                    button type="submit" name="format" value="html" { (lang.t("运行", "Run")) }
                    button.secondary type="submit" name="format" value="csv" { (lang.t("导出 CSV", "Export CSV")) }
                    button.secondary type="submit" name="format" value="xlsx" { (lang.t("导出 Excel", "Export XLSX")) }
                }
                p.hint { (lang.t("资源写作 \"单位名称\".\"资源名称\"；结果已按授权过滤和脱敏，每条语句都记入账本。", "Resources are \"unit\".\"resource\"; results are filtered and masked by your grants, and every statement is recorded in the ledger.")) }
            }
            aside.tables aria-label=(lang.t("可查询的资源", "Resources you may query")) {
                h2 { (lang.t("此用途下可查询", "Readable for this purpose")) " (" (readable.len()) ")" }
                form.inline-form method="get" action="/console" {
                    label for="list-purpose" { (lang.t("查看其他用途", "Another purpose")) }
                    select id="list-purpose" name="purpose" {
                        @for p in &purposes {
                            option value=(p.code) selected[p.code == purpose] { (lang.t(&p.label, &p.label_en)) }
                        }
                    }
                    button.secondary type="submit" { (lang.t("显示", "Show")) }
                }
                @if readable.is_empty() {
                    p { (lang.t("没有可查询的资源：请先在资源目录中申请使用。", "Nothing to query: request access from the catalog first.")) }
                }
                ul {
                    @for (unit, name, access) in &readable {
                        li {
                            code { (quoted(unit)) "." (quoted(name)) }
                            ul.fields { @for f in &access.fields {
                                li { (f.name) @if let Some(m) = &f.mask { " " span.mask { "(" (m) ")" } } }
                            } }
                        }
                    }
                }
            }
        }
        section.result aria-live="polite" { (result) }
    };
    respond(
        status,
        frame(
            Some(viewer),
            lang,
            lang.t("查询控制台", "Query console"),
            "/console",
            body,
        ),
    )
}

pub async fn page(State(s): Shared, viewer: Viewer, Query(form): Query<ConsoleForm>) -> Response {
    console(&s, &viewer, &form, html! {}, StatusCode::OK).await
}

pub async fn run(State(s): Shared, viewer: Viewer, Form(form): Form<ConsoleForm>) -> Response {
    let lang = viewer.lang;
    let purpose = form.purpose.clone().unwrap_or_default();
    let format = match form.format.as_deref() {
        Some("csv") => "csv",
        Some("xlsx") => "xlsx",
        _ => "html",
    };
    let digest_format = if format == "html" { "json" } else { format };
    match GovernedRead::run_as(&s, &viewer, &purpose, &form.sql, &[], digest_format).await {
        Err(failed) => {
            let result = html! { p.error role="alert" { (lang.t("查询未执行：", "The statement did not run: ")) (failed.message) } };
            let mut response = console(&s, &viewer, &form, result, failed.status).await;
            response.extensions_mut().insert(failed.traced);
            response
        }
        Ok((read, bytes)) if format != "html" => {
            let (content_type, name) = if format == "csv" {
                ("text/csv; charset=utf-8", "query.csv")
            } else {
                (
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    "query.xlsx",
                )
            };
            let mut response = (
                [
                    (header::CONTENT_TYPE, content_type.to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                    (header::CACHE_CONTROL, "no-store".to_string()),
                ],
                bytes,
            )
                .into_response();
            response.extensions_mut().insert(read.traced);
            response
        }
        Ok((read, _)) => {
            let result = answer_table(lang, &read.answer, SHOWN_ROWS);
            let mut response = console(&s, &viewer, &form, result, StatusCode::OK).await;
            response.extensions_mut().insert(read.traced);
            response
        }
    }
}
