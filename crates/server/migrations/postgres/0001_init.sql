-- botlink, PostgreSQL. Times are epoch milliseconds, days are days since the Unix epoch (UTC),
-- JSON is TEXT, booleans are BOOLEAN. Keep in step with ../sqlite/0001_init.sql.

CREATE TABLE workspaces (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT    NOT NULL PRIMARY KEY,
    workspace_id  TEXT    NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'links', 'notify')),
    key_hash      TEXT    NOT NULL UNIQUE,
    key_prefix    TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id, created_at);

CREATE TABLE bots (
    id            TEXT    NOT NULL PRIMARY KEY,
    workspace_id  TEXT    NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    UNIQUE (workspace_id, name)
);

CREATE TABLE bot_channels (
    bot_id      TEXT    NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    channel     TEXT    NOT NULL,
    settings    TEXT    NOT NULL,
    secrets     BYTEA,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (bot_id, channel)
);

CREATE TABLE entry_points (
    id             TEXT    NOT NULL PRIMARY KEY,
    workspace_id   TEXT    NOT NULL,
    bot_id         TEXT    NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    key            TEXT    NOT NULL,
    node           TEXT,
    default_field  TEXT,
    utm            TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    UNIQUE (bot_id, key)
);

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
    signed          BOOLEAN NOT NULL,
    payload         TEXT    NOT NULL,
    deep_links      TEXT    NOT NULL,
    utm_source      TEXT,
    utm_medium      TEXT,
    utm_campaign    TEXT,
    utm_term        TEXT,
    utm_content     TEXT,
    expires_at      BIGINT,
    max_clicks      BIGINT,
    clicks_used     BIGINT  NOT NULL DEFAULT 0,
    disabled        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);
-- Listing: newest first within a workspace. Cascades: by bot, by entry point.
CREATE INDEX links_workspace_created ON links (workspace_id, created_at DESC, id DESC);
CREATE INDEX links_bot ON links (bot_id, created_at);
CREATE INDEX links_entry_point ON links (entry_point_id);

-- Append-only; one row per redirect or preview fetch. No foreign key on workspace, bot or
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
    at              BIGINT  NOT NULL,
    day             BIGINT  NOT NULL,
    visitor         TEXT,
    utm_source      TEXT,
    utm_medium      TEXT,
    utm_campaign    TEXT
);
CREATE INDEX clicks_link_day ON clicks (link_id, day);
CREATE INDEX clicks_bot_day ON clicks (bot_id, day);
CREATE INDEX clicks_entry_point_day ON clicks (entry_point_id, day);
