-- Signed tree heads of the ledger's Merkle tree (RFC 9162): one per transaction that appends
-- entries, signed in that transaction. `frontier` is the tree's right edge at `size` (hex peaks),
-- a cache that lets the next head extend the tree without reading every entry; verification
-- never trusts it and recomputes every root from the entries.
CREATE TABLE ledger_tree_heads (
    size BIGINT PRIMARY KEY,
    root TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    public_key TEXT NOT NULL,
    signature TEXT NOT NULL,
    frontier TEXT NOT NULL
);
-- A patient's consent entries (to name the entry a release relies on): a partial index, so
-- release entries, the bulk of the ledger, add nothing to it.
CREATE INDEX ledger_consent_entries ON ledger (patient_ref) WHERE release_id = 'consent';
-- What the patient needs to tell two released studies apart (date, modality, description), for
-- the patient's own disclosure record only. Sealed like every identifying value; one row per
-- original study and modality, found by keyed hashes.
CREATE TABLE released_studies (
    detail_ref TEXT PRIMARY KEY,
    study_ref TEXT NOT NULL,
    patient_ref TEXT NOT NULL,
    study_date_enc TEXT NOT NULL,
    modality_enc TEXT NOT NULL,
    description_enc TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX released_studies_by_study ON released_studies (study_ref);
-- When a consent record is in force (FHIR Consent.provision.period; empty: unbounded), as
-- normalised UTC timestamps. A record out of force is ignored by decisions.
ALTER TABLE consent_records ADD COLUMN valid_from TEXT NOT NULL DEFAULT '';
ALTER TABLE consent_records ADD COLUMN valid_until TEXT NOT NULL DEFAULT '';
