//! SQLite's click log (`click_log`, migration 0004): each batch of clicks is stored as one row
//! per millisecond of its click ids, each row a single value holding its clicks (see
//! [`encode_click`]), and the counts are added from these rows later (see
//! `click_writer::fold`).
//!
//! A click id begins with its time in milliseconds ([`click_id_time`]), so the rows of that
//! millisecond hold the click: one row as a rule, two when a batch began in the millisecond
//! that the batch before it ended in. Writing a batch is then a dozen inserts at the end of the
//! table rather than one per click into a tree keyed by text, which was most of what writing a
//! click cost. Ids that carry no time (botlink makes none; the store takes any) share the rows
//! of [`UNTIMED`].

use foldhash::{HashSet, HashSetExt};
use rusqlite::{Transaction, params};

use crate::store::clicks::channel_of;
use crate::store::{ClickKind, NewClick, StoreResult};
use crate::util::{CLICK_TIME_LEN, click_id_time};

/// The version byte that starts a row of the log.
const LOG_V1: u8 = 1;

/// The `ms` of the rows that hold clicks whose ids carry no time.
pub(crate) const UNTIMED: i64 = -1;

/// The row a click id belongs in: its millisecond, and the part of the id the row keeps (the
/// rest after the time; the whole id for an id without one).
pub(crate) fn bucket_of(id: &str) -> (i64, &str) {
    match click_id_time(id) {
        Some(ms) => (ms, &id[CLICK_TIME_LEN..]),
        None => (UNTIMED, id),
    }
}

/// Why a row (of the log, or of the deltas from before it) cannot be read.
#[derive(Debug, PartialEq)]
pub(crate) enum Undecodable {
    /// Another version's encoding.
    Version(u8),
    /// Not a whole encoding, or values no batch could write.
    Damaged,
}

/// A click read back from a row of the log, borrowing its texts from the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoggedClick<'a> {
    /// The id after its time part (see [`bucket_of`]).
    pub(crate) rest: &'a str,
    pub(crate) link_id: &'a str,
    /// `""` for none.
    pub(crate) channel: &'a str,
    pub(crate) kind: ClickKind,
    /// Whether this click was its visitor's first on the link that day.
    pub(crate) unique: bool,
    pub(crate) at: i64,
    pub(crate) visitor: Option<[u8; 16]>,
}

const PREVIEW: u8 = 1;
const UNIQUE: u8 = 2;

/// Whether a click's texts fit their length bytes (those of every id botlink makes do).
fn fits(rest: &str, c: &NewClick) -> bool {
    [rest, c.link_id.as_str(), channel_of(c)]
        .iter()
        .all(|t| t.len() <= usize::from(u8::MAX))
}

/// Appends one click (that [`fits`]) to the row of millisecond `ms` being built: the rest of
/// its id, its link id and channel (each a length byte and UTF-8), a byte of flags (1: a
/// preview, else a click; 2: unique), its time as a signed LEB128 distance from `ms` (a byte,
/// as a rule), and its visitor (a length byte, 0 or 16, and the hash).
fn encode_click(out: &mut Vec<u8>, ms: i64, rest: &str, c: &NewClick, unique: bool) {
    for t in [rest, c.link_id.as_str(), channel_of(c)] {
        out.push(u8::try_from(t.len()).expect("a click that fits"));
        out.extend_from_slice(t.as_bytes());
    }
    let kind = match c.kind {
        ClickKind::Click => 0,
        ClickKind::Preview => PREVIEW,
    };
    out.push(kind | if unique { UNIQUE } else { 0 });
    // Zigzag, then 7 bits a byte, the last without the high bit.
    let d = c.at.wrapping_sub(ms);
    let mut z = ((d << 1) ^ (d >> 63)) as u64;
    while z >= 0x80 {
        out.push(z as u8 | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
    match &c.visitor {
        Some(v) => {
            out.push(16);
            out.extend_from_slice(v);
        }
        None => out.push(0),
    }
}

/// The first `n` bytes of `b`, which moves past them; `None` when there are fewer.
pub(super) fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = b.split_at_checked(n)?;
    *b = rest;
    Some(head)
}

/// Reads a row of millisecond `ms` of the log, all of it or nothing.
pub(crate) fn decode_row(ms: i64, b: &[u8]) -> Result<Vec<LoggedClick<'_>>, Undecodable> {
    fn text<'a>(b: &mut &'a [u8]) -> Option<&'a str> {
        let len = *take(b, 1)?.first()?;
        std::str::from_utf8(take(b, usize::from(len))?).ok()
    }
    fn distance(b: &mut &[u8]) -> Option<i64> {
        let mut z = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *take(b, 1)?.first()?;
            z |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        None
    }
    let (&version, mut b) = b.split_first().ok_or(Undecodable::Damaged)?;
    if version != LOG_V1 {
        return Err(Undecodable::Version(version));
    }
    let mut clicks = Vec::new();
    while !b.is_empty() {
        let click = (|| {
            let (rest, link_id, channel) = (text(&mut b)?, text(&mut b)?, text(&mut b)?);
            let flags = *take(&mut b, 1)?.first()?;
            let kind = match flags & !UNIQUE {
                0 => ClickKind::Click,
                PREVIEW => ClickKind::Preview,
                _ => return None,
            };
            let unique = flags & UNIQUE != 0;
            if unique && kind == ClickKind::Preview {
                return None;
            }
            let at = ms.wrapping_add(distance(&mut b)?);
            let visitor = match take(&mut b, 1)? {
                [0] => None,
                [16] => Some(take(&mut b, 16)?.try_into().ok()?),
                _ => return None,
            };
            Some(LoggedClick {
                rest,
                link_id,
                channel,
                kind,
                unique,
                at,
                visitor,
            })
        })();
        clicks.push(click.ok_or(Undecodable::Damaged)?);
    }
    Ok(clicks)
}

