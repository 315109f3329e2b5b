//! Bots, their channels and their entry points.

use async_trait::async_trait;

use super::db::{
    Cols, Store, conflict_or, from_json, from_name, is_unique_violation, like_escape, to_json,
    violated,
};
use super::links::{LINKS_OF_BOT, link_from};
use super::{
    Bot, BotChannel, BotId, BotPatch, BotStore, EntryPoint, EntryPointId, EntryPointPatch, Link,
    NewBot, NewEntryPoint, Relink, StoreError, StoreResult, WorkspaceId,
};

macro_rules! ep_cols {
    () => {
        "id, workspace_id, bot_id, key, node, default_field, utm, created_at, updated_at"
    };
}

fn bot_from<R: Cols>(r: &R) -> StoreResult<Bot> {
    Ok(Bot {
        id: r.text("id")?.into(),
        workspace_id: r.text("workspace_id")?.into(),
        name: r.text("name")?,
        channels: Vec::new(),
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
    })
}

/// A channel row, with the bot it belongs to.
fn channel_from<R: Cols>(r: &R) -> StoreResult<(String, BotChannel)> {
    Ok((
        r.text("bot_id")?,
        BotChannel {
            channel: from_name("bot_channels", &r.text("channel")?)?,
            settings: from_json("bot_channels", &r.text("settings")?)?,
            secrets: r.opt_bytes("secrets")?,
        },
    ))
}

fn entry_point_from<R: Cols>(r: &R) -> StoreResult<EntryPoint> {
    Ok(EntryPoint {
        id: r.text("id")?.into(),
        workspace_id: r.text("workspace_id")?.into(),
        bot_id: r.text("bot_id")?.into(),
        key: r.text("key")?,
        node: r.opt_text("node")?,
        default_field: r.opt_text("default_field")?,
        utm: from_json("entry_points", &r.text("utm")?)?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
    })
}

fn bot_name_taken(name: &str) -> String {
    format!("a bot named {name:?} already exists in this workspace; choose another name")
}

fn channel_twice(name: &str) -> String {
    format!("the channel {name:?} is listed more than once; list each channel once")
}

fn entry_point_taken(key: &str) -> String {
    format!("the bot already has an entry point with the key {key:?}; choose another key")
}

/// Maps a failed bot insert: a used name is a conflict, an unknown workspace is not found.
fn bot_insert_error(e: sqlx::Error, name: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        // The caller chooses the id: name a reused id rather than blame the name.
        _ if is_unique_violation(&e) && !violated(&e).contains("name") => StoreError::Conflict {
            what: "this bot id is already used; generate a new id".to_owned(),
        },
        _ => conflict_or(e, || bot_name_taken(name)),
    }
}

