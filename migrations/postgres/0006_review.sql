-- Yearly review reminders (R13): one row per partner, deadline and kind, so
-- that each reminder is sent once even with several instances.
CREATE TABLE review_reminders (
    partner_id TEXT NOT NULL,
    deadline TEXT NOT NULL,
    kind TEXT NOT NULL,
    sent_at BIGINT NOT NULL,
    PRIMARY KEY (partner_id, deadline, kind)
);
