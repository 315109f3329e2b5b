//! The signatures platforms put on the webhooks they send, made the way each platform documents
//! them, for tests that post a Start to botlink as the platform would; and Standard Webhooks
//! signing and verifying, as a CRM's own code would do it to check botlink's deliveries.
//!
//! This is written apart from the server's own signing code on purpose: a test that checks the
//! server with the server's code proves only that the code agrees with itself. Each function is
//! pinned to a vector computed outside this code (see the tests below).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac as _};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// Telegram: the `secret_token` given to `setWebhook`, sent back as is on every update.
pub const TELEGRAM_SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
/// Viber: hex HMAC-SHA256 of the body, keyed by the bot's token.
pub const VIBER_SIGNATURE_HEADER: &str = "x-viber-content-signature";
/// Meta (Messenger, Instagram, WhatsApp): `sha256=` and the hex HMAC-SHA256 of the body, keyed
/// by the app secret.
pub const HUB_SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// LINE: Base64 HMAC-SHA256 of the body, keyed by the channel secret.
pub const LINE_SIGNATURE_HEADER: &str = "x-line-signature";
/// MAX: the `secret` given to `POST /subscriptions`, sent back as is.
pub const MAX_SECRET_HEADER: &str = "x-max-bot-api-secret";

/// Standard Webhooks' three headers.
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const WEBHOOK_SIGNATURE_HEADER: &str = "webhook-signature";

/// How far a delivery's timestamp may be from the receiver's clock, either way: the tolerance
/// the Standard Webhooks reference libraries use against replays (5 minutes).
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 5 * 60;

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn headers<const N: usize>(pairs: [(&'static str, String); N]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).expect("a header value of visible ASCII"),
        );
    }
    map
}

/// The header Telegram sends with each update when the webhook was set with `secret_token`.
pub fn telegram_headers(secret: &str) -> HeaderMap {
    headers([(TELEGRAM_SECRET_HEADER, secret.to_owned())])
}

/// Viber's `X-Viber-Content-Signature`: hex HMAC-SHA256 of the raw body, keyed by the bot's
/// authentication token (Viber REST Bot API, "Callbacks").
pub fn viber_signature(token: &str, body: &[u8]) -> String {
    hex::encode(hmac_sha256(token.as_bytes(), &[body]))
}

/// The header Viber sends with a callback carrying `body`.
pub fn viber_headers(token: &str, body: &[u8]) -> HeaderMap {
    headers([(VIBER_SIGNATURE_HEADER, viber_signature(token, body))])
}

/// Meta's `X-Hub-Signature-256`: `sha256=` and the hex HMAC-SHA256 of the raw body, keyed by the
/// app secret ("Webhooks for Messenger Platform", validating payloads; the same for Instagram
/// and WhatsApp).
pub fn hub_signature(app_secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(app_secret.as_bytes(), &[body]))
    )
}

/// The header Meta sends with a webhook carrying `body`.
pub fn hub_headers(app_secret: &str, body: &[u8]) -> HeaderMap {
    headers([(HUB_SIGNATURE_HEADER, hub_signature(app_secret, body))])
}

/// LINE's `X-Line-Signature`: Base64 HMAC-SHA256 of the raw body, keyed by the channel secret
/// (Messaging API, "Verify the signature").
pub fn line_signature(channel_secret: &str, body: &[u8]) -> String {
    BASE64.encode(hmac_sha256(channel_secret.as_bytes(), &[body]))
}

/// The header LINE sends with a webhook carrying `body`.
pub fn line_headers(channel_secret: &str, body: &[u8]) -> HeaderMap {
    headers([(LINE_SIGNATURE_HEADER, line_signature(channel_secret, body))])
}

/// The header MAX sends with each update when the subscription was made with `secret`.
pub fn max_headers(secret: &str) -> HeaderMap {
    headers([(MAX_SECRET_HEADER, secret.to_owned())])
}

/// Why a Standard Webhooks secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSecret;

impl std::fmt::Display for BadSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a Standard Webhooks secret is `whsec_` and Base64 (standard alphabet)")
    }
}

