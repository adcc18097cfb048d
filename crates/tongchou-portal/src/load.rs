//! Register and load, for a providing unit's stewards: the catalog workbook with its
//! per-row error report; a sample file whose fields and personal data are inferred for
//! the steward to confirm and register; a data file loaded into the resource's table with
//! its load report; and the quarantine, corrected in the browser and resubmitted.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use tongchou_access::Scope;
use tongchou_catalog::{Actor, Batch, Problem, Record};
use tongchou_exchange::{Encoding, LoadReport, Mode, ReadOptions};
use tongchou_model::{
    DataType, MASKS, OpenType, Role, Sensitivity, ShareType, UpdateCycle, UserRole,
};
use tongchou_server::AppState;

use crate::page::{Lang, frame, grouped, notice, refused, respond, url_encode};
use crate::{Shared, Viewer};

const SAMPLE_ROWS: usize = 200;

fn title(lang: Lang) -> &'static str {
    lang.t("登记与上传", "Register and load")
}

fn actor(viewer: &Viewer) -> Actor {
    Actor::User {
        name: viewer.name().to_string(),
        unit: viewer.unit().to_string(),
        role: viewer.principal.user.role,
    }
}

fn may_load(viewer: &Viewer) -> bool {
    viewer.is(UserRole::Steward) || viewer.is(UserRole::PlatformAdmin)
}

fn not_a_steward(viewer: &Viewer) -> Response {
    let lang = viewer.lang;
    refused(
        viewer,
        StatusCode::FORBIDDEN,
        title(lang),
        "/load",
        lang.t(
            "登记和上传由提供单位的数据管理员办理。",
            "Registering and loading is done by the providing unit's stewards.",
        ),
    )
}

async fn own_records(s: &AppState, viewer: &Viewer) -> Vec<Record> {
    if viewer.is(UserRole::PlatformAdmin) {
        s.catalog.all_records().await.unwrap_or_default()
    } else {
        s.catalog
            .resources_of_unit(viewer.unit())
            .await
            .unwrap_or_default()
    }
}

