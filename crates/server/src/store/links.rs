//! Links.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::QueryBuilder;

use super::db::{
    Cols, Store, from_json, from_name, is_unique_violation, like_escape, to_json, violated,
};
use super::{
    Link, LinkFilter, LinkId, LinkPatch, LinkStore, NewLink, StoreError, StoreResult, Utm,
    WorkspaceId,
};

macro_rules! link_cols {
    () => {
        "id, workspace_id, bot_id, entry_point_id, code, slug, title, channels, scheme, signed, payload, \
         deep_links, utm_source, utm_medium, utm_campaign, utm_term, utm_content, expires_at, max_clicks, \
         clicks_used, disabled, created_at, updated_at"
    };
}

/// The link with the code or slug `$1` (a code before a slug, should one link's slug be
/// another's code).
pub(super) const LINK_BY_CODE_OR_SLUG: &str = concat!(
    "SELECT ",
    link_cols!(),
    " FROM links WHERE code = $1 OR slug = $1 \
     ORDER BY CASE WHEN code = $1 THEN 0 ELSE 1 END LIMIT 1"
);

/// The links of the bot `$1`, oldest first.
pub(super) const LINKS_OF_BOT: &str = concat!(
    "SELECT ",
    link_cols!(),
    " FROM links WHERE bot_id = $1 ORDER BY created_at, id"
);

/// The columns of a link, in the order the queries below select them.
pub(super) const LINK_COLUMNS: &str = link_cols!();

/// The link with the code `$1`, and the link with the slug `$1`: one index search each, where
/// SQLite answers [`LINK_BY_CODE_OR_SLUG`] with two and a sort (for the redirects that look a
/// link up on their own thread, first by code, then by slug).
pub(super) const LINK_BY_CODE: &str =
    concat!("SELECT ", link_cols!(), " FROM links WHERE code = $1");
pub(super) const LINK_BY_SLUG: &str =
    concat!("SELECT ", link_cols!(), " FROM links WHERE slug = $1");

pub(super) fn link_from<R: Cols>(r: &R) -> StoreResult<Link> {
    Ok(Link {
        id: r.text("id")?.into(),
        workspace_id: r.text("workspace_id")?.into(),
        bot_id: r.text("bot_id")?.into(),
        entry_point_id: r.opt_text("entry_point_id")?.map(Into::into),
        code: r.text("code")?,
        slug: r.opt_text("slug")?,
        title: r.opt_text("title")?,
        channels: from_json("links", &r.text("channels")?)?,
        scheme: from_name("links", &r.text("scheme")?)?,
        signed: r.boolean("signed")?,
        payload: from_json("links", &r.text("payload")?)?,
        deep_links: from_json("links", &r.text("deep_links")?)?,
        utm: Utm {
            source: r.opt_text("utm_source")?,
            medium: r.opt_text("utm_medium")?,
            campaign: r.opt_text("utm_campaign")?,
            term: r.opt_text("utm_term")?,
            content: r.opt_text("utm_content")?,
        },
        expires_at: r.opt_int("expires_at")?,
        max_clicks: r.opt_int("max_clicks")?,
        clicks_used: r.int("clicks_used")?,
        disabled: r.boolean("disabled")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
    })
}

fn slug_taken(slug: &str) -> StoreError {
    StoreError::Conflict {
        what: format!("the slug {slug:?} is already used by another link; choose another slug"),
    }
}

fn code_taken(code: &str) -> StoreError {
    StoreError::Conflict {
        what: format!("the link code {code:?} is already used; generate another code"),
    }
}

/// The cursor of the page after `link`: its sort key, hex-encoded so that callers treat it
/// as opaque.
fn cursor_after(link: &Link) -> String {
    hex::encode(format!("{}:{}", link.created_at, link.id))
}

fn parse_cursor(cursor: &str) -> StoreResult<(i64, String)> {
    let bytes = hex::decode(cursor).map_err(|_| StoreError::InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::InvalidCursor)?;
    let (at, id) = text.split_once(':').ok_or(StoreError::InvalidCursor)?;
    Ok((
        at.parse().map_err(|_| StoreError::InvalidCursor)?,
        id.to_owned(),
    ))
}

#[async_trait]
impl LinkStore for Store {
    fn link_by_code_or_slug_now(&self, s: &str) -> Option<StoreResult<Option<Link>>> {
        Store::link_by_code_or_slug_now(self, s)
    }

