-- Clicks are counted as they are written, so that neither redirects nor statistics pay for
-- scanning click rows.
--
-- click_counts: one row per link, day and channel ('' where there is none: a preview of a
-- many-channel link), added to by the click writer in the same transaction as the clicks.
-- A unique click is the first click of a visitor on a link on a day (visitor hashes rotate
-- daily), so unique counts add up over channels, days and links like the other counts.
CREATE TABLE click_counts (
    link_id        TEXT    NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    day            INTEGER NOT NULL,
    channel        TEXT    NOT NULL,
    clicks         INTEGER NOT NULL,
    unique_clicks  INTEGER NOT NULL,
    previews       INTEGER NOT NULL,
    PRIMARY KEY (link_id, day, channel)
) STRICT, WITHOUT ROWID;

-- The visitors already seen per day and link: what makes a click unique. Only the last two
-- days are needed (a hash is never seen again after its day); the writer deletes older ones.
CREATE TABLE click_visitors (
    day      INTEGER NOT NULL,
    link_id  TEXT    NOT NULL,
    visitor  BLOB    NOT NULL,
    PRIMARY KEY (day, link_id, visitor)
) STRICT, WITHOUT ROWID;

-- The click log: one row per redirect or preview fetch, keyed by its time-prefixed id (so new
-- rows land at the end of the one tree), with only what the link does not already say. No
-- secondary index and no foreign key: an index on the link would cost every click a write at
-- a random place in a tree as large as the log. A deleted link's rows stay in the log,
-- unreachable (reads join the link); its counts go with it.
CREATE TABLE click_log (
    id       TEXT    NOT NULL PRIMARY KEY,
    link_id  TEXT    NOT NULL,
    channel  TEXT,
    kind     TEXT    NOT NULL CHECK (kind IN ('click', 'preview')),
    at       INTEGER NOT NULL,
    visitor  BLOB
) STRICT, WITHOUT ROWID;

INSERT INTO click_log (id, link_id, channel, kind, at, visitor)
SELECT id, link_id, channel, kind, at, unhex(visitor) FROM clicks;

INSERT INTO click_counts (link_id, day, channel, clicks, unique_clicks, previews)
SELECT link_id, day, COALESCE(channel, ''),
       SUM(kind = 'click'), SUM(kind = 'click' AND visitor IS NOT NULL AND seen = 1),
       SUM(kind = 'preview')
FROM (SELECT link_id, day, channel, kind, visitor,
             ROW_NUMBER() OVER (PARTITION BY link_id, day, kind, visitor ORDER BY id) AS seen
      FROM clicks)
GROUP BY link_id, day, COALESCE(channel, '');

INSERT INTO click_visitors (day, link_id, visitor)
SELECT DISTINCT day, link_id, unhex(visitor) FROM clicks
WHERE kind = 'click' AND unhex(visitor) IS NOT NULL
  AND day >= (SELECT MAX(day) - 1 FROM clicks);

DROP TABLE clicks;
ALTER TABLE click_log RENAME TO clicks;
