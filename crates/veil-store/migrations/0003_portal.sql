-- The web portal (`veil serve`, crates/veil-portal). Portable SQL like the rest.
-- One-time access codes for patients: found by a keyed hash of the code (the code itself is
-- never stored); the patient it opens is sealed. Single use (used_at set once), expiring.
CREATE TABLE portal_codes (
    code_ref TEXT PRIMARY KEY,
    patient_ref TEXT NOT NULL,
    patient_id_enc TEXT NOT NULL,
    issuer_enc TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT NOT NULL
);
-- Privacy-office accounts: argon2 password hash (PHC string), sealed TOTP secret, the last TOTP
-- time step accepted (a code is not accepted twice) and the lockout after failed sign-ins.
CREATE TABLE portal_officers (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    totp_secret_enc TEXT NOT NULL,
    created_at TEXT NOT NULL,
    failed_sign_ins BIGINT NOT NULL,
    locked_until TEXT NOT NULL,
    last_totp_step BIGINT NOT NULL
);
-- Who did what in the portal, when. Never identifying values: patients appear by their short
-- keyed reference.
CREATE TABLE portal_audit (
    id BIGINT PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
-- Breaches the privacy office recorded: the recipient and the time from which its copies count
-- as exposed. Patients whose data that recipient received see a notice.
CREATE TABLE portal_breaches (
    id BIGINT PRIMARY KEY,
    recipient TEXT NOT NULL,
    since TEXT NOT NULL,
    description TEXT NOT NULL,
    reported_at TEXT NOT NULL,
    reported_by TEXT NOT NULL
);
-- Withdrawals whose recipients the privacy office has asked to delete (consent record id).
CREATE TABLE portal_withdrawal_notices (
    consent_id BIGINT PRIMARY KEY,
    notified_at TEXT NOT NULL,
    notified_by TEXT NOT NULL
);
CREATE INDEX portal_audit_by_time ON portal_audit (at);
CREATE INDEX released_studies_by_patient ON released_studies (patient_ref);
