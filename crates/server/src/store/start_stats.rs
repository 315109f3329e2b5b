//! What statistics count beside clicks: Starts, and the contacts they brought.
//!
//! Starts are counted as they are recorded, in the transaction that records them
//! ([`count_start`], called by `FlowStore::commit`), per bot, day, link, entry point, channel
//! and UTM tags (`start_counts`, migration 7), so that statistics read the counts, as they do
//! for clicks, and cost the same whatever the number of Starts. New contacts are read from
//! the contacts themselves, each scope from one range of an index that holds what is counted
//! (`contacts_first_link`, `contacts_bot_subscribed`), without reading the rows.
//!
//! The statistics check that the link, entry point or bot belongs to the workspace first, in
//! the same snapshot (`ClickStore::stats`): what these queries read by its id is that
//! workspace's.

use std::collections::BTreeMap;

use botlink_core::Channel;
use sqlx::{Database, Encode, QueryBuilder, Type};

use super::db::Cols;
use super::flow::StartRecord;
use super::{
    BotId, Bucket, NONE_KEY, Stats, StatsRange, StatsScope, StoreResult, day_of, day_to_date,
};

/// Adds a Start, just recorded, to its count.
pub(super) fn count_start<DB: Database>(
    bot: &BotId,
    channel: Channel,
    start: &StartRecord,
) -> QueryBuilder<DB>
where
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let key = |v: Option<&str>| v.unwrap_or("").to_owned();
    let mut sql = QueryBuilder::new(
        "INSERT INTO start_counts (bot_id, day, link_id, entry_point_id, channel, utm_source, \
         utm_medium, utm_campaign, starts) VALUES (",
    );
    let mut values = sql.separated(", ");
    values.push_bind(bot.as_str().to_owned());
    values.push_bind(day_of(start.at));
    values.push_bind(key(start.link_id.as_ref().map(|l| l.as_str())));
    values.push_bind(key(start.entry_point_id.as_ref().map(|e| e.as_str())));
    values.push_bind(channel.as_str().to_owned());
    values.push_bind(key(start.utm.source.as_deref()));
    values.push_bind(key(start.utm.medium.as_deref()));
    values.push_bind(key(start.utm.campaign.as_deref()));
    sql.push(
        ", 1) ON CONFLICT (bot_id, day, link_id, entry_point_id, channel, utm_source, \
         utm_medium, utm_campaign) DO UPDATE SET starts = start_counts.starts + 1",
    );
    sql
}

/// Appends ` AND <col> >= from AND <col> <= to` for the range, open ends left out.
fn push_range<DB: Database>(
    sql: &mut QueryBuilder<DB>,
    col: &str,
    from: Option<i64>,
    to: Option<i64>,
) where
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    if let Some(from) = from {
        sql.push(format_args!(" AND {col} >= ")).push_bind(from);
    }
    if let Some(to) = to {
        sql.push(format_args!(" AND {col} <= ")).push_bind(to);
    }
}

/// The scope's Starts in the range, by day (`day`), the contact's channel (`channel`) and
/// the Start's UTM tags (`utm_source`, `utm_medium`, `utm_campaign`; '' for none), counted
/// (`n`).
pub(super) fn starts_query<DB: Database>(scope: &StatsScope, range: StatsRange) -> QueryBuilder<DB>
where
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let (col, id) = match scope {
        StatsScope::Link(id) => ("link_id", id.as_str()),
        StatsScope::EntryPoint(id) => ("entry_point_id", id.as_str()),
        StatsScope::Bot(id) => ("bot_id", id.as_str()),
    };
    let mut sql = QueryBuilder::new(format!(
        "SELECT day, channel, utm_source, utm_medium, utm_campaign, \
         CAST(SUM(starts) AS BIGINT) AS n FROM start_counts WHERE {col} = "
    ));
    sql.push_bind(id.to_owned());
    push_range(&mut sql, "day", range.from_day, range.to_day);
    sql.push(" GROUP BY 1, 2, 3, 4, 5");
    sql
}