async fn load_page(s: &AppState, viewer: &Viewer, outcome: Markup, status: StatusCode) -> Response {
    let lang = viewer.lang;
    if !may_load(viewer) {
        return not_a_steward(viewer);
    }
    let records = own_records(s, viewer).await;
    let findings = crate::inspect::findings_for_provider(s, viewer.unit()).await;
    let body = html! {
        section.result aria-live="polite" { (outcome) }
        div.grid {
            form.card method="post" action="/load/workbook" enctype="multipart/form-data" {
                h2 { (lang.t("1. 上传目录登记表", "1. Upload the catalog workbook")) }
                p { a href="/api/catalog/template.xlsx" { (lang.t("下载登记表模板（Excel）", "Download the workbook template (Excel)")) } }
                label for="workbook" { (lang.t("填好的登记表 .xlsx", "The filled-in workbook (.xlsx)")) }
                input id="workbook" name="file" type="file" accept=".xlsx" required;
                button type="submit" { (lang.t("登记", "Register")) }
            }
            form.card method="post" action="/load/sample" enctype="multipart/form-data" {
                h2 { (lang.t("2. 从样例文件登记资源", "2. Register a resource from a sample")) }
                label for="resource_name" { (lang.t("资源名称", "Resource name")) }
                input id="resource_name" name="name" required;
                label for="sample" { (lang.t("样例文件（CSV 或 Excel，GBK/UTF-8 均可）", "Sample file (CSV or Excel, GBK or UTF-8)")) }
                input id="sample" name="file" type="file" accept=".csv,.txt,.xlsx" required;
                button type="submit" { (lang.t("推断字段", "Infer fields")) }
            }
            form.card method="post" action="/load/data" enctype="multipart/form-data" {
                h2 { (lang.t("3. 上传数据", "3. Load data")) }
                label for="data-resource" { (lang.t("资源", "Resource")) }
                select id="data-resource" name="resource" required {
                    @for r in &records {
                        option value=(r.resource.code.clone().unwrap_or_default()) { (r.resource.name) @if !r.has_data { (lang.t("（无数据）", " (no data)")) } }
                    }
                }
                label for="mode" { (lang.t("方式", "Mode")) }
                select id="mode" name="mode" {
                    option value="append" { (lang.t("追加 append", "append")) }
                    option value="replace" { (lang.t("替换 replace", "replace")) }
                    option value="upsert" { (lang.t("按主键更新 upsert", "upsert by key")) }
                }
                label for="datafile" { (lang.t("数据文件（CSV、Excel、JSON、Parquet）", "Data file (CSV, Excel, JSON, Parquet)")) }
                input id="datafile" name="file" type="file" required;
                button type="submit" { (lang.t("上传并装载", "Upload and load")) }
            }
        }
        @if !findings.is_empty() {
            h2 { (lang.t("巡查员上报的执照问题", "Licence findings reported by inspectors")) " (" (findings.len()) ")" }
            div.scroll { table {
                thead { tr {
                    th { (lang.t("执照号码", "Licence")) } th { (lang.t("核验结果", "Verdict")) } th { (lang.t("商户", "Shop")) }
                    th { (lang.t("地址", "Address")) } th { (lang.t("现场情况", "Note")) } th { (lang.t("上报人", "By")) } th { (lang.t("时间", "When")) }
                } }
                tbody { @for f in &findings { tr { @for v in f { td { (v) } } } } }
            } }
        }
        h2 { (lang.t("本单位资源", "Your unit's resources")) " (" (records.len()) ")" }
        table {
            thead { tr { th { (lang.t("资源", "Resource")) } th { (lang.t("代码", "Code")) } th { (lang.t("数据", "Data")) } th { (lang.t("隔离区", "Quarantine")) } } }
            tbody { @for r in &records {
                @let code = r.resource.code.clone().unwrap_or_default();
                tr {
                    td { a href={ "/resource?code=" (url_encode(&code)) } { (r.resource.name) } }
                    td { code { (code) } }
                    td { @if r.has_data { (lang.t("有", "yes")) } @else { (lang.t("无", "none")) } }
                    td { a href={ "/quarantine?resource=" (url_encode(&code)) } { (lang.t("查看", "open")) } }
                }
            } }
        }
    };
    respond(
        status,
        frame(Some(viewer), lang, title(lang), "/load", body),
    )
}

pub async fn page(State(s): Shared, viewer: Viewer) -> Response {
    load_page(&s, &viewer, html! {}, StatusCode::OK).await
}

/// The multipart form's text fields and its one file, saved under the data directory's
/// `uploads/` as it streams in (and removed when this is dropped).
struct Upload {
    fields: BTreeMap<String, String>,
    file: Option<tongchou_server::Upload>,
}

/// Text fields a load form has (resource, mode, encoding, sheet, header row, name …).
const MAX_FIELDS: usize = 16;

impl Upload {
    async fn receive(s: &AppState, mut form: Multipart) -> Result<Upload, String> {
        let mut upload = Upload {
            fields: BTreeMap::new(),
            file: None,
        };
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| format!("the upload broke off: {e}"))?
        {
            let name = field.name().unwrap_or("").to_string();
            if name != "file" {
                if upload.fields.len() >= MAX_FIELDS {
                    return Err(format!("the form has over {MAX_FIELDS} fields"));
                }
                let text = tongchou_server::field_text(field, s.limits.field_bytes())
                    .await
                    .map_err(|e| e.error)?;
                upload.fields.insert(name.chars().take(64).collect(), text);
                continue;
            }
            if upload.file.is_some() {
                return Err("choose one file: the form sent two".into());
            }
            let uploads = s.dir.root().join("uploads");
            let stored = tongchou_server::store_upload(&uploads, field, s.limits.upload_bytes())
                .await
                .map_err(|e| e.error)?;
            upload.file = Some(stored);
        }
        Ok(upload)
    }

    /// The file read whole (a workbook or a sample), within the server's limit for that.
    async fn bytes(&self, s: &AppState) -> Result<(String, Vec<u8>), String> {
        let file = self.file.as_ref().ok_or("no file was chosen")?;
        let bytes = file
            .read_whole(s.limits.workbook_bytes())
            .await
            .map_err(|e| e.error)?;
        Ok((file.name.clone(), bytes))
    }
}

