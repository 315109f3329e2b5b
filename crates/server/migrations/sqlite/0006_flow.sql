-- The Start flow: updates received from the messengers (the inbox), contacts, Starts,
-- scenario versions, and the work they cause (messages to send, deliveries to a CRM,
-- call_node runs). Keep in step with ../postgres/0006_flow.sql.
--
-- Work tables (inbox, messages, deliveries) share one shape: `status` pending/done/failed,
-- `attempts` (claims so far), `next_at` (when a pending row is due; NULL otherwise) and
-- `locked_until` (a claim's lease: another claim skips the row until then). A worker that dies
-- leaves its lease to run out, and the row is claimed again.
--
-- Everything hangs off a bot (ON DELETE CASCADE), and a contact's Starts, messages,
-- deliveries and run outcomes off the contact, so that deleting either deletes its rows.

-- The bot's sealed signing secret (deliveries are signed with it, Standard Webhooks).
ALTER TABLE bots ADD COLUMN signing_secret BLOB;

-- Updates as received, deduplicated on the platform's event id, stored before the webhook
-- is answered. `seq` orders them as received.
CREATE TABLE inbox (
    seq           INTEGER PRIMARY KEY,
    id            TEXT    NOT NULL UNIQUE,
    workspace_id  TEXT    NOT NULL,
    bot_id        TEXT    NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    channel       TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    -- Where the update came from: a chat's updates are processed one at a time, in order.
    chat_id       TEXT    NOT NULL,
    event         TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER,
    locked_until  INTEGER,
    error         TEXT,
    received_at   INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (bot_id, channel, event_id)
) STRICT;
CREATE INDEX inbox_due ON inbox (next_at) WHERE status = 'pending';
CREATE INDEX inbox_chat ON inbox (bot_id, channel, chat_id, seq);

CREATE TABLE contacts (
    id               TEXT    NOT NULL PRIMARY KEY,
    workspace_id     TEXT    NOT NULL,
    bot_id           TEXT    NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    channel          TEXT    NOT NULL,
    chat_id          TEXT    NOT NULL,
    user_id          TEXT,
    name             TEXT,
    language         TEXT,
    external_id      TEXT,
    phone            TEXT,
    email            TEXT,
    variables        TEXT    NOT NULL,
    fields           TEXT    NOT NULL,
    subscribed       INTEGER NOT NULL CHECK (subscribed IN (0, 1)),
    -- No foreign key on links: a deleted link's attribution stays as it was.
    first_link_id    TEXT,
    last_link_id     TEXT,
    utm              TEXT    NOT NULL,
    pending_param    TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    last_seen_at     INTEGER NOT NULL,
    last_inbound_at  INTEGER,
    UNIQUE (bot_id, channel, chat_id)
) STRICT;
-- Listing: newest first within a bot. Lookups by the CRM's id.
CREATE INDEX contacts_bot_created ON contacts (bot_id, created_at DESC, id DESC);
CREATE INDEX contacts_external ON contacts (bot_id, external_id) WHERE external_id IS NOT NULL;

CREATE TABLE starts (
    id              TEXT    NOT NULL PRIMARY KEY,
    workspace_id    TEXT    NOT NULL,
    bot_id          TEXT    NOT NULL,
    contact_id      TEXT    NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    link_id         TEXT,
    click_id        TEXT,
    entry_point_id  TEXT,
    utm             TEXT    NOT NULL,
    param           TEXT,
    node            TEXT    NOT NULL,
    unattributed    TEXT,
    at              INTEGER NOT NULL
) STRICT;
CREATE INDEX starts_contact ON starts (contact_id, at);
CREATE INDEX starts_bot ON starts (bot_id, at);

-- The outbox. `seq` orders a contact's messages as written: only the oldest pending one of
-- a contact is claimed, so that none overtakes another. `channel` and `chat_id` are the
-- contact's (which never change), kept here so that a claim reads one table.
CREATE TABLE messages (
    seq           INTEGER PRIMARY KEY,
    id            TEXT    NOT NULL UNIQUE,
    workspace_id  TEXT    NOT NULL,
    bot_id        TEXT    NOT NULL,
    contact_id    TEXT    NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    channel       TEXT    NOT NULL,
    chat_id       TEXT    NOT NULL,
    message       TEXT    NOT NULL,
    run_id        TEXT,
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER,
    locked_until  INTEGER,
    error         TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    sent_at       INTEGER
) STRICT;
CREATE INDEX messages_due ON messages (next_at) WHERE status = 'pending';
CREATE INDEX messages_contact ON messages (contact_id, seq);

CREATE TABLE deliveries (
    id            TEXT    NOT NULL PRIMARY KEY,
    workspace_id  TEXT    NOT NULL,
    bot_id        TEXT    NOT NULL,
    contact_id    TEXT    NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    kind          TEXT    NOT NULL,
    method        TEXT    NOT NULL,
    url           TEXT    NOT NULL,
    headers       TEXT    NOT NULL,
    data          TEXT    NOT NULL,
    continuation  TEXT,
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER,
    locked_until  INTEGER,
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE status = 'pending';
CREATE INDEX deliveries_workspace_created ON deliveries (workspace_id, created_at DESC, id DESC);
CREATE INDEX deliveries_bot_created ON deliveries (bot_id, created_at DESC, id DESC);
CREATE INDEX deliveries_contact ON deliveries (contact_id);

-- One row per attempt; keyed by its time, so that recording the same attempt twice (a
-- commit repeated after a lost claim) keeps one.
CREATE TABLE delivery_attempts (
    delivery_id  TEXT    NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    at           INTEGER NOT NULL,
    status       INTEGER,
    error        TEXT,
    duration_ms  INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, at)
) STRICT, WITHOUT ROWID;

CREATE TABLE scenario_versions (
    bot_id        TEXT    NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    workspace_id  TEXT    NOT NULL,
    document      TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (bot_id, version)
) STRICT;

CREATE TABLE runs (
    id            TEXT    NOT NULL PRIMARY KEY,
    workspace_id  TEXT    NOT NULL,
    bot_id        TEXT    NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    node          TEXT    NOT NULL,
    variables     TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX runs_bot ON runs (bot_id, created_at);

CREATE TABLE run_recipients (
    run_id      TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    contact_id  TEXT    NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    status      TEXT    NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    reason      TEXT,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (run_id, contact_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX run_recipients_contact ON run_recipients (contact_id);
