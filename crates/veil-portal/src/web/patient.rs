//! The patient's side: sign-in with a one-time code, then pages about the signed-in patient
//! only. No handler takes a patient, study, release or consent identifier from the request:
//! every query is made with the identifiers the session holds.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Form;
use minijinja::context;
use veil_app::registry::DocumentFormat;

use super::{check_csrf, page, see_other, sign_in_gate, signed_in, AppState, Fail};
use crate::pages::pages;
use crate::session::{Session, Who};

/// The signed-in patient (id, issuer, short reference), or a redirect to the sign-in page.
struct Patient {
    session: Session,
    patient_id: String,
    issuer: String,
    short_ref: String,
}

fn patient(state: &AppState, headers: &HeaderMap) -> Result<Patient, Response> {
    match state.session(headers) {
        Some(session) => match session.who.clone() {
            Who::Patient {
                patient_id,
                issuer,
                short_ref,
            } => Ok(Patient {
                session,
                patient_id,
                issuer,
                short_ref,
            }),
            _ => Err(see_other("/sign-in")),
        },
        None => Err(see_other("/sign-in")),
    }
}

pub async fn home(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match state.session(&headers).map(|s| s.who) {
        Some(Who::Patient { .. }) => see_other("/me"),
        Some(Who::Officer { .. }) => see_other("/office"),
        _ => see_other("/sign-in"),
    }
}

pub async fn sign_in_form(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let (session, cookie) = state.session_or_new(&headers);
    page(
        pages().render(
            "sign_in.html",
            context! { csrf => session.csrf, error => "" },
        ),
        cookie,
    )
}

#[derive(serde::Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

pub async fn sign_in(
    State(state): State<Arc<AppState>>,
    info: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Result<Response, Fail> {
    let (session, addr) = sign_in_gate(&state, &headers, &info, &form.csrf)?;
    let redeemed = match crate::access::normalise_code(&form.code) {
        None => Err("malformed code"),
        Some(code) => {
            let now = veil_store::time::now_utc();
            state
                .with_store(move |s| Ok(s.portal_redeem_code(&code, &now)?))
                .await?
        }
    };
    match redeemed {
        Ok(holder) => {
            state.limits.succeeded(addr);
            state
                .audit(
                    format!("patient {}", holder.short_ref),
                    "sign-in",
                    String::new(),
                )
                .await?;
            let who = Who::Patient {
                patient_id: holder.patient_id,
                issuer: holder.issuer,
                short_ref: holder.short_ref,
            };
            signed_in(&state, &session, who, "/me")
        }
        Err(why) => {
            state.limits.failed(addr);
            state
                .audit("anonymous".into(), "sign-in-refused", why.into())
                .await?;
            let html = pages().render(
                "sign_in.html",
                context! { csrf => session.csrf, error => "This code is not valid. Codes work once and expire; check the letter and type it again, or ask the privacy office for a new one." },
            );
            Ok((axum::http::StatusCode::UNAUTHORIZED, page(html, None)).into_response())
        }
    }
}

#[derive(serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn sign_out(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Fail> {
    let session = state.session(&headers).ok_or(Fail::BadToken)?;
    check_csrf(&session, &form.csrf)?;
    state.sessions.end(&session.id);
    let to = match session.who {
        Who::Officer { .. } => "/office/sign-in",
        _ => "/sign-in",
    };
    Ok(see_other(to))
}

/// The imaging history: every study of the patient the store knows.
pub async fn overview(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    let p = match patient(&state, &headers) {
        Ok(p) => p,
        Err(r) => return Ok(r),
    };
    let (id, issuer) = (p.patient_id.clone(), p.issuer.clone());
    let studies = state
        .with_store(move |s| Ok(s.portal_patient_studies(&id, &issuer)?))
        .await?;
    Ok(page(
        pages().render(
            "me.html",
            context! { csrf => p.session.csrf, here => "me", patient => p.short_ref, studies },
        ),
        None,
    ))
}

async fn disclosures_of(
    state: &AppState,
    p: &Patient,
) -> Result<Vec<veil_store::queries::Disclosure>, Fail> {
    let (id, issuer) = (p.patient_id.clone(), p.issuer.clone());
    state
        .with_store(move |s| {
            Ok(veil_app::registry::disclosures_with_proofs(
                s, &id, &issuer,
            )?)
        })
        .await
}

/// Every disclosure, with the ledger's inclusion-proof status.
pub async fn disclosures(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    let p = match patient(&state, &headers) {
        Ok(p) => p,
        Err(r) => return Ok(r),
    };
    let disclosures = disclosures_of(&state, &p).await?;
    Ok(page(
        pages().render("disclosures.html", context! { csrf => p.session.csrf, here => "disclosures", patient => p.short_ref, disclosures }),
        None,
    ))
}

/// One purpose as the consent page shows it.
#[derive(serde::Serialize)]
struct PurposeView {
    name: String,
    description: String,
    allowed: bool,
    /// Why: `your-consent`, `standing-rule`, `refused`, `withdrawn`, `default-refused`.
    basis: String,
    partial_records: usize,
}