/// The upload of a steward's form, or the page to answer instead.
async fn steward_upload(
    s: &AppState,
    viewer: &Viewer,
    form: Multipart,
) -> Result<Upload, Box<Response>> {
    if !may_load(viewer) {
        return Err(Box::new(not_a_steward(viewer)));
    }
    viewer.require(Scope::Write)?;
    match Upload::receive(s, form).await {
        Ok(upload) => Ok(upload),
        Err(e) => Err(Box::new(
            load_page(s, viewer, notice(false, &e), StatusCode::BAD_REQUEST).await,
        )),
    }
}

fn problems_table(lang: Lang, problems: &[Problem]) -> Markup {
    html! {
        p.error role="alert" { (problems.len()) (lang.t(" 处问题，未登记任何资源。请改正后重新上传。", " problem(s); nothing was registered. Correct them and upload again.")) }
        table {
            thead { tr { th { (lang.t("位置", "Where")) } th { (lang.t("资源", "Resource")) } th { (lang.t("字段", "Field")) } th { (lang.t("问题", "Problem")) } } }
            tbody { @for p in problems { tr {
                td { (p.at) } td { (p.resource.clone().unwrap_or_default()) } td { (p.field.clone().unwrap_or_default()) } td { (p.message) }
            } } }
        }
    }
}

