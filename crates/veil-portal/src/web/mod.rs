//! Routing, the per-request helpers (session from the cookie, CSRF check, store calls off the
//! async threads) and the headers every response carries.

mod office;
mod patient;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use subtle::ConstantTimeEq;
use veil_store::{Settings, Store};

use crate::limits::SignInLimits;
use crate::session::{Session, Sessions, Who};

/// What every request handler shares.
pub struct AppState {
    pub store: Arc<Store>,
    pub settings: Arc<Settings>,
    pub sessions: Sessions,
    pub limits: SignInLimits,
    /// Served over HTTPS: cookies are `Secure` and `__Host-` prefixed, HSTS is sent.
    pub tls: bool,
}

impl AppState {
    pub fn new(store: Store, settings: Settings, tls: bool) -> AppState {
        AppState {
            store: Arc::new(store),
            settings: Arc::new(settings),
            sessions: Sessions::default(),
            limits: SignInLimits::default(),
            tls,
        }
    }

    fn cookie_name(&self) -> &'static str {
        if self.tls {
            "__Host-veil_session"
        } else {
            "veil_session"
        }
    }

    /// The `Set-Cookie` value that carries a session id.
    fn session_cookie(&self, id: &str) -> String {
        format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Strict{}",
            self.cookie_name(),
            if self.tls { "; Secure" } else { "" }
        )
    }

    /// The live session the request's cookie names.
    pub fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let wanted = self.cookie_name();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == wanted)
            .and_then(|(_, id)| self.sessions.get(id))
    }

    /// The request's session, or a new anonymous one (for the sign-in forms' CSRF token) with
    /// the cookie to set.
    pub fn session_or_new(&self, headers: &HeaderMap) -> (Session, Option<String>) {
        match self.session(headers) {
            Some(s) => (s, None),
            None => {
                let s = self.sessions.create(Who::Anonymous);
                let cookie = self.session_cookie(&s.id);
                (s, Some(cookie))
            }
        }
    }

    /// Ends the old session and starts a new one for `who`: the id changes at sign-in.
    pub fn rotate(&self, old: &Session, who: Who) -> (Session, String) {
        self.sessions.end(&old.id);
        let s = self.sessions.create(who);
        let cookie = self.session_cookie(&s.id);
        (s, cookie)
    }

    /// Runs a store call on a blocking thread (the store drives its own small runtime).
    pub async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, Fail> + Send + 'static,
    ) -> Result<T, Fail> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|_| Fail::Internal("a store task stopped".into()))?
    }

    /// Writes an audit row (who, what, detail without identifying values).
    pub async fn audit(
        &self,
        actor: String,
        action: &'static str,
        detail: String,
    ) -> Result<(), Fail> {
        self.with_store(move |s| Ok(s.portal_audit(&actor, action, &detail)?))
            .await
    }
}

/// Why a request was refused; each renders as a plain page with its status.
#[derive(Debug)]
pub enum Fail {
    NotFound,
    /// A form without the session's CSRF token.
    BadToken,
    TooManyAttempts,
    /// A request the person can correct (the message says how).
    BadRequest(String),
    /// A failure on our side; the message goes to the log (it carries no identifying value).
    Internal(String),
}

impl From<veil_store::StoreError> for Fail {
    fn from(e: veil_store::StoreError) -> Fail {
        if e.is_usage() {
            Fail::BadRequest(e.to_string())
        } else {
            Fail::Internal(e.to_string())
        }
    }
}

impl From<veil_app::AppError> for Fail {
    fn from(e: veil_app::AppError) -> Fail {
        if e.is_usage() {
            Fail::BadRequest(e.to_string())
        } else {
            Fail::Internal(e.to_string())
        }
    }
}