/// The scope's new contacts in the range (`new_contacts`) and how many of them are
/// subscribed (`subscribed`); see [`Stats::new_contacts`].
pub(super) fn contacts_query<DB: Database>(
    scope: &StatsScope,
    range: StatsRange,
) -> QueryBuilder<DB>
where
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    // `subscribed` is a BOOLEAN on PostgreSQL, 0 or 1 on SQLite: both read as a condition.
    let mut sql = QueryBuilder::new(
        "SELECT COUNT(*) AS new_contacts, \
         COALESCE(SUM(CASE WHEN c.subscribed THEN 1 ELSE 0 END), 0) AS subscribed \
         FROM contacts c",
    );
    let (cond, id) = match scope {
        StatsScope::Link(id) => (" WHERE c.first_link_id = ", id.as_str()),
        // The entry point of the first touch's link, as it is now (a link's entry point
        // never changes).
        StatsScope::EntryPoint(id) => (
            " JOIN links l ON l.id = c.first_link_id WHERE l.entry_point_id = ",
            id.as_str(),
        ),
        StatsScope::Bot(id) => (" WHERE c.bot_id = ", id.as_str()),
    };
    sql.push(cond).push_bind(id.to_owned());
    // Days to epoch milliseconds: from the first day's start to the last day's end.
    const DAY_MS: i64 = 86_400_000;
    push_range(
        &mut sql,
        "c.created_at",
        range.from_day.map(|d| d.saturating_mul(DAY_MS)),
        range
            .to_day
            .map(|d| d.saturating_add(1).saturating_mul(DAY_MS).saturating_sub(1)),
    );
    sql
}

/// Adds the rows of [`starts_query`] to the totals and to each breakdown, adding the
/// buckets that have Starts but no clicks, and sorts the breakdowns (see [`Stats`]).
pub(super) fn add_starts<R: Cols>(stats: &mut Stats, rows: &[R]) -> StoreResult<()> {
    let mut by_day = keyed(&mut stats.by_day);
    let mut by_channel = keyed(&mut stats.by_channel);
    let mut by_source = keyed(&mut stats.by_utm_source);
    let mut by_medium = keyed(&mut stats.by_utm_medium);
    let mut by_campaign = keyed(&mut stats.by_utm_campaign);
    for r in rows {
        let n = r.int("n")?;
        stats.starts += n;
        add(&mut by_day, day_to_date(r.int("day")?), n);
        add(&mut by_channel, r.text("channel")?, n);
        add(&mut by_source, or_none(r.text("utm_source")?), n);
        add(&mut by_medium, or_none(r.text("utm_medium")?), n);
        add(&mut by_campaign, or_none(r.text("utm_campaign")?), n);
    }
    stats.by_day = sorted(by_day, true);
    stats.by_channel = sorted(by_channel, false);
    stats.by_utm_source = sorted(by_source, false);
    stats.by_utm_medium = sorted(by_medium, false);
    stats.by_utm_campaign = sorted(by_campaign, false);
    Ok(())
}

/// Reads the row of [`contacts_query`] into the totals.
pub(super) fn add_contacts<R: Cols>(stats: &mut Stats, row: &R) -> StoreResult<()> {
    stats.new_contacts = row.int("new_contacts")?;
    stats.subscribed = row.int("subscribed")?;
    Ok(())
}

fn keyed(buckets: &mut Vec<Bucket>) -> BTreeMap<String, Bucket> {
    buckets.drain(..).map(|b| (b.key.clone(), b)).collect()
}

fn add(buckets: &mut BTreeMap<String, Bucket>, key: String, n: i64) {
    buckets
        .entry(key)
        .or_insert_with_key(|key| Bucket {
            key: key.clone(),
            clicks: 0,
            unique_clicks: 0,
            previews: 0,
            starts: 0,
        })
        .starts += n;
}

/// A stored UTM tag as a bucket's key ('' is none).
fn or_none(tag: String) -> String {
    if tag.is_empty() {
        NONE_KEY.to_owned()
    } else {
        tag
    }
}

/// `by_day` in date order (ISO dates sort so); the others by clicks, then Starts (most
/// first), then key.
fn sorted(buckets: BTreeMap<String, Bucket>, by_date: bool) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = buckets.into_values().collect();
    if !by_date {
        out.sort_by(|a, b| {
            b.clicks
                .cmp(&a.clicks)
                .then_with(|| b.starts.cmp(&a.starts))
                .then_with(|| a.key.cmp(&b.key))
        });
    }
    out
}
