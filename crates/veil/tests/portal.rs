//! `veil serve` over HTTP, against the real binary on a demo store: the patient's and the privacy
//! office's flows, and the attacks of issue 21 (another patient's data, XSS through names, CSRF,
//! brute-forced codes and passwords, reused and expired codes, session fixation), plus the
//! refusal of plain HTTP off loopback and HTTPS with a throw-away certificate.

mod common;
mod portal_kit;

use portal_kit::*;

/// Every page a signed-in patient can reach, with ids of other patients tried as every kind of
/// parameter and path a guesser might use.
fn patient_paths(other: &[String]) -> Vec<String> {
    let mut paths: Vec<String> = [
        "/me",
        "/me/disclosures",
        "/me/consent",
        "/me/notices",
        "/me/record.json",
        "/me/record.html",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for id in other {
        for shape in [
            "/me?patient={}",
            "/me/disclosures?patient_id={}",
            "/me/record.json?patient={}&patient_ref={}",
            "/patients/{}",
            "/me/{}",
            "/me/disclosures/{}",
            "/me/record/{}.json",
            "/office/patients/{}",
        ] {
            paths.push(shape.replace("{}", id));
        }
    }
    paths
}

#[test]
fn a_patient_sees_exactly_their_own_record_and_opting_out_excludes_them_from_the_next_release() {
    let site = Site::new();
    let server = site.serve(&[]);
    let mine = site.identifiers_of(PATIENT_A);
    let theirs = site.identifiers_of(PATIENT_C);
    let mut c = server.client();
    let r = c.patient_sign_in(&site.code(PATIENT_A));
    assert_eq!((r.status, r.location.as_str()), (303, "/me"), "{r:?}");

    let me = c.get("/me");
    assert_eq!(me.status, 200, "{}", me.body);
    assert!(
        me.body.contains("My imaging studies") && me.body.contains("CT"),
        "{}",
        me.body
    );
    let disclosures = c.get("/me/disclosures");
    assert!(
        disclosures.body.contains("demo-lab")
            && disclosures
                .body
                .contains("Training of commercial AI products"),
        "{}",
        disclosures.body
    );
    assert!(
        disclosures.body.contains("Confirmed"),
        "inclusion proofs verified: {}",
        disclosures.body
    );
    // Exactly A's disclosures: the same count as the CLI's record, and A's reference.
    let cli: serde_json::Value =
        serde_json::from_str(&veil(site.path(), &["disclosures", PATIENT_A, "--format", "json"]).1)
            .unwrap();
    let n = cli["disclosures"].as_array().unwrap().len();
    assert!(
        disclosures.body.contains(&format!("({n})")),
        "{n} disclosures: {}",
        disclosures.body
    );
    let json = c.get("/me/record.json");
    assert!(json
        .header("content-disposition")
        .unwrap_or_default()
        .contains("attachment"));
    let doc: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(doc["patient_ref"], cli["patient_ref"]);
    let releases = |d: &serde_json::Value| -> Vec<String> {
        d["disclosures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| format!("{}/{}", x["release_id"], x["released_study_uid"]))
            .collect()
    };
    assert_eq!(releases(&doc), releases(&cli));
    for p in patient_paths(&theirs) {
        let r = c.get(&p);
        assert!(r.status == 200 || r.status == 404, "{p}: {}", r.status);
        for id in &theirs {
            assert!(
                !r.body.contains(id.as_str()),
                "{p} carries another patient's {id}"
            );
        }
        for name in PATIENT_C_NAMES.into_iter().chain([PATIENT_A]) {
            assert!(!r.body.contains(name), "{p} carries {name}");
        }
    }
    assert!(
        mine.iter().any(|id| json.body.contains(id.as_str())),
        "A's own record names A's data"
    );

    // Opt out of commercial AI training: recorded like `veil withdraw`, names the holder.
    let consent = c.get("/me/consent");
    assert!(
        consent.body.contains("Stop using my images for this"),
        "{}",
        consent.body
    );
    let done = c.post(
        "/me/consent",
        &[
            ("csrf", &consent.csrf()),
            ("purpose", "commercial-ai-training"),
        ],
    );
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains("Acme &lt;script&gt;") && done.body.contains("dpo@acme.test"),
        "{}",
        done.body
    );
    let (_, show, _) = veil(site.path(), &["consent", "show", PATIENT_A]);
    assert!(show.contains("withdrawn"), "{show}");
    let (rc, verify, err) = veil(site.path(), &["ledger", "verify"]);
    assert_eq!(
        rc, 0,
        "the withdrawal is a valid ledger entry: {verify}{err}"
    );
    // The next release for that purpose leaves A out and still includes C.
    let count = |patient: &str| {
        let out = veil(site.path(), &["disclosures", patient, "--format", "json"]).1;
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        doc["disclosures"].as_array().unwrap().len()
    };
    let (a_before, c_before) = (count(PATIENT_A), count(PATIENT_C));
    let out = release(site.path(), &site.input, "acme-2");
    assert!(
        out.contains("excluded by consent (2 patient(s))"),
        "A and the demo's refusing patient: {out}"
    );
    assert_eq!(count(PATIENT_A), a_before, "A gained no disclosure");
    assert!(count(PATIENT_C) > c_before, "C is released again");
    // The server's log names no patient.
    let log = server.log_text();
    for id in mine.iter().chain(&theirs) {
        assert!(!log.contains(id.as_str()), "log carries {id}: {log}");
    }
}

#[test]
fn the_privacy_office_signs_in_with_totp_issues_a_code_and_sees_the_registry() {
    let site = Site::new();
    let server = site.serve(&[]);
    let mut o = server.client();
    let r = o.officer_sign_in(OFFICER_PASSWORD, &site.totp_now());
    assert_eq!((r.status, r.location.as_str()), (303, "/office"), "{r:?}");
    let home = o.get("/office");
    assert!(
        home.body.contains("demo-lab") && home.body.contains("Acme &lt;script&gt;alert("),
        "{}",
        home.body
    );
    assert!(
        !home.body.contains("<script>") && !home.body.contains("<img src=x"),
        "escaped: {}",
        home.body
    );
    for (path, expect) in [
        ("/office/releases", "commercial-ai-training"),
        ("/office/consent", "Training of commercial AI products"),
        ("/office/withdrawals", "No withdrawal needs"),
        ("/office/breaches", "Record a breach"),
        ("/office/ledger", "entries"),
    ] {
        let r = o.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.body.contains(expect), "{path}: {}", r.body);
    }
    // Issue a code through the form; the patient signs in with it.
    let form = o.get("/office/codes");
    let issued = o.post(
        "/office/codes",
        &[
            ("csrf", &form.csrf()),
            ("patient_id", PATIENT_A),
            ("issuer", ""),
        ],
    );
    let at = issued
        .body
        .find("id=\"new-code\">")
        .expect("a code on the page")
        + 14;
    let code = issued.body[at..at + 14].to_string();
    let mut p = server.client();
    assert_eq!(p.patient_sign_in(&code).location, "/me");
    // Record a breach at the hostile recipient: the patient sees a notice, the office counts.
    let form = o.get("/office/breaches");
    let r = o.post(
        "/office/breaches",
        &[
            ("csrf", &form.csrf()),
            ("recipient", HOSTILE_RECIPIENT),
            ("since", "2020-01-01"),
            ("description", "A laptop was stolen."),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let b = o.get("/office/breaches");
    assert!(
        b.body.contains("A laptop was stolen.") && b.body.contains("<td>2</td>"),
        "2 patients: {}",
        b.body
    );
    let notice = p.get("/me/notices");
    assert!(
        notice
            .body
            .contains("Security incident at Acme &lt;script&gt;")
            && notice.body.contains("A laptop was stolen."),
        "{}",
        notice.body
    );
    // The patient withdraws; the office sees who to notify and marks it.
    let consent = p.get("/me/consent");
    p.post(
        "/me/consent",
        &[
            ("csrf", &consent.csrf()),
            ("purpose", "commercial-ai-training"),
        ],
    );
    let w = o.get("/office/withdrawals");
    assert!(
        w.body.contains("dpo@acme.test") && w.body.contains("Mark C-"),
        "{}",
        w.body
    );
    let id = w
        .body
        .split("name=\"consent_id\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    o.post(
        "/office/withdrawals",
        &[("csrf", &w.csrf()), ("consent_id", &id)],
    );
    assert!(o
        .get("/office/withdrawals")
        .body
        .contains(&format!("by {OFFICER}")));
    let v = o.get("/office/ledger");
    let v = o.post("/office/ledger", &[("csrf", &v.csrf())]);
    assert!(v.body.contains("Intact:"), "{}", v.body);
    // Everything above is in the audit log, without the patient's ID.
    let audit = o.get("/office/audit");
    for action in [
        "sign-in",
        "issue-code",
        "record-breach",
        "withdraw",
        "mark-notified",
        "verify-ledger",
        "view",
    ] {
        assert!(
            audit.body.contains(&format!("<td>{action}</td>")),
            "{action}: {}",
            audit.body
        );
    }
    assert!(!audit.body.contains(PATIENT_A), "{}", audit.body);
    // A patient's session opens no office page, an officer's no patient page.
    assert_eq!(p.get("/office").location, "/office/sign-in");
    assert_eq!(o.get("/me").location, "/sign-in");
}

#[test]
fn attacks_on_sign_in_sessions_and_forms_fail() {
    let site = Site::new();
    let server = site.serve(&[]);
    // Security headers and cookie flags.
    let mut c = server.client();
    let form = c.get("/sign-in");
    let csp = form
        .header("content-security-policy")
        .unwrap_or_default()
        .to_string();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("frame-ancestors 'none'")
            && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(form.header("x-frame-options"), Some("DENY"));
    assert_eq!(form.header("cache-control"), Some("no-store"));
    let cookie = form.header("set-cookie").unwrap_or_default().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    // Session fixation: the id held before sign-in is not signed in afterwards.
    let planted = c.cookie.clone().unwrap();
    let stale_csrf = form.csrf();
    let code = site.code(PATIENT_A);
    let r = c.post("/sign-in", &[("csrf", &stale_csrf), ("code", &code)]);
    assert_eq!(r.status, 303);
    let fresh = c.cookie.clone().unwrap();
    assert_ne!(planted, fresh, "a new session id at sign-in");
    let mut attacker = server.client();
    attacker.cookie = Some(planted);
    assert_eq!(
        attacker.get("/me").location,
        "/sign-in",
        "the planted id opens nothing"
    );

    // CSRF: no token, a token from the pre-sign-in session, another session's token.
    let consent_before = veil(site.path(), &["consent", "history", PATIENT_A]).1;
    for token in ["", stale_csrf.as_str(), "0000"] {
        let r = c.post(
            "/me/consent",
            &[("csrf", token), ("purpose", "commercial-ai-training")],
        );
        assert_eq!(r.status, 403, "token {token:?}: {}", r.body);
    }
    let r = c.post("/sign-out", &[]);
    assert_eq!(r.status, 403);
    assert_eq!(
        veil(site.path(), &["consent", "history", PATIENT_A]).1,
        consent_before,
        "nothing recorded"
    );

    // A used code does not work again; an expired one never does.
    let mut again = server.client();
    assert_eq!(again.patient_sign_in(&code).status, 401);
    let expiring = site.code(PATIENT_C);
    let store = veil_store::Store::open(
        Some(site.path().join("veil.db").to_str().unwrap()),
        Some(&veil_keys::Key::load(&site.path().join("demo.key")).unwrap()),
    )
    .unwrap();
    store
        .execute_raw(
            "UPDATE portal_codes SET expires_at = '2001-01-01T00:00:00.000000Z' WHERE used_at = ''",
        )
        .unwrap();
    store.close();
    assert_eq!(again.patient_sign_in(&expiring).status, 401);

    // Officer password guessing (a server of its own: the address limit above is in memory):
    // the fifth failure locks the account, and the lock is stored, so the right password and
    // code are refused even by a restarted server.
    let guessing = site.serve(&[]);
    let mut o = guessing.client();
    for i in 0..5 {
        let r = o.officer_sign_in("wrong password", &site.totp_now());
        let expect = if i == 4 { 429 } else { 401 };
        assert_eq!(r.status, expect, "attempt {i}: {}", r.body);
        if i == 4 {
            assert!(r.body.contains("This account is locked"), "{}", r.body);
        }
    }
    drop(guessing);
    let restarted = site.serve(&[]);
    let r = restarted
        .client()
        .officer_sign_in(OFFICER_PASSWORD, &site.totp_now());
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("This account is locked"), "{}", r.body);

    // Code guessing from one address: after the lockout a valid code is refused too.
    let server2 = site.serve(&["--tree-heads", "heads2.jsonl"]);
    let mut g = server2.client();
    for i in 0..5 {
        let r = g.patient_sign_in(&format!("AAAA-BBBB-CCC{}", ["D", "E", "F", "G", "H"][i]));
        assert_eq!(r.status, 401, "guess {i}");
    }
    let valid = site.code(PATIENT_C);
    let r = g.patient_sign_in(&valid);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("Too many attempts"));
}

