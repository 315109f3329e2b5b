//! Is this webhook really from the platform? Each messenger proves it differently; this module
//! checks each proof on the raw bytes of the request, before anything is parsed, and signs
//! botlink's own outbound deliveries.
//!
//! | channel | header | proof |
//! |---|---|---|
//! | telegram | `X-Telegram-Bot-Api-Secret-Token` | the `secret_token` given to `setWebhook`, as is |
//! | max | `X-Max-Bot-Api-Secret` | the `secret` given when the webhook was subscribed, as is |
//! | viber | `X-Viber-Content-Signature` | hex HMAC-SHA256 of the body, keyed by the bot's auth token |
//! | messenger, instagram, whatsapp | `X-Hub-Signature-256` | `sha256=` and the hex HMAC-SHA256 of the body, keyed by the app secret |
//! | line | `X-Line-Signature` | Base64 HMAC-SHA256 of the body, keyed by the channel secret |
//! | custom, and botlink's deliveries | `webhook-id`, `webhook-timestamp`, `webhook-signature` | [Standard Webhooks](standard_webhooks) |
//!
//! Header values come in as raw bytes (`Option<&[u8]>`, `None` when the header is absent),
//! since an HTTP layer may hold values that are not UTF-8. Every comparison of a secret or a
//! MAC runs in constant time (`subtle`), no input panics, and no error carries a secret or a
//! computed MAC: a [`SignatureError`] is safe to show to whoever sent the request.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Telegram's header: the `secret_token` of `setWebhook` (Bot API, "setWebhook").
pub const TELEGRAM_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";
/// MAX's header: the `secret` of `POST /subscriptions` (MAX Bot API, "Subscribe").
pub const MAX_HEADER: &str = "X-Max-Bot-Api-Secret";
/// Viber's header (REST Bot API, "Callbacks": the signature of the body under the auth token).
pub const VIBER_HEADER: &str = "X-Viber-Content-Signature";
/// Meta's header for Messenger, Instagram and WhatsApp ("Webhooks", validating payloads).
pub const HUB_HEADER: &str = "X-Hub-Signature-256";
/// LINE's header (Messaging API, "Verify the signature").
pub const LINE_HEADER: &str = "X-Line-Signature";

/// Why a webhook was refused. Every message names what was wrong and is safe to show to the
/// caller: none carries a secret, a computed signature or the request's own values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request has no such header: it was not sent by the platform, or the webhook was
    /// registered without a secret.
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    /// The header is there but not in the platform's form.
    #[error("the {header} header is malformed: {reason}")]
    MalformedHeader {
        header: &'static str,
        reason: &'static str,
    },
    /// Well formed, but not made with this channel's secret over this body.
    #[error(
        "the {0} header does not match: the request was not signed with this channel's secret, \
         or its body was changed on the way"
    )]
    Mismatch(&'static str),
    /// A Standard Webhooks timestamp older than the tolerance: a replay, or a sender whose
    /// clock is behind.
    #[error(
        "the webhook-timestamp is {age_secs} s old, more than the {tolerance_secs} s accepted \
         (a replayed request, or the sender's clock is behind)"
    )]
    TimestampTooOld { age_secs: u64, tolerance_secs: u64 },
    /// A Standard Webhooks timestamp further ahead than the tolerance.
    #[error(
        "the webhook-timestamp is {ahead_secs} s in the future, more than the {tolerance_secs} s \
         accepted (the sender's clock is ahead, or it sent milliseconds instead of seconds)"
    )]
    TimestampTooNew {
        ahead_secs: u64,
        tolerance_secs: u64,
    },
    /// The channel's configured secret cannot verify anything (empty, or not a Standard
    /// Webhooks secret). A configuration error, not the sender's.
    #[error("the channel's {what} cannot be used: {reason}")]
    BadSecret {
        what: &'static str,
        reason: &'static str,
    },
    /// Meta's `GET` subscription handshake did not ask for a subscription with the right token.
    #[error("the webhook subscription handshake was refused: {0}")]
    HandshakeRefused(&'static str),
}

/// Standard Base64 that takes a value with or without its `=` padding: senders differ, and
/// the padding carries nothing.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn header<'a>(value: Option<&'a [u8]>, name: &'static str) -> Result<&'a [u8], SignatureError> {
    match value {
        None => Err(SignatureError::MissingHeader(name)),
        Some([]) => Err(SignatureError::MalformedHeader {
            header: name,
            reason: "it is empty",
        }),
        Some(v) => Ok(v),
    }
}

