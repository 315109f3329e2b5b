//! Secrets at rest and keys derived from the server secret.
//!
//! Bot tokens and app secrets are sealed with XChaCha20-Poly1305 under the server's 32-byte
//! secret key, bound (as associated data) to the bot and channel they belong to, so a sealed
//! blob copied onto another bot does not open. The same secret derives, through HMAC-SHA256
//! with distinct labels, the per-bot parameter-signing keys and the daily visitor salt.

use std::net::IpAddr;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// Why the server secret could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "BOTLINK_SECRET_KEY must be 32 bytes, as 64 hex characters or Base64 (got {0} bytes); create one with `openssl rand -hex 32`"
    )]
    BadLength(usize),
    #[error("BOTLINK_SECRET_KEY is neither hex nor Base64; create one with `openssl rand -hex 32`")]
    BadEncoding,
    #[error("cannot read or create the key file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the key file {path} does not hold a key (32 bytes as 64 hex characters, as botlink writes it): restore it from your backup"
    )]
    BadFile { path: String },
    #[error(
        "a PostgreSQL deployment needs BOTLINK_SECRET_KEY (the same on every instance); create one with `openssl rand -hex 32`"
    )]
    Required,
    #[error(
        "the key file {path} is missing, but this database was set up with a secret key (fingerprint {recorded}): without it the stored bot secrets cannot be decrypted, and signed links and unique-visitor counts would change. Restore {path} from your backup (or set BOTLINK_SECRET_KEY to that key); botlink does not make a new key for a database that has one"
    )]
    FileMissing { path: String, recorded: String },
    #[error(
        "the secret key ({from}, fingerprint {actual}) is not the one this database was set up with (fingerprint {recorded}): with it the stored bot secrets cannot be decrypted, and signed links and unique-visitor counts would change. {remedy}"
    )]
    Mismatch {
        /// Where the key came from: `BOTLINK_SECRET_KEY` or the key file's path.
        from: String,
        recorded: String,
        actual: String,
        /// How to recover.
        remedy: String,
    },
}

/// Where the server secret comes from, as far as it is known before the database is opened.
#[derive(Debug)]
pub enum KeySource {
    /// `BOTLINK_SECRET_KEY`.
    Given(SecretKey),
    /// The key file: its key when it exists, `None` when it does not (yet).
    File {
        path: PathBuf,
        key: Option<SecretKey>,
    },
}

impl KeySource {
    /// The key to run with, given the fingerprint the database recorded (`None`: a database
    /// that has none yet), and where it came from, to check it with [`KeyOrigin::check`]. A
    /// missing key file is created only for a database that has no fingerprint: one that has
    /// was set up with a key that a new one cannot replace.
    pub fn open(self, recorded: Option<&str>) -> Result<(SecretKey, KeyOrigin), KeyError> {
        match self {
            KeySource::Given(key) => Ok((
                key,
                KeyOrigin {
                    from: "BOTLINK_SECRET_KEY".to_owned(),
                    remedy: "Set BOTLINK_SECRET_KEY to the key the database was set up with \
                             (on PostgreSQL, the one the other instances use)."
                        .to_owned(),
                },
            )),
            KeySource::File { path, key } => {
                let shown = path.display().to_string();
                let key = match (key, recorded) {
                    (Some(key), _) => key,
                    (None, Some(recorded)) => {
                        return Err(KeyError::FileMissing {
                            path: shown,
                            recorded: short_fingerprint(recorded).to_owned(),
                        });
                    }
                    (None, None) => SecretKey::create_file(&path)?,
                };
                let remedy = format!(
                    "Restore the key file {shown} from your backup (or set BOTLINK_SECRET_KEY to \
                     the key the database was set up with)."
                );
                Ok((
                    key,
                    KeyOrigin {
                        from: format!("the key file {shown}"),
                        remedy,
                    },
                ))
            }
        }
    }
}

/// Where the server secret came from, for the message that refuses it.
#[derive(Debug)]
pub struct KeyOrigin {
    from: String,
    remedy: String,
}

impl KeyOrigin {
    /// Refuses `key` unless its fingerprint is the one the database recorded.
    pub fn check(&self, key: &SecretKey, recorded: &str) -> Result<(), KeyError> {
        let actual = key.fingerprint();
        if keys_match(recorded, &actual) {
            return Ok(());
        }
        Err(KeyError::Mismatch {
            from: self.from.clone(),
            recorded: short_fingerprint(recorded).to_owned(),
            actual: short_fingerprint(&actual).to_owned(),
            remedy: self.remedy.clone(),
        })
    }
}

