//! Authentication and authorization: who is asking ([`Principal`]) and
//! whether their token's scopes allow it ([`Principal::require`]).
//!
//! Credentials are taken in the forms clients send:
//! `Authorization: Bearer <token>` (InfluxDB 3, Grafana, Prometheus
//! `authorization:`), `Authorization: Token <token>` (InfluxDB 2, Telegraf),
//! `Authorization: Basic base64(user:token)` (Grafana and Prometheus
//! `basic_auth`, the user is ignored) and InfluxDB 1.x's `?u=…&p=<token>`.
//!
//! # Invariants
//! - With authentication on, every route but `/health`, `/ping` and the
//!   portal's static files (`/`, `/ui/…`: code, no data) passes
//!   [`authenticate`] first: no credentials or an unknown token is a 401
//!   (`WWW-Authenticate: Bearer`), before any handler runs.
//! - Each handler then asks for the permission its work needs on the
//!   database it touches; a token without it gets a 403 naming the scope.
//! - With authentication off (`--without-auth`, or a loopback bind by
//!   default) the principal is [`Principal::Anonymous`], allowed everything.

pub mod audit;
mod scope;
pub mod tokens;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

pub use scope::{Permission, Scope};
pub use tokens::{TokenRecord, TokenStore};

use crate::error::{ApiError, ErrorKind};

/// Paths anyone may call: load balancers and InfluxDB clients probe them.
const OPEN_PATHS: [&str; 2] = ["/health", "/ping"];

/// The authentication settings and token store of a server. Tokens can
/// be managed while authentication is off, so that they exist before it
/// is turned on.
#[derive(Debug, Clone)]
pub struct Auth {
    pub tokens: Arc<TokenStore>,
    pub enabled: bool,
}

/// Who made a request.
#[derive(Debug, Clone)]
pub enum Principal {
    /// Authentication is off: everything is allowed.
    Anonymous,
    Token(Arc<TokenRecord>),
}

impl Principal {
    /// Allows the request if this principal holds `permission` on `db`
    /// (`None`: a server-wide operation).
    ///
    /// # Errors
    /// 403 naming the scope the token lacks.
    pub fn require(&self, permission: Permission, db: Option<&str>) -> Result<(), ApiError> {
        match self {
            Principal::Anonymous => Ok(()),
            Principal::Token(t) if t.scopes.iter().any(|s| s.grants(permission, db)) => Ok(()),
            Principal::Token(t) => Err(ApiError::new(
                ErrorKind::Forbidden,
                format!(
                    "token {:?} (scopes: {}) lacks {}:{}",
                    t.name,
                    t.scopes
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    permission.as_str(),
                    db.unwrap_or("*")
                ),
            )),
        }
    }

    /// A name for logs and the audit trail: `token <name> (<id>)` or `anonymous`.
    pub fn describe(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".into(),
            Principal::Token(t) => format!("token {} ({})", t.name, t.id),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Set by `authenticate` on every routed request; absent only when
        // the router was built without it, which `router` never does.
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::internal("request reached a handler unauthenticated"))
    }
}

/// The token a request carries, in any of the accepted forms.
pub fn credentials(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
            return (!rest.is_empty()).then(|| rest.to_string());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())?;
            let (_, password) = decoded.split_once(':')?;
            return (!password.is_empty()).then(|| password.to_string());
        }
        return None;
    }
    // InfluxDB 1.x: ?u=<user>&p=<password>; the password is the token.
    let query = query?;
    form_urlencoded_pairs(query)
        .find(|(k, _)| k == "p")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

fn form_urlencoded_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        Some((decode(k)?, decode(v)?))
    })
}

/// Percent-decoding with `+` as space, as forms encode.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn unauthorized(message: &str) -> Response {
    let mut r = ApiError::new(ErrorKind::Unauthorized, message).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"fleetlake\""),
    );
    r
}

/// The middleware in front of every route: finds the principal or answers
/// 401 (503 when the token store cannot be read).
pub async fn authenticate(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let principal = if !auth.enabled || OPEN_PATHS.contains(&path) || crate::ui::is_asset_path(path)
    {
        Principal::Anonymous
    } else {
        let Some(secret) = credentials(req.headers(), req.uri().query()) else {
            return unauthorized(
                "authentication required: send a token as `Authorization: Bearer <token>` \
                 (create one with `fleetlake token create --scope <scope>`)",
            );
        };
        match auth.tokens.authenticate(&secret).await {
            Ok(Some(t)) => Principal::Token(t),
            Ok(None) => return unauthorized("the token is not valid (unknown or revoked)"),
            Err(e) => {
                return ApiError::new(
                    ErrorKind::Unavailable,
                    format!("cannot check the token: {e}"),
                )
                .into_response();
            }
        }
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn every_client_form_is_read() {
        let none = HeaderMap::new();
        assert_eq!(
            credentials(&headers("Bearer abc"), None).as_deref(),
            Some("abc")
        );
        assert_eq!(
            credentials(&headers("Token abc"), None).as_deref(),
            Some("abc")
        );
        // "grafana:abc"
        assert_eq!(
            credentials(&headers("Basic Z3JhZmFuYTphYmM="), None).as_deref(),
            Some("abc")
        );
        assert_eq!(
            credentials(&none, Some("db=fleet&u=me&p=a%2Bb")).as_deref(),
            Some("a+b")
        );
        assert_eq!(credentials(&none, Some("db=fleet")), None);
        assert_eq!(credentials(&headers("Bearer "), None), None);
        assert_eq!(credentials(&headers("Digest x"), None), None);
        assert_eq!(credentials(&headers("Basic !!!"), None), None);
    }

    #[test]
    fn anonymous_may_do_anything_tokens_only_their_scopes() {
        assert!(
            Principal::Anonymous
                .require(Permission::Admin, None)
                .is_ok()
        );
        let t = Principal::Token(Arc::new(TokenRecord {
            id: "1".into(),
            name: "grafana".into(),
            hash: String::new(),
            scopes: vec!["read:fleet".parse().unwrap()],
            created: String::new(),
        }));
        assert!(t.require(Permission::Read, Some("fleet")).is_ok());
        let e = t.require(Permission::Write, Some("fleet")).unwrap_err();
        assert_eq!(e.status().as_u16(), 403);
        assert!(e.message.contains("lacks write:fleet"), "{}", e.message);
    }
}
