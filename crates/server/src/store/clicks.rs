//! Clicks and the statistics counted from them.
//!
//! A batch of clicks is written in one transaction: the click log (appended at the end of one
//! tree, no index), the visitors seen that day (what makes a click unique), and, on
//! PostgreSQL, the counts per link, day and channel, added to once per key and batch. On
//! SQLite the click writer adds the counts later, before statistics are read and, unread,
//! within `ConnectOptions::click_fold_every` (see `click_writer`). Statistics read only the
//! counts, so they cost the same whatever the number of clicks.

/// The longest statistics wait for the clicks written so far to be added to their counts
/// (SQLite; see `click_writer`) before they read the counts as they are and say that they may
/// lag: long enough for a fold of a busy server's backlog, short enough that a database locked
/// by another process costs a dashboard a pause, not a hang.
pub const STATS_WAIT: Duration = Duration::from_secs(2);

// The batch's maps are keyed by our own ids and keyed hashes: a fast hasher, randomly seeded.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::sqlite::SqlitePool;
use sqlx::{Database, Encode, QueryBuilder, Type};

use super::db::{Cols, Pool, Store, from_name};
use super::sqlite::click_log::{bucket_of, decode_row};
use super::sqlite::click_writer::CountsLag;
use super::start_stats;
use super::{
    BotId, Bucket, Click, ClickId, ClickKind, ClickStore, LinkCount, NONE_KEY, NewClick, Stats,
    StatsRange, StatsScope, StoreError, StoreResult, WorkspaceId, day_of, day_to_date,
};

/// What a batch adds to one row of `click_counts` (both backends' writers).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counts {
    pub(super) clicks: i64,
    pub(super) unique_clicks: i64,
    pub(super) previews: i64,
}

impl Counts {
    /// What one click (unique or not) or one preview adds.
    pub(super) fn of(kind: ClickKind, unique: bool) -> Counts {
        match kind {
            ClickKind::Click => Counts {
                clicks: 1,
                unique_clicks: i64::from(unique),
                previews: 0,
            },
            ClickKind::Preview => Counts {
                previews: 1,
                ..Counts::default()
            },
        }
    }
}

// On SQLite, batches are written by the click writer's thread (`click_writer`); what follows
// down to the statistics is PostgreSQL's writer.

/// The key of a `click_counts` row; `""` stands for no channel.
pub(super) type CountKey<'a> = (&'a str, i64, &'static str);

/// A link and the channel of a click on it.
type LinkChannel<'a> = (&'a str, &'static str);

/// A visitor seen on a link on a day (paired, in the batch's list, with the channel of their
/// first click in the batch).
type VisitorKey<'a> = (i64, &'a str, [u8; 16]);

pub(super) fn channel_of(c: &NewClick) -> &'static str {
    c.channel.map_or("", |ch| ch.as_str())
}

/// Each click's visitor on its link and day, once, with the channel of the first such click.
fn batch_visitors<'a>(clicks: &[&'a NewClick]) -> Vec<(VisitorKey<'a>, &'static str)> {
    let mut seen = HashSet::with_capacity(clicks.len());
    clicks
        .iter()
        .filter(|c| c.kind == ClickKind::Click)
        .filter_map(|c| {
            let key = (day_of(c.at), c.link_id.as_str(), c.visitor?);
            seen.insert(key).then_some((key, channel_of(c)))
        })
        .collect()
}