fn purpose_views(
    summary: Vec<(String, Vec<veil_store::ConsentRecord>, veil_store::Decision)>,
) -> Vec<PurposeView> {
    summary
        .into_iter()
        .map(|(name, records, decision)| {
            let (allowed, basis) = match decision {
                veil_store::Decision::Admit { consent_ref }
                    if consent_ref.starts_with("default:") =>
                {
                    (true, "standing-rule".to_string())
                }
                veil_store::Decision::Admit { .. } => (true, "your-consent".to_string()),
                veil_store::Decision::Exclude { reason, .. } => (false, reason),
            };
            PurposeView {
                description: veil_store::consent::describe_purpose(&name),
                name,
                allowed,
                basis,
                partial_records: records.iter().filter(|r| !r.scope.is_all()).count(),
            }
        })
        .collect()
}

/// The current consent per purpose, with a control to opt out of each allowed one.
pub async fn consent(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    let p = match patient(&state, &headers) {
        Ok(p) => p,
        Err(r) => return Ok(r),
    };
    let (id, issuer, settings) = (
        p.patient_id.clone(),
        p.issuer.clone(),
        state.settings.clone(),
    );
    let summary = state
        .with_store(move |s| Ok(s.consent_summary(&id, &issuer, &settings)?))
        .await?;
    Ok(page(
        pages().render("consent.html", context! { csrf => p.session.csrf, here => "consent", patient => p.short_ref, purposes => purpose_views(summary) }),
        None,
    ))
}

#[derive(serde::Deserialize)]
pub struct OptOutForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    purpose: String,
}

/// Opting out: the same withdrawal `veil withdraw` records (consent registry and ledger); the
/// page lists the recipients that already hold data for the purpose.
pub async fn opt_out(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<OptOutForm>,
) -> Result<Response, Fail> {
    let p = match patient(&state, &headers) {
        Ok(p) => p,
        Err(_) => return Err(Fail::BadToken),
    };
    check_csrf(&p.session, &form.csrf)?;
    if !state.settings.purposes.contains(&form.purpose) {
        return Err(Fail::BadRequest(
            "Choose one of the purposes listed on the consent page.".into(),
        ));
    }
    let (id, issuer, settings, purpose) = (
        p.patient_id.clone(),
        p.issuer.clone(),
        state.settings.clone(),
        form.purpose.clone(),
    );
    let (consent_id, holders) = state
        .with_store(move |s| Ok(s.withdraw(&id, &issuer, &purpose, "portal", "", &settings)?))
        .await?;
    state
        .audit(
            format!("patient {}", p.short_ref),
            "withdraw",
            format!(
                "purpose {}, consent C-{consent_id}, {} recipient(s) hold data",
                form.purpose,
                holders.len()
            ),
        )
        .await?;
    let description = veil_store::consent::describe_purpose(&form.purpose);
    Ok(page(
        pages().render("consent_done.html", context! { csrf => p.session.csrf, here => "consent", patient => p.short_ref, description, consent_id, holders }),
        None,
    ))
}

/// Breach notices that concern the patient: a recorded breach at a recipient that received
/// the patient's data at or after the breach's start.
pub async fn notices(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    let p = match patient(&state, &headers) {
        Ok(p) => p,
        Err(r) => return Ok(r),
    };
    let disclosures = disclosures_of(&state, &p).await?;
    let breaches = state.with_store(|s| Ok(s.portal_breaches()?)).await?;
    let notices: Vec<serde_json::Value> = breaches
        .iter()
        .filter_map(|b| {
            let hit: Vec<&veil_store::queries::Disclosure> = disclosures
                .iter()
                .filter(|d| d.recipient == b.recipient && d.last_released_at >= b.since)
                .collect();
            (!hit.is_empty()).then(|| serde_json::json!({ "breach": b, "disclosures": hit }))
        })
        .collect();
    Ok(page(
        pages().render(
            "notices.html",
            context! { csrf => p.session.csrf, here => "notices", patient => p.short_ref, notices },
        ),
        None,
    ))
}

async fn record(
    state: Arc<AppState>,
    headers: HeaderMap,
    format: DocumentFormat,
) -> Result<Response, Fail> {
    let p = match patient(&state, &headers) {
        Ok(p) => p,
        Err(r) => return Ok(r),
    };
    let (id, issuer) = (p.patient_id.clone(), p.issuer.clone());
    let bytes = state
        .with_store(move |s| {
            Ok(veil_app::registry::disclosures_document(
                s, &id, &issuer, format,
            )?)
        })
        .await?;
    let (kind, name) = match format {
        DocumentFormat::Html => ("text/html; charset=utf-8", "my-imaging-record.html"),
        DocumentFormat::Json => ("application/json", "my-imaging-record.json"),
    };
    state
        .audit(
            format!("patient {}", p.short_ref),
            "download-record",
            name.to_string(),
        )
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

pub async fn record_html(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    record(state, headers, DocumentFormat::Html).await
}

pub async fn record_json(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    record(state, headers, DocumentFormat::Json).await
}
