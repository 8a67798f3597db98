-- Conventions, the current annex 1 of each partner, closures (R7–R12),
-- and the annex-2 / annex-3 contacts (R14).
ALTER TABLE partners ADD COLUMN siren TEXT;
ALTER TABLE partners ADD COLUMN convention_terminated_on TEXT;
ALTER TABLE partners ADD COLUMN termination_reason TEXT;
ALTER TABLE partners ADD COLUMN non_renewal_notified_on TEXT;

ALTER TABLE accounts ADD COLUMN closure_requested_on TEXT;
ALTER TABLE accounts ADD COLUMN closed_at BIGINT;
CREATE INDEX accounts_partner ON accounts(partner_id);

-- Only the current annex 1 is kept (R10).
CREATE TABLE annex1_current (
    partner_id TEXT PRIMARY KEY REFERENCES partners(id) ON DELETE CASCADE,
    transmitted_on TEXT NOT NULL,
    checksum TEXT NOT NULL,
    rows TEXT NOT NULL,
    applied_at BIGINT NOT NULL,
    operator TEXT NOT NULL
);

CREATE TABLE annex2 (
    partner_id TEXT PRIMARY KEY REFERENCES partners(id) ON DELETE CASCADE,
    habilitation_manager_name TEXT NOT NULL,
    habilitation_manager_email TEXT NOT NULL,
    security_officer_name TEXT NOT NULL,
    security_officer_email TEXT NOT NULL,
    transmitted_on TEXT NOT NULL
);

CREATE TABLE annex3 (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    habilitation_manager_name TEXT NOT NULL,
    habilitation_manager_email TEXT NOT NULL,
    security_officer_name TEXT NOT NULL,
    security_officer_email TEXT NOT NULL,
    technical_referents TEXT NOT NULL,
    transmitted_on TEXT NOT NULL
);
