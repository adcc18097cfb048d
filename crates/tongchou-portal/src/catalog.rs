//! The catalog: Chinese search with facets, and each resource's page — its catalog
//! metadata, fields with sensitivity and masks, versions, a preview through the viewer's
//! own grant (masked as the grant says), the quality of its loads, and "申请使用".

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use tongchou_access::requests;
use tongchou_catalog::{Record, SearchQuery};
use tongchou_model::{DataType, OpenType, ShareType, UpdateCycle};

use crate::console::{GovernedRead, answer_table, granted_purpose};
use crate::page::{Lang, frame, grouped, purpose_select, refused, respond, url_encode};
use crate::{Shared, Viewer};
use tongchou_query::session::quoted;

#[derive(Deserialize, Default)]
pub struct SearchForm {
    #[serde(default)]
    q: String,
    unit: Option<String>,
    share_type: Option<String>,
    open_type: Option<String>,
    update_cycle: Option<String>,
}

fn facet<T: Copy>(
    lang: Lang,
    name: &str,
    label: (&str, &str),
    all: &[T],
    text: fn(T) -> (&'static str, &'static str),
    chosen: Option<&str>,
) -> Markup {
    html! {
        div.facet {
            label for=(name) { (lang.t(label.0, label.1)) }
            select id=(name) name=(name) {
                option value="" { (lang.t("全部", "All")) }
                @for v in all {
                    @let (code, zh) = text(*v);
                    option value=(code) selected[Some(code) == chosen] { (zh) }
                }
            }
        }
    }
}

