//! Small shared helpers: the clock, UTC times and dates as the API writes and reads them,
//! random codes.

use rand::Rng as _;
use rand::distr::Alphanumeric;

/// Nice value of the threads that work beside the async runtime's: SQLite's (the click writer
/// and sqlx's connection threads) and the metrics' upkeep. On a busy single core, a batch of
/// clicks would otherwise take its full time slices while redirects wait behind it (a 2 ms
/// median at half load in the redirect benchmark, against 0.5 ms with this, measured when
/// sqlx's threads wrote the clicks). At a lower priority, they use the time that requests
/// leave; when the click queue fills, redirects wait for room in it and so yield the CPU back
/// (see `clicks`).
const BACKGROUND_NICE: i32 = 10;

/// Lowers the priority of the calling thread to [`BACKGROUND_NICE`]. Best effort, Linux only.
pub(crate) fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    lower_thread(None);
}

/// Lowers one thread's priority: `None` for the calling thread (on Linux, PRIO_PROCESS with
/// a thread id, or none, applies to that thread alone).
#[cfg(target_os = "linux")]
pub(crate) fn lower_thread(tid: Option<rustix::process::Pid>) {
    if let Err(e) = rustix::process::setpriority_process(tid, BACKGROUND_NICE) {
        tracing::debug!(error = %e, ?tid, "could not lower a thread's priority");
    }
}

/// Milliseconds since the Unix epoch, UTC.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Days since the Unix epoch for a time in milliseconds (UTC).
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

/// A random base62 string: link codes and click ids. 62^n makes them unguessable, and
/// unlike sqids they encode nothing, so they cannot be enumerated.
pub fn random_code(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// The base62 digits in ASCII order, so that fixed-width numbers written with them sort as
/// text in numeric order.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A new click id for a click at `at_ms`: 7 base62 digits of the time in milliseconds (until
/// the year 2081), then 8 random ones (62^8 ≈ 2·10^14 per millisecond). Ids made later sort
/// later, so the click table's key index grows at its end instead of at random places, and
/// the random part keeps them unguessable.
pub fn click_id(at_ms: i64) -> NewClickId {
    let mut out = [0u8; CLICK_ID_LEN];
    let mut t = at_ms.max(0) as u64;
    for slot in out[..CLICK_TIME_LEN].iter_mut().rev() {
        *slot = BASE62[(t % 62) as usize];
        t /= 62;
    }
    let mut rng = rand::rng();
    for slot in &mut out[CLICK_TIME_LEN..] {
        *slot = BASE62[rng.random_range(0..62)];
    }
    NewClickId(out)
}

/// The time (epoch milliseconds) at the start of a click id made by [`click_id`]; `None` for
/// any other string.
pub fn click_id_time(id: &str) -> Option<i64> {
    if id.len() != CLICK_ID_LEN {
        return None;
    }
    let mut t = 0i64;
    for &b in &id.as_bytes()[..CLICK_TIME_LEN] {
        t = t * 62 + i64::from(base62_value(b)?);
    }
    id.as_bytes()[CLICK_TIME_LEN..]
        .iter()
        .all(|&b| base62_value(b).is_some())
        .then_some(t)
}

/// The value of a base62 digit of [`BASE62`].
fn base62_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'Z' => Some(b - b'A' + 10),
        b'a'..=b'z' => Some(b - b'a' + 36),
        _ => None,
    }
}

/// How many of a click id's characters are its time (the rest are random).
pub const CLICK_TIME_LEN: usize = 7;

/// A click id made by [`click_id`], held inline (no allocation while it waits in the queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NewClickId([u8; CLICK_ID_LEN]);

impl NewClickId {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("base62 digits are ASCII")
    }
}

/// Length of click ids; they travel inside stored-scheme parameters.
pub const CLICK_ID_LEN: usize = 15;

/// A short string held in place (up to `N` bytes), else on the heap: for ids and codes read
/// on every click, where following a pointer to the text would be a cache miss. Compared and
/// hashed as the `str` it holds, so that a map keyed by it is searched by `&str`.
#[derive(Debug, Clone)]
pub enum InlineStr<const N: usize> {
    Inline { len: u8, bytes: [u8; N] },
    Heap(Box<str>),
}

impl<const N: usize> InlineStr<N> {
    pub fn new(s: &str) -> Self {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= N => {
                let mut bytes = [0; N];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                InlineStr::Inline { len, bytes }
            }
            _ => InlineStr::Heap(s.into()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            InlineStr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).expect("copied from a str")
            }
            InlineStr::Heap(s) => s,
        }
    }
}

