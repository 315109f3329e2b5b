//! Server configuration: flags, with `BOTLINK_*` environment variables as fallbacks, then
//! defaults that make `botlink serve` work on a fresh machine with nothing else installed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr as _;

use crate::crypto::{KeyError, KeySource, SecretKey};

/// Everything `botlink serve` needs. Tests build it directly; the CLI fills it from flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where `botlink serve` listens (tests pass their own listener instead).
    pub listen: SocketAddr,
    /// Public base URL used in short links and webhook URLs, without a trailing slash.
    pub public_url: String,
    /// `sqlite://...`, a file path, or `postgres://...`.
    pub database_url: String,
    /// The server secret (hex or Base64 of 32 bytes). When absent with SQLite, a key file
    /// beside the database is used (created on first start).
    pub secret_key: Option<String>,
    /// Where the key file lives when `secret_key` is absent (default: beside the SQLite file).
    pub key_file: Option<PathBuf>,
    /// An admin API key of the default workspace, accepted in addition to stored keys.
    pub admin_key: Option<String>,
    /// Requests per second allowed per API key (burst: twice that).
    pub rate_limit_per_second: u32,
    /// Capacity of the in-memory click queue; clicks past it are dropped and counted.
    pub click_queue: usize,
    /// Most clicks written in one batch.
    pub click_batch: usize,
    /// Longest a click waits in the queue before its batch is written, in milliseconds.
    pub click_flush_ms: u64,
    /// How long a redirect waits for room in a full click queue before its click is dropped
    /// (and counted): how much a server whose database has fallen behind slows its redirects
    /// down before it loses clicks.
    pub click_full_wait: std::time::Duration,
    /// How long a batch of clicks may go unwritten (the database failing, or locked) before
    /// `/healthz` answers 503: long enough for a brief lock or a failover, short enough to be
    /// told before the click queue fills (16,384 clicks is seconds at a busy campaign's rate).
    pub click_write_grace: std::time::Duration,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub behind_proxy: bool,
    /// How long a resolved short link is served from memory before it is looked up again.
    /// `None`: 10 min, since every instance forgets a changed link at once (on PostgreSQL it
    /// hears of other instances' changes from the database), and 2 s on PostgreSQL while it
    /// cannot listen (see `link_cache`).
    pub link_cache_ms: Option<u64>,
    /// How long a connection may go without sending a whole request head, counted from when
    /// the server starts reading one (the connection opened, or the last answer went out);
    /// then it is closed. So idle kept-alive connections are closed after this, and so is a
    /// client that sends nothing, or trickles a head's bytes. Keep it above the idle timeout of
    /// a load balancer in front (60 s on AWS's ALB and in nginx's upstream keep-alive), or the
    /// balancer may reuse a connection as botlink closes it.
    pub idle_timeout: std::time::Duration,
    /// How long a request body has to arrive whole, from the request's head; a body that has
    /// not fails to read (the API answers 408). A megabyte (the most the API takes) in a
    /// minute is 17 kB/s, slower than any client that means to send it.
    pub body_deadline: std::time::Duration,
    /// Address ranges that outbound requests (deliveries, channel APIs) may reach although
    /// they are private, loopback or the like (`--outbound-allow`); none by default.
    pub outbound_allow: crate::outbound::OutboundAllow,
    /// When a failed delivery is tried again, after each failed attempt in turn; after the
    /// last, it is given up (`--retry-schedule`, default `5s,5m,30m,2h,5h,10h`).
    pub retry_schedule: Vec<std::time::Duration>,
    /// How long a worker's claim on an update, a message or a delivery lasts, in milliseconds
    /// (`--worker-lease-ms`, hidden; default [`crate::flow::LEASE_MS`]): work an instance was
    /// doing when it died is taken up again after this. Below the outbound client's total
    /// timeout (15 s), another instance may claim an attempt still under way and make it a
    /// second time: a setting for tests that kill a server, not for production.
    pub worker_lease_ms: i64,
}

/// The default `--retry-schedule`: seven attempts over about 18 hours.
pub const DEFAULT_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h";

/// Reads a retry schedule: durations such as `5s`, `5m`, `2h`, comma-separated, each after
/// the one before.
pub fn parse_retry_schedule(s: &str) -> Result<Vec<std::time::Duration>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let d = humantime::parse_duration(part).map_err(|e| {
            format!("{part:?} in the retry schedule is not a duration such as 5s, 5m or 2h ({e})")
        })?;
        if d.is_zero() || d > std::time::Duration::from_secs(7 * 86_400) {
            return Err(format!(
                "{part:?} in the retry schedule must be more than 0 and at most 7 days"
            ));
        }
        if out.last().is_some_and(|last| *last > d) {
            return Err(format!(
                "the retry schedule must not shrink: {part:?} comes after a longer wait"
            ));
        }
        out.push(d);
    }
    if out.len() > 20 {
        return Err("the retry schedule has more than 20 waits".to_owned());
    }
    Ok(out)
}