fn keys_match(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The first characters of a fingerprint: enough to tell two keys apart in a message.
fn short_fingerprint(fp: &str) -> &str {
    fp.get(..12).unwrap_or(fp)
}

/// Why a sealed secret could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "a stored secret could not be decrypted: the server secret key differs from the one that sealed it"
)]
pub struct OpenError;

/// The server's secret key. Never printed: `Debug` shows nothing of it.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Parses a key given as 64 hex characters or as Base64 of 32 bytes.
    pub fn parse(s: &str) -> Result<SecretKey, KeyError> {
        let s = s.trim();
        let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(s).map_err(|_| KeyError::BadEncoding)?
        } else {
            STANDARD
                .decode(s)
                .or_else(|_| URL_SAFE_NO_PAD.decode(s))
                .map_err(|_| KeyError::BadEncoding)?
        };
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::BadLength(bytes.len()))?;
        Ok(SecretKey(arr))
    }

    /// A fresh random key.
    pub fn generate() -> SecretKey {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        SecretKey(k)
    }

    /// Reads the key file, or creates it (mode 0600) with a fresh key when there is none.
    pub fn load_or_create(path: &Path) -> Result<SecretKey, KeyError> {
        match SecretKey::read_file(path)? {
            Some(key) => Ok(key),
            None => SecretKey::create_file(path),
        }
    }

    /// Reads the key file; `None` when there is none. Logs a warning when other users may
    /// read it (the key opens every stored bot secret).
    pub fn read_file(path: &Path) -> Result<Option<SecretKey>, KeyError> {
        let file_err = |source| KeyError::File {
            path: path.display().to_string(),
            source,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(file_err(e)),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path)
                .map_err(file_err)?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the key file can be read by other users, and the key opens every stored bot secret: chmod 600 it"
                );
            }
        }
        SecretKey::parse(&text)
            .map(Some)
            .map_err(|_| KeyError::BadFile {
                path: path.display().to_string(),
            })
    }

    /// Creates the key file (mode 0600) with a fresh key; fails if it exists.
    pub fn create_file(path: &Path) -> Result<SecretKey, KeyError> {
        let file_err = |source| KeyError::File {
            path: path.display().to_string(),
            source,
        };
        let key = SecretKey::generate();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        use std::io::Write as _;
        let mut f = opts.open(path).map_err(file_err)?;
        writeln!(f, "{}", hex::encode(key.0)).map_err(file_err)?;
        f.sync_all().map_err(file_err)?;
        Ok(key)
    }

    /// What the database keeps to recognise the key: an HMAC of a fixed label under it, from
    /// which the key cannot be recovered. Hex.
    pub fn fingerprint(&self) -> String {
        hex::encode(self.derive("botlink/key-fingerprint", b""))
    }

    fn derive(&self, label: &str, context: &[u8]) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(context);
        mac.finalize().into_bytes().into()
    }

    /// The key that signs a bot's deep-link parameters (the `signed` scheme).
    pub fn signing_key(&self, bot_id: &str) -> [u8; 32] {
        self.derive("botlink/param-signing", bot_id.as_bytes())
    }

    /// A visitor fingerprint for unique-click counting: a hash of IP and user agent under a
    /// salt that changes every UTC day, so the same person counts once a day and no raw IP
    /// is ever stored.
    pub fn visitor_hash(&self, day: i64, ip: IpAddr, user_agent: &str) -> [u8; 16] {
        visitor_hash_with(&self.visitor_salt(day), ip, user_agent)
    }

    /// The salt of a day's visitor hashes (callers on a hot path keep it for the day).
    pub fn visitor_salt(&self, day: i64) -> [u8; 32] {
        self.derive("botlink/visitor-salt", &day.to_be_bytes())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// Seals a secret, bound to `context` (e.g. `bot_id/channel`).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(1 + 24 + ct.len());
        out.push(1); // format version
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a secret sealed by [`SecretKey::seal`] with the same context.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < 1 + 24 + 16 || sealed[0] != 1 {
            return Err(OpenError);
        }
        self.cipher()
            .decrypt(
                XNonce::from_slice(&sealed[1..25]),
                Payload {
                    msg: &sealed[25..],
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| OpenError)
    }
}

