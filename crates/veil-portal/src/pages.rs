//! The portal's pages: minijinja templates compiled into the binary, with HTML auto-escaping on
//! (every template name ends in `.html`), so a value from the store — a recipient's name, a
//! study description — can never become markup.

use std::sync::OnceLock;

use minijinja::{context, Environment, Value};

/// The compiled templates.
pub struct Pages {
    env: Environment<'static>,
}

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("sign_in.html", include_str!("../templates/sign_in.html")),
    ("me.html", include_str!("../templates/me.html")),
    (
        "disclosures.html",
        include_str!("../templates/disclosures.html"),
    ),
    ("consent.html", include_str!("../templates/consent.html")),
    (
        "consent_done.html",
        include_str!("../templates/consent_done.html"),
    ),
    ("notices.html", include_str!("../templates/notices.html")),
    (
        "office_sign_in.html",
        include_str!("../templates/office_sign_in.html"),
    ),
    ("office.html", include_str!("../templates/office.html")),
    (
        "office_releases.html",
        include_str!("../templates/office_releases.html"),
    ),
    (
        "office_consent.html",
        include_str!("../templates/office_consent.html"),
    ),
    (
        "office_withdrawals.html",
        include_str!("../templates/office_withdrawals.html"),
    ),
    (
        "office_breaches.html",
        include_str!("../templates/office_breaches.html"),
    ),
    (
        "office_codes.html",
        include_str!("../templates/office_codes.html"),
    ),
    (
        "office_ledger.html",
        include_str!("../templates/office_ledger.html"),
    ),
    (
        "office_audit.html",
        include_str!("../templates/office_audit.html"),
    ),
];

/// `20240301` or `2024-03-01T10:00:00.000000Z` as `2024-03-01`; anything else unchanged.
fn day(value: String) -> String {
    let b = value.as_bytes();
    if b.len() == 8 && b.iter().all(u8::is_ascii_digit) {
        format!("{}-{}-{}", &value[..4], &value[4..6], &value[6..])
    } else if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        value[..10].to_string()
    } else {
        value
    }
}

/// The shared instance.
pub fn pages() -> &'static Pages {
    static PAGES: OnceLock<Pages> = OnceLock::new();
    PAGES.get_or_init(Pages::new)
}

impl Pages {
    fn new() -> Pages {
        let mut env = Environment::new();
        for (name, text) in TEMPLATES {
            env.add_template(name, text)
                .unwrap_or_else(|e| panic!("template {name} parses: {e}"));
        }
        env.add_filter("day", day);
        Pages { env }
    }

    /// A page; a template error (a bug: templates are tested) becomes the error page.
    pub fn render(&self, name: &str, ctx: Value) -> String {
        match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(html) => html,
            Err(e) => {
                tracing::error!("portal: page {name}: {e}");
                self.error(
                    "Something went wrong",
                    "This page could not be shown. Please try again later.",
                )
            }
        }
    }

    /// The error page.
    pub fn error(&self, title: &str, text: &str) -> String {
        self.env
            .get_template("error.html")
            .and_then(|t| t.render(context! { title, text }))
            .unwrap_or_else(|_| {
                "<!doctype html><title>Error</title><p>Something went wrong.</p>".into()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_escaped_and_dates_read_as_days() {
        let p = Pages::new();
        let html = p.render(
            "error.html",
            context! { title => "<b>x</b>", text => "a & b" },
        );
        assert!(
            html.contains("&lt;b&gt;x&lt;&#x2f;b&gt;") && html.contains("a &amp; b"),
            "{html}"
        );
        assert_eq!(day("20240301".into()), "2024-03-01");
        assert_eq!(day("2026-12-07T10:00:00.000000Z".into()), "2026-12-07");
        assert_eq!(day("".into()), "");
        for (name, _) in TEMPLATES {
            let html = p.render(
                name,
                context! { csrf => "t", patient => "ab12", officer => "o" },
            );
            assert!(
                !html.contains("Something went wrong") || *name == "error.html",
                "{name}: {html}"
            );
        }
    }
}
