-- Facts about the installation itself, one row each. The first is `key_fingerprint`: an HMAC
-- of a fixed label under the server secret key (never the key), written on the first start
-- of `botlink serve`, so that a start with another key (a lost key file, an instance with
-- another BOTLINK_SECRET_KEY) is refused instead of failing to decrypt the stored secrets.
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
