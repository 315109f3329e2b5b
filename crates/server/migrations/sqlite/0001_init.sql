-- botlink, SQLite. Times are epoch milliseconds, days are days since the Unix epoch (UTC),
-- JSON is TEXT, booleans are INTEGER 0/1. Keep in step with ../postgres/0001_init.sql.

CREATE TABLE workspaces (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id            TEXT    NOT NULL PRIMARY KEY,
    workspace_id  TEXT    NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'links', 'notify')),
    key_hash      TEXT    NOT NULL UNIQUE,
    key_prefix    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER
) STRICT;
CREATE INDEX api_keys_workspace ON api_keys (workspace_id, created_at);

CREATE TABLE bots (
    id            TEXT    NOT NULL PRIMARY KEY,
    workspace_id  TEXT    NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (workspace_id, name)
) STRICT;

CREATE TABLE bot_channels (
    bot_id      TEXT    NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    channel     TEXT    NOT NULL,
    settings    TEXT    NOT NULL,
    secrets     BLOB,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (bot_id, channel)
) STRICT;

CREATE TABLE entry_points (
    id             TEXT    NOT NULL PRIMARY KEY,
    workspace_id   TEXT    NOT NULL,
    bot_id         TEXT    NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    key            TEXT    NOT NULL,
    node           TEXT,
    default_field  TEXT,
    utm            TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (bot_id, key)
) STRICT;

CREATE TABLE links (
    id              TEXT    NOT NULL PRIMARY KEY,
    workspace_id    TEXT    NOT NULL,
    bot_id          TEXT    NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    entry_point_id  TEXT    REFERENCES entry_points (id) ON DELETE SET NULL,
    code            TEXT    NOT NULL UNIQUE,
    slug            TEXT    UNIQUE,
    title           TEXT,
    channels        TEXT    NOT NULL,
    scheme          TEXT    NOT NULL,
    signed          INTEGER NOT NULL CHECK (signed IN (0, 1)),
    payload         TEXT    NOT NULL,
    deep_links      TEXT    NOT NULL,
    utm_source      TEXT,
    utm_medium      TEXT,
    utm_campaign    TEXT,
    utm_term        TEXT,
    utm_content     TEXT,
    expires_at      INTEGER,
    max_clicks      INTEGER,
    clicks_used     INTEGER NOT NULL DEFAULT 0,
    disabled        INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
-- Listing: newest first within a workspace. Cascades: by bot, by entry point.
CREATE INDEX links_workspace_created ON links (workspace_id, created_at DESC, id DESC);
CREATE INDEX links_bot ON links (bot_id, created_at);
CREATE INDEX links_entry_point ON links (entry_point_id);

-- Append-only; one row per redirect or preview fetch, keyed by its click id. Click ids begin
-- with their time, so new rows land at the end of the key (WITHOUT ROWID: the table is that
-- one tree, not a rowid tree plus an index on id). No foreign key on workspace, bot or
-- entry point: the link's cascade removes a bot's clicks, and an entry point's removal
-- leaves its past clicks counted for the bot.
CREATE TABLE clicks (
    id              TEXT    NOT NULL PRIMARY KEY,
    link_id         TEXT    NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    workspace_id    TEXT    NOT NULL,
    bot_id          TEXT    NOT NULL,
    entry_point_id  TEXT,
    channel         TEXT,
    kind            TEXT    NOT NULL CHECK (kind IN ('click', 'preview')),
    at              INTEGER NOT NULL,
    day             INTEGER NOT NULL,
    visitor         TEXT,
    utm_source      TEXT,
    utm_medium      TEXT,
    utm_campaign    TEXT
) STRICT, WITHOUT ROWID;
CREATE INDEX clicks_link_day ON clicks (link_id, day);
CREATE INDEX clicks_bot_day ON clicks (bot_id, day);
CREATE INDEX clicks_entry_point_day ON clicks (entry_point_id, day);
