//! The inspector's page, sized for a phone: type a licence number (统一社会信用代码) read
//! off a shop's wall, get the register's answer and a warning when the number is fake —
//! malformed, failing its GB 32100 check character, or absent from the register — and
//! report the finding. The number can also be scanned: a photo of the licence's QR code
//! is decoded on the server (rqrr) and the credit code inside it checked the same way. The
//! register is read through the governed engine as the inspector, for the purpose
//! `market_inspection`, and recorded like any statement.

use axum::Form;
use axum::extract::{Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use sqlx::Row;
use tongchou_access::Scope;
use tongchou_model::UserRole;
use tongchou_server::AppState;

use crate::console::GovernedRead;
use crate::page::{Lang, frame, notice, respond};
use crate::{Shared, Viewer};
use tongchou_query::session::quoted;

/// The register inspectors check licences against, by its catalog name.
const LICENCE_REGISTER: &str = "营业执照信息";
const PURPOSE: &str = "market_inspection";

/// What the platform says about a licence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Malformed,
    BadCheckCharacter,
    NotRegistered,
    NotValid,
    Registered,
}

impl Verdict {
    fn code(self) -> &'static str {
        match self {
            Verdict::Malformed => "malformed",
            Verdict::BadCheckCharacter => "bad_check_character",
            Verdict::NotRegistered => "not_registered",
            Verdict::NotValid => "not_valid",
            Verdict::Registered => "registered",
        }
    }

    fn fake(self) -> bool {
        matches!(
            self,
            Verdict::Malformed | Verdict::BadCheckCharacter | Verdict::NotRegistered
        )
    }

    fn says(self, lang: Lang) -> &'static str {
        match self {
            Verdict::Malformed => lang.t("号码格式不对：统一社会信用代码是 18 位数字和大写字母。疑似假证或抄错。", "Malformed: a credit code is 18 digits and capital letters. Likely fake or mistyped."),
            Verdict::BadCheckCharacter => lang.t("校验位不符（GB 32100）：这不是一个有效的统一社会信用代码。疑似假证或抄错。", "Check character wrong (GB 32100): this is not a valid credit code. Likely fake or mistyped."),
            Verdict::NotRegistered => lang.t("登记库中没有这个号码：疑似假证。", "Not in the register: likely a fake licence."),
            Verdict::NotValid => lang.t("登记库中有此执照，但已不在有效状态。", "In the register, but no longer valid."),
            Verdict::Registered => lang.t("登记库中有此执照，状态有效。", "Registered and valid."),
        }
    }
}

