//! The home page: the district's inventory (清家底) — units, resources, fields, records
//! held and exchanged, resources per unit, exchange volume over time, the units that have
//! registered nothing and the requests waiting past their answer date; for the bureau, the
//! accounts wrong passwords have locked, each with a button to lift the lock.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use tongchou_access::credentials::{self, Lockout};
use tongchou_access::requests::{self, View};
use tongchou_model::UserRole;

use crate::chart;
use crate::page::{both, frame, grouped, refused, respond};
use crate::{Shared, Viewer};

pub async fn page(axum::extract::State(s): Shared, viewer: Viewer) -> Response {
    let lang = viewer.lang;
    let title = lang.t("数据家底", "Inventory");
    let inventory = match s.catalog.inventory().await {
        Ok(i) => i,
        Err(e) => {
            return refused(
                &viewer,
                StatusCode::SERVICE_UNAVAILABLE,
                title,
                "/",
                &e.to_string(),
            );
        }
    };
    let per_day = tongchou_exchange::changes::volume_per_day(&s.dir)
        .await
        .unwrap_or_default();
    let mut per_unit: Vec<(String, i64)> = inventory
        .per_unit
        .iter()
        .filter(|u| u.resources > 0)
        .map(|u| (u.name.clone(), u.resources))
        .collect();
    per_unit.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    // Everyone sees how many requests are overdue; only the bureau sees which.
    let overdue = requests::list_requests(s.dir.metadata(), None, View::All, true)
        .await
        .unwrap_or_default();
    let bureau = viewer.is(UserRole::PlatformAdmin);
    let locked = if bureau {
        credentials::lockouts(s.dir.metadata())
            .await
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let body = html! {
        @if !locked.is_empty() { (lockouts(lang, &locked)) }
        section.figures aria-label=(lang.t("总数", "Totals")) {
            div.figure { span.n { (grouped(inventory.units)) } span { (both("个单位", "units")) } }
            div.figure { span.n { (grouped(inventory.resources)) } span { (both("项信息资源", "resources")) } }
            div.figure { span.n { (grouped(inventory.fields)) } span { (both("个数据项", "fields")) } }
            div.figure { span.n { (grouped(inventory.records)) } span { (both("条在库记录", "records held")) } }
            div.figure { span.n { (grouped(inventory.records_exchanged)) } span { (both("条已交换记录", "records exchanged")) } }
        }
        div.grid {
            (chart::bars(lang.t("各单位登记的信息资源数", "Resources registered per unit"), &per_unit))
            div {
                (chart::columns(lang.t("每日交换记录数", "Records exchanged per day"), &per_day))
                h2 { (lang.t("尚未登记资源的单位", "Units that registered nothing")) " (" (inventory.units_without_resources.len()) ")" }
                @if inventory.units_without_resources.is_empty() {
                    p { (lang.t("所有单位都已登记。", "Every unit has registered.")) }
                } @else {
                    ul.units { @for u in &inventory.units_without_resources { li { (u.name) " " span.en { (u.name_en) } } } }
                }
                h2 { (lang.t("逾期未答复的申请", "Requests overdue")) " (" (overdue.len()) ")" }
                @if overdue.is_empty() {
                    p { (lang.t("没有逾期的申请。", "No request is overdue.")) }
                } @else if bureau {
                    table {
                        thead { tr { th { "#" } th { (lang.t("资源", "Resource")) } th { (lang.t("申请人", "Requester")) } th { (lang.t("答复期限", "Answer due")) } } }
                        tbody { @for r in &overdue { tr { td { (r.id) } td { (r.resource_name) } td { (r.requester) } td { (r.answer_due) } } } }
                    }
                }
                p.hint { (lang.t("无数据的已登记资源：", "Registered resources without data: ")) (grouped(inventory.resources_without_data)) }
            }
        }
    };
    respond(StatusCode::OK, frame(Some(&viewer), lang, title, "/", body))
}

/// The locked accounts, where the failures came from, and the button that lifts each lock.
fn lockouts(lang: crate::Lang, locked: &[Lockout]) -> Markup {
    html! {
        section.card role="alert" aria-labelledby="locked" {
            h2 #locked { (lang.t("被锁定的账号", "Locked accounts")) " (" (locked.len()) ")" }
            p.hint { (lang.t("连续输错密码的账号会被锁定 15 分钟；若是他人猜测所致，可在核实后解锁。", "Accounts with repeated wrong passwords are locked for 15 minutes; when strangers' guesses caused it, lift the lock once you have checked.")) }
            table {
                thead { tr { th { (lang.t("账号", "Account")) } th { (lang.t("失败次数", "Failures")) } th { (lang.t("来源地址", "From")) } th { (lang.t("锁定至", "Locked until")) } th {} } }
                tbody { @for l in locked { tr {
                    td { (l.user) } td { (l.failures) } td { (l.addresses.join("、")) } td { (l.until) }
                    td { form method="post" action={ "/accounts/" (crate::page::url_encode(&l.user)) "/unlock" } {
                        button type="submit" { (lang.t("解锁", "Unlock")) }
                    } }
                } } }
            }
        }
    }
}

/// Lifts a lockout: the bureau's admins, recorded as `account_unlocked`.
pub async fn unlock(State(s): Shared, viewer: Viewer, Path(name): Path<String>) -> Response {
    if let Err(refusal) = viewer.require(tongchou_access::Scope::Admin) {
        return *refusal;
    }
    match credentials::unlock(&s.dir, Some(&viewer.principal), &name).await {
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) => refused(
            &viewer,
            StatusCode::FORBIDDEN,
            viewer.lang.t("解锁", "Unlock"),
            "/",
            &e.to_string(),
        ),
    }
}
