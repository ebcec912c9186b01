-- Veil store schema, version 1. Portable SQL: the same text runs on SQLite and PostgreSQL.
-- Only TEXT and BIGINT columns; binary values (ciphertexts, hashes, signatures) are base64 or hex.
-- Identifying values are never stored in clear: *_enc columns hold XChaCha20-Poly1305 ciphertexts,
-- *_ref columns hold keyed hashes used for lookup.

CREATE TABLE store_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE patients (
    patient_ref TEXT PRIMARY KEY,
    patient_id_enc TEXT NOT NULL,
    issuer_enc TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE consent_records (
    id BIGINT PRIMARY KEY,
    patient_ref TEXT NOT NULL REFERENCES patients (patient_ref),
    purpose TEXT NOT NULL,
    state TEXT NOT NULL,
    scope_modalities TEXT NOT NULL,
    scope_from TEXT NOT NULL,
    scope_to TEXT NOT NULL,
    effective_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    source TEXT NOT NULL,
    evidence_enc TEXT NOT NULL
);
CREATE INDEX consent_records_by_patient ON consent_records (patient_ref, purpose, id);

CREATE TABLE recipients (
    name TEXT PRIMARY KEY,
    purposes TEXT NOT NULL,
    contact TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE releases (
    id TEXT PRIMARY KEY,
    recipient TEXT NOT NULL REFERENCES recipients (name),
    purpose TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    veil_version TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    released BIGINT NOT NULL,
    excluded BIGINT NOT NULL,
    held_back BIGINT NOT NULL
);

CREATE TABLE ledger (
    seq BIGINT PRIMARY KEY,
    release_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    purpose TEXT NOT NULL,
    consent_ref TEXT NOT NULL,
    patient_ref TEXT NOT NULL,
    patient_pseudonym TEXT NOT NULL,
    original_study_enc TEXT NOT NULL,
    original_series_enc TEXT NOT NULL,
    original_sop_enc TEXT NOT NULL,
    released_study TEXT NOT NULL,
    released_series TEXT NOT NULL,
    released_sop TEXT NOT NULL,
    output_path TEXT NOT NULL,
    output_sha256 TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    veil_version TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    entry_hash TEXT NOT NULL
);
CREATE INDEX ledger_by_patient ON ledger (patient_ref);
CREATE INDEX ledger_by_recipient ON ledger (recipient);
CREATE INDEX ledger_by_released_sop ON ledger (released_sop);
CREATE INDEX ledger_by_released_study ON ledger (released_study);

CREATE TABLE ledger_checkpoints (
    seq BIGINT PRIMARY KEY,
    entry_hash TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    public_key TEXT NOT NULL,
    signature TEXT NOT NULL
);
