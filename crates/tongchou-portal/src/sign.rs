//! Signing in and out, and the language switch.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use tongchou_access::Door;
use tongchou_access::credentials::{self, CredentialKind};
use tongchou_server::{ClientAddress, cross_site, session_cookie};

use crate::page::{self, LANG_COOKIE, Lang, frame, respond};
use crate::{Shared, Viewer};

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Only a path on this site: `/x`, never `//host`, `/\host`, `https://…`, nor one that a
/// browser strips of tabs or spaces into those. Checked as sent and once decoded, where a
/// query may keep its spaces (`/catalog?q=a%20b`).
fn local(next: Option<&str>) -> &str {
    match next {
        Some(p) if local_path(p, p) && decoded_local(p) => p,
        _ => "/",
    }
}

fn decoded_local(p: &str) -> bool {
    let decoded = percent_decode_str(p).decode_utf8_lossy();
    let path = decoded.split('?').next().unwrap_or_default();
    local_path(&decoded, path) && !decoded.chars().any(char::is_control)
}

/// `whole` begins with one `/` and has no backslash; `strict` has no control or space.
fn local_path(whole: &str, strict: &str) -> bool {
    let mut chars = whole.chars();
    chars.next() == Some('/')
        && !matches!(chars.next(), Some('/' | '\\'))
        && !whole.contains('\\')
        && !strict.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn form_page(lang: Lang, next: &str, name: &str, problem: Option<&str>) -> maud::Markup {
    let body = html! {
        @if let Some(p) = problem { (page::notice(false, p)) }
        form.card method="post" action="/signin" {
            input type="hidden" name="next" value=(next);
            label for="name" { (lang.t("用户名", "User name")) }
            input id="name" name="name" value=(name) autocomplete="username" required autofocus;
            label for="password" { (lang.t("密码", "Password")) }
            input id="password" name="password" type="password" autocomplete="current-password" required;
            button type="submit" { (lang.t("登录", "Sign in")) }
        }
        p.hint { (lang.t(
            "演示账号和密码在 tongchou demo 启动时打印，也写在数据目录的 demo-accounts.json 中。",
            "Demo accounts and passwords are printed when `tongchou demo` starts, and written to demo-accounts.json in the data directory."
        )) }
    };
    frame(
        None,
        lang,
        lang.t("登录统筹", "Sign in to Tongchou"),
        "/signin",
        body,
    )
}

pub async fn form(headers: HeaderMap, Query(q): Query<Next>) -> Response {
    let lang = Lang::of(&headers);
    respond(
        StatusCode::OK,
        form_page(lang, local(q.next.as_deref()), "", None),
    )
}

#[derive(Deserialize)]
pub struct SignInForm {
    name: String,
    password: String,
    next: Option<String>,
}

pub async fn sign_in(
    State(s): Shared,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    Form(f): Form<SignInForm>,
) -> Response {
    let lang = Lang::of(&headers);
    if cross_site(&Method::POST, &headers) {
        return crate::from_another_site(lang);
    }
    let next = local(f.next.as_deref()).to_string();
    match credentials::sign_in(&s.dir, &f.name, &f.password, Door::Portal, &address).await {
        Ok((_, issued)) => {
            let cookie = session_cookie(
                &issued.secret,
                credentials::SESSION_HOURS * 3600,
                s.secure_cookies,
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
        }
        Err(e) => {
            let status = match e {
                _ if e.retry_after().is_some() => StatusCode::TOO_MANY_REQUESTS,
                tongchou_access::AccessError::BadName(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::UNAUTHORIZED,
            };
            let lead = if status == StatusCode::TOO_MANY_REQUESTS {
                lang.t(
                    "暂时不能登录，请稍后再试。",
                    "Signing in must wait a while.",
                )
            } else {
                lang.t(
                    "用户名或密码不对，请重试。",
                    "The name or password is wrong; try again.",
                )
            };
            let message = format!("{lead} ({e})");
            let mut response = respond(status, form_page(lang, &next, &f.name, Some(&message)));
            if let Some(seconds) = e.retry_after() {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, seconds.into());
            }
            response
                .extensions_mut()
                .insert(tongchou_server::ErrorText(e.to_string()));
            response
        }
    }
}

pub async fn sign_out(State(s): Shared, viewer: Viewer) -> Response {
    if let Some(session) = &viewer.principal.credential
        && session.kind == CredentialKind::Session
        && let Err(e) =
            credentials::revoke_credential(&s.dir, Some(&viewer.principal), &session.id).await
    {
        return page::failure(
            viewer.lang,
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
        );
    }
    (
        [(header::SET_COOKIE, session_cookie("", 0, s.secure_cookies))],
        Redirect::to("/signin"),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct Back {
    back: Option<String>,
}

pub async fn switch_language(Path(to): Path<String>, Query(q): Query<Back>) -> Response {
    let value = if to == "en" { "en" } else { "zh" };
    let cookie = format!("{LANG_COOKIE}={value}; SameSite=Lax; Path=/; Max-Age=31536000");
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to(local(q.back.as_deref())),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local(Some("/console?x=1")), "/console?x=1");
        assert_eq!(local(Some("/catalog?q=a%20b")), "/catalog?q=a%20b");
        assert_eq!(local(Some("//evil.example/")), "/");
        assert_eq!(local(Some("https://evil.example/")), "/");
        assert_eq!(local(Some("/\\evil.example")), "/");
        assert_eq!(local(Some("/\t/localhost:19999/pwned.html")), "/");
        assert_eq!(local(Some("/%09/localhost:19999/pwned.html")), "/");
        assert_eq!(local(Some("/%2F/evil.example")), "/");
        assert_eq!(local(Some("/%5Cevil.example")), "/");
        assert_eq!(local(Some("/ /evil.example")), "/");
        assert_eq!(local(Some("/x?y=%0D%0ASet-Cookie:a")), "/");
        assert_eq!(local(None), "/");
    }

    const PIECES: [&str; 14] = [
        "/", "\\", "%09", "%2F", "%5C", "%0D%0A", "%20", "a", ":", " ", "\t", "?", "%", "é",
    ];

    fn starts_on_this_server(path: &str) -> bool {
        let mut chars = path.chars();
        chars.next() == Some('/') && !matches!(chars.next(), Some('/' | '\\'))
    }

    proptest::proptest! {
        #[test]
        fn what_is_followed_stays_on_this_server(
            pieces in proptest::collection::vec(proptest::sample::select(&PIECES[..]), 0..8)
        ) {
            let next = pieces.concat();
            let followed = local(Some(&next));
            let decoded = percent_decode_str(followed).decode_utf8_lossy();
            proptest::prop_assert!(followed == "/" || starts_on_this_server(followed));
            proptest::prop_assert!(followed == "/" || starts_on_this_server(&decoded));
            proptest::prop_assert!(!decoded.chars().any(char::is_control));
        }
    }
}
