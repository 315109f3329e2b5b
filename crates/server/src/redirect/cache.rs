//! The link cache: short links resolved recently, kept in memory so that a redirect needs no
//! database. A link that changes is forgotten at once: by the instance that changed it, and on
//! PostgreSQL by every other instance too, which hears of the change from the database (see
//! [`crate::store::LinkChanges`] and [`follow_changes`]). While an instance cannot listen (the
//! database is away, say), what it keeps expires after a short lifetime instead, or the
//! operator's. An expired link is looked up again; when that lookup fails (the database is
//! away), the copy in memory is served all the same while younger than the long lifetime (or
//! the operator's), counted from when it was last known fresh ("stale if error"): redirects go
//! on through an outage, and stale copies are never served while the database answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::redirect::Resolved;
use crate::store::{LinkChange, Store};

/// Most memory the cached links may take (by [`footprint`]): about 20,000 one-channel links.
/// Past it the links too old even to serve stale go; when most are not, every link goes (each
/// hot one then costs one lookup more), so that links clicked once each (one per customer,
/// say) cannot grow the server without bound.
const MAX_BYTES: usize = 16 << 20;

/// How long a link is kept when nothing tells of changes: one SQLite instance makes every
/// change itself, and a PostgreSQL instance that listens hears of every other's.
pub const LONG_TTL_MS: u64 = 600_000;

/// How long a PostgreSQL instance that cannot listen keeps a link: as long as another
/// instance's change may go unseen.
pub const SHORT_TTL_MS: u64 = 2_000;

/// A short code or slug as the cache's key: in place when as short as a code (and most
/// slugs), so that finding a link compares the code without reading other memory.
type CodeKey = crate::util::InlineStr<30>;

/// The cached links, and the memory they take.
#[derive(Default)]
struct Links {
    map: foldhash::HashMap<CodeKey, (Instant, Arc<Resolved>)>,
    bytes: usize,
}

/// What one cached entry takes: the link (see [`Resolved::footprint`]) and its place in the
/// map (a bucket, most of one more for the map's spare room).
fn footprint(link: &Resolved) -> usize {
    link.footprint() + 2 * std::mem::size_of::<(CodeKey, (Instant, Arc<Resolved>))>()
}

impl Links {
    fn remove(&mut self, code: &str) {
        if let Some((_, link)) = self.map.remove(code) {
            self.bytes -= footprint(&link);
        }
    }

    /// Makes room for `more` bytes: drops the links older than `ttl` (the longest a link may
    /// be served, stale or not), then, if most are not, every link.
    fn make_room(&mut self, more: usize, ttl: Duration) {
        if self.bytes + more <= MAX_BYTES {
            return;
        }
        self.map.retain(|_, (at, _)| at.elapsed() < ttl);
        self.bytes = self.map.values().map(|(_, l)| footprint(l)).sum();
        if self.bytes + more > MAX_BYTES / 4 * 3 {
            self.map = Default::default();
            self.bytes = 0;
        }
    }
}

/// See the module.
pub struct LinkCache {
    links: RwLock<Links>,
    /// Bumped, under the write lock, whenever links are forgotten: a lookup that started
    /// before does not put in what it read (it may be the link as it was before the change).
    generation: AtomicU64,
    /// The lifetime in force, in milliseconds (0: nothing is kept).
    ttl_ms: AtomicU64,
    /// The operator's lifetime (`--link-cache-ms`), which holds whether or not changes are
    /// heard.
    fixed_ttl_ms: Option<u64>,
}

impl LinkCache {
    /// A cache whose links live `fixed_ttl_ms` when set, else as long as changes are heard
    /// of (see [`LinkCache::hears_changes`]): `hears_changes` at the start.
    pub fn new(fixed_ttl_ms: Option<u64>, hears_changes: bool) -> LinkCache {
        let cache = LinkCache {
            links: RwLock::default(),
            generation: AtomicU64::new(0),
            ttl_ms: AtomicU64::new(0),
            fixed_ttl_ms,
        };
        cache.hears_changes(hears_changes);
        cache
    }