/// What a batch put in the log.
pub(super) struct Logged<'a> {
    /// The clicks logged, each with whether it was unique.
    pub(super) clicks: Vec<(&'a NewClick, bool)>,
    /// The rows they went to: `seq` from the first to the last (the rows of one transaction
    /// are consecutive); `None` when nothing was logged.
    pub(super) rows: Option<(i64, i64)>,
}

/// Writes a batch's clicks to the log in `tx`, each once: a click whose id is already stored
/// is skipped, and so are the later ones of several with one id in the batch, which keeps a
/// batch written again harmless (after a commit whose outcome was not clear, say). `unique`
/// is asked of each click that is logged, in the order of their times (the batch's order
/// within a millisecond), whether it is unique.
pub(super) fn log_batch<'a>(
    tx: &Transaction<'_>,
    clicks: &'a [NewClick],
    mut unique: impl FnMut(&'a NewClick) -> StoreResult<bool>,
) -> StoreResult<Logged<'a>> {
    // By millisecond, stable: the batch's order within one.
    let mut timed: Vec<(i64, usize, &'a str)> = clicks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (ms, rest) = bucket_of(c.id.as_str());
            (ms, i, rest)
        })
        .collect();
    timed.sort_unstable_by_key(|&(ms, i, _)| (ms, i));
    let mut stored_of = tx.prepare_cached("SELECT clicks FROM click_log WHERE ms = ?1")?;
    let mut insert = tx.prepare_cached("INSERT INTO click_log (ms, clicks) VALUES (?1, ?2)")?;
    let mut logged = Logged {
        clicks: Vec::with_capacity(clicks.len()),
        rows: None,
    };
    let mut row = Vec::with_capacity(1 + 80 * 64);
    let mut stored: HashSet<String> = HashSet::new();
    let mut taken: HashSet<&'a str> = HashSet::new();
    for group in timed.chunk_by(|a, b| a.0 == b.0) {
        let ms = group[0].0;
        // The ids of this millisecond already in the log: none, unless a batch before this
        // one ended in it.
        stored.clear();
        let mut rows = stored_of.query([ms])?;
        while let Some(r) = rows.next()? {
            match r.get_ref(0)?.as_blob().map(|b| decode_row(ms, b)) {
                Ok(Ok(old)) => stored.extend(old.iter().map(|c| c.rest.to_owned())),
                _ => tracing::warn!(ms, "a row of the click log cannot be read"),
            }
        }
        taken.clear();
        row.clear();
        row.push(LOG_V1);
        for &(_, i, rest) in group {
            let c = &clicks[i];
            if stored.contains(rest) || !taken.insert(rest) {
                continue;
            }
            if !fits(rest, c) {
                tracing::warn!(link = %c.link_id, "not logging a click with an id over 255 bytes");
                continue;
            }
            let unique = unique(c)?;
            encode_click(&mut row, ms, rest, c, unique);
            logged.clicks.push((c, unique));
        }
        if row.len() > 1 {
            insert.execute(params![ms, &row])?;
            let seq = tx.last_insert_rowid();
            logged.rows = Some(logged.rows.map_or((seq, seq), |(first, _)| (first, seq)));
        }
    }
    Ok(logged)
}

