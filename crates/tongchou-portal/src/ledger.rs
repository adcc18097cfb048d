//! The ledger in the browser: a providing unit's stewards see every use of their unit's
//! resources; the bureau sees all of it by unit, purpose, kind, outcome and time — denied
//! attempts included — and answers "who looked at this person".

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use tongchou_audit::index::{self, Filter, Listed};
use tongchou_audit::{ALLOWED, AuditError, DENIED, Entry};
use tongchou_model::UserRole;
use tongchou_server::Traced;

use crate::page::{Lang, frame, grouped, refused, respond};
use crate::{Shared, Viewer};

fn title(lang: Lang) -> &'static str {
    lang.t("审计账本", "Ledger")
}

/// The bureau sees everything; a steward sees their own unit's resources; nobody else.
fn scoped(viewer: &Viewer, mut filter: Filter) -> Option<Filter> {
    if viewer.is(UserRole::PlatformAdmin) {
        return Some(filter);
    }
    if viewer.is(UserRole::Steward) {
        filter.provider = Some(viewer.unit().to_string());
        return Some(filter);
    }
    None
}

fn text_input(id: &str, label: &str, value: &Option<String>, kind: &str) -> Markup {
    html! {
        div.facet {
            label for=(id) { (label) }
            input id=(id) name=(id) type=(kind) value=(value.clone().unwrap_or_default());
        }
    }
}

/// Unit code → name, for tables that would otherwise show 18-character codes.
pub type UnitNames = std::collections::HashMap<String, String>;

async fn unit_names(s: &tongchou_server::AppState) -> UnitNames {
    s.catalog
        .units()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|u| (u.code, u.name))
        .collect()
}

fn unit_name(names: &UnitNames, code: &Option<String>) -> String {
    code.as_ref()
        .map(|c| names.get(c).cloned().unwrap_or_else(|| c.clone()))
        .unwrap_or_default()
}

fn entries_table(lang: Lang, names: &UnitNames, entries: &[Listed]) -> Markup {
    html! {
        div.scroll { table {
            thead { tr {
                th { "#" } th { (lang.t("时间", "Time")) } th { (lang.t("类别", "Kind")) } th { (lang.t("渠道", "Door")) }
                th { (lang.t("用户", "User")) } th { (lang.t("单位", "Unit")) } th { (lang.t("用途", "Purpose")) }
                th { (lang.t("结果", "Outcome")) } th.num { (lang.t("行数", "Rows")) } th { (lang.t("资源", "Resources")) }
            } }
            tbody { @for e in entries { tr class=(if e.outcome == DENIED { "denied" } else { "" }) {
                td { (e.seq) } td { (e.time) } td { (e.kind) } td { (e.front_door) }
                td { (e.user.clone().unwrap_or_default()) } td { (unit_name(names, &e.unit)) } td { (e.purpose.clone().unwrap_or_default()) }
                td { (e.outcome) } td.num { (e.rows.map(grouped).unwrap_or_default()) } td { (e.resources.join(", ")) }
            } } }
        } }
    }
}

/// A form's empty boxes mean "any", not "equal to nothing".
fn cleaned(mut f: Filter) -> Filter {
    for value in [
        &mut f.user,
        &mut f.unit,
        &mut f.resource,
        &mut f.purpose,
        &mut f.kind,
        &mut f.outcome,
        &mut f.since,
        &mut f.until,
        &mut f.provider,
    ] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            *value = None;
        }
    }
    f
}

/// Days of use the summary covers when no start is asked: the summary reads every entry
/// of its period, so a page that opens by itself must not grow with the years.
const USAGE_DAYS: i64 = 7;

fn usage_period(filter: &Filter) -> Filter {
    let mut period = filter.clone();
    period.before = None;
    if period.since.is_none() {
        let start = jiff::Zoned::now()
            .with_time_zone(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)))
            .date()
            .checked_sub(jiff::Span::new().days(USAGE_DAYS))
            .unwrap_or(jiff::civil::Date::MIN);
        period.since = Some(start.to_string());
    }
    period
}

/// The link to the next page: the same filter, after the last entry shown.
fn older_page(asked: &Filter, last: i64) -> String {
    let mut next = asked.clone();
    next.before = Some(last);
    format!(
        "/ledger?{}",
        serde_urlencoded::to_string(&next).unwrap_or_default()
    )
}