/// The key of a Standard Webhooks secret: the Base64 after `whsec_` (the prefix is optional, as
/// in the reference libraries).
pub fn standard_webhooks_key(secret: &str) -> Result<Vec<u8>, BadSecret> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    match BASE64.decode(b64) {
        Ok(key) if !key.is_empty() => Ok(key),
        _ => Err(BadSecret),
    }
}

/// A Standard Webhooks signature: `v1,` and the Base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`
/// keyed by the secret's key. Panics on a malformed secret (a test's own mistake).
pub fn standard_webhooks_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = standard_webhooks_key(secret).expect("a valid whsec_ secret");
    let mac = hmac_sha256(
        &key,
        &[
            id.as_bytes(),
            b".",
            timestamp.to_string().as_bytes(),
            b".",
            body,
        ],
    );
    format!("v1,{}", BASE64.encode(mac))
}

/// The three headers of a Standard Webhooks delivery of `body`.
pub fn standard_webhooks_headers(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
    headers([
        (WEBHOOK_ID_HEADER, id.to_owned()),
        (WEBHOOK_TIMESTAMP_HEADER, timestamp.to_string()),
        (
            WEBHOOK_SIGNATURE_HEADER,
            standard_webhooks_signature(secret, id, timestamp, body),
        ),
    ])
}

/// Why a delivery failed Standard Webhooks verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    BadSecret,
    /// A header is missing or is not text.
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not whole seconds.
    BadTimestamp,
    /// `webhook-timestamp` is further than [`TIMESTAMP_TOLERANCE_SECS`] from now.
    TimestampOutOfTolerance {
        timestamp: i64,
        now: i64,
    },
    /// No `v1,` signature in `webhook-signature` matches the body.
    NoMatchingSignature,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyError::BadSecret => BadSecret.fmt(f),
            VerifyError::MissingHeader(h) => write!(f, "no `{h}` header"),
            VerifyError::BadTimestamp => f.write_str("`webhook-timestamp` is not whole seconds"),
            VerifyError::TimestampOutOfTolerance { timestamp, now } => write!(
                f,
                "`webhook-timestamp` {timestamp} is {} s from now ({now}); the tolerance is {TIMESTAMP_TOLERANCE_SECS} s",
                (now - timestamp).abs()
            ),
            VerifyError::NoMatchingSignature => {
                f.write_str("no `v1,` signature in `webhook-signature` matches the body")
            }
        }
    }
}

