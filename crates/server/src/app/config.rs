//! Server configuration: flags, with `BOTLINK_*` environment variables as fallbacks, then
//! defaults that make `botlink serve` work on a fresh machine with nothing else installed.

use std::net::SocketAddr;
use std::path::PathBuf;

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
            click_write_grace: std::time::Duration::from_secs(10),
            behind_proxy: false,
            link_cache_ms: None,
            idle_timeout: std::time::Duration::from_secs(75),
            body_deadline: std::time::Duration::from_secs(60),
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

/// Whether a database URL selects PostgreSQL.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

#[cfg(test)]
mod tests {
    use super::*;

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