#[test]
fn plain_http_is_refused_off_loopback_and_https_sets_secure_cookies() {
    let site = Site::new();
    let (rc, out, err) = veil(site.path(), &["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(rc, 2, "{out}{err}");
    assert!(
        err.contains("--listen 0.0.0.0:0: plain HTTP is refused") && err.contains("--tls-cert"),
        "{err}"
    );
    let (rc, _, err) = veil(
        site.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "missing.pem",
            "--tls-key",
            "missing.key",
        ],
    );
    assert_eq!(rc, 2);
    assert!(err.contains("missing.pem"), "{err}");
    let st = std::process::Command::new("openssl")
        .current_dir(site.path())
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "tls.key",
            "-out",
            "tls.pem",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .output()
        .expect("openssl (scripts/setup.d/portal.sh installs it)");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let server = site.serve(&["--tls-cert", "tls.pem", "--tls-key", "tls.key"]);
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "-D",
            "-",
            "-o",
            "/dev/null",
            &format!("{}/sign-in", server.base),
        ])
        .output()
        .expect("curl (scripts/setup.d/portal.sh installs it)");
    let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(headers.starts_with("http/1.1 200"), "{headers}");
    assert!(
        headers.contains("set-cookie: __host-veil_session=")
            && headers.contains("; secure")
            && headers.contains("strict-transport-security"),
        "{headers}"
    );
}

