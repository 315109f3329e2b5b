//! Workspaces and API keys.

use async_trait::async_trait;

use super::db::{Cols, Store, conflict_or};
use super::{
    ApiKey, ApiKeyId, NewApiKey, StoreError, StoreResult, Workspace, WorkspaceId, WorkspaceStore,
};

macro_rules! api_key_cols {
    () => {
        "id, workspace_id, name, role, key_prefix, created_at, last_used_at, revoked_at"
    };
}

fn workspace_from<R: Cols>(r: &R) -> StoreResult<Workspace> {
    Ok(Workspace {
        id: r.text("id")?.into(),
        name: r.text("name")?,
        created_at: r.int("created_at")?,
    })
}

fn api_key_from<R: Cols>(r: &R) -> StoreResult<ApiKey> {
    let role = r.text("role")?;
    Ok(ApiKey {
        id: r.text("id")?.into(),
        workspace_id: r.text("workspace_id")?.into(),
        name: r.opt_text("name")?,
        role: role
            .parse()
            .map_err(|e: super::UnknownRole| StoreError::Corrupt {
                table: "api_keys",
                detail: e.to_string(),
            })?,
        key_prefix: r.text("key_prefix")?,
        created_at: r.int("created_at")?,
        last_used_at: r.opt_int("last_used_at")?,
        revoked_at: r.opt_int("revoked_at")?,
    })
}

#[async_trait]
impl WorkspaceStore for Store {
    async fn ensure_workspace(&self, name: &str, now_ms: i64) -> StoreResult<Workspace> {
        // Insert-or-ignore, then read: two callers racing both end up reading the one row.
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(WorkspaceId::new().as_str())
            .bind(name)
            .bind(now_ms)
            .execute(pool)
            .await?;
            let row = sqlx::query("SELECT id, name, created_at FROM workspaces WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await?;
            workspace_from(&row)
        })
    }

    async fn workspace_by_name(&self, name: &str) -> StoreResult<Option<Workspace>> {
        with_pool!(self, pool => {
            let row = sqlx::query("SELECT id, name, created_at FROM workspaces WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(workspace_from).transpose()
        })
    }

    async fn workspace(&self, id: &WorkspaceId) -> StoreResult<Workspace> {
        with_pool!(self, pool => {
            let row = sqlx::query("SELECT id, name, created_at FROM workspaces WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(workspace_from).transpose()?.ok_or(StoreError::NotFound)
        })
    }

    async fn create_api_key(&self, key: NewApiKey, now_ms: i64) -> StoreResult<ApiKey> {
        let id = ApiKeyId::new();
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO api_keys (id, workspace_id, name, role, key_hash, key_prefix, created_at) \
                 SELECT $1, id, $3, $4, $5, $6, $7 FROM workspaces WHERE id = $2",
            )
            .bind(id.as_str())
            .bind(key.workspace_id.as_str())
            .bind(key.name.as_deref())
            .bind(key.role.as_str())
            .bind(&key.key_hash)
            .bind(&key.key_prefix)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(|e| conflict_or(e, || "this API key is already stored; generate a new key".into()))
            .and_then(|done| if done.rows_affected() == 1 { Ok(()) } else { Err(StoreError::NotFound) })?;
        });
        Ok(ApiKey {
            id,
            workspace_id: key.workspace_id,
            name: key.name,
            role: key.role,
            key_prefix: key.key_prefix,
            created_at: now_ms,
            last_used_at: None,
            revoked_at: None,
        })
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        with_pool!(self, pool => {
            let row = sqlx::query(concat!(
                "SELECT ", api_key_cols!(), " FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
            ))
            .bind(key_hash)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(api_key_from).transpose()
        })
    }

    async fn list_api_keys(&self, ws: &WorkspaceId) -> StoreResult<Vec<ApiKey>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(concat!(
                "SELECT ", api_key_cols!(), " FROM api_keys WHERE workspace_id = $1 ORDER BY created_at, id"
            ))
            .bind(ws.as_str())
            .fetch_all(pool)
            .await?;
            rows.iter().map(api_key_from).collect()
        })
    }

    async fn revoke_api_key(
        &self,
        ws: &WorkspaceId,
        id: &ApiKeyId,
        now_ms: i64,
    ) -> StoreResult<()> {
        with_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) WHERE id = $1 AND workspace_id = $2",
            )
            .bind(id.as_str())
            .bind(ws.as_str())
            .bind(now_ms)
            .execute(pool)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        });
        Ok(())
    }

    async fn touch_api_key(&self, id: &ApiKeyId, now_ms: i64) -> StoreResult<()> {
        with_pool!(self, pool => {
            sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
                .bind(id.as_str())
                .bind(now_ms)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
