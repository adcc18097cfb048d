//! Access requests in the browser: the consumer files one (fields, purpose, period) from a
//! resource's page and follows its state; the providing unit's steward works the queue —
//! approving, narrower if they like (fields, row filter, a mask per field, expiry), or
//! refusing with a reason. The decisions are the access crate's; nothing is decided here.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use tongchou_access::requests::{self, Approval, NewRequest, Request, View};
use tongchou_model::{MASKS, Sensitivity, UserRole};

use crate::page::{Lang, frame, notice, purpose_select, refused, respond, url_encode};
use crate::{Shared, Viewer};

/// A posted form's pairs in order; repeated names (checkboxes) kept.
fn pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

fn all<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn one(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, v)| k == name && !v.trim().is_empty())
        .map(|(_, v)| v.trim().to_string())
}

fn state_label(lang: Lang, state: &str) -> &'static str {
    match state {
        "pending" => lang.t("待审批", "pending"),
        "approved" => lang.t("已批准", "approved"),
        "refused" => lang.t("已拒绝", "refused"),
        "withdrawn" => lang.t("已撤回", "withdrawn"),
        _ => "?",
    }
}

#[derive(Deserialize)]
pub struct Flash {
    done: Option<String>,
}

/// What was done to request `done`, told from its state — never text from the URL — and
/// only to its requester or the providing unit.
async fn done_notice(
    s: &tongchou_server::AppState,
    viewer: &Viewer,
    done: Option<&str>,
) -> Option<String> {
    let id: i64 = done?.parse().ok()?;
    let r = requests::get_request(s.dir.metadata(), id).await.ok()?;
    let user = &viewer.principal.user;
    if r.requester != user.name && r.provider != user.unit {
        return None;
    }
    let lang = viewer.lang;
    Some(match (r.state.as_str(), r.grant) {
        ("approved", Some(grant)) => format!(
            "{}{id} → {}{grant}",
            lang.t("已批准申请 #", "Approved request #"),
            lang.t("授权 #", "grant #")
        ),
        ("refused", _) => format!("{}{id}", lang.t("已拒绝申请 #", "Refused request #")),
        ("withdrawn", _) => format!("{}{id}", lang.t("已撤回申请 #", "Withdrew request #")),
        _ => format!("{}{id}", lang.t("已提交申请 #", "Filed request #")),
    })
}

