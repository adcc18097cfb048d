//! What every page shares: the language, the frame (header, navigation, sign-out), error
//! pages, and small formatting helpers.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use tongchou_model::UserRole;
use tongchou_server::ErrorText;

use crate::Viewer;

pub const LANG_COOKIE: &str = "tongchou_lang";

/// The reader's language: Chinese unless they switched to English.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn of(headers: &HeaderMap) -> Lang {
        match tongchou_server::cookie(headers, LANG_COOKIE).as_deref() {
            Some("en") => Lang::En,
            _ => Lang::Zh,
        }
    }

    /// The text in this language.
    pub fn t<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }
}

struct NavItem {
    path: &'static str,
    zh: &'static str,
    en: &'static str,
    roles: &'static [UserRole],
}

const EVERYONE: &[UserRole] = &[];

const NAV: [NavItem; 7] = [
    NavItem {
        path: "/",
        zh: "首页",
        en: "Home",
        roles: EVERYONE,
    },
    NavItem {
        path: "/catalog",
        zh: "资源目录",
        en: "Catalog",
        roles: EVERYONE,
    },
    NavItem {
        path: "/load",
        zh: "登记与上传",
        en: "Register & load",
        roles: &[UserRole::Steward, UserRole::PlatformAdmin],
    },
    NavItem {
        path: "/requests",
        zh: "申请与审批",
        en: "Requests",
        roles: EVERYONE,
    },
    NavItem {
        path: "/console",
        zh: "查询",
        en: "Query",
        roles: &[
            UserRole::Analyst,
            UserRole::Leader,
            UserRole::Steward,
            UserRole::PlatformAdmin,
        ],
    },
    NavItem {
        path: "/ledger",
        zh: "审计",
        en: "Ledger",
        roles: &[UserRole::Steward, UserRole::PlatformAdmin],
    },
    NavItem {
        path: "/inspect",
        zh: "巡查核验",
        en: "Inspect",
        roles: &[UserRole::Inspector],
    },
];

/// A whole page: header with navigation and the viewer, then `body`.
pub fn frame(viewer: Option<&Viewer>, lang: Lang, title: &str, here: &str, body: Markup) -> Markup {
    let other = match lang {
        Lang::Zh => ("en", "English"),
        Lang::En => ("zh", "中文"),
    };
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · 统筹 Tongchou" }
                link rel="stylesheet" href="/static/portal.css";
                link rel="icon" href="/static/icon.svg" type="image/svg+xml";
            }
            body {
                a.skip href="#main" { (lang.t("跳到正文", "Skip to content")) }
                header.top {
                    a.brand href="/" { "统筹" span.en { " Tongchou" } }
                    @if let Some(v) = viewer {
                        nav aria-label=(lang.t("主导航", "Main")) {
                            @for item in NAV.iter().filter(|i| i.roles.is_empty() || i.roles.iter().any(|r| v.is(*r))) {
                                @if item.path == here {
                                    a href=(item.path) aria-current="page" { (lang.t(item.zh, item.en)) }
                                } @else {
                                    a href=(item.path) { (lang.t(item.zh, item.en)) }
                                }
                            }
                        }
                    }
                    div.who {
                        a href={ "/lang/" (other.0) "?back=" (url_encode(here)) } lang=(if other.0 == "en" { "en" } else { "zh-CN" }) { (other.1) }
                        @if let Some(v) = viewer {
                            span.user { (v.name()) " · " (role_label(lang, v)) }
                            form.inline method="post" action="/signout" {
                                button type="submit" { (lang.t("退出", "Sign out")) }
                            }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
                footer { (lang.t("统筹而不替代 · 每次访问均记入可验证账本", "Coordinate, don't replace · every access is in the verifiable ledger")) }
            }
        }
    }
}

fn role_label(lang: Lang, v: &Viewer) -> String {
    let role = v.principal.user.role;
    match lang {
        Lang::Zh => role.label_zh().to_string(),
        Lang::En => role.as_str().replace('_', " "),
    }
}

/// A rendered page as the response.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Html(markup.into_string()),
    )
        .into_response()
}

/// A page saying what went wrong and what to do; the ledger keeps the reason.
pub fn failure(lang: Lang, status: StatusCode, message: &str) -> Response {
    let body = html! {
        p.error role="alert" { (message) }
        p { a href="/" { (lang.t("回到首页", "Back to the home page")) } }
    };
    let mut response = respond(
        status,
        frame(
            None,
            lang,
            lang.t("出错了", "Something went wrong"),
            "",
            body,
        ),
    );
    response
        .extensions_mut()
        .insert(ErrorText(message.to_string()));
    response
}

/// An error for a signed-in viewer, inside the usual frame.
pub fn refused(
    viewer: &Viewer,
    status: StatusCode,
    title: &str,
    here: &str,
    message: &str,
) -> Response {
    let body = html! { p.error role="alert" { (message) } };
    let mut response = respond(status, frame(Some(viewer), viewer.lang, title, here, body));
    response
        .extensions_mut()
        .insert(ErrorText(message.to_string()));
    response
}

/// An inline notice: `ok` green, otherwise red.
pub fn notice(ok: bool, text: &str) -> Markup {
    html! {
        @if ok { p.ok role="status" { (text) } } @else { p.error role="alert" { (text) } }
    }
}

/// Percent-encoding for a URL's query value.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// 12,706 — digits grouped by thousands.
pub fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A label in both languages, Chinese first, English small beside it.
pub fn both(zh: &str, en: &str) -> Markup {
    html! { (zh) " " span.en { (en) } }
}

/// A select of the bureau's purposes, `chosen` preselected.
pub fn purpose_select(
    lang: Lang,
    purposes: &[tongchou_access::requests::Purpose],
    chosen: Option<&str>,
) -> Markup {
    html! {
        label for="purpose" { (lang.t("用途", "Purpose")) }
        select id="purpose" name="purpose" required {
            @for p in purposes {
                option value=(p.code) selected[Some(p.code.as_str()) == chosen] {
                    (lang.t(&p.label, &p.label_en)) " (" (p.code) ")"
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(12_706), "12,706");
        assert_eq!(grouped(40_847_325), "40,847,325");
        assert_eq!(grouped(-1_000), "-1,000");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(url_encode("/resource?code=1/2"), "/resource%3Fcode%3D1/2");
        assert_eq!(url_encode("税 a"), "%E7%A8%8E%20a");
    }
}
