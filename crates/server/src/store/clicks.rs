//! Clicks and the statistics computed from them.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::{Database, Encode, QueryBuilder, Type};

use super::db::{Cols, Pool, Store};
use super::{
    BotId, Bucket, Click, ClickId, ClickStore, LinkCount, NONE_KEY, NewClick, Stats, StatsRange,
    StatsScope, StoreError, StoreResult, WorkspaceId, day_of, day_to_date,
};

/// Rows per INSERT on SQLite, largest first: a batch is written as chunks of these sizes
/// only. Each size is one statement that the connection prepares once and keeps; chunks of
/// any size would each be a new statement of their own, prepared again and kept in the
/// connection's statement cache (a 500-row insert is about a megabyte of compiled program).
/// At 13 parameters a row, 256 rows are 3,328 parameters, under SQLite's limit of 32,766.
const SQLITE_CHUNK_ROWS: [usize; 5] = [256, 64, 16, 4, 1];

/// Splits `n` rows into chunk sizes from [`SQLITE_CHUNK_ROWS`], largest first.
fn sqlite_chunks(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let size = SQLITE_CHUNK_ROWS.iter().copied().find(|&s| s <= n)?;
        n -= size;
        Some(size)
    })
}

macro_rules! click_cols {
    () => {
        "id, link_id, workspace_id, bot_id, entry_point_id, channel, kind, at, day, visitor, \
         utm_source, utm_medium, utm_campaign"
    };
}

fn click_from<R: Cols>(r: &R) -> StoreResult<Click> {
    let kind = r.text("kind")?;
    Ok(Click {
        id: r.text("id")?.into(),
        link_id: r.text("link_id")?.into(),
        workspace_id: r.text("workspace_id")?.into(),
        bot_id: r.text("bot_id")?.into(),
        entry_point_id: r.opt_text("entry_point_id")?.map(Into::into),
        channel: r.opt_text("channel")?,
        kind: kind.parse().map_err(|detail| StoreError::Corrupt {
            table: "clicks",
            detail,
        })?,
        at: r.int("at")?,
        day: r.int("day")?,
        visitor: r.opt_text("visitor")?,
        utm_source: r.opt_text("utm_source")?,
        utm_medium: r.opt_text("utm_medium")?,
        utm_campaign: r.opt_text("utm_campaign")?,
    })
}

/// Counting over a set of clicks: clicks, distinct visitors among clicks, previews.
const COUNTS: &str = "COUNT(CASE WHEN kind = 'click' THEN 1 END) AS clicks, \
     COUNT(DISTINCT CASE WHEN kind = 'click' THEN visitor END) AS unique_clicks, \
     COUNT(CASE WHEN kind = 'preview' THEN 1 END) AS previews";

/// The dimensions of [`Stats`], as columns of `clicks`.
const DIMENSIONS: [&str; 5] = ["channel", "day", "utm_source", "utm_medium", "utm_campaign"];

/// Appends ` WHERE <col> = id AND workspace_id = ws` and the range of days. Only the
/// conditions in use are written, so each query can use the `(<col>, day)` index.
fn push_scope<DB: Database>(
    sql: &mut QueryBuilder<DB>,
    prefix: &str,
    col: &str,
    id: &str,
    ws: &str,
    range: StatsRange,
) where
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    sql.push(format_args!(" WHERE {prefix}{col} = "))
        .push_bind(id.to_owned());
    sql.push(format_args!(" AND {prefix}workspace_id = "))
        .push_bind(ws.to_owned());
    if let Some(from) = range.from_day {
        sql.push(format_args!(" AND {prefix}day >= "))
            .push_bind(from);
    }
    if let Some(to) = range.to_day {
        sql.push(format_args!(" AND {prefix}day <= ")).push_bind(to);
    }
}

fn counts_from<R: Cols>(r: &R, key: String) -> StoreResult<Bucket> {
    Ok(Bucket {
        key,
        clicks: r.int("clicks")?,
        unique_clicks: r.int("unique_clicks")?,
        previews: r.int("previews")?,
    })
}

