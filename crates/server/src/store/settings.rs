//! Facts about the installation itself (the `settings` table): the fingerprint of the secret
//! key the database was set up with.

use super::StoreResult;
use super::db::Store;

const KEY_FINGERPRINT: &str = "key_fingerprint";

impl Store {
    /// The fingerprint of the secret key the database was set up with; `None` until the first
    /// start of `botlink serve` records it (see [`Store::record_key_fingerprint`]).
    pub async fn key_fingerprint(&self) -> StoreResult<Option<String>> {
        let value = with_pool!(self, pool => {
            sqlx::query_scalar::<_, String>("SELECT value FROM settings WHERE name = $1")
                .bind(KEY_FINGERPRINT)
                .fetch_optional(pool)
                .await?
        });
        Ok(value)
    }

    /// Records `fingerprint` unless one is recorded already, and returns the recorded one:
    /// of several instances starting at once with different keys, the first to write wins and
    /// the others see its fingerprint.
    pub async fn record_key_fingerprint(
        &self,
        fingerprint: &str,
        now_ms: i64,
    ) -> StoreResult<String> {
        let value = with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO settings (name, value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(KEY_FINGERPRINT)
            .bind(fingerprint)
            .bind(now_ms)
            .execute(pool)
            .await?;
            sqlx::query_scalar::<_, String>("SELECT value FROM settings WHERE name = $1")
                .bind(KEY_FINGERPRINT)
                .fetch_one(pool)
                .await?
        });
        Ok(value)
    }
}
