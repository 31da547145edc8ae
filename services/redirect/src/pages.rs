//! Pages for people: a browser (a request whose `Accept` names `text/html`)
//! that follows an unknown, inactive, expired or exhausted link gets a small
//! page instead of a JSON problem (API clients keep the contract's JSON),
//! and a password-protected link asks for its password with a form.
//!
//! The templates live in `services/redirect/templates/`, are built into the
//! binary, and any of them can be replaced by a file of the same name in
//! `REDIRECT_TEMPLATE_DIR` (read once at start). A template's `{{code}}`
//! and `{{message}}` are replaced, HTML-escaped. Every page is sent with a
//! strict Content-Security-Policy (no scripts, nothing loaded from
//! anywhere; the form may post to this service and follow its redirect),
//! `noindex` and `no-store`.

use std::path::Path;

use anyhow::Context;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shortline_shared::http::OwnErrorPage;

use crate::error::RedirectError;

const NOT_FOUND: &str = include_str!("../templates/not_found.html");
const GONE: &str = include_str!("../templates/gone.html");
const PASSWORD: &str = include_str!("../templates/password.html");

/// The `Content-Security-Policy` of every page: nothing but inline styles;
/// the password form posts here, and is then redirected to wherever the
/// link goes (form-action covers that redirect too).
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     form-action 'self' https: http:; frame-ancestors 'none'; base-uri 'none'";

/// The page templates.
#[derive(Debug, Clone)]
pub struct Pages {
    not_found: String,
    gone: String,
    password: String,
}

impl Default for Pages {
    fn default() -> Self {
        Self {
            not_found: NOT_FOUND.into(),
            gone: GONE.into(),
            password: PASSWORD.into(),
        }
    }
}

impl Pages {
    /// The built-in templates, each replaced by `dir/<name>` when that
    /// file exists.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut pages = Self::default();
        let Some(dir) = dir else {
            return Ok(pages);
        };
        for (name, slot) in [
            ("not_found.html", &mut pages.not_found),
            ("gone.html", &mut pages.gone),
            ("password.html", &mut pages.password),
        ] {
            let path = dir.join(name);
            if path.exists() {
                *slot = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read template {}", path.display()))?;
                tracing::info!(template = %path.display(), "using a custom page");
            }
        }
        Ok(pages)
    }

    /// 404 for an unknown or inactive code.
    pub fn not_found(&self, code: &str) -> Response {
        page(StatusCode::NOT_FOUND, &self.not_found, code, "")
    }

    /// 410 for an expired or exhausted link.
    pub fn gone(&self, code: &str, message: &str) -> Response {
        page(StatusCode::GONE, &self.gone, code, message)
    }

    /// The password form (200 when asked first, 401 after a wrong one).
    pub fn password(&self, status: StatusCode, code: &str, message: &str) -> Response {
        page(status, &self.password, code, message)
    }

    /// The answer to a failed redirect: a page for a browser where there
    /// is one, else the error's JSON problem.
    pub fn error(&self, e: RedirectError, html: bool, code: &str) -> Response {
        match (&e, html) {
            (RedirectError::NotFound, true) => self.not_found(code),
            (RedirectError::Gone(message), true) => self.gone(code, message),
            _ => e.into_response(),
        }
    }
}

/// Whether the client takes HTML (a browser): its `Accept` names
/// `text/html`.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/html"))
}

fn page(status: StatusCode, template: &str, code: &str, message: &str) -> Response {
    let body = template
        .replace("{{code}}", &escape(code))
        .replace("{{message}}", &escape(message));
    let mut response = (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(PAGE_CSP),
            ),
            (
                header::HeaderName::from_static("x-robots-tag"),
                HeaderValue::from_static("noindex, nofollow"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        ],
        body,
    )
        .into_response();
    response.extensions_mut().insert(OwnErrorPage);
    response
}

/// HTML-escapes text for an element or a double-quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_escape_what_they_are_given() {
        let pages = Pages::default();
        let r = pages.gone("abc", "<script>x</script> & \"more\"");
        assert_eq!(r.status(), StatusCode::GONE);
        assert!(r.extensions().get::<OwnErrorPage>().is_some());
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii");
        assert!(csp.starts_with("default-src 'none'"));
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn a_template_dir_replaces_only_its_files() {
        let dir = std::env::temp_dir().join(format!("shortline-pages-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("gone.html"), "<p>gone: {{message}} ({{code}})</p>")
            .expect("write");
        let pages = Pages::load(Some(&dir)).expect("load");
        assert_eq!(pages.gone, "<p>gone: {{message}} ({{code}})</p>");
        assert_eq!(pages.not_found, NOT_FOUND);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn browsers_are_told_by_accept() {
        let mut h = HeaderMap::new();
        assert!(!wants_html(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        assert!(wants_html(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_html(&h));
    }
}