impl From<crate::PortalError> for Fail {
    fn from(e: crate::PortalError) -> Fail {
        if e.is_usage() {
            Fail::BadRequest(e.to_string())
        } else {
            Fail::Internal(e.to_string())
        }
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let (status, title, text) = match self {
            Fail::NotFound => (StatusCode::NOT_FOUND, "Page not found", "There is no such page here.".to_string()),
            Fail::BadToken => (StatusCode::FORBIDDEN, "Form expired", "This form has expired or did not come from this site. Go back, reload the page and try again.".to_string()),
            Fail::TooManyAttempts => (StatusCode::TOO_MANY_REQUESTS, "Too many attempts", "Sign-in is paused after several unsuccessful attempts. Wait 15 minutes, or contact the privacy office.".to_string()),
            Fail::BadRequest(m) => (StatusCode::BAD_REQUEST, "Please check what you entered", m),
            Fail::Internal(m) => {
                tracing::error!("portal: {m}");
                (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The portal could not complete this. Nothing was changed; please try again later.".to_string())
            }
        };
        let page = crate::pages::pages().error(title, &text);
        (status, Html(page)).into_response()
    }
}

/// Checks a form's CSRF token against the session's, in constant time.
pub fn check_csrf(session: &Session, token: &str) -> Result<(), Fail> {
    if !token.is_empty() && bool::from(session.csrf.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(Fail::BadToken)
    }
}

/// A redirect after a POST (303: the browser follows with GET).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A page, setting a cookie when one is given.
pub fn page(html: String, cookie: Option<String>) -> Response {
    let mut r = Html(html).into_response();
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

/// The client's address (for sign-in limits).
pub fn client(info: &ConnectInfo<SocketAddr>) -> std::net::IpAddr {
    info.0.ip()
}

/// What every sign-in form passes first: a session of this site, its CSRF token, and the
/// sign-in limits for the caller's address. Returns the session and the address.
pub fn sign_in_gate(
    state: &AppState,
    headers: &HeaderMap,
    info: &ConnectInfo<SocketAddr>,
    csrf: &str,
) -> Result<(Session, std::net::IpAddr), Fail> {
    let session = state.session(headers).ok_or(Fail::BadToken)?;
    check_csrf(&session, csrf)?;
    let addr = client(info);
    if !state.limits.allowed(addr) {
        return Err(Fail::TooManyAttempts);
    }
    Ok((session, addr))
}

/// A signed-in session replaces `session` (a new id: a session planted before sign-in is
/// worth nothing), and the browser goes on to `to`.
pub fn signed_in(
    state: &AppState,
    session: &Session,
    who: Who,
    to: &str,
) -> Result<Response, Fail> {
    let (_, cookie) = state.rotate(session, who);
    let mut r = see_other(to);
    let cookie = cookie
        .parse()
        .map_err(|_| Fail::Internal("cookie".into()))?;
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(r)
}

/// Headers every response carries: no scripts, styles only from here, no framing, no caching of
/// personal pages, no referrer, and HSTS over HTTPS.
async fn security_headers(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, "content-security-policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    if state.tls {
        set(h, "strict-transport-security", "max-age=31536000");
    }
    r
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../templates/portal.css"),
    )
        .into_response()
}

async fn not_found() -> Fail {
    Fail::NotFound
}

/// Every route. Patient pages live under `/me` and take the patient from the session only;
/// privacy-office pages under `/office`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(patient::home))
        .route(
            "/sign-in",
            get(patient::sign_in_form).post(patient::sign_in),
        )
        .route("/sign-out", post(patient::sign_out))
        .route("/me", get(patient::overview))
        .route("/me/disclosures", get(patient::disclosures))
        .route("/me/consent", get(patient::consent).post(patient::opt_out))
        .route("/me/notices", get(patient::notices))
        .route("/me/record.html", get(patient::record_html))
        .route("/me/record.json", get(patient::record_json))
        .route(
            "/office/sign-in",
            get(office::sign_in_form).post(office::sign_in),
        )
        .route("/office", get(office::dashboard))
        .route("/office/releases", get(office::releases))
        .route("/office/consent", get(office::consent))
        .route(
            "/office/withdrawals",
            get(office::withdrawals).post(office::mark_notified),
        )
        .route(
            "/office/breaches",
            get(office::breaches).post(office::record_breach),
        )
        .route(
            "/office/codes",
            get(office::codes_form).post(office::issue_code),
        )
        .route(
            "/office/ledger",
            get(office::ledger).post(office::verify_ledger),
        )
        .route("/office/audit", get(office::audit))
        .route("/static/portal.css", get(stylesheet))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .with_state(state)
}
