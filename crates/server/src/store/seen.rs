//! The visitors this process has written to `click_visitors`: a later click of theirs on the
//! same link and day is not unique, and the click writer knows it without asking the
//! database. A person who clicks a link twice costs the second time only the click's row and
//! its count.
//!
//! Only what a committed batch wrote goes in, and `click_visitors` rows are deleted only once
//! their day is over, so "seen" stays true when other instances write the same database. What
//! is not here is asked of the database: the set is bounded, and emptied when it fills.

use foldhash::{HashMap, HashSet};

/// The first day whose visitors a batch of clicks (the latest on `last_day`) keeps in
/// `click_visitors`: today and yesterday (a late click of yesterday); a visitor hash is never
/// seen again after its day.
pub(crate) fn kept_from(clicks: &[super::NewClick]) -> Option<i64> {
    clicks
        .iter()
        .map(|c| super::day_of(c.at))
        .max()
        .map(|last_day| last_day - 1)
}

/// Most visitors remembered (about 27 bytes each with the table's own, and the link ids once
/// each).
const MAX_VISITORS: usize = 100_000;

/// Visitors seen per day and link, the links interned.
#[derive(Default)]
pub(crate) struct SeenVisitors {
    links: HashMap<Box<str>, u32>,
    /// (day, link, visitor): 24 bytes (a day since the epoch fits 32 bits).
    seen: HashSet<(i32, u32, [u8; 16])>,
    /// The earliest day in `seen`.
    oldest: i64,
}

/// Sizes only: the visitors themselves are nobody's business in a log line.
impl std::fmt::Debug for SeenVisitors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeenVisitors")
            .field("links", &self.links.len())
            .field("visitors", &self.seen.len())
            .finish()
    }
}

impl SeenVisitors {
    /// Whether `visitor` is known to be in `click_visitors` for `link` on `day`.
    pub(crate) fn contains(&self, day: i64, link: &str, visitor: &[u8; 16]) -> bool {
        let Ok(day) = i32::try_from(day) else {
            return false;
        };
        self.links
            .get(link)
            .is_some_and(|&l| self.seen.contains(&(day, l, *visitor)))
    }

    /// Remembers visitors that a committed batch left in `click_visitors`; forgets those of
    /// the days before `keep_from` (their rows are gone or going).
    pub(crate) fn extend<'a>(
        &mut self,
        visitors: impl ExactSizeIterator<Item = (i64, &'a str, [u8; 16])>,
        keep_from: i64,
    ) {
        if self.oldest < keep_from {
            self.seen.retain(|&(day, _, _)| i64::from(day) >= keep_from);
            self.oldest = keep_from;
        }
        if self.seen.len() + visitors.len() > MAX_VISITORS || self.links.len() >= MAX_VISITORS {
            self.links.clear();
            self.seen.clear();
        }
        for (day, link, visitor) in visitors {
            let Ok(short_day) = i32::try_from(day) else {
                continue;
            };
            if day < keep_from {
                continue;
            }
            self.oldest = if self.seen.is_empty() {
                day
            } else {
                self.oldest.min(day)
            };
            let next = u32::try_from(self.links.len()).unwrap_or(u32::MAX);
            let l = match self.links.get(link) {
                Some(&l) => l,
                None => *self.links.entry(link.into()).or_insert(next),
            };
            self.seen.insert((short_day, l, visitor));
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_day_and_link_and_forgets_old_days() {
        let mut s = SeenVisitors::default();
        let v = [7; 16];
        s.extend([(10, "lnk_a", v)].into_iter(), 9);
        assert!(s.contains(10, "lnk_a", &v));
        assert!(!s.contains(10, "lnk_b", &v), "another link");
        assert!(!s.contains(11, "lnk_a", &v), "another day");
        assert!(!s.contains(10, "lnk_a", &[8; 16]), "another visitor");

        // A new day: the day before yesterday goes.
        s.extend([(11, "lnk_b", v)].into_iter(), 11);
        assert!(!s.contains(10, "lnk_a", &v));
        assert!(s.contains(11, "lnk_b", &v));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn stays_bounded() {
        let mut s = SeenVisitors::default();
        let batch: Vec<_> = (0..MAX_VISITORS / 2)
            .map(|i| (1, "lnk_a", (i as u128).to_le_bytes()))
            .collect();
        s.extend(batch.iter().copied(), 0);
        s.extend(batch.iter().map(|&(d, _, v)| (d, "lnk_b", v)), 0);
        assert_eq!(s.len(), MAX_VISITORS);
        // Full: the next batch starts it afresh rather than grow past the bound.
        s.extend([(1, "lnk_c", [0; 16])].into_iter(), 0);
        assert_eq!(s.len(), 1);
        assert!(s.contains(1, "lnk_c", &[0; 16]));
        assert!(!s.contains(1, "lnk_a", &[0; 16]));
    }
}