impl Config {
    /// Defaults for a server at `listen` with the given database.
    pub fn new(listen: SocketAddr, database_url: impl Into<String>) -> Config {
        Config {
            listen,
            public_url: format!("http://{listen}"),
            database_url: database_url.into(),
            secret_key: None,
            key_file: None,
            admin_key: None,
            rate_limit_per_second: 50,
            click_queue: 16_384,
            click_batch: 500,
            click_flush_ms: 50,
            click_full_wait: crate::redirect::clicks::FULL_WAIT,
            click_write_grace: std::time::Duration::from_secs(10),
            behind_proxy: false,
            link_cache_ms: None,
            idle_timeout: std::time::Duration::from_secs(75),
            body_deadline: std::time::Duration::from_secs(60),
            outbound_allow: crate::outbound::OutboundAllow::default(),
            retry_schedule: parse_retry_schedule(DEFAULT_RETRY_SCHEDULE)
                .expect("the default schedule reads"),
            worker_lease_ms: crate::flow::LEASE_MS,
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Whether the database URL selects PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        is_postgres_url(&self.database_url)
    }

    /// The SQLite file the URL names, if it names one.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        if self.is_postgres() {
            return None;
        }
        let u = &self.database_url;
        let path = u
            .strip_prefix("sqlite://")
            .or_else(|| u.strip_prefix("sqlite:"))
            .unwrap_or(u);
        let path = path.split('?').next().unwrap_or(path);
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }

    /// Where the key file is read from or created.
    pub fn resolved_key_file(&self) -> PathBuf {
        if let Some(p) = &self.key_file {
            return p.clone();
        }
        match self.sqlite_path() {
            Some(db) => {
                let name = db
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "botlink".into());
                db.with_file_name(format!("{name}.key"))
            }
            None => PathBuf::from("botlink.key"),
        }
    }
}

/// What is wrong with a configuration, found before anything starts (see [`Config::validate`]).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "BOTLINK_ADMIN_KEY must start with `blk_`, as every botlink API key does: the API refuses any other bearer token, so this key would never work. Use `blk_` and 32 random characters, e.g. blk_$(openssl rand -hex 16)"
    )]
    AdminKeyPrefix,
    #[error(
        "BOTLINK_ADMIN_KEY is too short ({0} characters): use at least 24, e.g. blk_$(openssl rand -hex 16)"
    )]
    AdminKeyShort(usize),
    #[error(
        "BOTLINK_ADMIN_KEY is too long ({0} characters): the API takes keys of up to 128, so it would never work; use e.g. blk_$(openssl rand -hex 16)"
    )]
    AdminKeyLong(usize),
    #[error(
        "BOTLINK_ADMIN_KEY has a character that is not visible ASCII (a space or a line break, say), which no Authorization header carries: use e.g. blk_$(openssl rand -hex 16)"
    )]
    AdminKeyChars,
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error(
        "--public-url (BOTLINK_PUBLIC_URL) {url:?} is not a base URL: {reason}; give one such as https://links.example.com"
    )]
    PublicUrl { url: String, reason: &'static str },
    #[error(
        "--database-url (BOTLINK_DATABASE_URL) is not a valid PostgreSQL URL ({reason}): expected postgres://user[:password]@host[:port]/database"
    )]
    PostgresUrl { reason: String },
    #[error(
        "--database-url (BOTLINK_DATABASE_URL) {url:?} is not a valid SQLite URL ({reason}): expected sqlite://<path>, or a file path"
    )]
    SqliteUrl { url: String, reason: String },
    #[error(
        "unsupported --database-url (BOTLINK_DATABASE_URL) {0:?}: use sqlite://<path>, a file path, or postgres://user@host/db"
    )]
    UnsupportedDatabaseUrl(String),
}

/// A configuration that passed [`Config::validate`], with the secret key as far as it can be
/// known before the database is opened.
#[derive(Debug)]
pub struct Checked {
    config: Config,
    key: KeySource,
}

impl Checked {
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where short links point, once the port is known (`serve --listen ...:0`).
    pub(crate) fn set_public_url(&mut self, url: String) {
        self.config.public_url = url;
    }

    pub(crate) fn into_parts(self) -> (Config, KeySource) {
        (self.config, self.key)
    }
}