    /// The link cached for a code or slug, unless it has expired.
    pub fn get(&self, code: &str) -> Option<Arc<Resolved>> {
        let ttl = Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed));
        let links = self.links.read().expect("cache lock");
        let (at, link) = links.map.get(code)?;
        (at.elapsed() < ttl).then(|| link.clone())
    }

    /// The link cached for a code or slug, expired or not, unless it is older than the long
    /// lifetime (see [`LinkCache::stale_ttl`]) counted from when it was last known fresh: what
    /// to serve when looking it up again failed because the database is away. Only then, so
    /// that a stale copy is never served while the database answers.
    pub fn get_stale(&self, code: &str) -> Option<Arc<Resolved>> {
        self.stale_at(code, Instant::now())
    }

    /// [`LinkCache::get_stale`] at `now` (a parameter so that tests need not wait).
    fn stale_at(&self, code: &str, now: Instant) -> Option<Arc<Resolved>> {
        let links = self.links.read().expect("cache lock");
        let (at, link) = links.map.get(code)?;
        (now.saturating_duration_since(*at) < self.stale_ttl()).then(|| link.clone())
    }

    /// The longest a link may be served, stale or not: the operator's lifetime when fixed
    /// (it then bounds staleness through an outage too), else the lifetime of links while
    /// changes are heard. Links are kept in memory this long, however short the lifetime in
    /// force, so that they can stand in for a failed lookup.
    fn stale_ttl(&self) -> Duration {
        Duration::from_millis(self.fixed_ttl_ms.unwrap_or(LONG_TTL_MS))
    }

    /// What to hand [`LinkCache::put`] with a link about to be looked up.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keeps a link looked up under `code`, unless a link was forgotten since
    /// [`LinkCache::generation`] answered `generation` (the lookup may have read it before
    /// its change).
    pub fn put(&self, code: &str, link: Arc<Resolved>, generation: u64) {
        let ttl = self.ttl_ms.load(Ordering::Relaxed);
        if ttl == 0 {
            return;
        }
        let mut links = self.links.write().expect("cache lock");
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        links.remove(code);
        let bytes = footprint(&link);
        links.make_room(bytes, self.stale_ttl().max(Duration::from_millis(ttl)));
        links.map.insert(CodeKey::new(code), (Instant::now(), link));
        links.bytes += bytes;
    }

    /// Forgets the links of these codes and slugs.
    pub fn forget<'a>(&self, codes: impl IntoIterator<Item = &'a str>) {
        let mut links = self.links.write().expect("cache lock");
        for code in codes {
            links.remove(code);
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Forgets every link.
    pub fn forget_all(&self) {
        *self.links.write().expect("cache lock") = Links::default();
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Whether this instance hears of every change to a link now: links live long if so, and
    /// briefly if not (unless the operator fixed their lifetime).
    pub fn hears_changes(&self, yes: bool) {
        let ttl = self
            .fixed_ttl_ms
            .unwrap_or(if yes { LONG_TTL_MS } else { SHORT_TTL_MS });
        self.ttl_ms.store(ttl, Ordering::Relaxed);
    }

    /// This instance no longer hears of changes (a PostgreSQL instance that lost its
    /// listening connection, as when the database is away): links live briefly from now on
    /// (unless the operator fixed their lifetime), each counted from now, since until now it
    /// heard of every change to them (those that had not expired under the lifetime in force
    /// until now). Past that brief lifetime each is looked up again, and served stale only if
    /// the lookup fails (see [`LinkCache::get_stale`]), which bounds how long a change made
    /// elsewhere may go unseen while the database answers.
    pub fn stops_hearing(&self) {
        let ttl = Duration::from_millis(self.ttl_ms());
        self.hears_changes(false);
        let now = Instant::now();
        let mut links = self.links.write().expect("cache lock");
        let links = &mut *links;
        let mut bytes = 0;
        links.map.retain(|_, (at, link)| {
            let live = at.elapsed() < ttl;
            if live {
                *at = now;
                bytes += footprint(link);
            }
            live
        });
        links.bytes = bytes;
    }

    /// The lifetime of a cached link now, in milliseconds.
    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms.load(Ordering::Relaxed)
    }
}

/// PostgreSQL: forgets every link another instance (or anything else) changes, until `stop`.
/// Until it listens, and while it cannot, links live briefly (see [`LinkCache::stops_hearing`]:
/// those it had go on being served while lookups fail); each time it starts listening it forgets every link,
/// since changes made before went unheard. An outage is logged once when it starts and once
/// when it ends, however many tries to listen again it takes.
pub async fn follow_changes(store: Arc<Store>, cache: Arc<LinkCache>, stop: CancellationToken) {
    let listening = metrics::gauge!(crate::app::metrics::LINK_CHANGES_LISTENING);
    listening.set(0.0);
    // The pause before the next try to listen: none at the start.
    let mut retry: Option<Duration> = None;
    // Whether this outage (or the failure to listen at the start) has been logged.
    let mut logged = false;
    loop {
        if let Some(pause) = retry {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        // Not past a stop: a database that does not answer must not hold up shutdown.
        let listened = tokio::select! {
            _ = stop.cancelled() => return,
            listened = store.listen_link_changes() => listened,
        };
        let mut changes = match listened {
            Ok(Some(changes)) => changes,
            Ok(None) => return,
            Err(e) => {
                let pause = retry.map_or(Duration::from_millis(100), |p| {
                    (p * 2).min(Duration::from_secs(5))
                });
                if logged {
                    tracing::debug!(error = %e, retry_ms = pause.as_millis() as u64, "cannot listen to link changes yet");
                } else {
                    tracing::warn!(
                        error = %e,
                        retry_ms = pause.as_millis() as u64,
                        link_cache_ms = cache.ttl_ms(),
                        "cannot listen to link changes; cached links live briefly until it can"
                    );
                    logged = true;
                }
                retry = Some(pause);
                continue;
            }
        };
        cache.forget_all();
        cache.hears_changes(true);
        listening.set(1.0);
        if logged {
            tracing::info!("listening to link changes again");
        }
        let lost = loop {
            let heard = tokio::select! {
                _ = stop.cancelled() => return,
                heard = changes.next() => heard,
            };
            match heard {
                Ok(LinkChange::Changed(codes)) => cache.forget(codes.iter().map(String::as_str)),
                Ok(LinkChange::Missed) => break "the connection closed".to_owned(),
                Err(e) => break e.to_string(),
            }
        };
        cache.stops_hearing();
        listening.set(0.0);
        tracing::warn!(
            error = %lost,
            link_cache_ms = cache.ttl_ms(),
            "lost the connection that listens to link changes; the links in memory are looked \
             up again once older than link_cache_ms, and served as they are while lookups fail"
        );
        logged = true;
        retry = Some(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    fn resolved(code: &str) -> Arc<Resolved> {
        let link = crate::store::Link {
            id: format!("lnk_{code}").into(),
            workspace_id: "wsp_1".to_owned().into(),
            bot_id: "bot_1".to_owned().into(),
            entry_point_id: None,
            code: code.into(),
            slug: None,
            title: None,
            channels: vec![botlink_core::Channel::Telegram],
            scheme: botlink_core::Scheme::Raw,
            signed: false,
            payload: Default::default(),
            deep_links: Default::default(),
            utm: Default::default(),
            expires_at: None,
            max_clicks: None,
            clicks_used: 0,
            disabled: false,
            created_at: 0,
            updated_at: 0,
        };
        Arc::new(Resolved::new(
            link,
            &SecretKey::parse(&"7".repeat(64)).unwrap(),
            "https://go.example",
        ))
    }

    #[test]
    fn a_lookup_that_raced_a_change_is_not_kept() {
        let cache = LinkCache::new(None, true);
        let before = cache.generation();
        cache.put("abc", resolved("abc"), before);
        assert!(cache.get("abc").is_some());

        // A lookup starts, the link changes (and is forgotten), the lookup ends with what it
        // read before the change: not kept.
        let lookup = cache.generation();
        cache.forget(["abc"]);
        cache.put("abc", resolved("abc"), lookup);
        assert!(cache.get("abc").is_none());
        // The next lookup is kept.
        cache.put("abc", resolved("abc"), cache.generation());
        assert!(cache.get("abc").is_some());
        cache.forget_all();
        assert!(cache.get("abc").is_none());
    }

    #[test]
    fn links_clicked_once_each_cannot_grow_the_cache_past_its_bound() {
        let cache = LinkCache::new(None, true);
        let one = footprint(&resolved("c0000000"));
        let n = 3 * MAX_BYTES / one;
        for i in 0..n {
            let code = format!("c{i:07}");
            cache.put(&code, resolved(&code), cache.generation());
            let links = cache.links.read().unwrap();
            assert!(
                links.bytes <= MAX_BYTES,
                "{} bytes after {i} links",
                links.bytes
            );
        }
        let links = cache.links.read().unwrap();
        let counted: usize = links.map.values().map(|(_, l)| footprint(l)).sum();
        assert_eq!(links.bytes, counted, "the count is kept exactly");
        assert!(!links.map.is_empty());
        drop(links);
        // The last link put is there; forgetting it gives its bytes back.
        let last = format!("c{:07}", n - 1);
        assert!(cache.get(&last).is_some());
        let before = cache.links.read().unwrap().bytes;
        cache.forget([last.as_str()]);
        assert_eq!(cache.links.read().unwrap().bytes, before - one);
    }

    #[test]
    fn links_kept_when_changes_stop_being_heard_live_on_from_then() {
        // The margins are wide: a loaded machine may sleep longer than asked.
        let ttl = Duration::from_millis(800);
        let cache = LinkCache::new(Some(ttl.as_millis() as u64), true);
        cache.put("old", resolved("old"), cache.generation());
        std::thread::sleep(ttl);
        // Expired before the loss: stays expired.
        cache.put("abc", resolved("abc"), cache.generation());
        std::thread::sleep(ttl / 2);
        cache.stops_hearing();
        std::thread::sleep(ttl * 3 / 4);
        assert!(cache.get("old").is_none());
        // Put longer ago than its lifetime, but heard of until the loss.
        assert!(
            cache.get("abc").is_some(),
            "a kept link lives on from the loss"
        );
        let links = cache.links.read().unwrap();
        assert_eq!(links.map.len(), 1);
        assert_eq!(
            links.bytes,
            footprint(&resolved("abc")),
            "the count is kept exactly"
        );
    }

    #[test]
    fn an_expired_link_stands_in_for_a_failed_lookup_while_young_enough() {
        // Default settings, not listening: links expire after the short lifetime, but may
        // stand in for a failed lookup until the long one has passed since they were put.
        let cache = LinkCache::new(None, false);
        cache.put("abc", resolved("abc"), cache.generation());
        let now = Instant::now();
        assert!(cache.get("abc").is_some(), "fresh");
        assert!(cache.stale_at("abc", now).is_some(), "fresh");
        let expired = now + Duration::from_millis(SHORT_TTL_MS + 1_000);
        assert!(
            cache.stale_at("abc", expired).is_some(),
            "expired, but young enough to stand in"
        );
        let too_old = now + Duration::from_millis(LONG_TTL_MS + 1_000);
        assert!(cache.stale_at("abc", too_old).is_none(), "too old");
        assert!(cache.get_stale("nope").is_none());
        // Forgotten (changed): never served, stale or not.
        cache.forget(["abc"]);
        assert!(cache.stale_at("abc", now).is_none());

        // The operator's lifetime bounds staleness too.
        let fixed = LinkCache::new(Some(5_000), false);
        fixed.put("abc", resolved("abc"), fixed.generation());
        let now = Instant::now();
        assert!(fixed.stale_at("abc", now).is_some());
        assert!(
            fixed
                .stale_at("abc", now + Duration::from_millis(6_000))
                .is_none()
        );
    }

    #[test]
    fn with_default_settings_a_lost_listener_keeps_links_older_than_the_brief_lifetime() {
        let cache = LinkCache::new(None, true);
        cache.put("abc", resolved("abc"), cache.generation());
        // Put longer ago than the brief lifetime, well within the long one it lived under.
        let earlier = Instant::now()
            .checked_sub(Duration::from_millis(SHORT_TTL_MS + 1_000))
            .expect("the clock has run this long");
        cache.links.write().unwrap().map.get_mut("abc").unwrap().0 = earlier;
        cache.stops_hearing();
        assert!(
            cache.get("abc").is_some(),
            "fresh until the loss, so fresh from it"
        );
    }

    #[test]
    fn links_live_long_while_changes_are_heard_unless_the_operator_fixed_it() {
        let cache = LinkCache::new(None, true);
        assert_eq!(cache.ttl_ms(), LONG_TTL_MS);
        cache.hears_changes(false);
        assert_eq!(cache.ttl_ms(), SHORT_TTL_MS);
        let fixed = LinkCache::new(Some(5_000), false);
        assert_eq!(fixed.ttl_ms(), 5_000);
        fixed.hears_changes(true);
        assert_eq!(fixed.ttl_ms(), 5_000);
        // 0: nothing kept.
        let none = LinkCache::new(Some(0), true);
        none.put("abc", resolved("abc"), none.generation());
        assert!(none.get("abc").is_none());
    }
}
