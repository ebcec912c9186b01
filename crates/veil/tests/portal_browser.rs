//! The portal in a real browser: headless Chromium driven over WebDriver (chromedriver; Debian
//! `chromium` + `chromium-driver`, installed by scripts/setup.d/portal.sh, which exports
//! VEIL_TEST_CHROMIUM and VEIL_TEST_CHROMEDRIVER). The officer signs in with TOTP and issues a
//! code; the patient signs in with it, sees exactly their studies and disclosures, opts out of
//! commercial AI training; the next `veil release` for that purpose leaves them out. Every page
//! is saved as a screenshot in target/portal-screenshots/ (in CARGO_TARGET_DIR when set).
//!
//! Without Chromium the test fails (CI sets it up); VEIL_SKIP_BROWSER=1 skips it on a developer
//! box, saying so.

mod portal_kit;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use portal_kit::*;
use serde_json::{json, Value};

/// A chromedriver process and one browser session in it.
struct Browser {
    driver: Child,
    url: String,
    shots: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wd(method: &str, url: &str, body: Option<Value>) -> Value {
    let req = ureq::request(method, url).timeout(Duration::from_secs(60));
    let r = match body {
        Some(b) => req
            .set("Content-Type", "application/json")
            .send_string(&b.to_string()),
        None => req.call(),
    };
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("WebDriver {method} {url}: {e}"),
    };
    let text = resp.into_string().expect("a WebDriver answer");
    let v: Value = serde_json::from_str(&text).expect("WebDriver answers JSON");
    if v["value"].get("error").is_some() {
        panic!("WebDriver {method} {url}: {}", v["value"]);
    }
    v["value"].clone()
}