/// The batch's additions to `click_counts`, sorted by key. `first_seen` are the visitors
/// (of `visitors`) that the database had not seen before: their first clicks are unique.
fn batch_counts<'a>(
    clicks: &[&'a NewClick],
    visitors: &[(VisitorKey<'a>, &'static str)],
    first_seen: &[(i64, String, Vec<u8>)],
) -> Vec<(CountKey<'a>, Counts)> {
    let mut counts: HashMap<CountKey<'a>, Counts> = HashMap::new();
    for c in clicks {
        let n = counts
            .entry((c.link_id.as_str(), day_of(c.at), channel_of(c)))
            .or_default();
        match c.kind {
            ClickKind::Click => n.clicks += 1,
            ClickKind::Preview => n.previews += 1,
        }
    }
    if !first_seen.is_empty() {
        // (day, visitor) -> (link, channel of the first click) for each of the batch's.
        let mut channels: HashMap<(i64, [u8; 16]), Vec<LinkChannel<'a>>> = HashMap::new();
        for &((day, link, visitor), channel) in visitors {
            channels
                .entry((day, visitor))
                .or_default()
                .push((link, channel));
        }
        for (day, link, visitor) in first_seen {
            let Ok(visitor) = <[u8; 16]>::try_from(visitor.as_slice()) else {
                continue;
            };
            let found = channels
                .get(&(*day, visitor))
                .and_then(|on| on.iter().find(|(l, _)| l == link));
            if let Some(&(link, channel)) = found {
                counts
                    .entry((link, *day, channel))
                    .or_default()
                    .unique_clicks += 1;
            }
        }
    }
    let mut out: Vec<_> = counts.into_iter().collect();
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The stored click ids from `lo` to `hi`. Click ids begin with their time: a batch's ids
/// are a narrow range, and the stored ids in it are usually none.
async fn stored_ids(conn: &mut PgConnection, lo: &str, hi: &str) -> StoreResult<HashSet<String>> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM clicks WHERE id >= $1 AND id <= $2")
        .bind(lo)
        .bind(hi)
        .fetch_all(conn)
        .await?;
    Ok(ids.into_iter().collect())
}

fn returned_visitor(r: &PgRow) -> StoreResult<(i64, String, Vec<u8>)> {
    Ok((
        r.int("day")?,
        r.text("link_id")?,
        r.opt_bytes("visitor")?.unwrap_or_default(),
    ))
}

fn click_from<R: Cols>(r: &R) -> StoreResult<Click> {
    let kind = r.text("kind")?;
    let at = r.int("at")?;
    Ok(Click {
        id: r.text("id")?.into(),
        link_id: r.text("link_id")?.into(),
        workspace_id: r.text("workspace_id")?.into(),
        bot_id: r.text("bot_id")?.into(),
        entry_point_id: r.opt_text("entry_point_id")?.map(Into::into),
        channel: r
            .opt_text("channel")?
            .map(|c| from_name("clicks", &c))
            .transpose()?,
        kind: kind.parse().map_err(|detail| StoreError::Corrupt {
            table: "clicks",
            detail,
        })?,
        at,
        day: day_of(at),
        visitor: r.opt_bytes("visitor")?.map(hex::encode),
        utm_source: r.opt_text("utm_source")?,
        utm_medium: r.opt_text("utm_medium")?,
        utm_campaign: r.opt_text("utm_campaign")?,
    })
}

/// A click of SQLite's click log (see `click_log`), with its link's details; `None` when it is
/// not in the log (clicks from before the log are in `clicks`) or its link was deleted.
async fn logged_click(pool: &SqlitePool, id: &ClickId) -> StoreResult<Option<Click>> {
    let (ms, rest) = bucket_of(id.as_str());
    let rows: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT clicks FROM click_log WHERE ms = $1 ORDER BY seq")
            .bind(ms)
            .fetch_all(pool)
            .await?;
    let mut found = None;
    for row in &rows {
        let clicks = decode_row(ms, row).map_err(|e| StoreError::Corrupt {
            table: "click_log",
            detail: format!("the row of {ms} ms: {e:?}"),
        })?;
        if let Some(c) = clicks.into_iter().find(|c| c.rest == rest) {
            let channel = match c.channel {
                "" => None,
                name => Some(from_name("click_log", name)?),
            };
            found = Some((c.link_id.to_owned(), channel, c.kind, c.at, c.visitor));
            break;
        }
    }
    let Some((link_id, channel, kind, at, visitor)) = found else {
        return Ok(None);
    };
    let Some(link) = sqlx::query(
        "SELECT workspace_id, bot_id, entry_point_id, utm_source, utm_medium, utm_campaign \
         FROM links WHERE id = $1",
    )
    .bind(&link_id)
    .fetch_optional(pool)
    .await?
    else {
        // A deleted link's clicks stay in the log, unreachable.
        return Ok(None);
    };
    Ok(Some(Click {
        id: id.clone(),
        link_id: link_id.into(),
        workspace_id: link.text("workspace_id")?.into(),
        bot_id: link.text("bot_id")?.into(),
        entry_point_id: link.opt_text("entry_point_id")?.map(Into::into),
        channel,
        kind,
        at,
        day: day_of(at),
        visitor: visitor.map(hex::encode),
        utm_source: link.opt_text("utm_source")?,
        utm_medium: link.opt_text("utm_medium")?,
        utm_campaign: link.opt_text("utm_campaign")?,
    }))
}

