//! HTML pages for people who are not operators (today the patient's disclosure record), from
//! the templates in `templates/` with HTML auto-escaping: a value from the store can never
//! become markup. The portal renders the same templates.

use minijinja::{context, Environment};

use crate::AppError;

/// The templates, compiled into the binary so a page never depends on files at run time.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.add_template(
        "disclosures.html",
        include_str!("../templates/disclosures.html"),
    )
    .expect("the disclosures template parses");
    env
}

/// The patient's page "Where your images went": every disclosure as a timeline and a table.
pub fn disclosures_html(
    patient_ref: &str,
    disclosures: &[veil_store::queries::Disclosure],
) -> Result<String, AppError> {
    let purposes: Vec<&str> = veil_store::consent::BUILTIN_PURPOSES
        .iter()
        .map(|(_, d)| *d)
        .collect();
    let page = environment()
        .get_template("disclosures.html")
        .and_then(|t| t.render(context! { patient_ref, disclosures, purposes }))
        .map_err(|e| AppError::Render(e.to_string()))?;
    Ok(page + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disclosure(consent_ref: &str, recipient: &str) -> veil_store::queries::Disclosure {
        veil_store::queries::Disclosure {
            release_id: "R-1".into(),
            recipient: recipient.into(),
            recipient_contact: String::new(),
            purpose: "research".into(),
            purpose_description: "Research".into(),
            consent_ref: consent_ref.into(),
            first_released_at: "2026-03-04T10:00:00Z".into(),
            last_released_at: "2026-03-04T10:00:00Z".into(),
            original_study_uid: "1.2.3".into(),
            released_study_uid: "2.25.9".into(),
            patient_pseudonym: "P1".into(),
            instances: 3,
            consent_label: veil_store::consent::reference_label(consent_ref).into(),
            study: veil_store::studies::StudyDetails {
                date: "20240301".into(),
                modalities: vec!["CT".into(), "SR".into()],
                description: "HEAD <W/O> CONTRAST".into(),
            },
            ledger_entries: vec![4, 5, 6],
            proof: Some(veil_store::queries::ProofStatus {
                status: "verified".into(),
                tree_size: 9,
                tree_head_signed_at: "2026-03-04T10:00:01Z".into(),
                proofs: Vec::new(),
            }),
        }
    }

    #[test]
    fn values_are_escaped_and_both_consent_kinds_are_explained() {
        let page = disclosures_html(
            "ab<12",
            &[
                disclosure(
                    &format!("C-7@{}", "ab".repeat(32)),
                    "Lab <script>alert(1)</script>",
                ),
                disclosure("default:research", "Uni & Co"),
            ],
        )
        .unwrap();
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("Lab &lt;script&gt;"));
        assert!(page.contains("Uni &amp; Co"));
        assert!(page.contains("Reference: ab&lt;12."));
        assert!(page.contains("your consent record C-7."), "{page}");
        assert!(
            !page.contains("abab"),
            "the entry hash is for auditors, not the page"
        );
        assert!(page.contains("for <strong>research</strong>"), "{page}");
        assert!(page.contains("checked against the signed public log of 9 entries"));
        assert!(page.contains("standing rule for this purpose"));
        assert!(page.contains("2 study release(s)"));
        assert!(page.contains("<td>2026-03-04</td>"));
        assert!(page.contains("2024-03-01 CT, SR study"), "{page}");
        assert!(page.contains("HEAD &lt;W&#x2f;O&gt; CONTRAST"), "{page}");
    }

    #[test]
    fn an_empty_record_says_so() {
        let page = disclosures_html("r", &[]).unwrap();
        assert!(page.contains("None of your images have been shared."));
        assert!(!page.contains("<table>"));
    }
}
