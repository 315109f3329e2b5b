-- Statistics of Starts and of the contacts they bring. Keep in step with
-- ../sqlite/0007_start_stats.sql.
--
-- start_counts: Starts counted as they are recorded (in the transaction that records them),
-- so that statistics cost the same whatever the number of Starts, as click_counts does for
-- clicks. One row per bot, day, link, entry point, channel (the contact's) and UTM tags of
-- the Start; '' where there is none (no link, no entry point, no tag), so that the key is
-- unique. Counts are history: a deleted contact's Starts stay counted (they hold nothing
-- about the person); a deleted bot's go with it.
CREATE TABLE start_counts (
    bot_id          TEXT    NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    day             BIGINT  NOT NULL,
    link_id         TEXT    NOT NULL,
    entry_point_id  TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    utm_source      TEXT    NOT NULL,
    utm_medium      TEXT    NOT NULL,
    utm_campaign    TEXT    NOT NULL,
    starts          BIGINT  NOT NULL,
    PRIMARY KEY (bot_id, day, link_id, entry_point_id, channel, utm_source, utm_medium,
                 utm_campaign)
);
-- A link's and an entry point's rows by day (a bot's: the primary key).
CREATE INDEX start_counts_link ON start_counts (link_id, day);
CREATE INDEX start_counts_entry_point ON start_counts (entry_point_id, day);

-- The Starts recorded before this migration. A Start's time is epoch milliseconds, never
-- negative: integer division is its UTC day.
INSERT INTO start_counts (bot_id, day, link_id, entry_point_id, channel, utm_source,
                          utm_medium, utm_campaign, starts)
SELECT s.bot_id, s.at / 86400000, COALESCE(s.link_id, ''), COALESCE(s.entry_point_id, ''),
       c.channel, COALESCE(CAST(s.utm AS JSON) ->> 'source', ''),
       COALESCE(CAST(s.utm AS JSON) ->> 'medium', ''),
       COALESCE(CAST(s.utm AS JSON) ->> 'campaign', ''), COUNT(*)
FROM starts s JOIN contacts c ON c.id = s.contact_id
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;

-- New contacts and how many are subscribed, read from the index alone: a link's (first
-- touch) and a bot's, by creation time.
CREATE INDEX contacts_first_link ON contacts (first_link_id, created_at, subscribed)
    WHERE first_link_id IS NOT NULL;
CREATE INDEX contacts_bot_subscribed ON contacts (bot_id, created_at, subscribed);
