//! A custom channel: botlink POSTs each message as JSON to the channel's own URL, signed the
//! Standard Webhooks way (standardwebhooks.com), so the receiver can check it came from
//! botlink and drop repeats.
//!
//! - Headers: `webhook-id` (the message id, the same on every retry), `webhook-timestamp`
//!   (Unix seconds), `webhook-signature` (`v1,` and the Base64 HMAC-SHA256 of
//!   `{id}.{timestamp}.{body}`), `Content-Type: application/json`.
//! - Body: `{"id", "chat_id", "text", "buttons": [{"text", "node"} | {"text", "url"}]}`, with
//!   `tag` when set.
//! - Any 2xx is a delivery (`message_id` taken from the answer's JSON when it has one).
//! - The URL is the tenant's: the guarded client refuses private addresses unless allowed.
//! - The receiving side is configured in the tenant's own service ([`CONSOLE`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};
use sha2::Sha256;
use url::Url;

use super::{Answer, ButtonTarget, MessageError, OutMessage, SendOutcome, classify_http, require};
use crate::outbound::client::OutboundRequest;

const CHANNEL: &str = "custom";
/// Where the receiving side is set up.
pub const CONSOLE: &str = "your own service: have it POST the channel's updates to this URL, signed with the channel's webhook secret in the Standard Webhooks form";

/// A custom channel's endpoint and signing secret.
#[derive(Clone)]
pub struct CustomCreds {
    /// Where messages are POSTed.
    pub url: String,
    /// The signing secret; `whsec_<base64>` as Standard Webhooks writes them, or any string.
    pub webhook_secret: String,
}

/// The Standard Webhooks signature header value: `v1,` and the Base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}`, keyed by the secret's Base64 key after `whsec_`, or by the
/// secret's bytes when it is not in that form.
///
/// botlink's shared signer for Standard Webhooks is planned in `botlink_core` (inbound
/// verification and CRM deliveries use the same form); this one is private to the outbound
/// module until then, and should be replaced by it.
pub fn standard_webhooks_sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The signed POST of `msg` to the channel's URL; `timestamp` is Unix seconds and `sign`
/// produces the `webhook-signature` value from (id, timestamp, body).
pub fn send_message_request(
    creds: &CustomCreds,
    msg: &OutMessage,
    timestamp: i64,
    sign: &dyn Fn(&str, i64, &[u8]) -> String,
) -> Result<OutboundRequest, MessageError> {
    require(CHANNEL, "the message id", &msg.id)?;
    require(CHANNEL, "the webhook secret", &creds.webhook_secret)?;
    let url = Url::parse(&creds.url)
        .map_err(|e| MessageError::new(CHANNEL, format!("the channel URL is not a URL ({e})")))?;
    let buttons: Vec<Value> = msg
        .buttons
        .iter()
        .map(|b| match &b.target {
            ButtonTarget::Node(node) => json!({ "text": b.text, "node": node }),
            ButtonTarget::Url(url) => json!({ "text": b.text, "url": url }),
        })
        .collect();
    let mut body = json!({
        "id": msg.id,
        "chat_id": msg.chat_id,
        "text": msg.text,
        "buttons": buttons,
    });
    if let Some(tag) = &msg.tag {
        body["tag"] = json!(tag);
    }
    let mut request = OutboundRequest::post_json(url, &body);
    let bytes = request.body.as_deref().unwrap_or_default();
    let signature = sign(&msg.id, timestamp, bytes);
    let header = |value: &str| {
        HeaderValue::from_str(value)
            .map_err(|_| MessageError::new(CHANNEL, "the message id is not a header value"))
    };
    let id = header(&msg.id)?;
    let mut signature = header(&signature)?;
    signature.set_sensitive(true);
    request
        .headers
        .insert(HeaderName::from_static("webhook-id"), id);
    request.headers.insert(
        HeaderName::from_static("webhook-timestamp"),
        HeaderValue::from(timestamp),
    );
    request
        .headers
        .insert(HeaderName::from_static("webhook-signature"), signature);
    Ok(request)
}

/// Any 2xx is `Sent` (with the answer's `message_id` when its JSON has one); otherwise by
/// HTTP status: 429 `RetryAfter`, 408 and 5xx `Transient`, other 4xx `Failed`.
pub fn classify_custom(answer: &Answer) -> SendOutcome {
    if answer.status.is_success() {
        let message_id = answer.json().and_then(|b| match b.get("message_id")? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        return SendOutcome::Sent { message_id };
    }
    classify_http(answer, answer.text())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries.
    #[test]
    fn the_signature_matches_the_standard_webhooks_test_vector() {
        let signature = standard_webhooks_sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn the_post_is_signed_over_the_exact_body_sent() {
        let creds = CustomCreds {
            url: "https://crm.example.com/botlink/messages".into(),
            webhook_secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        };
        let msg = OutMessage {
            id: "msg_1".into(),
            chat_id: "c-9".into(),
            text: "Hi".into(),
            buttons: vec![crate::outbound::channels::Button {
                text: "Next".into(),
                target: ButtonTarget::Node("n2".into()),
            }],
            tag: None,
            template: None,
        };
        let request = send_message_request(&creds, &msg, 1_700_000_000, &|id, ts, body| {
            standard_webhooks_sign(&creds.webhook_secret, id, ts, body)
        })
        .unwrap();
        let body = request.body.as_deref().unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(body).unwrap(),
            json!({"id": "msg_1", "chat_id": "c-9", "text": "Hi", "buttons": [{"text": "Next", "node": "n2"}]})
        );
        assert_eq!(request.headers["webhook-id"], "msg_1");
        assert_eq!(request.headers["webhook-timestamp"], "1700000000");
        assert_eq!(
            request.headers["webhook-signature"],
            standard_webhooks_sign(&creds.webhook_secret, "msg_1", 1_700_000_000, body).as_str()
        );
    }
}