fn shape_ok(code: &str) -> bool {
    code.len() == 18
        && code
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

/// (unit name, resource name) of the licence register, when loaded.
async fn register(s: &AppState) -> Option<(String, String)> {
    let row = sqlx::query("SELECT u.name AS unit_name, r.name FROM resources r JOIN units u ON u.code = r.unit WHERE r.name = ? AND r.has_data = 1 ORDER BY r.code LIMIT 1")
        .bind(LICENCE_REGISTER)
        .fetch_optional(s.dir.metadata())
        .await
        .ok()??;
    Some((row.get("unit_name"), row.get("name")))
}

#[derive(Deserialize, Default)]
pub struct Lookup {
    licence: Option<String>,
    reported: Option<String>,
}

pub async fn page(State(s): Shared, viewer: Viewer, Query(q): Query<Lookup>) -> Response {
    let lang = viewer.lang;
    let title = title(lang);
    if let Some(refusal) = unless_inspector(&viewer) {
        return refusal;
    }
    let licence = q.licence.unwrap_or_default().trim().to_uppercase();
    let mut traced = None;
    let mut status = StatusCode::OK;
    let answer = if licence.is_empty() {
        html! {}
    } else {
        match check(&s, &viewer, &licence).await {
            Ok((verdict, rows, read)) => {
                traced = read.map(|r| r.traced);
                result(lang, &licence, verdict, &rows)
            }
            Err(failed) => {
                status = failed.status;
                traced = Some(failed.traced);
                html! { p.error role="alert" { (failed.message) } }
            }
        }
    };
    let mine = sqlx::query("SELECT licence_no, verdict, shop_name, reported_at FROM findings WHERE reported_by = ? ORDER BY id DESC LIMIT 10")
        .bind(viewer.name())
        .fetch_all(s.dir.metadata())
        .await
        .unwrap_or_default();
    let body = html! {
        div.phone {
            @if q.reported.is_some() { (notice(true, lang.t("已上报，谢谢。", "Reported, thank you."))) }
            form.card method="get" action="/inspect" {
                label for="licence" { (lang.t("营业执照号码（统一社会信用代码）", "Licence number (credit code)")) }
                input id="licence" name="licence" value=(licence) required autocomplete="off" autocapitalize="characters" spellcheck="false" maxlength="32";
                button type="submit" { (lang.t("核验", "Check")) }
            }
            form.card method="post" action="/inspect/scan" enctype="multipart/form-data" {
                label for="photo" { (lang.t("或拍照扫描执照上的二维码", "Or photograph the licence's QR code")) }
                input id="photo" name="photo" type="file" accept="image/*" capture="environment" required;
                button type="submit" { (lang.t("扫描", "Scan")) }
            }
            (answer)
            h2 { (lang.t("我的上报", "My reports")) }
            @if mine.is_empty() { p { (lang.t("还没有上报。", "Nothing reported yet.")) } }
            ul.reports { @for r in &mine {
                li { code { (r.get::<String, _>("licence_no")) } " · " (r.get::<String, _>("verdict")) " · " (r.get::<String, _>("shop_name")) " · " (r.get::<String, _>("reported_at")) }
            } }
        }
    };
    let mut response = respond(status, frame(Some(&viewer), lang, title, "/inspect", body));
    if let Some(t) = traced {
        response.extensions_mut().insert(t);
    }
    response
}

fn title(lang: Lang) -> &'static str {
    lang.t("巡查核验执照", "Check a licence")
}

/// The refusal for anyone but an inspector.
fn unless_inspector(viewer: &Viewer) -> Option<Response> {
    if viewer.is(UserRole::Inspector) {
        return None;
    }
    let lang = viewer.lang;
    Some(crate::page::refused(
        viewer,
        StatusCode::FORBIDDEN,
        title(lang),
        "/inspect",
        lang.t(
            "此页面供综合巡查员使用。",
            "This page is for field inspectors.",
        ),
    ))
}

type Register = Vec<(String, String)>;

async fn check(
    s: &AppState,
    viewer: &Viewer,
    licence: &str,
) -> Result<(Verdict, Register, Option<GovernedRead>), Box<crate::console::Failed>> {
    if !shape_ok(licence) {
        return Ok((Verdict::Malformed, Vec::new(), None));
    }
    if tongchou_ids::credit_code::validate(licence).is_err() {
        return Ok((Verdict::BadCheckCharacter, Vec::new(), None));
    }
    let Some((unit, name)) = register(s).await else {
        return Err(Box::new(crate::console::Failed {
            message: viewer
                .lang
                .t(
                    "执照登记库尚未装载数据，无法核验。",
                    "The licence register holds no data yet; nothing to check against.",
                )
                .into(),
            status: StatusCode::SERVICE_UNAVAILABLE,
            traced: Default::default(),
        }));
    };
    let sql = format!(
        "SELECT * FROM {}.{} WHERE licence_no = $1 LIMIT 1",
        quoted(&unit),
        quoted(&name)
    );
    let (read, _) = GovernedRead::run_as(
        s,
        viewer,
        PURPOSE,
        &sql,
        &[Some(licence.to_string())],
        "json",
    )
    .await?;
    let names = read.answer.schema.fields().iter().map(|f| f.name().clone());
    let rows: Register = match crate::console::answer_rows(&read.answer, 1).pop() {
        Some(values) => names.zip(values).collect(),
        None => Vec::new(),
    };
    let verdict = match rows.iter().find(|(k, _)| k == "status") {
        None if rows.is_empty() => Verdict::NotRegistered,
        Some((_, status)) if status != "有效" => Verdict::NotValid,
        _ => Verdict::Registered,
    };
    Ok((verdict, rows, Some(read)))
}