pub async fn search(State(s): Shared, viewer: Viewer, Query(f): Query<SearchForm>) -> Response {
    let lang = viewer.lang;
    let title = lang.t("资源目录", "Catalog");
    let nonempty = |v: &Option<String>| v.clone().filter(|x| !x.is_empty());
    let query = SearchQuery {
        text: f.q.clone(),
        unit: nonempty(&f.unit),
        share_type: nonempty(&f.share_type).and_then(|v| ShareType::parse(&v)),
        open_type: nonempty(&f.open_type).and_then(|v| OpenType::parse(&v)),
        update_cycle: nonempty(&f.update_cycle).and_then(|v| UpdateCycle::parse(&v)),
        limit: 50,
    };
    let (hits, units) = match (s.catalog.search(&query).await, s.catalog.units().await) {
        (Ok(h), Ok(u)) => (h, u),
        (Err(e), _) | (_, Err(e)) => {
            return refused(
                &viewer,
                StatusCode::SERVICE_UNAVAILABLE,
                title,
                "/catalog",
                &e.to_string(),
            );
        }
    };
    let body = html! {
        form.search role="search" method="get" action="/catalog" {
            div.searchbox {
                label for="q" { (lang.t("搜索资源（中文或英文）", "Search resources (Chinese or English)")) }
                input id="q" name="q" type="search" value=(f.q) placeholder=(lang.t("例如：社保 欠费、营业执照、出入境", "e.g. 社保 欠费, licence, exit-entry"));
                button type="submit" { (lang.t("搜索", "Search")) }
            }
            div.facets {
                div.facet {
                    label for="unit" { (lang.t("单位", "Unit")) }
                    select id="unit" name="unit" {
                        option value="" { (lang.t("全部单位", "All units")) }
                        @for u in &units {
                            option value=(u.code) selected[f.unit.as_deref() == Some(u.code.as_str())] { (u.name) }
                        }
                    }
                }
                (facet(lang, "share_type", ("共享类型", "Share type"), ShareType::ALL, |v| (v.as_str(), v.label_zh()), f.share_type.as_deref()))
                (facet(lang, "open_type", ("开放类型", "Open type"), OpenType::ALL, |v| (v.as_str(), v.label_zh()), f.open_type.as_deref()))
                (facet(lang, "update_cycle", ("更新周期", "Update cycle"), UpdateCycle::ALL, |v| (v.as_str(), v.label_zh()), f.update_cycle.as_deref()))
            }
        }
        p.count { (lang.t("找到", "Found")) " " (hits.len()) " " (lang.t("项资源", "resources")) }
        ol.hits {
            @for h in &hits {
                li {
                    a href={ "/resource?code=" (url_encode(&h.code)) } { (h.name) }
                    " " span.unit { (h.unit_name) }
                    p { (h.summary) }
                    p.tags {
                        span.tag { (label_of(ShareType::parse(&h.share_type).map(|v| v.label_zh()), &h.share_type)) }
                        span.tag { (label_of(OpenType::parse(&h.open_type).map(|v| v.label_zh()), &h.open_type)) }
                        span.tag { (label_of(UpdateCycle::parse(&h.update_cycle).map(|v| v.label_zh()), &h.update_cycle)) }
                        span.code { (h.code) }
                    }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        frame(Some(&viewer), lang, title, "/catalog", body),
    )
}

fn label_of(zh: Option<&'static str>, raw: &str) -> String {
    zh.map(str::to_string).unwrap_or_else(|| raw.to_string())
}

#[derive(Deserialize)]
pub struct ResourceQuery {
    code: String,
    purpose: Option<String>,
}

pub async fn resource(
    State(s): Shared,
    viewer: Viewer,
    Query(q): Query<ResourceQuery>,
) -> Response {
    let lang = viewer.lang;
    let record = match s.catalog.get(&q.code).await {
        Ok(r) => r,
        Err(e) => {
            return refused(
                &viewer,
                StatusCode::NOT_FOUND,
                lang.t("资源", "Resource"),
                "/catalog",
                &e.to_string(),
            );
        }
    };
    let own = record.resource.unit == viewer.unit();
    let purpose = match q.purpose.filter(|p| !p.is_empty()) {
        Some(p) => Some(p),
        None => granted_purpose(&s, &viewer, Some(&q.code)).await,
    };
    let purposes = requests::purposes(s.dir.metadata())
        .await
        .unwrap_or_default();
    let loads = tongchou_exchange::loads(&s.dir, &q.code)
        .await
        .unwrap_or_default();
    let history = s.catalog.history(&q.code).await.unwrap_or_default();
    let mut read = None;
    let preview = match &purpose {
        Some(p) if record.has_data => {
            let sql = format!(
                "SELECT * FROM {}.{} LIMIT 10",
                quoted(&record.unit_name),
                quoted(&record.resource.name)
            );
            match GovernedRead::run(&s, &viewer, p, &sql, &[]).await {
                Ok(r) => {
                    let table = answer_table(lang, &r.answer, 10);
                    read = Some(r);
                    table
                }
                Err(message) => html! { p.error role="alert" { (message) } },
            }
        }
        _ => html! {},
    };
    let body = html! {
        (metadata(lang, &record))
        h2 { (lang.t("数据项", "Fields")) " (" (record.resource.fields.len()) ")" }
        (fields_table(lang, &record))
        h2 { (lang.t("数据预览", "Data preview")) }
        @if !record.has_data {
            p { (lang.t("尚未上传数据。", "No data has been loaded yet.")) }
        } @else {
            form.inline-form method="get" action="/resource" {
                input type="hidden" name="code" value=(record.resource.code.clone().unwrap_or_default());
                (purpose_select(lang, &purposes, purpose.as_deref()))
                button type="submit" { (lang.t("按此用途预览", "Preview for this purpose")) }
            }
            p.hint { (lang.t("预览按您的授权执行：只显示授权的字段和行，敏感字段已脱敏；每次预览都记入账本。", "The preview runs under your grant: only granted fields and rows, sensitive fields masked; every preview is recorded in the ledger.")) }
            (preview)
        }
        @if !own {
            p { a.button href={ "/requests/new?resource=" (url_encode(record.resource.code.as_deref().unwrap_or(""))) } { (lang.t("申请使用", "Request access")) } }
        }
        h2 { (lang.t("数据版本与质量", "Versions and quality")) }
        @if loads.is_empty() {
            p { (lang.t("暂无装载记录。", "No loads yet.")) }
        } @else {
            table {
                thead { tr {
                    th { (lang.t("版本", "Version")) } th { (lang.t("完成时间", "Finished")) } th { (lang.t("方式", "Mode")) }
                    th.num { (lang.t("接收", "Accepted")) } th.num { (lang.t("隔离", "Quarantined")) } th.num { (lang.t("表内行数", "Rows after")) }
                } }
                tbody { @for l in loads.iter().take(20) { tr {
                    td { "v" (l.version) } td { (l.finished_at) } td { (l.mode) }
                    td.num { (grouped(l.accepted)) } td.num { (grouped(l.quarantined)) } td.num { (grouped(l.rows)) }
                } } }
            }
            @let accepted: i64 = loads.iter().map(|l| l.accepted).sum();
            @let quarantined: i64 = loads.iter().map(|l| l.quarantined).sum();
            p { (lang.t("质量：累计接收 ", "Quality: accepted ")) (grouped(accepted)) (lang.t(" 行，隔离 ", " rows, quarantined ")) (grouped(quarantined))
                (lang.t(" 行（合格率 ", " rows (pass rate ")) (format!("{:.2}%", 100.0 * accepted as f64 / (accepted + quarantined).max(1) as f64)) ")" }
            @if own { p { a href={ "/quarantine?resource=" (url_encode(record.resource.code.as_deref().unwrap_or(""))) } { (lang.t("查看并更正隔离数据", "See and correct the quarantine")) } } }
        }
        h2 { (lang.t("目录变更记录", "Catalog history")) }
        ul { @for v in &history { li { "v" (v.version) " · " (v.changed_at) " · " (v.changed_by) " · " (v.summary) } } }
    };
    let title = record.resource.name.clone();
    let mut response = respond(
        StatusCode::OK,
        frame(Some(&viewer), lang, &title, "/catalog", body),
    );
    if let Some(r) = read {
        response.extensions_mut().insert(r.traced);
    }
    response.into_response()
}

fn metadata(lang: Lang, record: &Record) -> Markup {
    let r = &record.resource;
    html! {
        dl.meta {
            dt { (lang.t("资源代码", "Code")) } dd { (r.code.clone().unwrap_or_default()) }
            dt { (lang.t("提供单位", "Provider")) } dd { (record.unit_name) }
            dt { (lang.t("摘要", "Abstract")) } dd { (r.summary) }
            dt { (lang.t("共享类型", "Share type")) } dd { (r.share_type.label_zh()) @if let Some(c) = &r.share_condition { "：" (c) } }
            dt { (lang.t("开放类型", "Open type")) } dd { (r.open_type.label_zh()) }
            dt { (lang.t("更新周期", "Update cycle")) } dd { (r.update_cycle.label_zh()) }
            @if let Some(b) = &r.legal_basis { dt { (lang.t("共享依据", "Legal basis")) } dd { (b) } }
            @if !r.tags.is_empty() { dt { (lang.t("关键词", "Tags")) } dd { @for t in &r.tags { span.tag { (t) } } } }
            dt { (lang.t("目录版本", "Catalog version")) } dd { "v" (record.version) " · " (record.updated_at) }
        }
    }
}

fn fields_table(lang: Lang, record: &Record) -> Markup {
    html! {
        table {
            thead { tr {
                th { (lang.t("字段", "Field")) } th { (lang.t("名称", "Label")) } th { (lang.t("类型", "Type")) }
                th { (lang.t("敏感级别", "Sensitivity")) } th { (lang.t("默认脱敏", "Default mask")) }
            } }
            tbody { @for f in &record.resource.fields { tr {
                td { code { (f.name) } } td { (f.label) } td { (f.data_type.label_zh()) @if f.data_type == DataType::Decimal { " " (f.decimal_type()) } }
                td { span class={ "sens " (f.sensitivity.as_str()) } { (f.sensitivity.label_zh()) } }
                td { (f.default_mask.clone().unwrap_or_else(|| "—".into())) }
            } } }
        }
    }
}