fn usable(secret: &str, what: &'static str) -> Result<(), SignatureError> {
    if secret.is_empty() {
        // Anyone can compute a MAC under an empty key, and an empty token matches an empty
        // header: refuse rather than accept everything.
        return Err(SignatureError::BadSecret {
            what,
            reason: "it is empty",
        });
    }
    Ok(())
}

/// Constant-time equality of two secrets of any length. Comparing their SHA-256 digests
/// rather than the bytes keeps the secret's length from showing in the time taken.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    Sha256::digest(given)
        .ct_eq(&Sha256::digest(expected))
        .into()
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        unreachable!("HMAC-SHA256 accepts keys of any length")
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// A 32-byte MAC written as 64 hexadecimal digits, either case.
fn hex_mac(value: &[u8], name: &'static str) -> Result<[u8; 32], SignatureError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(value, &mut out).map_err(|_| SignatureError::MalformedHeader {
        header: name,
        reason: "expected 64 hexadecimal digits (an HMAC-SHA256)",
    })?;
    Ok(out)
}

fn check_mac(
    given: &[u8; 32],
    expected: &[u8; 32],
    name: &'static str,
) -> Result<(), SignatureError> {
    if bool::from(given.ct_eq(expected)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch(name))
    }
}

fn check_token(
    header_value: Option<&[u8]>,
    secret: &str,
    name: &'static str,
    what: &'static str,
) -> Result<(), SignatureError> {
    usable(secret, what)?;
    let given = header(header_value, name)?;
    if same_secret(given, secret.as_bytes()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch(name))
    }
}

/// Telegram: `X-Telegram-Bot-Api-Secret-Token` must equal the `secret_token` botlink gave
/// `setWebhook` (the channel's webhook secret). Telegram sends it on every update; the body is
/// not signed, so the token is the whole proof.
pub fn verify_telegram(
    header_value: Option<&[u8]>,
    webhook_secret: &str,
) -> Result<(), SignatureError> {
    check_token(
        header_value,
        webhook_secret,
        TELEGRAM_HEADER,
        "webhook secret",
    )
}

/// MAX: `X-Max-Bot-Api-Secret` must equal the `secret` given when the webhook was subscribed
/// (`POST /subscriptions`); as with Telegram, the body itself is not signed.
pub fn verify_max(header_value: Option<&[u8]>, webhook_secret: &str) -> Result<(), SignatureError> {
    check_token(header_value, webhook_secret, MAX_HEADER, "webhook secret")
}

/// Viber: `X-Viber-Content-Signature` is the hex HMAC-SHA256 of the body keyed by the bot's
/// auth token (Viber sends lowercase; uppercase is accepted too).
pub fn verify_viber(
    header_value: Option<&[u8]>,
    body: &[u8],
    auth_token: &str,
) -> Result<(), SignatureError> {
    usable(auth_token, "auth token")?;
    let given = hex_mac(header(header_value, VIBER_HEADER)?, VIBER_HEADER)?;
    check_mac(
        &given,
        &hmac_sha256(auth_token.as_bytes(), &[body]),
        VIBER_HEADER,
    )
}

/// Messenger, Instagram and WhatsApp: `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of
/// the body keyed by the Meta app's secret. The older SHA-1 `X-Hub-Signature` is not accepted.
pub fn verify_hub(
    header_value: Option<&[u8]>,
    body: &[u8],
    app_secret: &str,
) -> Result<(), SignatureError> {
    usable(app_secret, "app secret")?;
    let value = header(header_value, HUB_HEADER)?;
    let hex = value
        .strip_prefix(b"sha256=")
        .ok_or(SignatureError::MalformedHeader {
            header: HUB_HEADER,
            reason: "expected sha256= followed by 64 hexadecimal digits",
        })?;
    let given = hex_mac(hex, HUB_HEADER)?;
    check_mac(
        &given,
        &hmac_sha256(app_secret.as_bytes(), &[body]),
        HUB_HEADER,
    )
}

/// LINE: `X-Line-Signature` is the standard Base64 of the HMAC-SHA256 of the body keyed by the
/// channel secret.
pub fn verify_line(
    header_value: Option<&[u8]>,
    body: &[u8],
    channel_secret: &str,
) -> Result<(), SignatureError> {
    usable(channel_secret, "channel secret")?;
    let value = header(header_value, LINE_HEADER)?;
    let malformed = SignatureError::MalformedHeader {
        header: LINE_HEADER,
        reason: "expected the Base64 of a 32-byte HMAC-SHA256",
    };
    let decoded = BASE64.decode(value).map_err(|_| malformed.clone())?;
    let given: [u8; 32] = decoded.try_into().map_err(|_| malformed)?;
    check_mac(
        &given,
        &hmac_sha256(channel_secret.as_bytes(), &[body]),
        LINE_HEADER,
    )
}