impl Config {
    /// Checks everything that can be checked without the network or the database: the admin
    /// key, the secret key (or the key file, read when it exists), the forms of the database
    /// and public URLs. `botlink serve` calls it before it binds its address, so that a bad
    /// setting is reported as such, not as whatever binding would have run into.
    pub fn validate(self) -> Result<Checked, ConfigError> {
        if let Some(k) = &self.admin_key {
            check_admin_key(k)?;
        }
        check_public_url(&self.public_url)?;
        check_database_url(&self.database_url)?;
        let key = match &self.secret_key {
            Some(k) => KeySource::Given(SecretKey::parse(k)?),
            None if self.is_postgres() => return Err(KeyError::Required.into()),
            None => {
                let path = self.resolved_key_file();
                let key = SecretKey::read_file(&path)?;
                KeySource::File { path, key }
            }
        };
        Ok(Checked { config: self, key })
    }
}

/// The admin key must be one the API would accept: it takes `Bearer blk_...` tokens of up to
/// 128 visible ASCII characters (see `auth`), and anything shorter than 24 is guessable.
fn check_admin_key(k: &str) -> Result<(), ConfigError> {
    let len = k.chars().count();
    if !k.bytes().all(|b| b.is_ascii_graphic()) {
        Err(ConfigError::AdminKeyChars)
    } else if !k.starts_with("blk_") {
        Err(ConfigError::AdminKeyPrefix)
    } else if len < 24 {
        Err(ConfigError::AdminKeyShort(len))
    } else if len > 128 {
        Err(ConfigError::AdminKeyLong(len))
    } else {
        Ok(())
    }
}

fn check_public_url(u: &str) -> Result<(), ConfigError> {
    let bad = |reason| ConfigError::PublicUrl {
        url: u.to_owned(),
        reason,
    };
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        return Err(bad("it must start with http:// or https://"));
    }
    let parsed = url::Url::parse(u).map_err(|_| bad("it does not parse as a URL"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad(
            "short links are appended to it, so it cannot have a query or a fragment",
        ));
    }
    Ok(())
}

/// The forms [`crate::store::connect`] takes, parsed as it will parse them.
fn check_database_url(url: &str) -> Result<(), ConfigError> {
    let u = url.trim();
    if is_postgres_url(u) {
        // The error never quotes the URL: it may hold a password.
        sqlx::postgres::PgConnectOptions::from_str(u).map_err(|e| ConfigError::PostgresUrl {
            reason: e.to_string(),
        })?;
    } else if u.starts_with("sqlite:") {
        sqlx::sqlite::SqliteConnectOptions::from_str(u).map_err(|e| ConfigError::SqliteUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    } else if u.is_empty() || u.contains("://") {
        return Err(ConfigError::UnsupportedDatabaseUrl(url.to_owned()));
    }
    Ok(())
}

/// Whether a database URL selects PostgreSQL.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_forms() {
        assert!(check_admin_key("blk_0123456789abcdef0123").is_ok());
        for (key, says) in [
            ("0123456789abcdef0123456789", "blk_"),
            ("blk_short", "too short"),
            ("blk_0123456789abcdef0123 ", "visible ASCII"),
        ] {
            let err = check_admin_key(key).unwrap_err().to_string();
            assert!(err.contains(says) && !err.contains(key.trim()), "{err}");
        }
        assert!(check_admin_key(&format!("blk_{}", "a".repeat(125))).is_err());
        for ok in [
            "http://127.0.0.1:0",
            "https://links.example.com",
            "https://x.io/go",
        ] {
            assert!(check_public_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "links.example.com",
            "https://",
            "https://x.io/?a=1",
            "ftp://x.io",
        ] {
            assert!(check_public_url(bad).is_err(), "{bad}");
        }
        for ok in [
            "sqlite://botlink.db",
            "sqlite::memory:",
            "data/botlink.db",
            "postgres://u@h/db",
        ] {
            assert!(check_database_url(ok).is_ok(), "{ok}");
        }
        let err = check_database_url("postgres://u:hunter2@h:x/db")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "a password is never shown: {err}");
        assert!(check_database_url("mysql://u@h/db").is_err());
        assert!(check_database_url("").is_err());
    }

    #[test]
    fn key_file_sits_beside_the_database() {
        let c = Config::new(
            "127.0.0.1:8080".parse().unwrap(),
            "sqlite://data/botlink.db",
        );
        assert_eq!(c.resolved_key_file(), PathBuf::from("data/botlink.key"));
        let c = Config::new("127.0.0.1:8080".parse().unwrap(), "botlink.db");
        assert_eq!(c.resolved_key_file(), PathBuf::from("botlink.key"));
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        let c = Config::new("127.0.0.1:8080".parse().unwrap(), "postgres://x@h/db");
        assert!(c.is_postgres() && c.sqlite_path().is_none());
    }
}