    async fn create_links(
        &self,
        ws: &WorkspaceId,
        links: Vec<NewLink>,
        now_ms: i64,
    ) -> StoreResult<Vec<Link>> {
        let out: Vec<Link> = links
            .into_iter()
            .map(|n| Link {
                id: LinkId::new(),
                workspace_id: ws.clone(),
                bot_id: n.bot_id,
                entry_point_id: n.entry_point_id,
                code: n.code,
                slug: n.slug,
                title: n.title,
                channels: n.channels,
                scheme: n.scheme,
                signed: n.signed,
                payload: n.payload,
                deep_links: n.deep_links,
                utm: n.utm,
                expires_at: n.expires_at,
                max_clicks: n.max_clicks,
                clicks_used: 0,
                disabled: n.disabled,
                created_at: now_ms,
                updated_at: now_ms,
            })
            .collect();
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write()).await?;
            let mut bots_seen = HashSet::new();
            for l in &out {
                // The bot and the entry point must be this workspace's (and the entry point
                // this bot's); checked once per bot.
                if bots_seen.insert(l.bot_id.as_str())
                    && sqlx::query("SELECT id FROM bots WHERE id = $1 AND workspace_id = $2")
                        .bind(l.bot_id.as_str())
                        .bind(ws.as_str())
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_none()
                {
                    return Err(StoreError::NotFound);
                }
                if let Some(ep) = &l.entry_point_id
                    && sqlx::query("SELECT id FROM entry_points WHERE id = $1 AND bot_id = $2 AND workspace_id = $3")
                        .bind(ep.as_str())
                        .bind(l.bot_id.as_str())
                        .bind(ws.as_str())
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_none()
                {
                    return Err(StoreError::NotFound);
                }
                // Redirects look a string up as a code, then as a slug: a slug equal to a
                // code (or the reverse) would make one of the two links unreachable.
                if let Some(slug) = &l.slug
                    && sqlx::query("SELECT id FROM links WHERE code = $1")
                        .bind(slug)
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_some()
                {
                    return Err(slug_taken(slug));
                }
                if sqlx::query("SELECT id FROM links WHERE slug = $1")
                    .bind(&l.code)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some()
                {
                    return Err(code_taken(&l.code));
                }
                sqlx::query(concat!(
                    "INSERT INTO links (", link_cols!(), ") VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
                     $20, $21, $22, $23)"
                ))
                .bind(l.id.as_str())
                .bind(ws.as_str())
                .bind(l.bot_id.as_str())
                .bind(l.entry_point_id.as_ref().map(|e| e.as_str()))
                .bind(&l.code)
                .bind(l.slug.as_deref())
                .bind(l.title.as_deref())
                .bind(to_json(&l.channels))
                .bind(l.scheme.as_str())
                .bind(l.signed)
                .bind(to_json(&l.payload))
                .bind(to_json(&l.deep_links))
                .bind(l.utm.source.as_deref())
                .bind(l.utm.medium.as_deref())
                .bind(l.utm.campaign.as_deref())
                .bind(l.utm.term.as_deref())
                .bind(l.utm.content.as_deref())
                .bind(l.expires_at)
                .bind(l.max_clicks)
                .bind(l.clicks_used)
                .bind(l.disabled)
                .bind(l.created_at)
                .bind(l.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| match (&l.slug, is_unique_violation(&e)) {
                    (Some(slug), true) if violated(&e).contains("slug") => slug_taken(slug),
                    (_, true) => code_taken(&l.code),
                    _ => StoreError::Database(e),
                })?;
            }
            tx.commit().await?;
        });
        Ok(out)
    }

    async fn get_link(&self, ws: &WorkspaceId, id: &LinkId) -> StoreResult<Link> {
        with_pool!(self, pool => {
            let row = sqlx::query(concat!("SELECT ", link_cols!(), " FROM links WHERE id = $1 AND workspace_id = $2"))
                .bind(id.as_str())
                .bind(ws.as_str())
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)?;
            link_from(&row)
        })
    }

    async fn link_by_code_or_slug(&self, s: &str) -> StoreResult<Option<Link>> {
        with_pool!(self, pool => {
            let row = sqlx::query(LINK_BY_CODE_OR_SLUG)
            .bind(s)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(link_from).transpose()
        })
    }

    async fn list_links(
        &self,
        ws: &WorkspaceId,
        filter: LinkFilter,
    ) -> StoreResult<(Vec<Link>, Option<String>)> {
        let limit = filter
            .limit
            .unwrap_or(LinkFilter::DEFAULT_LIMIT)
            .clamp(1, LinkFilter::MAX_LIMIT);
        let after = filter.cursor.as_deref().map(parse_cursor).transpose()?;
        let q = filter
            .q
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(|q| format!("%{}%", like_escape(&q.to_lowercase())));
        let mut links = with_pool!(self, pool => {
            let mut sql = QueryBuilder::new(concat!("SELECT ", link_cols!(), " FROM links WHERE workspace_id = "));
            sql.push_bind(ws.as_str());
            if let Some(bot) = &filter.bot_id {
                sql.push(" AND bot_id = ").push_bind(bot.as_str());
            }
            if let Some(ep) = &filter.entry_point_id {
                sql.push(" AND entry_point_id = ").push_bind(ep.as_str());
            }
            if let Some(v) = &filter.utm_source {
                sql.push(" AND utm_source = ").push_bind(v.as_str());
            }
            if let Some(v) = &filter.utm_medium {
                sql.push(" AND utm_medium = ").push_bind(v.as_str());
            }
            if let Some(v) = &filter.utm_campaign {
                sql.push(" AND utm_campaign = ").push_bind(v.as_str());
            }
            if let Some(q) = &q {
                // LOWER on both sides: PostgreSQL's LIKE is case-sensitive, SQLite's is not.
                sql.push(" AND (");
                for (i, col) in ["title", "slug", "code", "utm_campaign"].iter().enumerate() {
                    if i > 0 {
                        sql.push(" OR ");
                    }
                    sql.push(format_args!("LOWER({col}) LIKE ")).push_bind(q.as_str()).push(" ESCAPE '\\'");
                }
                sql.push(")");
            }
            if let Some((at, id)) = &after {
                sql.push(" AND (created_at < ").push_bind(*at);
                sql.push(" OR (created_at = ").push_bind(*at).push(" AND id < ").push_bind(id.as_str()).push("))");
            }
            sql.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(limit) + 1);
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter().map(link_from).collect::<StoreResult<Vec<_>>>()?
        });
        let next = if links.len() > limit as usize {
            links.truncate(limit as usize);
            links.last().map(cursor_after)
        } else {
            None
        };
        Ok((links, next))
    }

    async fn update_link(
        &self,
        ws: &WorkspaceId,
        id: &LinkId,
        patch: LinkPatch,
        now_ms: i64,
    ) -> StoreResult<Link> {
        with_pool!(self, pool => {
            // One statement, so a concurrent click (clicks_used) or patch is never lost.
            let row = sqlx::query(concat!(
                "UPDATE links SET disabled = COALESCE($3, disabled), \
                 expires_at = CASE WHEN $4 THEN $5 ELSE expires_at END, \
                 max_clicks = CASE WHEN $6 THEN $7 ELSE max_clicks END, \
                 title = CASE WHEN $8 THEN $9 ELSE title END, updated_at = $10 \
                 WHERE id = $1 AND workspace_id = $2 RETURNING ", link_cols!()
            ))
            .bind(id.as_str())
            .bind(ws.as_str())
            .bind(patch.disabled)
            .bind(patch.expires_at.is_some())
            .bind(patch.expires_at.flatten())
            .bind(patch.max_clicks.is_some())
            .bind(patch.max_clicks.flatten())
            .bind(patch.title.is_some())
            .bind(patch.title.clone().flatten())
            .bind(now_ms)
            .fetch_optional(pool)
            .await?
            .ok_or(StoreError::NotFound)?;
            link_from(&row)
        })
    }

    async fn delete_link(&self, ws: &WorkspaceId, id: &LinkId) -> StoreResult<()> {
        with_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM links WHERE id = $1 AND workspace_id = $2")
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

    async fn try_consume_click(&self, id: &LinkId) -> StoreResult<bool> {
        with_pool!(self, pool => {
            // The check and the increment are one statement: two redirects racing for the
            // last use cannot both win.
            let done = sqlx::query(
                "UPDATE links SET clicks_used = clicks_used + 1 \
                 WHERE id = $1 AND (max_clicks IS NULL OR clicks_used < max_clicks)",
            )
            .bind(id.as_str())
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let (at, id) = parse_cursor(&hex::encode("1714608000000:lnk_0190")).unwrap();
        assert_eq!((at, id.as_str()), (1_714_608_000_000, "lnk_0190"));
        assert!(matches!(parse_cursor("zz"), Err(StoreError::InvalidCursor)));
        assert!(matches!(
            parse_cursor(&hex::encode("no-colon")),
            Err(StoreError::InvalidCursor)
        ));
        assert!(matches!(
            parse_cursor(&hex::encode("x:lnk")),
            Err(StoreError::InvalidCursor)
        ));
    }
}
