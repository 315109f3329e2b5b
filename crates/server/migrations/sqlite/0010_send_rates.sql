-- Sending at each platform's rate, across every instance together. Keep in step with
-- ../postgres/0010_send_rates.sql.
--
-- send_slots: per bot and channel, the next free moment to send (epoch microseconds). An
-- instance takes a run of slots at once (the moment moves on by that many intervals, in one
-- statement, so two instances never get the same slots) and sends one message at each; a slot
-- it does not use is lost, never given twice. A platform's 429 moves the moment past the wait
-- it asks for, pausing the bot on that channel everywhere.
CREATE TABLE send_slots (
    bot_id   TEXT    NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    channel  TEXT    NOT NULL,
    next_at  INTEGER NOT NULL,
    PRIMARY KEY (bot_id, channel)
) STRICT;