/// A fresh PostgreSQL database from VEIL_TEST_POSTGRES_URL (scripts/setup.d/postgres.sh;
/// required when CI=true), or None on a developer box without one.
fn postgres_store(tag: &str) -> Option<String> {
    let Ok(admin) = std::env::var("VEIL_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true needs VEIL_TEST_POSTGRES_URL"
        );
        eprintln!("SKIPPED: the portal on PostgreSQL (no VEIL_TEST_POSTGRES_URL)");
        return None;
    };
    let name = format!("veil_portal_{tag}_{}", std::process::id());
    Some(common::fresh_postgres_db(&admin, &name))
}

#[test]
fn the_portal_runs_on_postgresql() {
    let Some(pg) = postgres_store("flow") else {
        return;
    };
    let site = Site::new();
    let d = site.path();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--db", pg.as_str()]);
        let (rc, out, err) = veil_env(d, &all, &[("VEIL_OFFICER_PASSWORD", OFFICER_PASSWORD)]);
        assert!(
            rc == 0 || (rc == 3 && args[0] == "release"),
            "{args:?}: {out}{err}"
        );
        out
    };
    run(&[
        "recipient",
        "add",
        HOSTILE_RECIPIENT,
        "--purpose",
        "commercial-ai-training",
        "--contact",
        "dpo@acme.test",
    ]);
    run(&[
        "consent",
        "set",
        PATIENT_A,
        "--purpose",
        "commercial-ai-training",
        "--state",
        "granted",
    ]);
    run(&[
        "release",
        site.input.to_str().unwrap(),
        "--recipient",
        HOSTILE_RECIPIENT,
        "--purpose",
        "commercial-ai-training",
        "--out",
        "pg-1",
    ]);
    let officer = run(&["portal", "officer", "add", OFFICER]);
    let secret = officer
        .lines()
        .find_map(|l| l.trim().strip_prefix("TOTP secret: "))
        .unwrap()
        .to_string();
    let code = run(&["portal", "code", PATIENT_A]).trim().to_string();
    let server = site.serve(&["--store", &pg]);
    let mut p = server.client();
    assert_eq!(p.patient_sign_in(&code).location, "/me");
    let page = p.get("/me/disclosures");
    assert!(
        page.body.contains("Acme &lt;script&gt;")
            && page.body.contains("Confirmed")
            && page.body.contains("(4)"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("demo-lab"),
        "the SQLite store's releases are not in this one"
    );
    let consent = p.get("/me/consent");
    let done = p.post(
        "/me/consent",
        &[
            ("csrf", &consent.csrf()),
            ("purpose", "commercial-ai-training"),
        ],
    );
    assert!(done.body.contains("dpo@acme.test"), "{}", done.body);
    assert!(run(&["consent", "show", PATIENT_A]).contains("withdrawn"));
    let mut o = server.client();
    let totp = totp_code(&secret);
    assert_eq!(
        o.officer_sign_in(OFFICER_PASSWORD, &totp).location,
        "/office"
    );
    let w = o.get("/office/withdrawals");
    assert!(w.body.contains("Mark C-"), "{}", w.body);
    assert!(o.get("/office/audit").body.contains("<td>withdraw</td>"));
}
