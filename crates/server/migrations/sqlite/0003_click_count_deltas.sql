-- What click batches add to click_counts, not yet added: one row per batch, written in the
-- batch's transaction (so a batch's clicks and their counts are committed together), folded
-- into click_counts and deleted in one transaction within a second of the batch and before
-- statistics are read, by whichever process does it first (so once; rows left by a process
-- that was killed are folded by the next one). A batch touches about
-- as many counts rows as it has clicks when they spread over many links; one row here, and
-- one addition per counts row and second, cost much less than an update per row and batch.
--
-- `counts` is the click writer's encoding (see click_writer.rs): a version byte, then per
-- counts row its link id, day, channel and the three additions.
CREATE TABLE click_count_deltas (
    seq     INTEGER PRIMARY KEY,
    counts  BLOB    NOT NULL
) STRICT;