/// For tests: a click (on Telegram) or a preview of `link` at `at`, with a botlink click id,
/// so that it goes to the log's row of its millisecond.
#[cfg(test)]
pub(super) fn timed_click(
    link: &str,
    kind: ClickKind,
    at: i64,
    visitor: Option<[u8; 16]>,
) -> NewClick {
    NewClick {
        id: crate::util::click_id(at).as_str().into(),
        link_id: link.into(),
        channel: (kind == ClickKind::Click).then_some(botlink_core::Channel::Telegram),
        kind,
        at,
        visitor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_765_000_000_123;

    use timed_click as new_click;

    #[test]
    fn clicks_survive_their_row() {
        let a = new_click("lnk_a", ClickKind::Click, MS, Some([7; 16]));
        // Times away from the row's millisecond (late, early, far) round-trip too.
        let b = new_click("lnk_b", ClickKind::Preview, MS + 5_000, None);
        let c = new_click("lnk_c", ClickKind::Click, MS - 1, None);
        let d = new_click("lnk_d", ClickKind::Click, i64::MIN, None);
        let mut row = vec![LOG_V1];
        for (click, rest, unique) in [(&a, "abcdefgh", true), (&b, "12345678", false)] {
            encode_click(&mut row, MS, rest, click, unique);
        }
        let first_two = row.len();
        for (click, rest) in [(&c, "c"), (&d, "d")] {
            encode_click(&mut row, MS, rest, click, false);
        }
        let back = decode_row(MS, &row).expect("a whole row");
        let want = |rest, link_id, channel, kind, unique, at, visitor| LoggedClick {
            rest,
            link_id,
            channel,
            kind,
            unique,
            at,
            visitor,
        };
        assert_eq!(
            back,
            [
                want(
                    "abcdefgh",
                    "lnk_a",
                    "telegram",
                    ClickKind::Click,
                    true,
                    MS,
                    Some([7; 16])
                ),
                want(
                    "12345678",
                    "lnk_b",
                    "",
                    ClickKind::Preview,
                    false,
                    MS + 5_000,
                    None
                ),
                want(
                    "c",
                    "lnk_c",
                    "telegram",
                    ClickKind::Click,
                    false,
                    MS - 1,
                    None
                ),
                want(
                    "d",
                    "lnk_d",
                    "telegram",
                    ClickKind::Click,
                    false,
                    i64::MIN,
                    None
                ),
            ]
        );
        // Cut anywhere but between clicks, the row is refused whole.
        let ends: Vec<usize> = (1..=row.len())
            .filter(|&cut| decode_row(MS, &row[..cut]).is_ok())
            .collect();
        let first_end = 1 + (1 + 8) + (1 + 5) + (1 + 8) + 1 + 1 + (1 + 16);
        // c: a one-byte distance (-1); d: ten bytes.
        let c_len = (1 + 1) + (1 + 5) + (1 + 8) + 1 + 1 + 1;
        assert_eq!(row.len(), first_two + c_len + c_len - 1 + 10);
        assert_eq!(
            ends,
            [1, first_end, first_two, first_two + c_len, row.len()]
        );
        let mut newer = row.clone();
        newer[0] = LOG_V1 + 1;
        assert_eq!(
            decode_row(MS, &newer),
            Err(Undecodable::Version(LOG_V1 + 1))
        );
        let flags = 1 + 9 + 6 + 9;
        for bad in [4, PREVIEW | UNIQUE] {
            let mut bad_flags = row.clone();
            bad_flags[flags] = bad;
            assert_eq!(
                decode_row(MS, &bad_flags),
                Err(Undecodable::Damaged),
                "{bad}"
            );
        }
        assert_eq!(decode_row(MS, &[]), Err(Undecodable::Damaged));
    }

    #[test]
    fn a_text_too_long_for_its_length_byte_does_not_fit() {
        let long = "l".repeat(256);
        assert!(!fits(
            "abcdefgh",
            &new_click(&long, ClickKind::Click, MS, None)
        ));
        assert!(fits(
            "abcdefgh",
            &new_click(&long[1..], ClickKind::Click, MS, None)
        ));
        assert!(!fits(
            &long,
            &new_click("lnk_a", ClickKind::Click, MS, None)
        ));
    }

    #[test]
    fn ids_find_their_rows() {
        let id = crate::util::click_id(MS);
        assert_eq!(bucket_of(id.as_str()), (MS, &id.as_str()[7..]));
        assert_eq!(bucket_of("c1"), (UNTIMED, "c1"));
    }
}
