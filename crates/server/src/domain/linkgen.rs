//! Turning a link request into each channel's deep link, in the scheme asked for.
//! Business logic only: no HTTP, no storage.

use botlink_core::link::{LinkSpec, build_link};
use botlink_core::payload::{self, Fields, JsonPayload};
use botlink_core::{Channel, LinkError, PayloadError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::Payload;

/// The scheme a link's parameter uses (`stored` unless asked otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SchemeIn {
    #[default]
    Stored,
    Json,
    Fields,
    Raw,
    Entry,
}

impl SchemeIn {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemeIn::Stored => "stored",
            SchemeIn::Json => "json",
            SchemeIn::Fields => "fields",
            SchemeIn::Raw => "raw",
            SchemeIn::Entry => "entry",
        }
    }
}

impl From<SchemeIn> for botlink_core::Scheme {
    fn from(s: SchemeIn) -> Self {
        match s {
            SchemeIn::Stored => botlink_core::Scheme::Stored,
            SchemeIn::Json => botlink_core::Scheme::Json,
            SchemeIn::Fields => botlink_core::Scheme::Fields,
            SchemeIn::Raw => botlink_core::Scheme::Raw,
            SchemeIn::Entry => botlink_core::Scheme::Entry,
        }
    }
}

/// The entry point a link starts at, as link building needs it.
#[derive(Debug, Clone)]
pub struct EntryTarget {
    pub key: String,
    pub default_field: Option<String>,
}

/// Why a link could not be composed; the API answers 422 with this text.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("{channel}: {source}")]
    Link { channel: Channel, source: LinkError },
    #[error("{0}")]
    Payload(#[from] PayloadError),
    #[error("{0}")]
    Request(String),
}

impl ComposeError {
    /// A stable machine code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            ComposeError::Link {
                source: LinkError::TooLong { .. },
                ..
            } => "payload_too_long",
            ComposeError::Link {
                source: LinkError::BadChar { .. },
                ..
            } => "payload_bad_characters",
            ComposeError::Link { .. } => "invalid_link",
            ComposeError::Payload(_) => "invalid_payload",
            ComposeError::Request(_) => "invalid_request",
        }
    }
}

/// The parameter for a scheme, before any per-click part and before signing.
pub fn base_param(
    scheme: SchemeIn,
    payload: &Payload,
    entry: Option<&EntryTarget>,
    code: &str,
) -> Result<String, ComposeError> {
    let need_entry = || {
        entry.ok_or_else(|| {
            ComposeError::Request(format!(
                "the {} scheme needs an entry point: give `entry_point`",
                scheme.as_str()
            ))
        })
    };
    Ok(match scheme {
        SchemeIn::Stored => payload::encode_stored(code, None)?,
        SchemeIn::Raw => match payload.param.as_deref() {
            Some(p) => p.to_string(),
            None => {
                return Err(ComposeError::Request(
                    "the raw scheme needs `payload.param`".into(),
                ));
            }
        },
        SchemeIn::Entry => payload::encode_entry(&need_entry()?.key)?,
        SchemeIn::Json => payload::encode_json(&JsonPayload {
            phone: payload.phone.clone(),
            email: payload.email.clone(),
            external_id: payload.external_id.clone(),
            variables: payload
                .variables
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })?,
        SchemeIn::Fields => {
            let e = need_entry()?;
            let mut fields = payload.fields.clone();
            let value = match (&payload.value, &e.default_field) {
                (Some(v), _) => v.clone(),
                (None, Some(df)) => fields.remove(df).ok_or_else(|| {
                    ComposeError::Request(format!(
                        "the fields scheme needs `payload.value`, or a value for the entry point's default field {df:?} in `payload.fields`"
                    ))
                })?,
                (None, None) => {
                    return Err(ComposeError::Request(
                        "the fields scheme needs `payload.value` (the entry point has no default field)".into(),
                    ));
                }
            };
            let mut pairs: Vec<(String, String)> = fields.into_iter().collect();
            for (k, v) in [
                ("external_id", &payload.external_id),
                ("phone", &payload.phone),
                ("email", &payload.email),
            ] {
                if let Some(v) = v {
                    pairs.push((k.to_string(), v.clone()));
                }
            }
            payload::encode_fields(&Fields {
                entry: e.key.clone(),
                value,
                fields: pairs,
            })?
        }
    })
}

/// Builds one channel's deep link for `param` (already signed where asked).
pub fn deep_link(
    channel: Channel,
    bot: &str,
    param: &str,
    text: Option<&str>,
    public_url: &str,
) -> Result<botlink_core::DeepLink, ComposeError> {
    let mut spec = LinkSpec::new(channel, bot, Some(param));
    if matches!(channel, Channel::Viber | Channel::Whatsapp | Channel::Line) {
        spec.text = text;
    }
    if channel == Channel::Webchat {
        spec.base_url = Some(public_url);
    }
    build_link(&spec).map_err(|source| ComposeError::Link { channel, source })
}

/// Signs a parameter when the link is signed.
pub fn maybe_sign(param: String, signed: bool, key: &[u8]) -> Result<String, ComposeError> {
    if signed {
        Ok(payload::sign(key, &param)?)
    } else {
        Ok(param)
    }
}

/// The parameter a stored-scheme link carries for one click: `l_<code>_<click>`, signed if
/// the link is.
pub fn stored_click_param(
    code: &str,
    click: &str,
    signed: bool,
    key: &[u8],
) -> Result<String, ComposeError> {
    maybe_sign(payload::encode_stored(code, Some(click))?, signed, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        let p = Payload {
            email: Some("email@gmail.com".into()),
            ..Default::default()
        };
        assert_eq!(
            base_param(SchemeIn::Json, &p, None, "c").unwrap(),
            "eyJlIjoiZW1haWxAZ21haWwuY29tIn0"
        );
        assert_eq!(
            base_param(SchemeIn::Stored, &p, None, "Abc123").unwrap(),
            "l_Abc123"
        );
        let e = EntryTarget {
            key: "giveaway".into(),
            default_field: Some("name".into()),
        };
        let f = Payload {
            fields: [
                ("name".to_string(), "value1".to_string()),
                ("738".to_string(), "value2".to_string()),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        assert_eq!(
            base_param(SchemeIn::Fields, &f, Some(&e), "c").unwrap(),
            "giveaway--value1--738--value2"
        );
        assert!(matches!(
            base_param(SchemeIn::Entry, &p, None, "c"),
            Err(ComposeError::Request(_))
        ));
        assert!(matches!(
            base_param(SchemeIn::Raw, &p, None, "c"),
            Err(ComposeError::Request(_))
        ));
        let long = Payload {
            email: Some("a".repeat(60)),
            ..Default::default()
        };
        let param = base_param(SchemeIn::Json, &long, None, "c").unwrap();
        let err = deep_link(Channel::Telegram, "mybot", &param, None, "http://x").unwrap_err();
        assert_eq!(err.code(), "payload_too_long");
        assert!(err.to_string().starts_with("telegram: "), "{err}");
    }
}