fn result(lang: Lang, licence: &str, verdict: Verdict, rows: &Register) -> Markup {
    html! {
        section class={ "verdict " (if verdict.fake() { "fake" } else if verdict == Verdict::NotValid { "warn" } else { "good" }) } role="status" {
            h2 {
                @if verdict.fake() { (lang.t("⚠ 疑似假证", "⚠ Suspected fake")) }
                @else if verdict == Verdict::NotValid { (lang.t("⚠ 执照无效", "⚠ Not valid")) }
                @else { (lang.t("✓ 执照有效", "✓ Valid licence")) }
            }
            p { code { (licence) } }
            p { (verdict.says(lang)) }
            @if !rows.is_empty() {
                dl.meta { @for (k, v) in rows { dt { (k) } dd { (v) } } }
            }
        }
        form.card method="post" action="/inspect/report" {
            h2 { (lang.t("上报发现", "Report a finding")) }
            input type="hidden" name="licence" value=(licence);
            input type="hidden" name="verdict" value=(verdict.code());
            label for="shop_name" { (lang.t("商户名称", "Shop name")) }
            input id="shop_name" name="shop_name";
            label for="shop_address" { (lang.t("经营地址", "Address")) }
            input id="shop_address" name="shop_address";
            label for="note" { (lang.t("现场情况", "What you found")) }
            textarea id="note" name="note" rows="3" {}
            button type="submit" { (lang.t("上报", "Report")) }
        }
    }
}

/// The text of the first QR code found in a photo.
fn decode_qr(photo: &[u8]) -> Option<String> {
    // A phone photo is some 50 megapixels at most; a small file claiming more is refused
    // before its pixels are allocated.
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(10_000);
    limits.max_image_height = Some(10_000);
    limits.max_alloc = Some(256 << 20);
    let mut reader = image::ImageReader::new(std::io::Cursor::new(photo))
        .with_guessed_format()
        .ok()?;
    reader.limits(limits);
    let image = reader.decode().ok()?.to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    prepared
        .detect_grids()
        .into_iter()
        .find_map(|grid| grid.decode().ok().map(|(_, text)| text))
}

/// A credit code inside scanned text (a licence's QR code holds a URL carrying it):
/// the first 18-character run that passes GB 32100, else the first with its shape — a
/// fake licence's code is still worth checking.
fn credit_code_in(text: &str) -> Option<String> {
    let upper = text.to_uppercase();
    let chars: Vec<char> = upper.chars().collect();
    let candidates: Vec<String> = chars
        .windows(18)
        .map(|w| w.iter().collect::<String>())
        .filter(|c| shape_ok(c))
        .collect();
    candidates
        .iter()
        .find(|c| tongchou_ids::credit_code::validate(c).is_ok())
        .or(candidates.first())
        .cloned()
}

pub async fn scan(viewer: Viewer, mut form: Multipart) -> Response {
    let lang = viewer.lang;
    let title = title(lang);
    if let Some(refusal) = unless_inspector(&viewer) {
        return refusal;
    }
    let mut photo = None;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("photo") {
            photo = field.bytes().await.ok();
        }
    }
    let text = match photo {
        Some(bytes) => tokio::task::spawn_blocking(move || decode_qr(&bytes))
            .await
            .ok()
            .flatten(),
        None => None,
    };
    match text.as_deref().and_then(credit_code_in) {
        Some(code) => Redirect::to(&format!("/inspect?licence={code}")).into_response(),
        None => crate::page::refused(&viewer, StatusCode::UNPROCESSABLE_ENTITY, title, "/inspect", lang.t(
            "照片中没有读到带统一社会信用代码的二维码。请靠近、对准二维码重拍，或直接输入号码。",
            "No QR code with a credit code was read from the photo. Move closer and photograph the QR code again, or type the number.",
        )),
    }
}

