//! Shared by the portal's tests (tests/portal.rs, tests/portal_browser.rs): a demo store made by
//! the real `veil demo`, set up further through the real CLI (a recipient whose name carries
//! markup, consents, a release), the real `veil serve` on it, and a small HTTP client that keeps
//! the session cookie and never follows redirects.

// Each test crate compiles this module and uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// Demo patients (crates/veil-app/src/demo.rs): A signs in; C is "another patient" whose data
/// must never reach A; both granted commercial AI training below, so both have two recipients.
pub const PATIENT_A: &str = "MRN-40071233";
pub const PATIENT_C: &str = "MRN-40102276";
/// Name parts of patient C in the demo's source images.
pub const PATIENT_C_NAMES: [&str; 2] = ["Vandersloot", "Imogen"];
/// A recipient name with markup: it must come out escaped everywhere.
pub const HOSTILE_RECIPIENT: &str =
    "Acme <script>alert('pwned')</script><img src=x onerror=alert(1)> AI";
pub const OFFICER: &str = "alice";
pub const OFFICER_PASSWORD: &str = "correct horse battery staple";

/// Runs `veil` in `dir` with the store's key; (exit code, stdout, stderr).
pub fn veil(dir: &Path, args: &[&str]) -> (i32, String, String) {
    veil_env(dir, args, &[])
}

pub fn veil_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_veil"));
    c.current_dir(dir)
        .env("VEIL_DB", dir.join("veil.db"))
        .env("VEIL_KEY_FILE", dir.join("demo.key"))
        .env_remove("VEIL_KEY")
        .env_remove("VEIL_CONFIG")
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run veil");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (rc, out, err) = veil(dir, args);
    assert_eq!(rc, 0, "veil {args:?}: {out}{err}");
    out
}

/// The current TOTP code for a base32 secret as `veil portal officer add` prints it (SHA-1,
/// 6 digits, 30-second steps, one step of skew).
pub fn totp_code(secret: &str) -> String {
    let secret = totp_rs::Secret::Encoded(secret.to_string())
        .to_bytes()
        .unwrap();
    totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        secret,
        None,
        String::new(),
    )
    .unwrap()
    .generate_current()
    .unwrap()
}

/// `veil release INPUT` to the hostile recipient for commercial AI training into OUT: exit 0, or
/// 3 (the demo's export holds a file the release holds back by design); its stdout.
pub fn release(dir: &Path, input: &Path, out: &str) -> String {
    let (rc, stdout, err) = veil(
        dir,
        &[
            "release",
            input.to_str().unwrap(),
            "--recipient",
            HOSTILE_RECIPIENT,
            "--purpose",
            "commercial-ai-training",
            "--out",
            out,
        ],
    );
    assert!(rc == 0 || rc == 3, "release: exit {rc}: {stdout}{err}");
    stdout
}

