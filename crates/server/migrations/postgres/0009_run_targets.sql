-- call_node runs for many recipients. Keep in step with ../sqlite/0009_run_targets.sql.
--
-- runs: a bulk run is answered at once and its recipients worked by a worker (the expander),
-- from `send_at` on (NULL: at once); `cancelled_at` stops what is not sent.
-- The same Idempotency-Key for the same bot answers the same run (`request_hash` tells a
-- repeated request from another one under the same key).
ALTER TABLE runs ADD COLUMN send_at BIGINT;
ALTER TABLE runs ADD COLUMN cancelled_at BIGINT;
ALTER TABLE runs ADD COLUMN idempotency_key TEXT;
ALTER TABLE runs ADD COLUMN request_hash TEXT;
CREATE UNIQUE INDEX runs_idempotency ON runs (bot_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- run_targets: each recipient of a run, in the order asked (`seq`): whom (an external id, or a
-- channel and chat id), the recipient's own variables, the contact it resolved to, and its
-- outcome: pending (not worked yet; leased to a worker until `locked_until`), queued (its
-- messages are in the outbox), sent, failed (`reason`: not_subscribed, unsubscribed, blocked,
-- outside_window, ...), skipped (`reason`: duplicate), cancelled. A contact's deletion takes its outcomes with it, as it
-- takes its messages.
CREATE TABLE run_targets (
    run_id       TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq          BIGINT NOT NULL,
    external_id  TEXT,
    channel      TEXT,
    chat_id      TEXT,
    variables    TEXT    NOT NULL,
    contact_id   TEXT    REFERENCES contacts (id) ON DELETE CASCADE,
    status       TEXT    NOT NULL
        CHECK (status IN ('pending', 'queued', 'sent', 'failed', 'skipped', 'cancelled')),
    reason       TEXT,
    locked_until BIGINT,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX run_targets_pending ON run_targets (run_id, seq) WHERE status = 'pending';
CREATE INDEX run_targets_contact ON run_targets (contact_id);
-- A contact is one recipient of a run: the second time it is asked for, it is skipped.
CREATE UNIQUE INDEX run_targets_once ON run_targets (run_id, contact_id)
    WHERE contact_id IS NOT NULL AND status <> 'skipped';
CREATE INDEX run_targets_status ON run_targets (run_id, status, seq);

-- The single-recipient runs made so far become runs of one target each.
INSERT INTO run_targets (run_id, seq, variables, contact_id, status, reason, updated_at)
SELECT run_id, ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY contact_id), '{}', contact_id,
       CASE status WHEN 'pending' THEN 'queued' WHEN 'done' THEN 'sent' ELSE 'failed' END,
       reason, updated_at
FROM run_recipients;
DROP TABLE run_recipients;