/// The inspectors' findings about licences, fed back to the unit that provides the licence
/// register (提质): newest first; empty for any other unit.
pub async fn findings_for_provider(s: &AppState, unit: &str) -> Vec<[String; 7]> {
    let rows = sqlx::query(
        "SELECT licence_no, verdict, shop_name, shop_address, note, reported_by, reported_at FROM findings \
         WHERE EXISTS (SELECT 1 FROM resources WHERE name = ? AND unit = ?) ORDER BY id DESC LIMIT 100",
    )
    .bind(LICENCE_REGISTER)
    .bind(unit)
    .fetch_all(s.dir.metadata())
    .await
    .unwrap_or_default();
    rows.iter()
        .map(|r| {
            [
                "licence_no",
                "verdict",
                "shop_name",
                "shop_address",
                "note",
                "reported_by",
                "reported_at",
            ]
            .map(|c| r.get::<String, _>(c))
        })
        .collect()
}

#[derive(Deserialize)]
pub struct Report {
    licence: String,
    verdict: String,
    #[serde(default)]
    shop_name: String,
    #[serde(default)]
    shop_address: String,
    #[serde(default)]
    note: String,
}

pub async fn report(State(s): Shared, viewer: Viewer, Form(r): Form<Report>) -> Response {
    let lang = viewer.lang;
    let title = title(lang);
    if let Some(refusal) = unless_inspector(&viewer) {
        return refusal;
    }
    if let Err(refusal) = viewer.require(Scope::Write) {
        return *refusal;
    }
    let licence: String = r.licence.trim().chars().take(32).collect();
    let known = [
        "malformed",
        "bad_check_character",
        "not_registered",
        "not_valid",
        "registered",
    ];
    if licence.is_empty() || !known.contains(&r.verdict.as_str()) {
        return crate::page::refused(
            &viewer,
            StatusCode::UNPROCESSABLE_ENTITY,
            title,
            "/inspect",
            lang.t(
                "请先核验一个执照号码再上报。",
                "Check a licence number first, then report.",
            ),
        );
    }
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let stored = sqlx::query("INSERT INTO findings (licence_no, verdict, shop_name, shop_address, note, reported_by, unit, reported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(&licence)
        .bind(&r.verdict)
        .bind(r.shop_name.trim())
        .bind(r.shop_address.trim())
        .bind(r.note.trim())
        .bind(viewer.name())
        .bind(viewer.unit())
        .bind(now)
        .execute(s.dir.metadata())
        .await;
    match stored {
        Ok(_) => Redirect::to("/inspect?reported=1").into_response(),
        Err(e) => crate::page::refused(
            &viewer,
            StatusCode::SERVICE_UNAVAILABLE,
            title,
            "/inspect",
            &e.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credit_code_is_found_inside_a_scanned_url() {
        let url = "http://www.gsxt.gov.cn/index.html?uniscid=91440605MA4UJ5XX2C&type=1";
        let found = credit_code_in(url).unwrap();
        assert_eq!(found.len(), 18);
        assert!(url.to_uppercase().contains(&found));
        assert_eq!(credit_code_in("no code here"), None);
    }

    #[test]
    fn only_eighteen_digits_and_capitals_have_the_shape_of_a_credit_code() {
        assert!(shape_ok("91440605MA4UJ5XX2C"));
        assert!(!shape_ok("91440605MA4UJ5XX2"));
        assert!(!shape_ok("91440605ma4uj5xx2c"));
        assert!(!shape_ok("91440605MA4UJ5XX2' OR 1=1--"));
    }
}