/// Summing counts rows (`cc`), as BIGINT on both databases (PostgreSQL sums to NUMERIC).
const SUMS: &str = "CAST(COALESCE(SUM(cc.clicks), 0) AS BIGINT) AS clicks, \
     CAST(COALESCE(SUM(cc.unique_clicks), 0) AS BIGINT) AS unique_clicks, \
     CAST(COALESCE(SUM(cc.previews), 0) AS BIGINT) AS previews \
     FROM click_counts cc JOIN links l ON l.id = cc.link_id";

/// The dimensions of [`Stats`]: the day and the channel are the counts', the UTM tags the
/// link's.
const DIMENSIONS: [&str; 5] = [
    "cc.channel",
    "cc.day",
    "l.utm_source",
    "l.utm_medium",
    "l.utm_campaign",
];

/// Appends ` WHERE l.<col> = id AND l.workspace_id = ws` and the range of days.
fn push_scope<DB: Database>(
    sql: &mut QueryBuilder<DB>,
    col: &str,
    id: &str,
    ws: &str,
    range: StatsRange,
) where
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    sql.push(format_args!(" WHERE l.{col} = "))
        .push_bind(id.to_owned());
    sql.push(" AND l.workspace_id = ").push_bind(ws.to_owned());
    if let Some(from) = range.from_day {
        sql.push(" AND cc.day >= ").push_bind(from);
    }
    if let Some(to) = range.to_day {
        sql.push(" AND cc.day <= ").push_bind(to);
    }
}

fn counts_from<R: Cols>(r: &R, key: String) -> StoreResult<Bucket> {
    Ok(Bucket {
        key,
        clicks: r.int("clicks")?,
        unique_clicks: r.int("unique_clicks")?,
        previews: r.int("previews")?,
        starts: 0,
    })
}

