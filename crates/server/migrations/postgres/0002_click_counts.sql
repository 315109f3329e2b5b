-- Clicks are counted as they are written, so that neither redirects nor statistics pay for
-- scanning click rows. See the SQLite migration of the same number for the reasons.

-- One row per link, day and channel ('' where there is none). A unique click is the first
-- click of a visitor on a link on a day.
CREATE TABLE click_counts (
    link_id        TEXT    NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    day            BIGINT  NOT NULL,
    channel        TEXT    NOT NULL,
    clicks         BIGINT  NOT NULL,
    unique_clicks  BIGINT  NOT NULL,
    previews       BIGINT  NOT NULL,
    PRIMARY KEY (link_id, day, channel)
);

-- The visitors already seen per day and link (only the last two days are kept).
CREATE TABLE click_visitors (
    day      BIGINT  NOT NULL,
    link_id  TEXT    NOT NULL,
    visitor  BYTEA   NOT NULL,
    PRIMARY KEY (day, link_id, visitor)
);

-- The click log, without a secondary index or a foreign key (see SQLite's 0002).
CREATE TABLE click_log (
    id       TEXT    NOT NULL PRIMARY KEY,
    link_id  TEXT    NOT NULL,
    channel  TEXT,
    kind     TEXT    NOT NULL CHECK (kind IN ('click', 'preview')),
    at       BIGINT  NOT NULL,
    visitor  BYTEA
);

INSERT INTO click_log (id, link_id, channel, kind, at, visitor)
SELECT id, link_id, channel, kind, at,
       CASE WHEN visitor ~ '^([0-9a-f]{2})+$' THEN decode(visitor, 'hex') END
FROM clicks;

INSERT INTO click_counts (link_id, day, channel, clicks, unique_clicks, previews)
SELECT link_id, day, COALESCE(channel, ''),
       COUNT(*) FILTER (WHERE kind = 'click'),
       COUNT(*) FILTER (WHERE kind = 'click' AND visitor IS NOT NULL AND seen = 1),
       COUNT(*) FILTER (WHERE kind = 'preview')
FROM (SELECT link_id, day, channel, kind, visitor,
             ROW_NUMBER() OVER (PARTITION BY link_id, day, kind, visitor ORDER BY id) AS seen
      FROM clicks) AS c
GROUP BY link_id, day, COALESCE(channel, '');

INSERT INTO click_visitors (day, link_id, visitor)
SELECT DISTINCT day, link_id, decode(visitor, 'hex') FROM clicks
WHERE kind = 'click' AND visitor ~ '^([0-9a-f]{2})+$'
  AND day >= (SELECT MAX(day) - 1 FROM clicks);

DROP TABLE clicks;
ALTER TABLE click_log RENAME TO clicks;
ALTER INDEX click_log_pkey RENAME TO clicks_pkey;
