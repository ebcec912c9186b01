//! Opens fresh stores on both back-ends: a SQLite file in a temp dir, and a new database on the
//! PostgreSQL server started by scripts/setup.d/postgres.sh (VEIL_TEST_POSTGRES_URL).

#![allow(dead_code)]

use veil_keys::Key;
use veil_store::consent::{ConsentInput, ConsentState, Scope};
use veil_store::Store;

pub struct Fresh {
    pub url: String,
    pub name: &'static str,
    _dir: Option<tempfile::TempDir>,
}

/// The back-ends to run on. PostgreSQL is required when CI=true.
pub fn backends(test: &str) -> Vec<Fresh> {
    let dir = tempfile::tempdir().unwrap();
    let mut v = vec![Fresh {
        url: dir.path().join("veil.db").display().to_string(),
        name: "sqlite",
        _dir: Some(dir),
    }];
    match std::env::var("VEIL_TEST_POSTGRES_URL") {
        Ok(admin) if !admin.is_empty() => {
            let db = format!("veil_{}_{}", test, std::process::id());
            let admin_store =
                Store::open(Some(&admin), None).expect("connect to the test PostgreSQL server");
            admin_store
                .execute_raw(&format!("DROP DATABASE IF EXISTS {db}"))
                .unwrap();
            admin_store
                .execute_raw(&format!("CREATE DATABASE {db}"))
                .unwrap();
            admin_store.close();
            let base = admin.rsplit_once('/').unwrap().0;
            v.push(Fresh {
                url: format!("{base}/{db}"),
                name: "postgres",
                _dir: None,
            });
        }
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true but VEIL_TEST_POSTGRES_URL is not set: source scripts/setup.d/postgres.sh");
            }
            eprintln!("note: VEIL_TEST_POSTGRES_URL unset, testing SQLite only");
        }
    }
    v
}

pub fn key() -> Key {
    Key::from_bytes([42; 32])
}

/// A consent statement for all imaging, stated now, with an evidence reference.
pub fn consent(pid: &str, purpose: &str, state: ConsentState) -> ConsentInput {
    ConsentInput {
        patient_id: pid.into(),
        issuer: String::new(),
        purpose: purpose.into(),
        state,
        scope: Scope::default(),
        effective_at: String::new(),
        valid_from: String::new(),
        valid_until: String::new(),
        source: "test".into(),
        evidence: format!("form-{pid}"),
    }
}