impl<const N: usize> From<&str> for InlineStr<N> {
    fn from(s: &str) -> Self {
        InlineStr::new(s)
    }
}

impl<const N: usize> From<String> for InlineStr<N> {
    fn from(s: String) -> Self {
        InlineStr::new(&s)
    }
}

impl<const N: usize> std::fmt::Display for InlineStr<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> PartialEq for InlineStr<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<const N: usize> Eq for InlineStr<N> {}

impl<const N: usize> std::hash::Hash for InlineStr<N> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl<const N: usize> std::borrow::Borrow<str> for InlineStr<N> {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// `YYYY-MM-DD`: the days of statistics.
const DAY: &[time::format_description::BorrowedFormatItem<'_>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// RFC 3339 in UTC with milliseconds, always three digits of them, as every time in the API's
/// answers is written: `2026-11-21T19:23:11.123Z`.
const RFC3339_MS: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

/// The Julian day number of 1970-01-01, the first day counted by [`day_of`].
const EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// The date of a day since the epoch, held within what `time` represents (years -9999 to
/// 9999). Every day formatted here is a click's or a parsed time's, both within it; the
/// clamp only keeps a corrupt value from failing an answer.
fn date_of(day: i64) -> time::Date {
    let julian = (day + EPOCH_JULIAN_DAY).clamp(
        i64::from(time::Date::MIN.to_julian_day()),
        i64::from(time::Date::MAX.to_julian_day()),
    );
    time::Date::from_julian_day(julian as i32).expect("clamped into the supported range")
}

/// `YYYY-MM-DD` for days since the epoch.
pub fn format_day(day: i64) -> String {
    date_of(day)
        .format(DAY)
        .expect("a date formats with its own components")
}

/// Parses `YYYY-MM-DD` into days since the epoch.
pub fn parse_day(s: &str) -> Option<i64> {
    let date = time::Date::parse(s, DAY).ok()?;
    Some(i64::from(date.to_julian_day()) - EPOCH_JULIAN_DAY)
}

/// RFC 3339 in UTC with milliseconds: `2026-11-21T19:23:11.123Z`.
pub fn format_rfc3339(ms: i64) -> String {
    let day = day_of(ms);
    let time = time::Time::MIDNIGHT + time::Duration::milliseconds(ms.rem_euclid(86_400_000));
    time::PrimitiveDateTime::new(date_of(day), time)
        .format(RFC3339_MS)
        .expect("a date and time format with their own components")
}

/// Parses RFC 3339 (`2026-12-01T00:00:00Z`, fractional seconds and `+02:00` offsets allowed)
/// into milliseconds since the epoch; `None` for anything else, and for a time whose UTC
/// date is past what [`format_rfc3339`] writes (after 9999-12-31).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    // RFC 3339 separates the date from the time with `T` (`t`, as its letters are case
    // insensitive; its section 5.6 note allows a space). The `time` crate skips whatever
    // character stands there, so the separator is checked here (the date is always
    // `YYYY-MM-DD`, ten bytes).
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()?
        .checked_to_offset(time::UtcOffset::UTC)?;
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn click_ids_sort_by_time_and_differ() {
        let a = click_id(1_700_000_000_000);
        let b = click_id(1_700_000_000_001);
        let c = click_id(1_800_000_000_000);
        let (a, b, c) = (a.as_str(), b.as_str(), c.as_str());
        assert!(a < b && b < c, "{a} {b} {c}");
        for id in [a, b, c] {
            assert_eq!(id.len(), CLICK_ID_LEN);
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        }
        // Same millisecond: the time part is equal, the random part tells them apart.
        let same: std::collections::HashSet<String> = (0..1000)
            .map(|_| click_id(1_700_000_000_000).as_str().to_owned())
            .collect();
        assert_eq!(same.len(), 1000);
        assert!(same.iter().all(|id| id[..7] == a[..7]));
    }

    #[test]
    fn base62_digits_have_their_places_as_values() {
        for (i, &d) in BASE62.iter().enumerate() {
            assert_eq!(base62_value(d), Some(i as u8));
        }
        assert_eq!((0..=255u8).filter_map(base62_value).count(), 62);
    }

    #[test]
    fn a_click_id_tells_its_time() {
        for at in [
            0,
            1,
            61,
            62,
            1_700_000_000_000,
            1_765_000_000_123,
            62i64.pow(7) - 1,
        ] {
            assert_eq!(click_id_time(click_id(at).as_str()), Some(at), "{at}");
        }
        for other in [
            "",
            "c1",
            "lnk_1",
            "0000000000000000",
            "000000000000 00",
            "0000000-0000000",
        ] {
            assert_eq!(click_id_time(other), None, "{other:?}");
        }
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        let ms = 1_763_700_000_123;
        let s = format_rfc3339(ms);
        assert_eq!(s, "2025-11-21T04:40:00.123Z");
        assert_eq!(parse_rfc3339(&s), Some(ms));
        assert_eq!(parse_rfc3339("2025-11-21T06:40:00.123+02:00"), Some(ms));
        assert_eq!(
            parse_day("2024-02-29").map(format_day).as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(parse_day("2023-02-29"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2025-11-21T04:40:00"), None);
        assert_eq!(parse_rfc3339("2025-11-21t04:40:00.123z"), Some(ms));
        assert_eq!(
            parse_rfc3339("2025-11-21T04:40:00.1239Z"),
            Some(ms),
            "to the ms"
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.999Z"), Some(-1));
        assert_eq!(
            format_rfc3339(parse_rfc3339("9999-12-31T23:59:59.999Z").unwrap()),
            "9999-12-31T23:59:59.999Z"
        );
        for bad in [
            "2026-12-01T00:00:00+0\u{e9}00",
            "2026-12-01T00:00:00+\u{e9}",
            "2026-12-0\u{e9}T00:00:00Z",
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01T00:00:00+24:00",
            "2026-12-01T00:00:00.Z",
            // Its UTC date, 10000-01-01, is past what the API writes.
            "9999-12-31T23:00:00-05:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
        for day in [-1000, 0, 19_000, 20_413, 60_000] {
            assert_eq!(parse_day(&format_day(day)), Some(day));
        }
    }

    #[test]
    fn only_t_or_a_space_separates_the_date_from_the_time() {
        let ms = parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
        for good in ["2026-12-01t00:00:00Z", "2026-12-01 00:00:00Z"] {
            assert_eq!(parse_rfc3339(good), Some(ms), "{good:?}");
        }
        for bad in [
            "2026-12-01X00:00:00Z",
            "2026-12-01_00:00:00Z",
            "2026-12-01000:00:00Z",
            "2026-12-01\u{0}00:00:00Z",
            "2026-12-01\t00:00:00Z",
            "2026-12-01\u{e9}00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Every time from 1970 to 9999 is written in one shape, to the millisecond, and read
        /// back as itself, also from any offset.
        #[test]
        fn times_are_written_alike_and_read_back(
            ms in 0..253_402_300_800_000_i64,
            offset_min in -(23 * 60 + 59)..=(23 * 60 + 59_i64),
        ) {
            let s = format_rfc3339(ms);
            proptest::prop_assert_eq!(s.len(), 24, "{}", s);
            proptest::prop_assert!(s.ends_with('Z') && &s[10..11] == "T" && &s[19..20] == ".");
            proptest::prop_assert_eq!(parse_rfc3339(&s), Some(ms));
            let local = ms + offset_min * 60_000;
            let sign = if offset_min < 0 { '-' } else { '+' };
            let (h, m) = (offset_min.abs() / 60, offset_min.abs() % 60);
            let shifted = format!("{}{sign}{h:02}:{m:02}", &format_rfc3339(local)[..23]);
            if (0..253_402_300_800_000).contains(&local) {
                proptest::prop_assert_eq!(parse_rfc3339(&shifted), Some(ms), "{}", shifted);
            }
            proptest::prop_assert_eq!(parse_day(&format_day(day_of(ms))), Some(day_of(ms)));
        }

        /// Any text at all is read or refused, never a panic.
        #[test]
        fn any_text_is_a_time_or_none(s in "\\PC{0,40}") {
            let _ = parse_rfc3339(&s);
            let _ = parse_day(&s);
        }
    }

    #[test]
    fn an_inline_str_is_its_str_in_place_or_not() {
        let mut map: foldhash::HashMap<InlineStr<8>, usize> = Default::default();
        for (i, s) in ["Ab3dE9xQ", "", "é", "Ab3dE9xQ9", "a much longer one"]
            .iter()
            .enumerate()
        {
            let held = InlineStr::<8>::new(s);
            assert_eq!(held.as_str(), *s);
            assert_eq!(
                matches!(held, InlineStr::Inline { .. }),
                s.len() <= 8,
                "{s}"
            );
            map.insert(held, i);
        }
        assert_eq!(map.get("Ab3dE9xQ9"), Some(&3));
        assert_eq!(map.get("a much longer one"), Some(&4));
        assert_eq!(map.get("Ab3dE9x"), None);
        assert_eq!(map.remove("Ab3dE9xQ"), Some(0));
    }

    #[test]
    fn codes_are_base62() {
        let c = random_code(12);
        assert_eq!(c.len(), 12);
        assert!(c.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(random_code(12), c);
    }
}