async fn register_batch(
    s: &AppState,
    viewer: &Viewer,
    batch: Result<Batch, Vec<Problem>>,
) -> (Markup, StatusCode) {
    let lang = viewer.lang;
    let batch = match batch.and_then(Batch::checked) {
        Ok(b) => b,
        Err(problems) => {
            return (
                problems_table(lang, &problems),
                StatusCode::UNPROCESSABLE_ENTITY,
            );
        }
    };
    match s.catalog.register(batch, &actor(viewer)).await {
        Ok(codes) => (
            html! {
                p.ok role="status" { (lang.t("已登记 ", "Registered ")) (codes.len()) (lang.t(" 项资源。", " resource(s).")) }
                ul { @for c in &codes { li { a href={ "/resource?code=" (url_encode(c)) } { (c) } } } }
            },
            StatusCode::CREATED,
        ),
        Err(tongchou_catalog::CatalogError::Rejected(problems)) => (
            problems_table(lang, &problems),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(e) => (notice(false, &e.to_string()), StatusCode::FORBIDDEN),
    }
}

pub async fn workbook(State(s): Shared, viewer: Viewer, form: Multipart) -> Response {
    let upload = match steward_upload(&s, &viewer, form).await {
        Ok(u) => u,
        Err(refusal) => return *refusal,
    };
    let bytes = upload.bytes(&s).await;
    drop(upload);
    let (outcome, status) = match bytes {
        Ok((_, bytes)) => {
            let batch = tongchou_server::blocking(move || Batch::from_workbook(&bytes)).await;
            register_batch(&s, &viewer, batch).await
        }
        Err(e) => (notice(false, &e), StatusCode::BAD_REQUEST),
    };
    load_page(&s, &viewer, outcome, status).await
}

fn select_of<T: Copy + PartialEq>(
    id: &str,
    all: &[T],
    chosen: T,
    text: fn(T) -> (&'static str, &'static str),
) -> Markup {
    labelled_select(id, None, all, chosen, text)
}

/// A select named `id`; `label` when no `<label>` points at it.
fn labelled_select<T: Copy + PartialEq>(
    id: &str,
    label: Option<String>,
    all: &[T],
    chosen: T,
    text: fn(T) -> (&'static str, &'static str),
) -> Markup {
    html! {
        select id=(id) name=(id) aria-label=[label] {
            @for v in all { @let (code, zh) = text(*v); option value=(code) selected[*v == chosen] { (zh) } }
        }
    }
}

pub async fn sample(State(s): Shared, viewer: Viewer, form: Multipart) -> Response {
    let lang = viewer.lang;
    let upload = match steward_upload(&s, &viewer, form).await {
        Ok(u) => u,
        Err(refusal) => return *refusal,
    };
    let name = upload.fields.get("name").cloned().unwrap_or_default();
    let bytes = upload.bytes(&s).await;
    drop(upload);
    let sample = match bytes {
        Ok((file, bytes)) => {
            tongchou_server::blocking(move || {
                tongchou_catalog::sample::read(&file, &bytes, None, SAMPLE_ROWS)
                    .map_err(|e| e.to_string())
            })
            .await
        }
        Err(e) => Err(e),
    };
    let sample = match sample {
        Ok(s) => s,
        Err(e) => {
            return load_page(
                &s,
                &viewer,
                notice(
                    false,
                    &format!(
                        "{}{e}",
                        lang.t("样例文件读不出来：", "The sample cannot be read: ")
                    ),
                ),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let inference = tongchou_catalog::infer::infer(&sample);
    let body = html! {
        p { (lang.t("已读取 ", "Read ")) (inference.rows_sampled) (lang.t(" 行样例。请确认每个字段的类型、敏感级别和脱敏方式，特别是标出的个人信息。", " sample rows. Confirm each field's type, sensitivity and mask — above all the personal data flagged.")) }
        form.card method="post" action="/register" {
            label for="name" { (lang.t("资源名称", "Resource name")) }
            input id="name" name="name" value=(name) required;
            label for="abstract" { (lang.t("摘要", "Abstract")) }
            textarea id="abstract" name="abstract" rows="2" required {}
            div.facets {
                div.facet { label for="share_type" { (lang.t("共享类型", "Share type")) } (select_of("share_type", ShareType::ALL, ShareType::Conditional, |v| (v.as_str(), v.label_zh()))) }
                div.facet { label for="open_type" { (lang.t("开放类型", "Open type")) } (select_of("open_type", OpenType::ALL, OpenType::None, |v| (v.as_str(), v.label_zh()))) }
                div.facet { label for="update_cycle" { (lang.t("更新周期", "Update cycle")) } (select_of("update_cycle", UpdateCycle::ALL, UpdateCycle::Monthly, |v| (v.as_str(), v.label_zh()))) }
            }
            label for="share_condition" { (lang.t("共享条件（有条件共享时必填）", "Share condition (required for conditional sharing)")) }
            input id="share_condition" name="share_condition";
            label for="legal_basis" { (lang.t("共享依据（无条件共享以外必填）", "Legal basis (required unless shared unconditionally)")) }
            input id="legal_basis" name="legal_basis";
            div.scroll { table {
                thead { tr {
                    th { (lang.t("字段", "Field")) } th { (lang.t("名称", "Label")) } th { (lang.t("类型", "Type")) }
                    th { (lang.t("个人信息", "Personal data")) } th { (lang.t("敏感级别", "Sensitivity")) } th { (lang.t("默认脱敏", "Mask")) } th { (lang.t("依据", "Why")) }
                } }
                tbody { @for (i, f) in inference.fields.iter().enumerate() {
                    tr class=(if f.role.is_some() { "pii" } else { "" }) {
                        td { input name={ "f" (i) ".name" } value=(f.name) aria-label={ (lang.t("字段名 ", "Field name ")) (i + 1) } required; }
                        td { input name={ "f" (i) ".label" } value=(f.label) aria-label={ (lang.t("名称 ", "Label ")) (i + 1) } required; }
                        td {
                            (labelled_select(&format!("f{i}.type"), Some(format!("{}{}", lang.t("类型 ", "Type "), i + 1)), DataType::ALL, f.data_type, |v| (v.as_str(), v.label_zh())))
                            @if let (Some(p), Some(s)) = (f.precision, f.scale) {
                                input type="hidden" name={ "f" (i) ".precision" } value=(p);
                                input type="hidden" name={ "f" (i) ".scale" } value=(s);
                            }
                        }
                        td {
                            select name={ "f" (i) ".role" } aria-label={ (lang.t("个人信息类别 ", "Personal data kind ")) (i + 1) } {
                                option value="" { "—" }
                                @for r in Role::ALL { option value=(r.as_str()) selected[Some(*r) == f.role] { (r.label_zh()) } }
                            }
                        }
                        td { (labelled_select(&format!("f{i}.sensitivity"), Some(format!("{}{}", lang.t("敏感级别 ", "Sensitivity "), i + 1)), Sensitivity::ALL, f.sensitivity, |v| (v.as_str(), v.label_zh()))) }
                        td {
                            select name={ "f" (i) ".mask" } aria-label={ (lang.t("脱敏 ", "Mask ")) (i + 1) } {
                                option value="" { "—" }
                                @for m in MASKS { option value=(m) selected[f.default_mask.as_deref().map(|d| d.split('(').next() == Some(m)).unwrap_or(false)] { (m) } }
                            }
                        }
                        td.why { (f.reasons.join("；")) }
                    }
                } }
            } }
            button type="submit" { (lang.t("确认并登记", "Confirm and register")) }
        }
    };
    respond(
        StatusCode::OK,
        frame(
            Some(&viewer),
            lang,
            lang.t("确认推断的字段", "Confirm the inferred fields"),
            "/load",
            body,
        ),
    )
}

/// The confirmed draft as the catalog's JSON form of a resource.
fn draft(unit: &str, form: &[(String, String)]) -> serde_json::Value {
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let mut fields = Vec::new();
    for i in 0.. {
        let name = get(&format!("f{i}.name"));
        if name.is_empty() && !form.iter().any(|(n, _)| n.starts_with(&format!("f{i}."))) {
            break;
        }
        let mut field = serde_json::json!({
            "name": name,
            "label": get(&format!("f{i}.label")),
            "type": get(&format!("f{i}.type")),
            "sensitivity": get(&format!("f{i}.sensitivity")),
        });
        let role = get(&format!("f{i}.role"));
        if !role.is_empty() {
            field["role"] = role.into();
        }
        let mask = get(&format!("f{i}.mask"));
        if !mask.is_empty() {
            field["default_mask"] = mask.into();
        }
        // The sample's digits hold only while the steward keeps the field a decimal.
        if DataType::parse(&get(&format!("f{i}.type"))) == Some(DataType::Decimal) {
            for key in ["precision", "scale"] {
                let digits = get(&format!("f{i}.{key}"));
                if !digits.is_empty() {
                    field[key] = digits.into();
                }
            }
        }
        fields.push(field);
    }
    let optional = |k: &str| Some(get(k)).filter(|v| !v.is_empty());
    serde_json::json!({
        "unit": unit,
        "name": get("name"),
        "abstract": get("abstract"),
        "share_type": get("share_type"),
        "share_condition": optional("share_condition"),
        "legal_basis": optional("legal_basis"),
        "open_type": get("open_type"),
        "update_cycle": get("update_cycle"),
        "fields": fields,
    })
}

pub async fn register(State(s): Shared, viewer: Viewer, body: Bytes) -> Response {
    if !may_load(&viewer) {
        return not_a_steward(&viewer);
    }
    if let Err(refusal) = viewer.require(Scope::Write) {
        return *refusal;
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let value = draft(viewer.unit(), &form);
    let batch = tongchou_catalog::validate::resource("资源 1", &value).map(|r| Batch {
        units: Vec::new(),
        resources: vec![("资源 1".into(), r)],
        problems: Vec::new(),
    });
    let (outcome, status) = register_batch(&s, &viewer, batch).await;
    load_page(&s, &viewer, outcome, status).await
}

fn report_markup(lang: Lang, code: &str, report: &LoadReport) -> Markup {
    html! {
        p.ok role="status" { (lang.t("装载完成：版本 v", "Loaded: version v")) (report.version) }
        dl.meta {
            dt { (lang.t("读取行数", "Rows read")) } dd { (grouped(report.rows_read as i64)) }
            dt { (lang.t("接收", "Accepted")) } dd { (grouped(report.accepted as i64)) }
            dt { (lang.t("隔离", "Quarantined")) } dd { (grouped(report.quarantined as i64)) }
            dt { (lang.t("表内行数", "Rows in the table")) } dd { (grouped(report.rows)) }
            @if let Some(e) = report.encoding { dt { (lang.t("编码", "Encoding")) } dd { (e) } }
        }
        @if !report.by_rule.is_empty() {
            table {
                thead { tr { th { (lang.t("规则", "Rule")) } th.num { (lang.t("隔离行数", "Rows quarantined")) } } }
                tbody { @for (rule, n) in &report.by_rule { tr { td { (rule) } td.num { (grouped(*n as i64)) } } } }
            }
            p { a href={ "/quarantine?resource=" (url_encode(code)) } { (lang.t("查看并更正隔离数据", "See and correct the quarantine")) } }
        }
    }
}

async fn require_provider(s: &AppState, viewer: &Viewer, code: &str) -> Result<Record, String> {
    let record = s.catalog.get(code).await.map_err(|e| e.to_string())?;
    if actor(viewer).may_provide_for(&record.resource.unit) {
        Ok(record)
    } else {
        Err(format!(
            "只有提供单位 {} 的数据管理员可以装载和更正资源 {code}。 Only stewards of the providing unit load and fix it.",
            record.unit_name
        ))
    }
}

async fn ingest(
    s: &AppState,
    viewer: &Viewer,
    code: &str,
    path: &std::path::Path,
    mode: Mode,
) -> Result<LoadReport, String> {
    let options = ReadOptions {
        encoding: Encoding::Auto,
        sheet: None,
        header_row: None,
    };
    tongchou_exchange::ingest(
        &s.dir,
        &s.catalog,
        &tongchou_exchange::Load {
            resource: code,
            file: path,
            mode,
            read: &options,
            actor: viewer.name(),
        },
        std::sync::Arc::new(()),
    )
    .await
    .map_err(|e| e.to_string())
}

pub async fn data(State(s): Shared, viewer: Viewer, form: Multipart) -> Response {
    let lang = viewer.lang;
    let upload = match steward_upload(&s, &viewer, form).await {
        Ok(u) => u,
        Err(refusal) => return *refusal,
    };
    let code = upload.fields.get("resource").cloned().unwrap_or_default();
    let mode = Mode::parse(
        upload
            .fields
            .get("mode")
            .map(String::as_str)
            .unwrap_or("append"),
    )
    .unwrap_or(Mode::Append);
    let outcome = match (require_provider(&s, &viewer, &code).await, &upload.file) {
        (Err(e), _) => Err((e, StatusCode::FORBIDDEN)),
        (Ok(_), None) => Err((
            lang.t("没有选择文件。", "No file was chosen.").to_string(),
            StatusCode::BAD_REQUEST,
        )),
        (Ok(_), Some(file)) => ingest(&s, &viewer, &code, &file.path, mode)
            .await
            .map_err(|e| (e, StatusCode::UNPROCESSABLE_ENTITY)),
    };
    drop(upload);
    match outcome {
        Ok(report) => {
            load_page(
                &s,
                &viewer,
                report_markup(lang, &code, &report),
                StatusCode::OK,
            )
            .await
        }
        Err((e, status)) => {
            load_page(
                &s,
                &viewer,
                notice(false, &format!("{}{e}", lang.t("未装载：", "Not loaded: "))),
                status,
            )
            .await
        }
    }
}

#[derive(Deserialize)]
pub struct QuarantineQuery {
    resource: String,
}

/// Open quarantined rows, once each: (row id, line, its values, every rule it broke).
type OpenRow = (
    i64,
    u64,
    serde_json::Map<String, serde_json::Value>,
    Vec<String>,
);

async fn open_rows(s: &AppState, code: &str) -> Result<Vec<OpenRow>, String> {
    let entries = tongchou_exchange::quarantine(&s.dir, code)
        .await
        .map_err(|e| e.to_string())?;
    let mut rows: Vec<OpenRow> = Vec::new();
    for e in entries {
        let reason = format!("{}：{}", e.field, e.reason);
        match rows.last_mut() {
            Some(last) if last.0 == e.id => last.3.push(reason),
            _ => rows.push((
                e.id,
                e.line,
                e.values.as_object().cloned().unwrap_or_default(),
                vec![reason],
            )),
        }
    }
    Ok(rows)
}

async fn quarantine_page(
    s: &AppState,
    viewer: &Viewer,
    code: &str,
    outcome: Markup,
    status: StatusCode,
) -> Response {
    let lang = viewer.lang;
    let heading = lang.t("隔离数据", "Quarantine");
    let record = match require_provider(s, viewer, code).await {
        Ok(r) => r,
        Err(e) => return refused(viewer, StatusCode::FORBIDDEN, heading, "/load", &e),
    };
    let rows = match open_rows(s, code).await {
        Ok(r) => r,
        Err(e) => {
            return refused(
                viewer,
                StatusCode::SERVICE_UNAVAILABLE,
                heading,
                "/load",
                &e,
            );
        }
    };
    let columns: Vec<String> = rows
        .first()
        .map(|r| r.2.keys().cloned().collect())
        .unwrap_or_default();
    let body = html! {
        section.result aria-live="polite" { (outcome) }
        p { (record.resource.name) " · " (rows.len()) (lang.t(" 行待更正。改正后提交，更正的行会重新校验并装载；仍不合格的行会留在隔离区。", " rows to correct. Corrected rows are checked and loaded again; rows still failing stay here.")) }
        @if !rows.is_empty() {
            form method="post" action="/quarantine" {
                input type="hidden" name="resource" value=(code);
                div.scroll { table.quarantine {
                    thead { tr { th { (lang.t("行号", "Line")) } th { (lang.t("问题", "Problems")) } @for c in &columns { th { (c) } } } }
                    tbody { @for (id, line, values, reasons) in &rows { tr {
                        td { (line) input type="hidden" name="row" value=(id); }
                        td.why { (reasons.join("；")) }
                        @for c in &columns {
                            td { input name={ "r" (id) "." (c) } aria-label={ (lang.t("第", "Line ")) (line) (lang.t("行 ", " ")) (c) } value=(values.get(c).and_then(|v| v.as_str()).unwrap_or("")); }
                        }
                    } } }
                } }
                button type="submit" { (lang.t("提交更正", "Resubmit the corrections")) }
            }
        }
    };
    respond(status, frame(Some(viewer), lang, heading, "/load", body))
}

pub async fn quarantine(
    State(s): Shared,
    viewer: Viewer,
    Query(q): Query<QuarantineQuery>,
) -> Response {
    quarantine_page(&s, &viewer, &q.resource, html! {}, StatusCode::OK).await
}

pub async fn resubmit(State(s): Shared, viewer: Viewer, body: Bytes) -> Response {
    let lang = viewer.lang;
    if let Err(refusal) = viewer.require(Scope::Write) {
        return *refusal;
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let code = form
        .iter()
        .find(|(k, _)| k == "resource")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let record = match require_provider(&s, &viewer, &code).await {
        Ok(r) => r,
        Err(e) => {
            return refused(
                &viewer,
                StatusCode::FORBIDDEN,
                lang.t("隔离数据", "Quarantine"),
                "/load",
                &e,
            );
        }
    };
    let rows = open_rows(&s, &code).await.unwrap_or_default();
    let columns: Vec<String> = rows
        .first()
        .map(|r| r.2.keys().cloned().collect())
        .unwrap_or_default();
    let path = s.dir.root().join("uploads").join(format!(
        "{}-corrections.csv",
        jiff::Timestamp::now().as_nanosecond()
    ));
    let written = (|| -> Result<(), String> {
        std::fs::create_dir_all(path.parent().expect("uploads")).map_err(|e| e.to_string())?;
        let mut w = csv::Writer::from_path(&path).map_err(|e| e.to_string())?;
        w.write_record(&columns).map_err(|e| e.to_string())?;
        for (id, _, _, _) in &rows {
            let record: Vec<String> = columns
                .iter()
                .map(|c| {
                    let key = format!("r{id}.{c}");
                    form.iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, v)| v.trim().to_string())
                        .unwrap_or_default()
                })
                .collect();
            w.write_record(&record).map_err(|e| e.to_string())?;
        }
        w.flush().map_err(|e| e.to_string())
    })();
    let mode = if record.resource.key.is_empty() {
        Mode::Append
    } else {
        Mode::Upsert
    };
    let outcome = match written {
        Err(e) => Err(e),
        Ok(()) => ingest(&s, &viewer, &code, &path, mode).await,
    };
    let _ = std::fs::remove_file(&path);
    match outcome {
        Ok(report) => {
            let closed = tongchou_exchange::close_quarantine(&s.dir, &code, &report.load_id)
                .await
                .unwrap_or(0);
            let message = html! {
                (report_markup(lang, &code, &report))
                p { (lang.t("已关闭原隔离行 ", "Closed earlier quarantined rows: ")) (closed) }
            };
            quarantine_page(&s, &viewer, &code, message, StatusCode::OK).await
        }
        Err(e) => {
            quarantine_page(
                &s,
                &viewer,
                &code,
                notice(false, &e),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confirmed_form_becomes_a_resource_the_catalog_accepts() {
        let form: Vec<(String, String)> = [
            ("name", "救助名单"),
            ("abstract", "困难群众救助金发放名单"),
            ("share_type", "conditional"),
            ("share_condition", "用于救助核对"),
            ("legal_basis", "《社会救助暂行办法》"),
            ("open_type", "none"),
            ("update_cycle", "monthly"),
            ("f0.name", "person_id"),
            ("f0.label", "公民身份号码"),
            ("f0.type", "string"),
            ("f0.role", "person_id"),
            ("f0.sensitivity", "sensitive"),
            ("f0.mask", "citizen_id"),
            ("f1.name", "amount"),
            ("f1.label", "救助金额"),
            ("f1.type", "decimal"),
            ("f1.role", ""),
            ("f1.sensitivity", "internal"),
            ("f1.mask", ""),
            ("f1.precision", "18"),
            ("f1.scale", "2"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let value = draft("114406050000000001", &form);
        let resource = tongchou_catalog::validate::resource("资源 1", &value).unwrap();
        assert_eq!(resource.fields.len(), 2);
        assert_eq!(resource.fields[0].role, Some(Role::PersonId));
        assert_eq!(
            resource.fields[0].default_mask.as_deref(),
            Some("citizen_id")
        );
        assert_eq!(resource.fields[1].default_mask, None);
        assert_eq!(
            resource.fields[1].decimal_type().to_string(),
            "decimal(18,2)"
        );
        assert_eq!(resource.share_type, ShareType::Conditional);
        let mut broken = form.clone();
        broken.retain(|(k, _)| k != "share_condition");
        let problems =
            tongchou_catalog::validate::resource("资源 1", &draft("114406050000000001", &broken))
                .unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.field.as_deref() == Some("share_condition")),
            "{problems:?}"
        );
    }
}