impl Store {
    /// The batch's visitors not known to be in `click_visitors` already.
    fn unknown_visitors<'a>(
        &self,
        visitors: &[(VisitorKey<'a>, &'static str)],
    ) -> Vec<(VisitorKey<'a>, &'static str)> {
        let seen = self.seen_visitors.lock().expect("seen visitors lock");
        visitors
            .iter()
            .filter(|((day, link, visitor), _)| !seen.contains(*day, link, visitor))
            .copied()
            .collect()
    }

    /// PostgreSQL's writer: one statement per table whatever the batch size, a column per
    /// array parameter, so each statement is prepared once and the parameter limit never
    /// applies.
    async fn insert_clicks_pg(&self, pool: &PgPool, clicks: &[NewClick]) -> StoreResult<u64> {
        fn col<'a, T: 'a, U>(rows: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
            rows.iter().map(f).collect()
        }
        // The first of several clicks with one id wins; so does a click already stored (a
        // batch written again after an error that came after its commit).
        let Some(keep_from) = super::seen::kept_from(clicks) else {
            return Ok(0);
        };
        let mut seen = HashSet::with_capacity(clicks.len());
        let mut clicks: Vec<&NewClick> = clicks
            .iter()
            .filter(|c| seen.insert(c.id.as_str()))
            .collect();
        let ids = || clicks.iter().map(|c| c.id.as_str());
        let (Some(lo), Some(hi)) = (
            ids().min().map(str::to_owned),
            ids().max().map(str::to_owned),
        ) else {
            return Ok(0);
        };
        let mut tx = pool.begin_with(self.begin_write()).await?;
        let stored = stored_ids(&mut tx, &lo, &hi).await?;
        clicks.retain(|c| !stored.contains(c.id.as_str()));
        let inserted = sqlx::query(
            "INSERT INTO clicks (id, link_id, channel, kind, at, visitor) \
             SELECT v.* FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
             $5::bigint[], $6::bytea[]) AS v (id, link_id, channel, kind, at, visitor) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(col(&clicks, |c| c.id.as_str()))
        .bind(col(&clicks, |c| c.link_id.as_str()))
        .bind(col(&clicks, |c| c.channel.map(|ch| ch.as_str())))
        .bind(col(&clicks, |c| c.kind.as_str()))
        .bind(col(&clicks, |c| c.at))
        .bind(col(&clicks, |c| c.visitor.map(|v| v.to_vec())))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let visitors = batch_visitors(&clicks);
        let mut unknown = self.unknown_visitors(&visitors);
        // Sorted, so that concurrent writers take row locks in the same order.
        unknown.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let first_seen = sqlx::query(
            "INSERT INTO click_visitors (day, link_id, visitor) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bytea[]) \
             ON CONFLICT DO NOTHING RETURNING day, link_id, visitor",
        )
        .bind(col(&unknown, |((day, _, _), _)| *day))
        .bind(col(&unknown, |((_, link, _), _)| *link))
        .bind(col(&unknown, |((_, _, visitor), _)| visitor.to_vec()))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(returned_visitor)
        .collect::<StoreResult<Vec<_>>>()?;
        let counts = batch_counts(&clicks, &unknown, &first_seen);
        sqlx::query(
            "INSERT INTO click_counts (link_id, day, channel, clicks, unique_clicks, \
             previews) SELECT v.* FROM UNNEST($1::text[], $2::bigint[], $3::text[], \
             $4::bigint[], $5::bigint[], $6::bigint[]) \
             AS v (link_id, day, channel, clicks, unique_clicks, previews) \
             WHERE EXISTS (SELECT 1 FROM links WHERE links.id = v.link_id) \
             ON CONFLICT (link_id, day, channel) DO UPDATE SET \
             clicks = click_counts.clicks + excluded.clicks, \
             unique_clicks = click_counts.unique_clicks + excluded.unique_clicks, \
             previews = click_counts.previews + excluded.previews",
        )
        .bind(col(&counts, |((link, _, _), _)| *link))
        .bind(col(&counts, |((_, day, _), _)| *day))
        .bind(col(&counts, |((_, _, channel), _)| *channel))
        .bind(col(&counts, |(_, n)| n.clicks))
        .bind(col(&counts, |(_, n)| n.unique_clicks))
        .bind(col(&counts, |(_, n)| n.previews))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM click_visitors WHERE day < $1")
            .bind(keep_from)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.remember_visitors(&visitors, keep_from);
        Ok(inserted)
    }

    /// After a batch's commit: all its visitors are in `click_visitors` now.
    fn remember_visitors(&self, visitors: &[(VisitorKey<'_>, &'static str)], keep_from: i64) {
        self.seen_visitors
            .lock()
            .expect("seen visitors lock")
            .extend(visitors.iter().map(|&(key, _)| key), keep_from);
    }

    /// Brings `click_counts` up to date before it is read: on SQLite (the only backend with a
    /// click writer), the writer adds the clicks logged since it last did (see
    /// `click_writer`), waited for up to [`STATS_WAIT`]. PostgreSQL's writer adds to the
    /// counts in each batch. When that fails or takes longer (the database cannot be written
    /// just now, or the writer has stopped), the counts are read as they are, without the
    /// clicks that wait (normally those of the last `ConnectOptions::click_fold_every`, more
    /// while folds keep failing), rather than not at all or late; the answer says so.
    async fn fold_click_counts(&self) -> Option<CountsLag> {
        let lag = self.click_writer.as_ref()?.fold(STATS_WAIT).await;
        if let Some(lag) = lag {
            tracing::warn!(
                why = lag.why.why(),
                "statistics without the clicks not yet added to their counts"
            );
        }
        lag
    }
}