/// The longest `hub.challenge` echoed back. Meta sends a short number; anything longer, or with
/// other characters, is not echoed, so the endpoint cannot be used to reflect content.
pub const MAX_CHALLENGE_LEN: usize = 256;

/// Meta's `GET` handshake when a webhook is subscribed (Messenger, Instagram, WhatsApp): Meta
/// sends `hub.mode=subscribe`, `hub.verify_token` (the token configured in the app dashboard)
/// and `hub.challenge`; the endpoint answers 200 with the challenge as the body. This returns
/// the challenge to echo when the mode is `subscribe` and the token matches `verify_token`
/// (compared in constant time), else an error (answer 403).
///
/// The challenge is echoed only when it is 1 to [`MAX_CHALLENGE_LEN`] characters of
/// `[A-Za-z0-9_-]`.
pub fn hub_challenge<'a>(
    mode: Option<&str>,
    given_token: Option<&str>,
    challenge: Option<&'a str>,
    verify_token: &str,
) -> Result<&'a str, SignatureError> {
    usable(verify_token, "verify token")?;
    if mode != Some("subscribe") {
        return Err(SignatureError::HandshakeRefused(
            "hub.mode is not \"subscribe\"",
        ));
    }
    let given = given_token.ok_or(SignatureError::HandshakeRefused(
        "hub.verify_token is missing",
    ))?;
    if !same_secret(given.as_bytes(), verify_token.as_bytes()) {
        return Err(SignatureError::HandshakeRefused(
            "hub.verify_token does not match the channel's verify token",
        ));
    }
    match challenge {
        Some(c)
            if !c.is_empty()
                && c.len() <= MAX_CHALLENGE_LEN
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(c)
        }
        _ => Err(SignatureError::HandshakeRefused(
            "hub.challenge is missing, or not 1 to 256 characters of [A-Za-z0-9_-]",
        )),
    }
}

/// [Standard Webhooks](https://www.standardwebhooks.com/) (specification 1.0.0, symmetric
/// `v1` signatures): how botlink signs its outbound deliveries and how it checks the bodies a
/// custom channel sends.
///
/// - `webhook-id`: the message's unique id (the receiver's idempotency key);
/// - `webhook-timestamp`: Unix time in seconds of this attempt;
/// - `webhook-signature`: space-separated `v1,<Base64 HMAC-SHA256>` entries, any one of which
///   may match (several during a secret rotation); the MAC is over `{id}.{timestamp}.{body}`,
///   keyed by the Base64-decoded secret after its `whsec_` prefix.
///
/// Asymmetric `v1a` (ed25519) entries are not verified: a header carrying only those is
/// malformed for this receiver.
pub mod standard_webhooks {
    use std::fmt;
    use std::str::FromStr;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use subtle::{Choice, ConstantTimeEq};

    use super::{BASE64, SignatureError, header, hmac_sha256};

    /// The id header.
    pub const ID_HEADER: &str = "webhook-id";
    /// The timestamp header (Unix seconds).
    pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
    /// The signature header.
    pub const SIGNATURE_HEADER: &str = "webhook-signature";
    /// How a symmetric secret is written: `whsec_` and its Base64.
    pub const SECRET_PREFIX: &str = "whsec_";
    /// The tolerance the specification's reference libraries use, both ways: 5 minutes.
    pub const DEFAULT_TOLERANCE_SECS: u64 = 5 * 60;
    /// The specification asks for at least 24 random bytes (192 bits)...
    pub const MIN_SECRET_BYTES: usize = 24;
    /// ...and at most 512 bits.
    pub const MAX_SECRET_BYTES: usize = 64;

    /// A symmetric signing secret: 24 to 64 bytes, written `whsec_<Base64>`. Its `Debug` shows
    /// no key material.
    #[derive(Clone)]
    pub struct Secret {
        key: Vec<u8>,
    }

    impl Secret {
        /// Reads a `whsec_<Base64>` secret (padding optional).
        pub fn parse(text: &str) -> Result<Secret, SignatureError> {
            let bad = |reason| SignatureError::BadSecret {
                what: "Standard Webhooks secret",
                reason,
            };
            let encoded = text
                .strip_prefix(SECRET_PREFIX)
                .ok_or(bad("it does not start with whsec_"))?;
            let key = BASE64
                .decode(encoded)
                .map_err(|_| bad("the text after whsec_ is not standard Base64"))?;
            Secret::from_bytes(&key)
        }

