-- Security alerts (R5, R17). The detectors read the connection log after a
-- stored cursor; an instance advances the cursor with a compare-and-set in
-- the transaction that records its alerts, so each event is examined once
-- however many instances run. A new installation starts after the events
-- already recorded (an upgrade must not raise alerts for old history).
CREATE TABLE job_cursors (
    name TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
INSERT INTO job_cursors (name, last_seq) SELECT 'alerts', COALESCE(MAX(seq), 0) FROM events;

-- One alert per detector and subject (an account, an address) per period.
CREATE TABLE alert_last (
    detector TEXT NOT NULL,
    subject TEXT NOT NULL,
    raised_at BIGINT NOT NULL,
    PRIMARY KEY (detector, subject)
);
