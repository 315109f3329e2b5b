-- Claims that cost the same whatever the backlog. Keep in step with the other backend's
-- 0008_claim_order.sql.
--
-- The inbox and the outbox are claimed oldest first (`ORDER BY seq LIMIT n`, a chat's or a
-- contact's rows in the order they were written). With only the `(next_at)` indexes a claim
-- visited every due row and sorted them to keep n: 55 to 60 ms of CPU a claim with 20,000
-- updates pending. Walking pending rows in `seq` order stops after n. The `(next_at)` indexes
-- stay: they answer "is anything due?" when many rows wait for a later retry.
CREATE INDEX inbox_pending ON inbox (seq) WHERE status = 'pending';
CREATE INDEX messages_pending ON messages (seq) WHERE status = 'pending';
