//! The privacy office's side: sign-in with password and TOTP, then overviews of recipients,
//! releases, consent, withdrawals to notify, breaches and the ledger, and issuing patients'
//! access codes. Every page view and every change is written to the portal's audit log.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use minijinja::context;

use super::{check_csrf, page, see_other, sign_in_gate, signed_in, AppState, Fail};
use crate::access::OfficerCheck;
use crate::pages::pages;
use crate::session::{Session, Who};

/// The signed-in officer, after the view is audit-logged; or a redirect to the sign-in page.
async fn officer(
    state: &AppState,
    headers: &HeaderMap,
    view: &'static str,
) -> Result<Result<(Session, String), Response>, Fail> {
    let Some(session) = state.session(headers) else {
        return Ok(Err(see_other("/office/sign-in")));
    };
    let Who::Officer { name } = session.who.clone() else {
        return Ok(Err(see_other("/office/sign-in")));
    };
    state.audit(name.clone(), "view", view.to_string()).await?;
    Ok(Ok((session, name)))
}

/// Resolves to the officer or returns the redirect from the handler.
macro_rules! officer_or_return {
    ($state:expr, $headers:expr, $view:expr) => {
        match officer(&$state, &$headers, $view).await? {
            Ok(o) => o,
            Err(r) => return Ok(r),
        }
    };
}

pub async fn sign_in_form(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (session, cookie) = state.session_or_new(&headers);
    page(
        pages().render(
            "office_sign_in.html",
            context! { csrf => session.csrf, error => "" },
        ),
        cookie,
    )
}

#[derive(serde::Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    totp: String,
}

pub async fn sign_in(
    State(state): State<Arc<AppState>>,
    info: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Result<Response, Fail> {
    let (session, addr) = sign_in_gate(&state, &headers, &info, &form.csrf)?;
    let name = form.name.trim().to_string();
    let (n, pw, code) = (name.clone(), form.password, form.totp);
    let outcome = state
        .with_store(move |s| Ok(crate::access::check_officer(s, &n, &pw, &code)?))
        .await?;
    // The typed name goes to the audit log only as the actor of an accepted sign-in; a refused
    // one may be a mistyped password or a patient's code in the wrong form.
    match outcome {
        OfficerCheck::Accepted => {
            state.limits.succeeded(addr);
            state.audit(name.clone(), "sign-in", String::new()).await?;
            signed_in(&state, &session, Who::Officer { name }, "/office")
        }
        OfficerCheck::Refused | OfficerCheck::Locked => {
            state.limits.failed(addr);
            let locked = outcome == OfficerCheck::Locked;
            state
                .audit(
                    "anonymous".into(),
                    "office-sign-in-refused",
                    if locked {
                        "account locked".into()
                    } else {
                        String::new()
                    },
                )
                .await?;
            let error = if locked {
                "This account is locked for 15 minutes after several unsuccessful sign-ins."
            } else {
                "Name, password or code not accepted. Check them and try again; a code from your authenticator app works once."
            };
            let html = pages().render(
                "office_sign_in.html",
                context! { csrf => session.csrf, error },
            );
            let status = if locked {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::UNAUTHORIZED
            };
            Ok((status, page(html, None)).into_response())
        }
    }
}

/// Recipients and purposes, the ledger's size and latest signed head.
pub async fn dashboard(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    let (session, name) = officer_or_return!(state, headers, "dashboard");
    let (recipients, ledger, releases) = state
        .with_store(|s| {
            Ok((
                s.recipients()?,
                s.portal_ledger_summary()?,
                s.portal_releases(5)?,
            ))
        })
        .await?;
    Ok(page(
        pages().render("office.html", context! { csrf => session.csrf, officer => name, here => "dashboard", recipients, ledger, releases }),
        None,
    ))
}

pub async fn releases(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    let (session, name) = officer_or_return!(state, headers, "releases");
    let releases = state.with_store(|s| Ok(s.portal_releases(500)?)).await?;
    Ok(page(
        pages().render(
            "office_releases.html",
            context! { csrf => session.csrf, officer => name, here => "releases", releases },
        ),
        None,
    ))
}

/// One purpose's row of the consent statistics.
#[derive(serde::Serialize, Default)]
struct PurposeCounts {
    purpose: String,
    description: String,
    default: String,
    granted: i64,
    refused: i64,
    withdrawn: i64,
}

pub async fn consent(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    let (session, name) = officer_or_return!(state, headers, "consent statistics");
    let counts = state.with_store(|s| Ok(s.portal_consent_counts()?)).await?;
    let mut rows: BTreeMap<String, PurposeCounts> = state
        .settings
        .purposes
        .iter()
        .map(|p| {
            (
                p.clone(),
                PurposeCounts {
                    purpose: p.clone(),
                    description: veil_store::consent::describe_purpose(p),
                    default: state.settings.default_for(p).as_str().to_string(),
                    ..Default::default()
                },
            )
        })
        .collect();
    for (purpose, st, n) in counts {
        if let Some(r) = rows.get_mut(&purpose) {
            match st.as_str() {
                "granted" => r.granted += n,
                "refused" => r.refused += n,
                _ => r.withdrawn += n,
            }
        }
    }
    let rows: Vec<PurposeCounts> = rows.into_values().collect();
    Ok(page(
        pages().render(
            "office_consent.html",
            context! { csrf => session.csrf, officer => name, here => "consent", rows },
        ),
        None,
    ))
}

pub async fn withdrawals(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    let (session, name) = officer_or_return!(state, headers, "withdrawals");
    let (withdrawals, recipients) = state
        .with_store(|s| Ok((s.portal_withdrawals(500)?, s.recipients()?)))
        .await?;
    let contacts: BTreeMap<String, String> = recipients
        .into_iter()
        .map(|r| (r.name, r.contact))
        .collect();
    Ok(page(
        pages().render("office_withdrawals.html", context! { csrf => session.csrf, officer => name, here => "withdrawals", withdrawals, contacts }),
        None,
    ))
}

#[derive(serde::Deserialize)]
pub struct NotifiedForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    consent_id: String,
}