impl Browser {
    fn start(chromium: &str, chromedriver: &str) -> Browser {
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        let profile = tempfile::tempdir().unwrap().keep();
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=420,900", format!("--user-data-dir={}", profile.display())]
        }}}});
        let session = wd("POST", &format!("{base}/session"), Some(caps));
        let id = session["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        let shots = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
            .join("portal-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        // Elements on a page reached by a form post are waited for (up to 10 s), not raced.
        wd(
            "POST",
            &format!("{base}/session/{id}/timeouts"),
            Some(json!({ "implicit": 10_000 })),
        );
        Browser {
            driver,
            url: format!("{base}/session/{id}"),
            shots,
        }
    }

    fn go(&self, url: &str) {
        wd(
            "POST",
            &format!("{}/url", self.url),
            Some(json!({ "url": url })),
        );
    }

    fn find(&self, css: &str) -> String {
        let v = wd(
            "POST",
            &format!("{}/element", self.url),
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("an element")
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        wd(
            "POST",
            &format!("{}/element/{e}/value", self.url),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        wd(
            "POST",
            &format!("{}/element/{e}/click", self.url),
            Some(json!({})),
        );
    }

    fn text(&self, css: &str) -> String {
        let e = self.find(css);
        wd("GET", &format!("{}/element/{e}/text", self.url), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn source(&self) -> String {
        wd("GET", &format!("{}/source", self.url), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits (up to 10 s) until the browser is at a URL ending in `path`; the URL it is at.
    fn wait_for_path(&self, path: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.current();
            if url.ends_with(path) || Instant::now() > deadline {
                return url;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn current(&self) -> String {
        wd("GET", &format!("{}/url", self.url), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Saves a full-window screenshot as target/portal-screenshots/NAME.png.
    fn shot(&self, name: &str) {
        let b64 = wd("GET", &format!("{}/screenshot", self.url), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.url).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn tools() -> Option<(String, String)> {
    let found = |var: &str, name: &str| {
        std::env::var(var).ok().or_else(|| {
            let p = PathBuf::from("/usr/bin").join(name);
            p.exists().then(|| p.display().to_string())
        })
    };
    match (found("VEIL_TEST_CHROMIUM", "chromium"), found("VEIL_TEST_CHROMEDRIVER", "chromedriver")) {
        (Some(c), Some(d)) => Some((c, d)),
        _ if std::env::var("VEIL_SKIP_BROWSER").as_deref() == Ok("1") => {
            eprintln!("SKIPPED: the browser test (VEIL_SKIP_BROWSER=1 and no Chromium)");
            None
        }
        _ => panic!("Chromium and chromedriver are needed: source scripts/setup.d/portal.sh (or set VEIL_SKIP_BROWSER=1 to skip on a developer box)"),
    }
}

#[test]
fn officer_issues_a_code_and_the_patient_opts_out_in_a_real_browser() {
    let Some((chromium, chromedriver)) = tools() else {
        return;
    };
    let site = Site::new();
    let server = site.serve(&[]);
    let theirs = site.identifiers_of(PATIENT_C);
    let b = Browser::start(&chromium, &chromedriver);

    // The privacy office: password + TOTP, then a code for patient A.
    b.go(&format!("{}/office/sign-in", server.base));
    b.shot("01-office-sign-in");
    b.type_into("#name", OFFICER);
    b.type_into("#password", OFFICER_PASSWORD);
    b.type_into("#totp", &site.totp_now());
    b.click("button[type=submit]");
    let at = b.wait_for_path("/office");
    assert!(at.ends_with("/office"), "{at}");
    b.shot("02-office-overview");
    b.go(&format!("{}/office/consent", server.base));
    b.shot("03-office-consent");
    b.go(&format!("{}/office/codes", server.base));
    b.type_into("#patient_id", PATIENT_A);
    b.click("form[action='/office/codes'] button");
    b.find("#new-code"); // the page after the post (waited for)
    let issued = b.source();
    assert!(issued.contains("id=\"new-code\""), "{issued}");
    let code = b.text("#new-code");
    assert_eq!(code.len(), 14, "{code}");
    b.shot("04-office-code-issued");
    b.click(".sign-out button");
    assert!(b
        .wait_for_path("/office/sign-in")
        .ends_with("/office/sign-in"));

    // The patient: the code typed into the form (never in a URL).
    b.go(&format!("{}/sign-in", server.base));
    b.shot("05-patient-sign-in");
    b.type_into("#code", &code.to_lowercase());
    b.click("form[action='/sign-in'] button");
    let at = b.wait_for_path("/me");
    assert!(at.ends_with("/me"), "{at}: {}", b.source());
    assert!(!b.current().contains(&code), "the code is not in the URL");
    b.shot("06-patient-imaging");
    let me = b.source();
    assert!(
        me.contains("My imaging studies") && me.contains("CT"),
        "{me}"
    );
    b.go(&format!("{}/me/disclosures", server.base));
    b.shot("07-patient-disclosures");
    let page = b.source();
    let cli: Value =
        serde_json::from_str(&veil(site.path(), &["disclosures", PATIENT_A, "--format", "json"]).1)
            .unwrap();
    let n = cli["disclosures"].as_array().unwrap().len();
    assert_eq!(
        page.matches("<tr>").count() - 1,
        n,
        "one row per disclosure of the CLI's record: {page}"
    );
    assert!(
        page.contains("demo-lab") && page.contains("Confirmed"),
        "{page}"
    );
    for id in &theirs {
        assert!(
            !page.contains(id.as_str()) && !me.contains(id.as_str()),
            "another patient's {id}"
        );
    }
    assert!(
        !page.contains("<script>alert"),
        "markup in a recipient's name is text: {page}"
    );
    b.go(&format!("{}/me/consent", server.base));
    b.shot("08-patient-choices");
    b.click("form:has(input[value='commercial-ai-training']) button");
    b.find("main p[role=status]"); // the confirmation page (waited for)
    let done = b.source();
    assert!(
        done.contains("Your choice is recorded") && done.contains("dpo@acme.test"),
        "{done}"
    );
    b.shot("09-patient-opted-out");

    // The next release for commercial AI training leaves patient A out.
    let out = release(site.path(), &site.input, "acme-2");
    assert!(
        out.contains("excluded by consent (2 patient(s))"),
        "A and the demo's refusing patient: {out}"
    );
    let after: Value =
        serde_json::from_str(&veil(site.path(), &["disclosures", PATIENT_A, "--format", "json"]).1)
            .unwrap();
    assert_eq!(
        after["disclosures"].as_array().unwrap().len(),
        n,
        "no new disclosure of A"
    );
    let c: Value =
        serde_json::from_str(&veil(site.path(), &["disclosures", PATIENT_C, "--format", "json"]).1)
            .unwrap();
    let releases: std::collections::BTreeSet<&str> = c["disclosures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["release_id"].as_str())
        .collect();
    assert_eq!(
        releases.len(),
        3,
        "C is in the demo release and both acme releases: {releases:?}"
    );
}