        /// A secret from its raw key bytes (e.g. 24 random bytes when botlink makes one).
        pub fn from_bytes(key: &[u8]) -> Result<Secret, SignatureError> {
            let bad = |reason| SignatureError::BadSecret {
                what: "Standard Webhooks secret",
                reason,
            };
            if key.len() < MIN_SECRET_BYTES {
                return Err(bad("it has fewer than 24 bytes of key"));
            }
            if key.len() > MAX_SECRET_BYTES {
                return Err(bad("it has more than 64 bytes of key"));
            }
            Ok(Secret { key: key.to_vec() })
        }

        /// The secret as written for people and other tools: `whsec_<Base64>`. Show it once,
        /// when it is made; store it sealed.
        pub fn to_whsec(&self) -> String {
            format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
        }
    }

    impl FromStr for Secret {
        type Err = SignatureError;
        fn from_str(s: &str) -> Result<Secret, SignatureError> {
            Secret::parse(s)
        }
    }

    impl fmt::Debug for Secret {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Secret(..)")
        }
    }

    fn mac(secret: &Secret, id: &[u8], timestamp: i64, body: &[u8]) -> [u8; 32] {
        let ts = timestamp.to_string();
        hmac_sha256(&secret.key, &[id, b".", ts.as_bytes(), b".", body])
    }

    /// The `webhook-signature` value for one delivery: `v1,<Base64 HMAC-SHA256 of
    /// "{id}.{timestamp}.{body}">`. `id` must not contain `.` (the specification forbids it, so
    /// that id and timestamp cannot run into each other; [`verify`] refuses such ids), and
    /// `timestamp_secs` is the attempt's Unix time in seconds.
    pub fn sign(secret: &Secret, id: &str, timestamp_secs: i64, body: &[u8]) -> String {
        format!(
            "v1,{}",
            STANDARD.encode(mac(secret, id.as_bytes(), timestamp_secs, body))
        )
    }

    /// Checks a Standard Webhooks request: the three headers as sent (`None` when absent), the
    /// raw body, the receiver's clock and how far the timestamp may be from it, either way
    /// ([`DEFAULT_TOLERANCE_SECS`] unless the channel says otherwise). Any one `v1` entry of
    /// the signature header may match; entries of other versions are skipped.
    pub fn verify(
        secret: &Secret,
        id: Option<&[u8]>,
        timestamp: Option<&[u8]>,
        signature: Option<&[u8]>,
        body: &[u8],
        now_secs: i64,
        tolerance_secs: u64,
    ) -> Result<(), SignatureError> {
        let id = header(id, ID_HEADER)?;
        if id.contains(&b'.') {
            return Err(SignatureError::MalformedHeader {
                header: ID_HEADER,
                reason: "it contains '.', which Standard Webhooks forbids in ids",
            });
        }
        let timestamp = parse_timestamp(header(timestamp, TIMESTAMP_HEADER)?)?;
        let signature = header(signature, SIGNATURE_HEADER)?;

        let age = i128::from(now_secs) - i128::from(timestamp);
        let tolerance = i128::from(tolerance_secs);
        if age > tolerance {
            return Err(SignatureError::TimestampTooOld {
                age_secs: u64::try_from(age).unwrap_or(u64::MAX),
                tolerance_secs,
            });
        }
        if -age > tolerance {
            return Err(SignatureError::TimestampTooNew {
                ahead_secs: u64::try_from(-age).unwrap_or(u64::MAX),
                tolerance_secs,
            });
        }

        let expected = mac(secret, id, timestamp, body);
        let mut any_v1 = false;
        let mut matched = Choice::from(0);
        for entry in signature.split(|b| *b == b' ').filter(|e| !e.is_empty()) {
            let Some(comma) = entry.iter().position(|b| *b == b',') else {
                continue;
            };
            let (version, value) = (&entry[..comma], &entry[comma + 1..]);
            if version != b"v1" {
                continue;
            }
            any_v1 = true;
            // The whole decoded value is compared: a truncated or empty signature never
            // matches a prefix of the expected one.
            if let Ok(given) = BASE64.decode(value) {
                matched |= given.as_slice().ct_eq(expected.as_slice());
            }
        }
        if !any_v1 {
            return Err(SignatureError::MalformedHeader {
                header: SIGNATURE_HEADER,
                reason: "it has no v1,<Base64> signature",
            });
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch(SIGNATURE_HEADER))
        }
    }

    /// Unix seconds: 1 to 18 ASCII digits (no sign, no spaces), so the value always fits `i64`.
    fn parse_timestamp(value: &[u8]) -> Result<i64, SignatureError> {
        let malformed = SignatureError::MalformedHeader {
            header: TIMESTAMP_HEADER,
            reason: "expected the Unix time in seconds, as decimal digits",
        };
        if value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
            return Err(malformed);
        }
        std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(malformed)
    }
}
