-- The click log from this version on: a batch of clicks is one row per millisecond of its click
-- ids, each row one value holding those clicks, instead of a row per click; and the counts are
-- added from these rows, instead of from a second copy of each batch's counts.
--
-- Click ids begin with their time in milliseconds, so a click is found by reading the rows of
-- its millisecond: one, or two when a batch began in the millisecond that the batch before it
-- ended in. At thousands of clicks a second, a batch is a dozen rows appended at the end of the
-- table, where it was hundreds of inserts into a tree keyed by text plus a row of deltas as
-- large as the clicks: writing them was most of what a click cost. Ids that carry no time
-- (botlink makes none, but the store takes any) share the rows of `ms` -1.
--
-- `clicks` is the click writer's encoding (see click_log.rs): a version byte, then per click
-- the rest of its id, its link, channel, kind (and whether it was unique), time and visitor.
-- No foreign key, as for `clicks`: a deleted link's clicks stay, unreachable (reads join the
-- link), and are not counted. AUTOINCREMENT: `seq` only grows, even if the newest rows are
-- ever deleted, so that `click_log_folded` can say how far the counts have come.
--
-- The rows of `clicks` written before stay where they are and are read as before, and the
-- rows of `click_count_deltas` left from before are still added to the counts.
CREATE TABLE click_log (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    ms      INTEGER NOT NULL,
    clicks  BLOB    NOT NULL
) STRICT;
CREATE INDEX click_log_ms ON click_log (ms);

-- How far the click log has been added to click_counts: every row up to `seq`, added in the
-- same transaction that moved it, whichever process did it (so once).
CREATE TABLE click_log_folded (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 0),
    seq  INTEGER NOT NULL
) STRICT;
INSERT INTO click_log_folded (id, seq) VALUES (0, 0);