/// The demo (run once per test process): its key, store and synthetic export.
fn demo() -> &'static Path {
    static DEMO: OnceLock<PathBuf> = OnceLock::new();
    DEMO.get_or_init(|| {
        let root = tempfile::Builder::new()
            .prefix("veil-portal-demo")
            .tempdir()
            .unwrap()
            .keep();
        let dir = root.join("demo");
        let out = Command::new(env!("CARGO_BIN_EXE_veil"))
            .args(["demo", "--dir", dir.to_str().unwrap()])
            .env_remove("VEIL_DB")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "veil demo: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// A store of its own for one test: the demo's store and key, plus a recipient with a hostile
/// name for commercial AI training, consent for it from patients A and C, and a release to it.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub totp_secret: String,
    /// The demo's synthetic export (shared, read only).
    pub input: PathBuf,
}

impl Site {
    pub fn new() -> Site {
        let demo = demo();
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(demo).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            if name.starts_with("veil.db") || name == "demo.key" {
                std::fs::copy(&p, dir.path().join(&name)).unwrap();
            }
        }
        let d = dir.path();
        ok(
            d,
            &[
                "recipient",
                "add",
                HOSTILE_RECIPIENT,
                "--purpose",
                "commercial-ai-training",
                "--contact",
                "dpo@acme.test",
            ],
        );
        for p in [PATIENT_A, PATIENT_C] {
            ok(
                d,
                &[
                    "consent",
                    "set",
                    p,
                    "--purpose",
                    "commercial-ai-training",
                    "--state",
                    "granted",
                ],
            );
        }
        let input = demo.join("input/export");
        release(d, &input, "acme-1");
        let (rc, out, err) = veil_env(
            d,
            &["portal", "officer", "add", OFFICER],
            &[("VEIL_OFFICER_PASSWORD", OFFICER_PASSWORD)],
        );
        assert_eq!(rc, 0, "{out}{err}");
        let totp_secret = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("TOTP secret: "))
            .unwrap_or_else(|| panic!("no TOTP secret in {out}"))
            .to_string();
        assert!(out.contains("otpauth://totp/"), "{out}");
        Site {
            dir,
            totp_secret,
            input,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A new one-time code for a patient, from `veil portal code`.
    pub fn code(&self, patient: &str) -> String {
        let out = ok(self.path(), &["portal", "code", patient]);
        out.trim().to_string()
    }

    /// The current TOTP code of the officer.
    pub fn totp_now(&self) -> String {
        totp_code(&self.totp_secret)
    }

    /// Every identifying value of patient C that the store holds and a page could show: ID,
    /// short reference, pseudonyms and released study UIDs, original study UIDs.
    pub fn identifiers_of(&self, patient: &str) -> Vec<String> {
        let out = ok(self.path(), &["disclosures", patient, "--format", "json"]);
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut ids = vec![
            patient.to_string(),
            doc["patient_ref"].as_str().unwrap().to_string(),
        ];
        for d in doc["disclosures"].as_array().unwrap() {
            for k in [
                "patient_pseudonym",
                "released_study_uid",
                "original_study_uid",
            ] {
                ids.push(d[k].as_str().unwrap().to_string());
            }
        }
        assert!(ids.len() > 2, "patient has disclosures: {out}");
        ids.sort();
        ids.dedup();
        ids
    }

    pub fn serve(&self, extra: &[&str]) -> Server {
        Server::start(self.path(), extra)
    }
}

/// A running `veil serve`; stopped when dropped. Its stderr goes to a file the tests read.
pub struct Server {
    child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Server {
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = dir.join(format!("serve-{n}.log"));
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "-vv"];
        args.extend_from_slice(extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_veil"))
            .current_dir(dir)
            .env("VEIL_DB", dir.join("veil.db"))
            .env("VEIL_KEY_FILE", dir.join("demo.key"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| {
                panic!(
                    "veil serve did not start: {line} {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .trim_end_matches('/')
            .to_string();
        Server { child, base, log }
    }

    pub fn client(&self) -> Client {
        Client {
            base: self.base.clone(),
            cookie: None,
            agent: ureq::AgentBuilder::new().redirects(0).build(),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response: status, `Location`, body, and every header as (name, value).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub location: String,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of the page's first `csrf` hidden field.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token")
            + 19;
        self.body[at..at + self.body[at..].find('"').unwrap()].to_string()
    }
}

/// An HTTP client with one session cookie, no redirects followed.
pub struct Client {
    pub base: String,
    pub cookie: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    fn finish(&mut self, r: Result<ureq::Response, ureq::Error>) -> Reply {
        let resp = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("request failed: {e}"),
        };
        let headers: Vec<(String, String)> = resp
            .headers_names()
            .iter()
            .flat_map(|n| {
                resp.all(n)
                    .into_iter()
                    .map(|v| (n.clone(), v.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        if let Some((_, c)) = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        {
            self.cookie = Some(c.split(';').next().unwrap().to_string());
        }
        let status = resp.status();
        let location = resp.header("location").unwrap_or_default().to_string();
        let body = resp.into_string().unwrap_or_default();
        Reply {
            status,
            location,
            body,
            headers,
        }
    }

    pub fn get(&mut self, path: &str) -> Reply {
        let mut req = self.agent.get(&format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.set("Cookie", c);
        }
        let r = req.call();
        self.finish(r)
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        let mut req = self.agent.post(&format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.set("Cookie", c);
        }
        let r = req.send_form(form);
        self.finish(r)
    }

    /// Signs a patient in with `code` (fetching the form for its CSRF token first).
    pub fn patient_sign_in(&mut self, code: &str) -> Reply {
        let csrf = self.get("/sign-in").csrf();
        self.post("/sign-in", &[("csrf", &csrf), ("code", code)])
    }

    pub fn officer_sign_in(&mut self, password: &str, totp: &str) -> Reply {
        let csrf = self.get("/office/sign-in").csrf();
        self.post(
            "/office/sign-in",
            &[
                ("csrf", &csrf),
                ("name", OFFICER),
                ("password", password),
                ("totp", totp),
            ],
        )
    }
}