#[async_trait]
impl ClickStore for Store {
    async fn insert_clicks(&self, clicks: &[NewClick]) -> StoreResult<u64> {
        // The first of several clicks with one id wins. Deduplicated here, because within one
        // statement PostgreSQL may join the rows in any order.
        let mut seen = HashSet::with_capacity(clicks.len());
        let clicks: Vec<&NewClick> = clicks
            .iter()
            .filter(|c| seen.insert(c.id.as_str()))
            .collect();
        if clicks.is_empty() {
            return Ok(0);
        }
        match &self.pool {
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin_with(self.begin_write()).await?;
                let mut inserted = 0;
                let mut rest = &clicks[..];
                for size in sqlite_chunks(clicks.len()) {
                    let (chunk, after) = rest.split_at(size);
                    rest = after;
                    // Selecting from VALUES (columns column1, column2, ...) skips clicks of a
                    // link deleted since the redirect, rather than failing the whole batch on
                    // the foreign key.
                    let mut sql = QueryBuilder::new(concat!(
                        "INSERT INTO clicks (",
                        click_cols!(),
                        ") SELECT * FROM ("
                    ));
                    sql.push_values(chunk, |mut row, c| {
                        row.push_bind(c.id.as_str())
                            .push_bind(c.link_id.as_str())
                            .push_bind(c.workspace_id.as_str())
                            .push_bind(c.bot_id.as_str())
                            .push_bind(c.entry_point_id.as_ref().map(|e| e.as_str()))
                            .push_bind(c.channel.as_deref())
                            .push_bind(c.kind.as_str())
                            .push_bind(c.at)
                            .push_bind(day_of(c.at))
                            .push_bind(c.visitor.as_deref())
                            .push_bind(c.utm_source.as_deref())
                            .push_bind(c.utm_medium.as_deref())
                            .push_bind(c.utm_campaign.as_deref());
                    });
                    sql.push(
                        ") AS v WHERE EXISTS (SELECT 1 FROM links WHERE links.id = v.column2) \
                         ON CONFLICT (id) DO NOTHING",
                    );
                    inserted += sql.build().execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                Ok(inserted)
            }
            Pool::Postgres(pool) => {
                // One statement whatever the batch size: a column per array parameter, so the
                // statement is prepared once and the parameter limit never applies.
                fn col<'a, T>(clicks: &[&'a NewClick], f: impl Fn(&'a NewClick) -> T) -> Vec<T> {
                    clicks.iter().map(|c| f(c)).collect()
                }
                let done = sqlx::query(concat!(
                    "INSERT INTO clicks (",
                    click_cols!(),
                    ") SELECT v.* FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                     $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::text[], \
                     $11::text[], $12::text[], $13::text[]) AS v (",
                    click_cols!(),
                    ") WHERE EXISTS (SELECT 1 FROM links WHERE links.id = v.link_id) \
                     ON CONFLICT (id) DO NOTHING"
                ))
                .bind(col(&clicks, |c| c.id.as_str()))
                .bind(col(&clicks, |c| c.link_id.as_str()))
                .bind(col(&clicks, |c| c.workspace_id.as_str()))
                .bind(col(&clicks, |c| c.bot_id.as_str()))
                .bind(col(&clicks, |c| {
                    c.entry_point_id.as_ref().map(|e| e.as_str())
                }))
                .bind(col(&clicks, |c| c.channel.as_deref()))
                .bind(col(&clicks, |c| c.kind.as_str()))
                .bind(col(&clicks, |c| c.at))
                .bind(col(&clicks, |c| day_of(c.at)))
                .bind(col(&clicks, |c| c.visitor.as_deref()))
                .bind(col(&clicks, |c| c.utm_source.as_deref()))
                .bind(col(&clicks, |c| c.utm_medium.as_deref()))
                .bind(col(&clicks, |c| c.utm_campaign.as_deref()))
                .execute(pool)
                .await?;
                Ok(done.rows_affected())
            }
        }
    }

    async fn click_by_id(&self, id: &ClickId) -> StoreResult<Option<Click>> {
        with_pool!(self, pool => {
            let row = sqlx::query(concat!("SELECT ", click_cols!(), " FROM clicks WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(click_from).transpose()
        })
    }

    async fn stats(
        &self,
        ws: &WorkspaceId,
        scope: StatsScope,
        range: StatsRange,
    ) -> StoreResult<Stats> {
        let (owner_sql, col, id) = match &scope {
            StatsScope::Link(id) => (
                "SELECT id FROM links WHERE id = $1 AND workspace_id = $2",
                "link_id",
                id.as_str(),
            ),
            StatsScope::EntryPoint(id) => (
                "SELECT id FROM entry_points WHERE id = $1 AND workspace_id = $2",
                "entry_point_id",
                id.as_str(),
            ),
            StatsScope::Bot(id) => (
                "SELECT id FROM bots WHERE id = $1 AND workspace_id = $2",
                "bot_id",
                id.as_str(),
            ),
        };
        let mut stats = Stats::default();
        with_pool!(self, pool => {
            // Every query below sees the same snapshot, so the buckets add up to the totals
            // even while clicks are being written.
            let mut tx = pool.begin_with(self.begin_snapshot()).await?;
            sqlx::query(owner_sql)
                .bind(id)
                .bind(ws.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;

            let mut sql = QueryBuilder::new(format!("SELECT {COUNTS} FROM clicks"));
            push_scope(&mut sql, "", col, id, ws.as_str(), range);
            let total = counts_from(&sql.build().fetch_one(&mut *tx).await?, String::new())?;
            stats.clicks = total.clicks;
            stats.unique_clicks = total.unique_clicks;
            stats.previews = total.previews;

            for dim in DIMENSIONS {
                let mut sql = QueryBuilder::new(format!("SELECT {dim} AS k, {COUNTS} FROM clicks"));
                push_scope(&mut sql, "", col, id, ws.as_str(), range);
                sql.push(format_args!(" GROUP BY {dim}"));
                let rows = sql.build().fetch_all(&mut *tx).await?;
                let mut buckets = Vec::with_capacity(rows.len());
                for r in &rows {
                    let key = if dim == "day" {
                        day_to_date(r.int("k")?)
                    } else {
                        r.opt_text("k")?.unwrap_or_else(|| NONE_KEY.to_owned())
                    };
                    buckets.push(counts_from(r, key)?);
                }
                // ISO dates sort in date order; other buckets: most clicks first.
                if dim == "day" {
                    buckets.sort_by(|a, b| a.key.cmp(&b.key));
                } else {
                    buckets.sort_by(|a, b| b.clicks.cmp(&a.clicks).then_with(|| a.key.cmp(&b.key)));
                }
                match dim {
                    "channel" => stats.by_channel = buckets,
                    "day" => stats.by_day = buckets,
                    "utm_source" => stats.by_utm_source = buckets,
                    "utm_medium" => stats.by_utm_medium = buckets,
                    _ => stats.by_utm_campaign = buckets,
                }
            }
            tx.commit().await?;
        });
        Ok(stats)
    }

    async fn top_links(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
        range: StatsRange,
        limit: u32,
    ) -> StoreResult<Vec<LinkCount>> {
        with_pool!(self, pool => {
            sqlx::query("SELECT id FROM bots WHERE id = $1 AND workspace_id = $2")
                .bind(bot.as_str())
                .bind(ws.as_str())
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)?;
            let mut sql = QueryBuilder::new(
                "SELECT l.id, l.code, l.slug, l.title, \
                 COUNT(CASE WHEN c.kind = 'click' THEN 1 END) AS clicks, \
                 COUNT(DISTINCT CASE WHEN c.kind = 'click' THEN c.visitor END) AS unique_clicks, \
                 COUNT(CASE WHEN c.kind = 'preview' THEN 1 END) AS previews \
                 FROM clicks c JOIN links l ON l.id = c.link_id",
            );
            push_scope(&mut sql, "c.", "bot_id", bot.as_str(), ws.as_str(), range);
            sql.push(" GROUP BY l.id, l.code, l.slug, l.title ORDER BY 5 DESC, 6 DESC, l.id LIMIT ")
                .push_bind(i64::from(limit.max(1)));
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    Ok(LinkCount {
                        link_id: r.text("id")?.into(),
                        code: r.text("code")?,
                        slug: r.opt_text("slug")?,
                        title: r.opt_text("title")?,
                        clicks: r.int("clicks")?,
                        unique_clicks: r.int("unique_clicks")?,
                        previews: r.int("previews")?,
                    })
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_chunks_cover_the_batch_with_few_sizes() {
        for n in [0, 1, 3, 4, 5, 255, 256, 257, 1000, 2000] {
            let sizes: Vec<usize> = sqlite_chunks(n).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n, "{n}: {sizes:?}");
            assert!(
                sizes.iter().all(|s| SQLITE_CHUNK_ROWS.contains(s)),
                "{sizes:?}"
            );
            assert!(sizes.is_sorted_by(|a, b| a >= b), "{sizes:?}");
        }
        assert_eq!(sqlite_chunks(341).collect::<Vec<_>>(), [256, 64, 16, 4, 1]);
    }
}