/// Verifies a Standard Webhooks delivery as a receiver must: on the raw body, within the
/// timestamp tolerance, against each space-separated `v1,` signature (several during a secret
/// rotation; other versions are skipped), comparing in constant time. Returns the `webhook-id`.
pub fn verify_standard_webhooks(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<String, VerifyError> {
    let key = standard_webhooks_key(secret).map_err(|_| VerifyError::BadSecret)?;
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(VerifyError::MissingHeader(name))
    };
    let id = header(WEBHOOK_ID_HEADER)?;
    let timestamp_text = header(WEBHOOK_TIMESTAMP_HEADER)?;
    let signatures = header(WEBHOOK_SIGNATURE_HEADER)?;
    let timestamp: i64 = timestamp_text
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if (now - timestamp).abs() > TIMESTAMP_TOLERANCE_SECS {
        return Err(VerifyError::TimestampOutOfTolerance { timestamp, now });
    }
    let expected = hmac_sha256(
        &key,
        &[id.as_bytes(), b".", timestamp_text.as_bytes(), b".", body],
    );
    let matched = signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| BASE64.decode(b64).ok())
        .any(|given| bool::from(given.as_slice().ct_eq(&expected)));
    if matched {
        Ok(id.to_owned())
    } else {
        Err(VerifyError::NoMatchingSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each expected value below was computed once with openssl, outside this code:
    //   printf '%s' BODY | openssl dgst -sha256 -hmac KEY              (hex)
    //   printf '%s' BODY | openssl dgst -sha256 -hmac KEY -binary | base64

    #[test]
    fn viber_signature_matches_openssl() {
        // printf '%s' '{"event":"message","message_token":4912661846655238145}' \
        //   | openssl dgst -sha256 -hmac '445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9'
        let body = br#"{"event":"message","message_token":4912661846655238145}"#;
        assert_eq!(
            viber_signature("445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9", body),
            "cd90e927af36b5bb18749e1e1ee541bbead3f86ede4714e71edcb75713919428"
        );
    }

    #[test]
    fn hub_signature_matches_openssl() {
        // printf '%s' '{"object":"page","entry":[]}' | openssl dgst -sha256 -hmac 'app-secret-123'
        assert_eq!(
            hub_signature("app-secret-123", br#"{"object":"page","entry":[]}"#),
            "sha256=045d425314376ceef02357beda9d40971b523021cc4baad4e55bde33d2691f03"
        );
    }

    #[test]
    fn line_signature_matches_openssl() {
        // printf '%s' '{"destination":"U0","events":[]}' \
        //   | openssl dgst -sha256 -hmac 'channel-secret-123' -binary | base64
        assert_eq!(
            line_signature("channel-secret-123", br#"{"destination":"U0","events":[]}"#),
            "FTBEAu/+28nQNWX8v9RxzhAtB27GXSGTOVKemY/r/xA="
        );
    }

    /// The specification's own vector (standard-webhooks/standard-webhooks, also reproduced with
    /// `openssl dgst -sha256 -mac HMAC -macopt hexkey:<key as hex> -binary | base64`).
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn standard_webhooks_signature_matches_the_spec_vector() {
        assert_eq!(
            standard_webhooks_signature(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY),
            SPEC_SIGNATURE
        );
    }

    #[test]
    fn standard_webhooks_verification_accepts_the_spec_vector_and_nothing_else() {
        let mut h = standard_webhooks_headers(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY);
        assert_eq!(h[WEBHOOK_SIGNATURE_HEADER], SPEC_SIGNATURE);
        let verify =
            |h: &HeaderMap, body: &[u8], now| verify_standard_webhooks(SPEC_SECRET, h, body, now);
        assert_eq!(verify(&h, SPEC_BODY, SPEC_TS + 10), Ok(SPEC_ID.to_owned()));
        // The prefix is optional.
        assert!(
            verify_standard_webhooks("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &h, SPEC_BODY, SPEC_TS)
                .is_ok()
        );
        // One byte of the body changed.
        assert_eq!(
            verify(&h, br#"{"test": 2432232315}"#, SPEC_TS),
            Err(VerifyError::NoMatchingSignature)
        );
        // Replayed too late, or from too far in the future.
        assert!(matches!(
            verify(&h, SPEC_BODY, SPEC_TS + TIMESTAMP_TOLERANCE_SECS + 1),
            Err(VerifyError::TimestampOutOfTolerance { .. })
        ));
        assert!(matches!(
            verify(&h, SPEC_BODY, SPEC_TS - TIMESTAMP_TOLERANCE_SECS - 1),
            Err(VerifyError::TimestampOutOfTolerance { .. })
        ));
        // During a rotation: an old signature first, an unknown version, then the right one.
        h.insert(
            WEBHOOK_SIGNATURE_HEADER,
            HeaderValue::from_str(&format!(
                "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= v1a,abc {SPEC_SIGNATURE}"
            ))
            .unwrap(),
        );
        assert!(verify(&h, SPEC_BODY, SPEC_TS).is_ok());
        // A signature of another version only.
        h.insert(
            WEBHOOK_SIGNATURE_HEADER,
            HeaderValue::from_static("v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
        );
        assert_eq!(
            verify(&h, SPEC_BODY, SPEC_TS),
            Err(VerifyError::NoMatchingSignature)
        );
        h.remove(WEBHOOK_ID_HEADER);
        assert_eq!(
            verify(&h, SPEC_BODY, SPEC_TS),
            Err(VerifyError::MissingHeader(WEBHOOK_ID_HEADER))
        );
        assert_eq!(
            verify_standard_webhooks("whsec_not base64!", &h, SPEC_BODY, SPEC_TS),
            Err(VerifyError::BadSecret)
        );
    }

    #[test]
    fn telegram_and_max_send_their_secret_as_is() {
        assert_eq!(telegram_headers("s3cr3t")[TELEGRAM_SECRET_HEADER], "s3cr3t");
        assert_eq!(max_headers("s3cr3t")[MAX_SECRET_HEADER], "s3cr3t");
    }
}