#[async_trait]
impl BotStore for Store {
    async fn create_bot(&self, ws: &WorkspaceId, bot: NewBot, now_ms: i64) -> StoreResult<Bot> {
        let id = bot.id.clone();
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write()).await?;
            sqlx::query(
                "INSERT INTO bots (id, workspace_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(id.as_str())
            .bind(ws.as_str())
            .bind(&bot.name)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| bot_insert_error(e, &bot.name))?;
            for ch in &bot.channels {
                sqlx::query(
                    "INSERT INTO bot_channels (bot_id, channel, settings, secrets, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $5)",
                )
                .bind(id.as_str())
                .bind(ch.channel.as_str())
                .bind(to_json(&ch.settings))
                .bind(ch.secrets.as_deref())
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_or(e, || channel_twice(ch.channel.as_str())))?;
            }
            tx.commit().await?;
        });
        let mut channels = bot.channels;
        // As the reads order them: by name.
        channels.sort_by_key(|c| c.channel.as_str());
        Ok(Bot {
            id,
            workspace_id: ws.clone(),
            name: bot.name,
            channels,
            created_at: now_ms,
            updated_at: now_ms,
        })
    }

    async fn get_bot(&self, ws: &WorkspaceId, id: &BotId) -> StoreResult<Bot> {
        let bot = self.bot_by_id(id).await?.ok_or(StoreError::NotFound)?;
        if bot.workspace_id != *ws {
            return Err(StoreError::NotFound);
        }
        Ok(bot)
    }

    async fn bot_by_id(&self, id: &BotId) -> StoreResult<Option<Bot>> {
        with_pool!(self, pool => {
            let Some(row) = sqlx::query(
                "SELECT id, workspace_id, name, created_at, updated_at FROM bots WHERE id = $1",
            )
            .bind(id.as_str())
            .fetch_optional(pool)
            .await?
            else {
                return Ok(None);
            };
            let mut bot = bot_from(&row)?;
            let rows = sqlx::query(
                "SELECT bot_id, channel, settings, secrets FROM bot_channels WHERE bot_id = $1 ORDER BY channel",
            )
            .bind(id.as_str())
            .fetch_all(pool)
            .await?;
            for r in &rows {
                bot.channels.push(channel_from(r)?.1);
            }
            Ok(Some(bot))
        })
    }

    async fn list_bots(&self, ws: &WorkspaceId) -> StoreResult<Vec<Bot>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT id, workspace_id, name, created_at, updated_at FROM bots \
                 WHERE workspace_id = $1 ORDER BY name, id",
            )
            .bind(ws.as_str())
            .fetch_all(pool)
            .await?;
            let mut bots = rows.iter().map(bot_from).collect::<StoreResult<Vec<_>>>()?;
            let rows = sqlx::query(
                "SELECT c.bot_id, c.channel, c.settings, c.secrets FROM bot_channels c \
                 JOIN bots b ON b.id = c.bot_id WHERE b.workspace_id = $1 ORDER BY c.bot_id, c.channel",
            )
            .bind(ws.as_str())
            .fetch_all(pool)
            .await?;
            for r in &rows {
                let (bot_id, channel) = channel_from(r)?;
                if let Some(bot) = bots.iter_mut().find(|b| b.id.as_str() == bot_id) {
                    bot.channels.push(channel);
                }
            }
            Ok(bots)
        })
    }

    async fn update_bot(
        &self,
        ws: &WorkspaceId,
        id: &BotId,
        patch: BotPatch,
        now_ms: i64,
    ) -> StoreResult<Bot> {
        self.update_bot_and_links(ws, id, patch, None, now_ms)
            .await
            .map(|(bot, _)| bot)
    }

    async fn update_bot_and_links(
        &self,
        ws: &WorkspaceId,
        id: &BotId,
        patch: BotPatch,
        relink: Option<&Relink>,
        now_ms: i64,
    ) -> StoreResult<(Bot, Vec<Link>)> {
        let mut relinked = Vec::new();
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write()).await?;
            let done = sqlx::query(
                "UPDATE bots SET name = COALESCE($3, name), updated_at = $4 WHERE id = $1 AND workspace_id = $2",
            )
            .bind(id.as_str())
            .bind(ws.as_str())
            .bind(patch.name.as_deref())
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_or(e, || bot_name_taken(patch.name.as_deref().unwrap_or_default())))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            for channel in &patch.remove_channels {
                sqlx::query("DELETE FROM bot_channels WHERE bot_id = $1 AND channel = $2")
                    .bind(id.as_str())
                    .bind(channel.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            for ch in &patch.upsert_channels {
                sqlx::query(
                    "INSERT INTO bot_channels (bot_id, channel, settings, secrets, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $5) \
                     ON CONFLICT (bot_id, channel) DO UPDATE SET settings = excluded.settings, \
                     secrets = COALESCE(excluded.secrets, bot_channels.secrets), updated_at = excluded.updated_at",
                )
                .bind(id.as_str())
                .bind(ch.channel.as_str())
                .bind(to_json(&ch.settings))
                .bind(ch.secrets.as_deref())
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            if let Some(relink) = relink {
                let rows = sqlx::query(
                    "SELECT bot_id, channel, settings, secrets FROM bot_channels WHERE bot_id = $1 ORDER BY channel",
                )
                .bind(id.as_str())
                .fetch_all(&mut *tx)
                .await?;
                let channels = rows
                    .iter()
                    .map(|r| channel_from(r).map(|(_, c)| c))
                    .collect::<StoreResult<Vec<_>>>()?;
                let rows = sqlx::query(LINKS_OF_BOT)
                    .bind(id.as_str())
                    .fetch_all(&mut *tx)
                    .await?;
                for r in &rows {
                    let mut link = link_from(r)?;
                    let changed = relink(id, &channels, &mut link).map_err(|why| {
                        StoreError::Conflict {
                            what: format!("the link {:?} {why}", link.slug.as_deref().unwrap_or(&link.code)),
                        }
                    })?;
                    if !changed {
                        continue;
                    }
                    link.updated_at = now_ms;
                    sqlx::query(
                        "UPDATE links SET channels = $2, deep_links = $3, updated_at = $4 WHERE id = $1",
                    )
                    .bind(link.id.as_str())
                    .bind(to_json(&link.channels))
                    .bind(to_json(&link.deep_links))
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                    relinked.push(link);
                }
            }
            tx.commit().await?;
        });
        Ok((self.get_bot(ws, id).await?, relinked))
    }

    async fn bot_by_webchat_id(&self, id: &str) -> StoreResult<Option<Bot>> {
        // The settings are JSON text: the pattern narrows the rows, the check below decides.
        let pattern = format!("%\"id\":\"{}\"%", like_escape(id));
        let found = with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT c.bot_id, c.channel, c.settings, c.secrets, b.workspace_id FROM bot_channels c \
                 JOIN bots b ON b.id = c.bot_id \
                 WHERE c.channel = 'webchat' AND (c.bot_id = $1 OR c.settings LIKE $2 ESCAPE '\\') \
                 ORDER BY b.created_at, b.id",
            )
            .bind(id)
            .bind(&pattern)
            .fetch_all(pool)
            .await?;
            let mut found = None;
            for r in &rows {
                let (bot_id, channel) = channel_from(r)?;
                let own = channel.settings.get("id").and_then(|v| v.as_str());
                if own.unwrap_or(&bot_id) == id {
                    found = Some((r.text("workspace_id")?, bot_id));
                    break;
                }
            }
            found
        });
        let Some((ws, bot_id)) = found else {
            return Ok(None);
        };
        match self.get_bot(&ws.into(), &bot_id.into()).await {
            // Deleted meanwhile.
            Err(StoreError::NotFound) => Ok(None),
            found => found.map(Some),
        }
    }

    async fn delete_bot(&self, ws: &WorkspaceId, id: &BotId) -> StoreResult<()> {
        with_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM bots WHERE id = $1 AND workspace_id = $2")
                .bind(id.as_str())
                .bind(ws.as_str())
                .execute(pool)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        });
        Ok(())
    }

    async fn create_entry_point(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
        ep: NewEntryPoint,
        now_ms: i64,
    ) -> StoreResult<EntryPoint> {
        let id = EntryPointId::new();
        let utm = ep.utm;
        with_pool!(self, pool => {
            // Inserting from the bot's row checks that the bot is in this workspace.
            let done = sqlx::query(
                "INSERT INTO entry_points \
                 (id, workspace_id, bot_id, key, node, default_field, utm, created_at, updated_at) \
                 SELECT $1, workspace_id, id, $4, $5, $6, $7, $8, $8 FROM bots WHERE id = $2 AND workspace_id = $3",
            )
            .bind(id.as_str())
            .bind(bot.as_str())
            .bind(ws.as_str())
            .bind(&ep.key)
            .bind(ep.node.as_deref())
            .bind(ep.default_field.as_deref())
            .bind(to_json(&utm))
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(|e| conflict_or(e, || entry_point_taken(&ep.key)))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        });
        Ok(EntryPoint {
            id,
            workspace_id: ws.clone(),
            bot_id: bot.clone(),
            key: ep.key,
            node: ep.node,
            default_field: ep.default_field,
            utm,
            created_at: now_ms,
            updated_at: now_ms,
        })
    }

    async fn entry_point(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
        key: &str,
    ) -> StoreResult<EntryPoint> {
        with_pool!(self, pool => {
            let row = sqlx::query(concat!(
                "SELECT ", ep_cols!(), " FROM entry_points WHERE bot_id = $1 AND key = $2 AND workspace_id = $3"
            ))
            .bind(bot.as_str())
            .bind(key)
            .bind(ws.as_str())
            .fetch_optional(pool)
            .await?
            .ok_or(StoreError::NotFound)?;
            entry_point_from(&row)
        })
    }

    async fn entry_point_by_id(
        &self,
        ws: &WorkspaceId,
        id: &EntryPointId,
    ) -> StoreResult<EntryPoint> {
        with_pool!(self, pool => {
            let row = sqlx::query(concat!(
                "SELECT ", ep_cols!(), " FROM entry_points WHERE id = $1 AND workspace_id = $2"
            ))
            .bind(id.as_str())
            .bind(ws.as_str())
            .fetch_optional(pool)
            .await?
            .ok_or(StoreError::NotFound)?;
            entry_point_from(&row)
        })
    }

    async fn list_entry_points(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
    ) -> StoreResult<Vec<EntryPoint>> {
        with_pool!(self, pool => {
            // An unknown bot is `NotFound`, not an empty list.
            sqlx::query("SELECT id FROM bots WHERE id = $1 AND workspace_id = $2")
                .bind(bot.as_str())
                .bind(ws.as_str())
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)?;
            let rows = sqlx::query(concat!(
                "SELECT ", ep_cols!(), " FROM entry_points WHERE bot_id = $1 AND workspace_id = $2 ORDER BY key"
            ))
            .bind(bot.as_str())
            .bind(ws.as_str())
            .fetch_all(pool)
            .await?;
            rows.iter().map(entry_point_from).collect()
        })
    }

    async fn update_entry_point(
        &self,
        ws: &WorkspaceId,
        id: &EntryPointId,
        patch: EntryPointPatch,
        now_ms: i64,
    ) -> StoreResult<EntryPoint> {
        let utm = patch.utm.as_ref().map(to_json);
        with_pool!(self, pool => {
            // One statement: a flag says whether each optional field is set.
            let row = sqlx::query(concat!(
                "UPDATE entry_points SET key = COALESCE($3, key), \
                 node = CASE WHEN $4 THEN $5 ELSE node END, \
                 default_field = CASE WHEN $6 THEN $7 ELSE default_field END, \
                 utm = COALESCE($8, utm), updated_at = $9 \
                 WHERE id = $1 AND workspace_id = $2 RETURNING ", ep_cols!()
            ))
            .bind(id.as_str())
            .bind(ws.as_str())
            .bind(patch.key.as_deref())
            .bind(patch.node.is_some())
            .bind(patch.node.clone().flatten())
            .bind(patch.default_field.is_some())
            .bind(patch.default_field.clone().flatten())
            .bind(utm)
            .bind(now_ms)
            .fetch_optional(pool)
            .await
            .map_err(|e| conflict_or(e, || entry_point_taken(patch.key.as_deref().unwrap_or_default())))?
            .ok_or(StoreError::NotFound)?;
            entry_point_from(&row)
        })
    }

    async fn delete_entry_point(&self, ws: &WorkspaceId, id: &EntryPointId) -> StoreResult<()> {
        with_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM entry_points WHERE id = $1 AND workspace_id = $2")
                .bind(id.as_str())
                .bind(ws.as_str())
                .execute(pool)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        });
        Ok(())
    }
}
