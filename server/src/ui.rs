//! The operations portal: the files under `ui/`, embedded in the binary and
//! served at `/ui/`, plus `GET /api/v1/whoami`, which the portal asks to
//! know what to show.
//!
//! # Invariants
//! - Every asset is compiled in ([`ASSETS`]): the portal works with no
//!   internet and no files beside the binary. Nothing is fetched from a CDN.
//! - The assets hold no data, so they need no token (`auth.rs` lets
//!   `/`, `/ui` and `/ui/…` through); every API call the portal makes is
//!   authenticated as any client's.
//! - Each answer carries a strict `Content-Security-Policy` (scripts, styles
//!   and connections only from this origin; no inline script or style; no
//!   framing) and `X-Content-Type-Options: nosniff`, so a string from the
//!   store that reached the page as markup could still not run.
//! - The `ETag` is a hash of the bytes, computed once; `Cache-Control:
//!   no-cache` makes browsers revalidate, which a matching `If-None-Match`
//!   answers with an empty `304`.

use std::fmt::Write;
use std::sync::LazyLock;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::auth::{Permission, Principal};
use crate::params::Params;

/// Path under `/ui/`, content type, bytes. An explicit list: a file added
/// to `ui/` is served once it is named here.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../ui/index.html"),
    ),
    (
        "css/app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../ui/css/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../ui/favicon.svg"),
    ),
    ("js/app.js", JS, include_bytes!("../../ui/js/app.js")),
    ("js/api.js", JS, include_bytes!("../../ui/js/api.js")),
    ("js/dom.js", JS, include_bytes!("../../ui/js/dom.js")),
    ("js/table.js", JS, include_bytes!("../../ui/js/table.js")),
    ("js/chart.js", JS, include_bytes!("../../ui/js/chart.js")),
    ("js/query.js", JS, include_bytes!("../../ui/js/query.js")),
    ("js/ops.js", JS, include_bytes!("../../ui/js/ops.js")),
    ("js/editor.js", JS, include_bytes!("../../ui/js/editor.js")),
    ("js/fleet.js", JS, include_bytes!("../../ui/js/fleet.js")),
];

const JS: &str = "text/javascript; charset=utf-8";

/// Scripts, styles, images and fetches from this origin only; the
/// portal's own code sets styles through the CSSOM, never inline.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

/// `"<sha-256 prefix>"` of each asset, in [`ASSETS`] order.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|(_, _, bytes)| {
            let d = Sha256::digest(bytes);
            let mut tag = String::from("\"");
            for b in &d[..12] {
                let _ = write!(tag, "{b:02x}");
            }
            tag.push('"');
            tag
        })
        .collect()
});

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route(
            "/ui/",
            get(|headers: HeaderMap| async move { asset("index.html", &headers) }),
        )
        .route(
            "/ui/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move {
                asset(&path, &headers)
            }),
        )
        .route("/api/v1/whoami", get(whoami))
}

/// Whether `path` is one of the portal's files (or a redirect to them):
/// these need no token.
pub fn is_asset_path(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

fn asset(path: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|(p, _, _)| *p == path) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such file in the portal",
        )
            .into_response();
    };
    let (_, content_type, bytes) = ASSETS[i];
    let etag = &ETAGS[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == etag.as_str() || t.trim() == "*")
        });
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

#[derive(Debug, Deserialize)]
struct WhoamiParams {
    db: Option<String>,
}

/// Who the token is, its scopes, what it may do on `db` (the default
/// database unless named) and the databases it may read: the portal hides
/// what the token cannot do (the server refuses it regardless).
async fn whoami(
    State(state): State<AppState>,
    principal: Principal,
    Params(p): Params<WhoamiParams>,
) -> Json<Value> {
    let db = state.db_or_default(p.db.as_deref());
    let can = |perm| principal.require(perm, Some(&db)).is_ok();
    let mut databases = state.ingester.databases();
    if !databases.contains(&state.default_db) {
        databases.insert(0, state.default_db.clone());
    }
    databases.retain(|d| principal.require(Permission::Read, Some(d)).is_ok());
    let (name, scopes, auth) = match &principal {
        Principal::Anonymous => ("anonymous".to_string(), vec!["admin:*".to_string()], false),
        Principal::Token(t) => (
            t.name.clone(),
            t.scopes.iter().map(ToString::to_string).collect(),
            true,
        ),
    };
    Json(json!({
        "name": name,
        "scopes": scopes,
        "authenticated": auth,
        "db": db,
        "default_db": state.default_db,
        "databases": databases,
        "can": {
            "read": can(Permission::Read),
            "write": can(Permission::Write),
            "rules": can(Permission::Rules),
            "admin": can(Permission::Admin),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_named_once_and_not_empty() {
        for (i, (p, _, b)) in ASSETS.iter().enumerate() {
            assert!(!b.is_empty(), "{p} is empty");
            assert!(
                ASSETS.iter().skip(i + 1).all(|(q, _, _)| q != p),
                "{p} twice"
            );
        }
    }

    #[test]
    fn the_portal_fetches_nothing_from_elsewhere() {
        for (p, _, b) in ASSETS {
            let text = String::from_utf8_lossy(b);
            for bad in ["http://", "https://", "//cdn", "fonts.googleapis"] {
                // The SVG namespace is an identifier, not a fetch.
                let hits = text
                    .match_indices(bad)
                    .filter(|(i, _)| !text[*i..].starts_with("http://www.w3.org/"))
                    .count();
                assert_eq!(hits, 0, "{p} names {bad}");
            }
        }
    }

    #[test]
    fn revalidation_answers_304_with_the_same_etag() {
        let first = asset("js/app.js", &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag.clone());
        let again = asset("js/app.js", &h);
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG], etag);
        assert_eq!(asset("js/nope.js", &h).status(), StatusCode::NOT_FOUND);
    }
}