#[async_trait]
impl ClickStore for Store {
    async fn insert_clicks(&self, clicks: Arc<[NewClick]>) -> StoreResult<u64> {
        match (&self.pool, &self.click_writer) {
            (Pool::Sqlite(_), Some(writer)) => writer.write(clicks).await,
            (Pool::Sqlite(_), None) => Err(StoreError::Writer("no click writer".into())),
            (Pool::Postgres(pool), _) => self.insert_clicks_pg(pool, &clicks).await,
        }
    }

    async fn click_by_id(&self, id: &ClickId) -> StoreResult<Option<Click>> {
        if let Pool::Sqlite(pool) = &self.pool
            && let Some(click) = logged_click(pool, id).await?
        {
            return Ok(Some(click));
        }
        with_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT c.id, c.link_id, l.workspace_id, l.bot_id, l.entry_point_id, c.channel, \
                 c.kind, c.at, c.visitor, l.utm_source, l.utm_medium, l.utm_campaign \
                 FROM clicks c JOIN links l ON l.id = c.link_id WHERE c.id = $1",
            )
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
                "id",
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
        let mut stats = Stats {
            lag: self.fold_click_counts().await,
            ..Stats::default()
        };
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

            let mut sql = QueryBuilder::new(format!("SELECT {SUMS}"));
            push_scope(&mut sql, col, id, ws.as_str(), range);
            let total = counts_from(&sql.build().fetch_one(&mut *tx).await?, String::new())?;
            stats.clicks = total.clicks;
            stats.unique_clicks = total.unique_clicks;
            stats.previews = total.previews;

            for dim in DIMENSIONS {
                let mut sql = QueryBuilder::new(format!("SELECT {dim} AS k, {SUMS}"));
                push_scope(&mut sql, col, id, ws.as_str(), range);
                sql.push(format_args!(" GROUP BY {dim}"));
                let rows = sql.build().fetch_all(&mut *tx).await?;
                let mut buckets = Vec::with_capacity(rows.len());
                for r in &rows {
                    let key = if dim == "cc.day" {
                        day_to_date(r.int("k")?)
                    } else {
                        r.opt_text("k")?
                            .filter(|k| !k.is_empty())
                            .unwrap_or_else(|| NONE_KEY.to_owned())
                    };
                    buckets.push(counts_from(r, key)?);
                }
                match dim {
                    "cc.channel" => stats.by_channel = buckets,
                    "cc.day" => stats.by_day = buckets,
                    "l.utm_source" => stats.by_utm_source = buckets,
                    "l.utm_medium" => stats.by_utm_medium = buckets,
                    _ => stats.by_utm_campaign = buckets,
                }
            }
            // Starts and contacts, in the same snapshot; sorts the buckets.
            let starts = start_stats::starts_query(&scope, range)
                .build()
                .fetch_all(&mut *tx)
                .await?;
            start_stats::add_starts(&mut stats, &starts)?;
            let contacts = start_stats::contacts_query(&scope, range)
                .build()
                .fetch_one(&mut *tx)
                .await?;
            start_stats::add_contacts(&mut stats, &contacts)?;
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
        self.fold_click_counts().await;
        with_pool!(self, pool => {
            sqlx::query("SELECT id FROM bots WHERE id = $1 AND workspace_id = $2")
                .bind(bot.as_str())
                .bind(ws.as_str())
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)?;
            let mut sql = QueryBuilder::new(format!("SELECT l.id, l.code, l.slug, l.title, {SUMS}"));
            push_scope(&mut sql, "bot_id", bot.as_str(), ws.as_str(), range);
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