pub async fn page(State(s): Shared, viewer: Viewer, Query(asked): Query<Filter>) -> Response {
    let lang = viewer.lang;
    let asked = cleaned(asked);
    let Some(mut filter) = scoped(&viewer, asked.clone()) else {
        return refused(&viewer, StatusCode::FORBIDDEN, title(lang), "/ledger", lang.t(
            "账本由数据统筹局管理员查看；单位数据管理员可查看本单位资源的使用情况。",
            "The ledger is read by the bureau's admins, and by stewards for their own resources.",
        ));
    };
    filter.limit = Some(filter.limit.unwrap_or(100).clamp(1, 1000));
    let period = usage_period(&filter);
    let usage = index::usage(&s.audit, &period).await;
    let entries = index::search(&s.audit, &filter).await;
    let (usage, entries) = match (usage, entries) {
        (Ok(u), Ok(e)) => (u, e),
        (Err(e), _) | (_, Err(e)) => {
            let status = match e {
                AuditError::Filter(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            return refused(&viewer, status, title(lang), "/ledger", &e.to_string());
        }
    };
    let older = (entries.len() as i64 == filter.limit.unwrap_or(100))
        .then(|| entries.last().map(|e| older_page(&asked, e.seq)))
        .flatten();
    let bureau = viewer.is(UserRole::PlatformAdmin);
    let names = unit_names(&s).await;
    let body = html! {
        @if !bureau { p.hint { (lang.t("您看到的是本单位资源被使用的记录。", "You see the uses of your unit's resources.")) } }
        form.filters method="get" action="/ledger" {
            (text_input("user", lang.t("用户", "User"), &asked.user, "text"))
            @if bureau { (text_input("unit", lang.t("单位代码", "Unit code"), &asked.unit, "text")) }
            (text_input("purpose", lang.t("用途", "Purpose"), &asked.purpose, "text"))
            (text_input("resource", lang.t("资源代码", "Resource code"), &asked.resource, "text"))
            (text_input("kind", lang.t("类别（如 statement）", "Kind (e.g. statement)"), &asked.kind, "text"))
            div.facet {
                label for="outcome" { (lang.t("结果", "Outcome")) }
                select id="outcome" name="outcome" {
                    option value="" { (lang.t("全部", "All")) }
                    @for o in [ALLOWED, DENIED, "failed"] { option value=(o) selected[asked.outcome.as_deref() == Some(o)] { (o) } }
                }
            }
            (text_input("since", lang.t("起始日期", "Since"), &asked.since, "date"))
            (text_input("until", lang.t("截止日期", "Until"), &asked.until, "date"))
            button type="submit" { (lang.t("筛选", "Filter")) }
        }
        h2 { (lang.t("按单位和用途统计", "Use by unit and purpose")) " (" (lang.t("自 ", "since ")) (period.since.clone().unwrap_or_default()) ")" }
        table {
            thead { tr { th { (lang.t("单位", "Unit")) } th { (lang.t("用途", "Purpose")) } th.num { (lang.t("次数", "Entries")) } th.num { (lang.t("被拒", "Denied")) } th.num { (lang.t("行数", "Rows")) } th.num { (lang.t("涉及对象", "Subjects")) } } }
            tbody { @for u in &usage { tr {
                td { (unit_name(&names, &u.unit)) } td { (u.purpose.clone().unwrap_or_default()) }
                td.num { (grouped(u.entries)) } td.num { (grouped(u.denied)) } td.num { (grouped(u.rows)) } td.num { (grouped(u.subjects)) }
            } } }
        }
        h2 { (lang.t("最近的记录", "Newest entries")) " (" (entries.len()) ")" }
        (entries_table(lang, &names, &entries))
        @if let Some(href) = &older { p { a.older href=(href) { (lang.t("更早的记录 →", "Older entries →")) } } }
        @if bureau {
            h2 { (lang.t("谁查看了此人", "Who looked at this person")) }
            form.inline-form method="get" action="/ledger/subject" {
                label for="id" { (lang.t("公民身份号码或统一社会信用代码", "Citizen ID or credit code")) }
                input id="id" name="id" required autocomplete="off";
                button type="submit" { (lang.t("查询", "Look up")) }
            }
        }
    };
    respond(
        StatusCode::OK,
        frame(Some(&viewer), lang, title(lang), "/ledger", body),
    )
}

#[derive(serde::Deserialize)]
pub struct SubjectForm {
    id: String,
}

pub async fn subject(State(s): Shared, viewer: Viewer, Query(q): Query<SubjectForm>) -> Response {
    let lang = viewer.lang;
    let heading = lang.t("谁查看了此人", "Who looked at this person");
    if !viewer.is(UserRole::PlatformAdmin) {
        return refused(
            &viewer,
            StatusCode::FORBIDDEN,
            heading,
            "/ledger",
            lang.t(
                "只有数据统筹局管理员代公民查询谁使用了其数据。",
                "Only the bureau's admins look up, for a citizen, who used their data.",
            ),
        );
    }
    let found = match index::subject(&s.audit, q.id.trim()).await {
        Ok(f) => f,
        Err(e) => {
            return refused(
                &viewer,
                StatusCode::SERVICE_UNAVAILABLE,
                heading,
                "/ledger",
                &e.to_string(),
            );
        }
    };
    // The lookup is itself a use of that person's data.
    let mut traced = Entry::new("subject_lookup", viewer.principal.door.as_str(), ALLOWED);
    traced.detail = serde_json::json!({ "looked_up": s.audit.subject(q.id.trim()) });
    traced.rows = Some(found.len() as u64);
    let body = html! {
        p { (lang.t("共 ", "")) (found.len()) (lang.t(" 次访问涉及此人（号码不在页面和账本中明文出现）。", " recorded accesses touched this person (the number itself is not shown or recorded in clear).")) }
        (entries_table(lang, &unit_names(&s).await, &found))
        p { a href="/ledger" { (lang.t("返回账本", "Back to the ledger")) } }
    };
    let mut response = respond(
        StatusCode::OK,
        frame(Some(&viewer), lang, heading, "/ledger", body),
    );
    response.extensions_mut().insert(Traced(traced));
    response
}