pub async fn mark_notified(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<NotifiedForm>,
) -> Result<Response, Fail> {
    let (session, name) = officer_or_return!(state, headers, "withdrawals: mark notified");
    check_csrf(&session, &form.csrf)?;
    let id: i64 = form
        .consent_id
        .parse()
        .map_err(|_| Fail::BadRequest("consent_id: a number".into()))?;
    let by = name.clone();
    state
        .with_store(move |s| Ok(s.portal_mark_notified(id, &by)?))
        .await?;
    state
        .audit(name, "mark-notified", format!("consent C-{id}"))
        .await?;
    Ok(see_other("/office/withdrawals"))
}

pub async fn breaches(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    let (session, name) = officer_or_return!(state, headers, "breaches");
    let (recorded, recipients) = state
        .with_store(|s| {
            let mut out = Vec::new();
            for b in s.portal_breaches()? {
                let report = veil_app::registry::breach_report(s, &b.recipient, Some(&b.since))?;
                out.push(serde_json::json!({
                    "breach": b, "patients": report.patients, "studies": report.studies, "instances": report.instances,
                }));
            }
            Ok((out, s.recipients()?))
        })
        .await?;
    Ok(page(
        pages().render("office_breaches.html", context! { csrf => session.csrf, officer => name, here => "breaches", recorded, recipients }),
        None,
    ))
}

#[derive(serde::Deserialize)]
pub struct BreachForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    recipient: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    description: String,
}

pub async fn record_breach(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<BreachForm>,
) -> Result<Response, Fail> {
    let (session, name) = officer_or_return!(state, headers, "breaches: record");
    check_csrf(&session, &form.csrf)?;
    let since = veil_store::time::normalize_timestamp(&form.since)
        .ok_or_else(|| Fail::BadRequest("Since: a date as YYYY-MM-DD".into()))?;
    let (recipient, description, by) = (
        form.recipient.clone(),
        form.description.trim().to_string(),
        name.clone(),
    );
    let id = state
        .with_store(move |s| Ok(s.portal_record_breach(&recipient, &since, &description, &by)?))
        .await?;
    state
        .audit(
            name,
            "record-breach",
            format!("breach {id} at recipient {}", form.recipient),
        )
        .await?;
    Ok(see_other("/office/breaches"))
}

pub async fn codes_form(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    let (session, name) = officer_or_return!(state, headers, "access codes");
    Ok(page(
        pages().render("office_codes.html", context! { csrf => session.csrf, officer => name, here => "codes", issued => None::<String> }),
        None,
    ))
}

#[derive(serde::Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    patient_id: String,
    #[serde(default)]
    issuer: String,
}

/// Issues a code; the page shows it once (it is stored only as a keyed hash).
pub async fn issue_code(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Result<Response, Fail> {
    let (session, name) = officer_or_return!(state, headers, "access codes: issue");
    check_csrf(&session, &form.csrf)?;
    let by = name.clone();
    let issued = state
        .with_store(move |s| {
            Ok(crate::access::issue_code(
                s,
                form.patient_id.trim(),
                form.issuer.trim(),
                &by,
                14,
            )?)
        })
        .await?;
    Ok(page(
        pages().render("office_codes.html", context! {
            csrf => session.csrf, officer => name, here => "codes",
            issued => issued.code, expires_at => issued.expires_at, patient_ref => issued.patient_ref,
        }),
        None,
    ))
}

pub async fn ledger(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    let (session, name) = officer_or_return!(state, headers, "ledger");
    let (summary, public_key) = state
        .with_store(|s| {
            Ok((
                s.portal_ledger_summary()?,
                s.ledger_public_key().unwrap_or_default(),
            ))
        })
        .await?;
    Ok(page(
        pages().render("office_ledger.html", context! { csrf => session.csrf, officer => name, here => "ledger", summary, public_key, report => None::<String> }),
        None,
    ))
}

/// Verifies the whole ledger now (every hash, link, signed head and consent record).
pub async fn verify_ledger(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<super::patient::CsrfForm>,
) -> Result<Response, Fail> {
    let (session, name) = officer_or_return!(state, headers, "ledger: verify");
    check_csrf(&session, &form.csrf)?;
    let (summary, public_key, report) = state
        .with_store(|s| {
            Ok((
                s.portal_ledger_summary()?,
                s.ledger_public_key().unwrap_or_default(),
                s.verify_ledger()?,
            ))
        })
        .await?;
    state
        .audit(
            name.clone(),
            "verify-ledger",
            format!(
                "{} entries, {}",
                report.entries,
                if report.ok() { "intact" } else { "PROBLEMS" }
            ),
        )
        .await?;
    let ok = report.ok();
    Ok(page(
        pages().render("office_ledger.html", context! { csrf => session.csrf, officer => name, here => "ledger", summary, public_key, report, ok }),
        None,
    ))
}

pub async fn audit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    let (session, name) = officer_or_return!(state, headers, "audit log");
    let rows = state.with_store(|s| Ok(s.portal_audit_log(300)?)).await?;
    Ok(page(
        pages().render(
            "office_audit.html",
            context! { csrf => session.csrf, officer => name, here => "audit", rows },
        ),
        None,
    ))
}