/// SHA-256 of an API key, hex: what the database keeps instead of the key.
pub fn api_key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new API key: `blk_` and 32 random base62 characters (~190 bits).
pub fn new_api_key() -> String {
    format!("blk_{}", crate::util::random_code(32))
}

/// A visitor hash under a given day's salt (see [`SecretKey::visitor_hash`]), as bytes.
pub fn visitor_hash_with(salt: &[u8; 32], ip: IpAddr, user_agent: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(salt);
    // An IPv4 address the same however it arrived (also as IPv4-mapped IPv6).
    match ip.to_canonical() {
        IpAddr::V4(v4) => h.update(v4.octets()),
        IpAddr::V6(v6) => h.update(v6.octets()),
    }
    h.update([0]);
    h.update(user_agent.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize()[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open() {
        let k = SecretKey::generate();
        let sealed = k.seal(b"123:ABC", "bot_1/telegram");
        assert!(!sealed.windows(7).any(|w| w == b"123:ABC"));
        assert_eq!(k.open(&sealed, "bot_1/telegram").unwrap(), b"123:ABC");
        assert!(k.open(&sealed, "bot_2/telegram").is_err());
        assert!(
            SecretKey::generate()
                .open(&sealed, "bot_1/telegram")
                .is_err()
        );
        assert!(k.open(&sealed[..10], "bot_1/telegram").is_err());
    }

    #[test]
    fn parse_keys() {
        let hex_key = "00".repeat(32);
        assert!(SecretKey::parse(&hex_key).is_ok());
        assert!(SecretKey::parse(&STANDARD.encode([7u8; 32])).is_ok());
        assert!(matches!(
            SecretKey::parse("abcd"),
            Err(KeyError::BadLength(_) | KeyError::BadEncoding)
        ));
        assert_eq!(format!("{:?}", SecretKey::generate()), "SecretKey(..)");
    }

    #[test]
    fn key_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("botlink.key");
        let a = SecretKey::load_or_create(&p).unwrap();
        let b = SecretKey::load_or_create(&p).unwrap();
        assert_eq!(a.0, b.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn a_key_is_checked_against_the_recorded_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("botlink.key");
        let key = SecretKey::generate();
        let fp = key.fingerprint();
        assert_eq!(fp, key.fingerprint());
        assert!(!fp.contains(&hex::encode(key.0)));
        assert_ne!(fp, SecretKey::generate().fingerprint());

        let (k, origin) = KeySource::Given(key.clone()).open(Some(&fp)).unwrap();
        origin.check(&k, &fp).unwrap();
        let err = origin.check(&SecretKey::generate(), &fp).unwrap_err();
        assert!(matches!(err, KeyError::Mismatch { .. }), "{err}");
        assert!(err.to_string().contains("BOTLINK_SECRET_KEY"), "{err}");

        // No key file: made for a database without a fingerprint, refused for one with.
        let missing = KeySource::File {
            path: path.clone(),
            key: None,
        };
        let err = missing.open(Some(&fp)).unwrap_err();
        assert!(matches!(err, KeyError::FileMissing { .. }), "{err}");
        assert!(!path.exists());
        let missing = KeySource::File {
            path: path.clone(),
            key: None,
        };
        let (made, _) = missing.open(None).unwrap();
        assert_eq!(SecretKey::read_file(&path).unwrap().unwrap().0, made.0);
    }

    #[test]
    fn visitor_salt_rotates_daily() {
        let k = SecretKey::generate();
        let ip: IpAddr = "1.2.3.4".parse().unwrap();
        let a = k.visitor_hash(20_000, ip, "UA");
        assert_eq!(a, k.visitor_hash(20_000, ip, "UA"));
        assert_eq!(
            a,
            k.visitor_hash(20_000, "::ffff:1.2.3.4".parse().unwrap(), "UA")
        );
        assert_ne!(a, k.visitor_hash(20_001, ip, "UA"));
        assert_ne!(a, k.visitor_hash(20_000, "1.2.3.5".parse().unwrap(), "UA"));
        assert_ne!(a, k.visitor_hash(20_000, ip, "UA2"));
        assert_ne!(new_api_key(), new_api_key());
        assert!(new_api_key().starts_with("blk_"));
    }
}