pub async fn page(State(s): Shared, viewer: Viewer, Query(f): Query<Flash>) -> Response {
    let lang = viewer.lang;
    let pool = s.dir.metadata();
    let mine = requests::list_requests(pool, Some(&viewer.principal), View::Mine, false)
        .await
        .unwrap_or_default();
    let steward = viewer.is(UserRole::Steward);
    let queue = if steward {
        requests::list_requests(pool, Some(&viewer.principal), View::Queue, false)
            .await
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut cards = Vec::new();
    for r in &queue {
        cards.push(decision_card(&s, lang, r).await);
    }
    let body = html! {
        @if let Some(done) = done_notice(&s, &viewer, f.done.as_deref()).await { (notice(true, &done)) }
        @if steward {
            h2 { (lang.t("待我单位审批", "Waiting for my unit's decision")) " (" (queue.len()) ")" }
            @if queue.is_empty() { p { (lang.t("没有待审批的申请。", "Nothing is waiting.")) } }
            @for card in cards { (card) }
        }
        h2 { (lang.t("我的申请", "My requests")) " (" (mine.len()) ")" }
        @if mine.is_empty() {
            p { (lang.t("还没有申请。在资源目录中打开资源，点击“申请使用”。", "No requests yet. Open a resource in the catalog and choose “Request access”.")) }
        } @else {
            table {
                thead { tr {
                    th { "#" } th { (lang.t("资源", "Resource")) } th { (lang.t("用途", "Purpose")) }
                    th { (lang.t("提交时间", "Filed")) } th { (lang.t("状态", "State")) } th { (lang.t("说明", "Note")) }
                } }
                tbody { @for r in mine.iter().rev() { tr {
                    td { (r.id) }
                    td { a href={ "/resource?code=" (url_encode(&r.resource)) } { (r.resource_name) } }
                    td { (r.purpose) }
                    td { (r.filed_at) }
                    td { span class={ "state " (r.state) } { (state_label(lang, &r.state)) } @if r.overdue { " " span.state.overdue { (lang.t("已逾期", "overdue")) } } }
                    td { (r.reason.clone().unwrap_or_default()) @if r.state == "pending" { (lang.t("答复期限 ", "answer due ")) (r.answer_due) } }
                } } }
            }
        }
    };
    respond(
        StatusCode::OK,
        frame(
            Some(&viewer),
            lang,
            lang.t("申请与审批", "Requests"),
            "/requests",
            body,
        ),
    )
}

fn mask_choices(current: Option<&str>) -> Markup {
    html! {
        option value="" selected[current.is_none()] { "默认 default" }
        option value="none" { "不脱敏 raw" }
        @for m in MASKS {
            option value=(m) selected[current.map(|c| c.split('(').next() == Some(m)).unwrap_or(false)] { (m) }
        }
    }
}

async fn decision_card(s: &tongchou_server::AppState, lang: Lang, r: &Request) -> Markup {
    let resource = s.catalog.get(&r.resource).await.ok();
    html! {
        article.card {
            h3 { "#" (r.id) " " (r.resource_name) }
            p { (lang.t("申请人 ", "Requester ")) strong { (r.requester) } " · " (lang.t("用途 ", "purpose ")) (r.purpose) " · " (r.purpose_detail) }
            p { (lang.t("依据 ", "Legal basis ")) (r.legal_basis) " · " (lang.t("期限 ", "period ")) (r.period_from) " — " (r.period_until.clone().unwrap_or_else(|| "…".into())) " · " (lang.t("答复期限 ", "answer due ")) (r.answer_due) }
            form method="post" action={ "/requests/" (r.id) "/approve" } {
                fieldset {
                    legend { (lang.t("批准的字段与脱敏方式", "Fields granted and their masks")) }
                    table {
                        thead { tr { th { (lang.t("给予", "Grant")) } th { (lang.t("字段", "Field")) } th { (lang.t("脱敏", "Mask")) } } }
                        tbody {
                            @for name in &r.fields {
                                @let field = resource.as_ref().and_then(|x| x.resource.fields.iter().find(|f| &f.name == name));
                                tr {
                                    td { input type="checkbox" id={ "f-" (r.id) "-" (name) } name="field" value=(name) checked; }
                                    td { label for={ "f-" (r.id) "-" (name) } { (name) @if let Some(f) = field { " " (f.label) " " span class={ "sens " (f.sensitivity.as_str()) } { (f.sensitivity.label_zh()) } } } }
                                    td {
                                        select name={ "mask:" (name) } aria-label={ (name) " " (lang.t("脱敏", "mask")) } {
                                            (mask_choices(field.and_then(|f| f.default_mask.as_deref())))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                label for={ "raw-" (r.id) } { (lang.t("敏感字段不脱敏的理由（选择“不脱敏”时必填，记入账本）", "Why sensitive fields are given raw (required when “raw” is chosen for one; recorded in the ledger)")) }
                input id={ "raw-" (r.id) } name="raw_reason";
                label for={ "rf-" (r.id) } { (lang.t("行过滤条件（可选，SQL 条件）", "Row filter (optional, an SQL condition)")) }
                input id={ "rf-" (r.id) } name="row_filter" placeholder="town = '桂城街道'";
                label for={ "until-" (r.id) } { (lang.t("有效期至（可选）", "Valid until (optional)")) }
                input id={ "until-" (r.id) } name="until" type="date";
                label for={ "to-" (r.id) } { (lang.t("授权给", "Grant to")) }
                select id={ "to-" (r.id) } name="to" {
                    option value="user" selected { (lang.t("申请人本人", "the requester only")) }
                    option value="unit" { (lang.t("申请单位的所有用户", "every user of the requesting unit")) }
                    option value={ "role:" (tongchou_model::UserRole::Analyst.as_str()) } { (lang.t("申请单位的业务分析人员", "the requesting unit's analysts")) }
                }
                button type="submit" { (lang.t("批准", "Approve")) }
            }
            form method="post" action={ "/requests/" (r.id) "/refuse" } {
                label for={ "reason-" (r.id) } { (lang.t("拒绝理由", "Reason for refusal")) }
                input id={ "reason-" (r.id) } name="reason" required;
                button.danger type="submit" { (lang.t("拒绝", "Refuse")) }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct NewForm {
    resource: String,
}

async fn request_form(
    s: &tongchou_server::AppState,
    viewer: &Viewer,
    code: &str,
    problem: Option<&str>,
    status: StatusCode,
) -> Response {
    let lang = viewer.lang;
    let title = lang.t("申请使用资源", "Request access");
    let record = match s.catalog.get(code).await {
        Ok(r) => r,
        Err(e) => {
            return refused(
                viewer,
                StatusCode::NOT_FOUND,
                title,
                "/requests",
                &e.to_string(),
            );
        }
    };
    let purposes = requests::purposes(s.dir.metadata())
        .await
        .unwrap_or_default();
    let body = html! {
        @if let Some(p) = problem { (notice(false, p)) }
        p { (lang.t("资源：", "Resource: ")) strong { (record.resource.name) } " · " (record.unit_name) }
        form.card method="post" action="/requests" {
            input type="hidden" name="resource" value=(code);
            fieldset {
                legend { (lang.t("需要的字段", "Fields you need")) }
                @for f in record.resource.fields.iter().filter(|f| f.sensitivity != Sensitivity::Secret) {
                    div.check {
                        input type="checkbox" id={ "field-" (f.name) } name="fields" value=(f.name) checked;
                        label for={ "field-" (f.name) } { (f.label) " " code { (f.name) } " " span class={ "sens " (f.sensitivity.as_str()) } { (f.sensitivity.label_zh()) } }
                    }
                }
            }
            (purpose_select(lang, &purposes, None))
            label for="purpose_detail" { (lang.t("具体用途说明", "What the data is for")) }
            textarea id="purpose_detail" name="purpose_detail" rows="3" required {}
            label for="legal_basis" { (lang.t("依据（文件或条款）", "Legal basis")) }
            input id="legal_basis" name="legal_basis" required;
            div.facets {
                div.facet {
                    label for="from" { (lang.t("使用起始日期（默认今天）", "Use from (default today)")) }
                    input id="from" name="from" type="date";
                }
                div.facet {
                    label for="until" { (lang.t("使用截止日期", "Use until")) }
                    input id="until" name="until" type="date";
                }
            }
            button type="submit" { (lang.t("提交申请", "File the request")) }
        }
    };
    respond(status, frame(Some(viewer), lang, title, "/requests", body))
}

pub async fn form(State(s): Shared, viewer: Viewer, Query(f): Query<NewForm>) -> Response {
    request_form(&s, &viewer, &f.resource, None, StatusCode::OK).await
}

pub async fn file(State(s): Shared, viewer: Viewer, body: Bytes) -> Response {
    let form = pairs(&body);
    let resource = one(&form, "resource").unwrap_or_default();
    let new = NewRequest {
        resource: resource.clone(),
        fields: all(&form, "fields")
            .into_iter()
            .map(str::to_string)
            .collect(),
        purpose: one(&form, "purpose").unwrap_or_default(),
        purpose_detail: one(&form, "purpose_detail").unwrap_or_default(),
        legal_basis: one(&form, "legal_basis").unwrap_or_default(),
        from: one(&form, "from"),
        until: one(&form, "until"),
    };
    match requests::file_request(&s.dir, &viewer.principal, &new).await {
        Ok(id) => Redirect::to(&format!("/requests?done={id}")).into_response(),
        Err(e) => {
            request_form(
                &s,
                &viewer,
                &resource,
                Some(&e.to_string()),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

pub async fn approve(
    State(s): Shared,
    viewer: Viewer,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    let form = pairs(&body);
    let masks: BTreeMap<String, String> = form
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("mask:").map(|f| (f.to_string(), v.clone())))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let approval = Approval {
        fields: Some(
            all(&form, "field")
                .into_iter()
                .map(str::to_string)
                .collect(),
        ),
        row_filter: one(&form, "row_filter"),
        masks,
        raw_reason: one(&form, "raw_reason"),
        until: one(&form, "until"),
        to: one(&form, "to"),
    };
    let done = requests::approve(&s.dir, &viewer.principal, id, &approval)
        .await
        .map(|_| id);
    decided(&viewer, done)
}

/// Back to the queue saying what was done, or the reason it could not be.
fn decided(viewer: &Viewer, done: Result<i64, tongchou_access::AccessError>) -> Response {
    match done {
        Ok(id) => Redirect::to(&format!("/requests?done={id}")).into_response(),
        Err(e) => refused(
            viewer,
            StatusCode::UNPROCESSABLE_ENTITY,
            viewer.lang.t("申请与审批", "Requests"),
            "/requests",
            &e.to_string(),
        ),
    }
}

#[derive(Deserialize)]
pub struct RefuseForm {
    reason: String,
}

pub async fn refuse(
    State(s): Shared,
    viewer: Viewer,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<RefuseForm>,
) -> Response {
    let done = requests::refuse(&s.dir, &viewer.principal, id, &f.reason)
        .await
        .map(|_| id);
    decided(&viewer, done)
}
