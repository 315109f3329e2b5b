//! What arrives: pull the raw start parameter out of what each messenger sends when a person
//! opens the bot through a deep link. Pure functions over the webhook body; any input gives
//! a value or a typed error, never a panic.

use serde::Deserialize;
use serde_json::Value;

use crate::channel::Channel;

/// Why a webhook body carries no start that botlink can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArrivalError {
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    #[error("the body has no {0}")]
    Missing(&'static str),
    #[error("{0} is not a /start command")]
    NotAStart(String),
    #[error("the command is addressed to @{addressed}, not to this bot @{bot}")]
    OtherBot { addressed: String, bot: String },
}

/// One person opening the bot, as the platform reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub channel: Channel,
    /// The platform's id for the person (Telegram user id, Viber user id, PSID, IGSID, wa_id...).
    pub user_id: String,
    /// Where to write back (Telegram chat id: the group's in groups; elsewhere the user id).
    pub chat_id: String,
    /// The raw parameter, `None` when the person opened the bot without one.
    pub param: Option<String>,
    pub user_name: Option<String>,
    /// The platform's id for this event, for de-duplication.
    pub event_id: Option<String>,
}

fn parse(body: &[u8]) -> Result<Value, ArrivalError> {
    serde_json::from_slice(body).map_err(|e| ArrivalError::NotJson(e.to_string()))
}

pub(crate) fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The parameter of a Telegram `/start` message: `/start <p>` in private chats,
/// `/start@<bot> <p>` in groups. `Ok(None)` for a bare `/start`.
///
/// With `bot`, a command addressed to another bot is [`ArrivalError::OtherBot`].
pub fn telegram_start_param(text: &str, bot: Option<&str>) -> Result<Option<String>, ArrivalError> {
    let text = text.trim_start();
    let (command, rest) = match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], text[i..].trim()),
        None => (text, ""),
    };
    let Some(after) = command.strip_prefix("/start") else {
        return Err(ArrivalError::NotAStart(truncate(command)));
    };
    match after.strip_prefix('@') {
        Some(addressed) => {
            if let Some(bot) = bot
                && !addressed.eq_ignore_ascii_case(bot.trim_start_matches('@'))
            {
                return Err(ArrivalError::OtherBot {
                    addressed: addressed.to_string(),
                    bot: bot.trim_start_matches('@').to_string(),
                });
            }
        }
        None if after.is_empty() => {}
        None => return Err(ArrivalError::NotAStart(truncate(command))),
    }
    Ok((!rest.is_empty()).then(|| rest.to_string()))
}

pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// A Telegram user's name as shown: `first_name`, then `last_name` when there is one.
pub(crate) fn telegram_user_name(from: &Value) -> Option<String> {
    from.get("first_name").and_then(Value::as_str).map(|first| {
        match from.get("last_name").and_then(Value::as_str) {
            Some(last) => format!("{first} {last}"),
            None => first.to_string(),
        }
    })
}

/// A Telegram update carrying `/start`.
pub fn telegram_update(body: &[u8], bot: Option<&str>) -> Result<Start, ArrivalError> {
    let v = parse(body)?;
    let msg = v.get("message").ok_or(ArrivalError::Missing("message"))?;
    let text = msg
        .get("text")
        .and_then(Value::as_str)
        .ok_or(ArrivalError::Missing("message.text"))?;
    let param = telegram_start_param(text, bot)?;
    let from = msg
        .get("from")
        .ok_or(ArrivalError::Missing("message.from"))?;
    let user_id = from
        .get("id")
        .and_then(id_string)
        .ok_or(ArrivalError::Missing("message.from.id"))?;
    let chat_id = msg
        .get("chat")
        .and_then(|c| c.get("id"))
        .and_then(id_string)
        .ok_or(ArrivalError::Missing("message.chat.id"))?;
    let user_name = telegram_user_name(from);
    Ok(Start {
        channel: Channel::Telegram,
        user_id,
        chat_id,
        param,
        user_name,
        event_id: v.get("update_id").and_then(id_string),
    })
}

/// A Viber callback. `conversation_started` carries the `context`; `subscribed` carries none
/// (apply what was saved at `conversation_started`, keyed by the user id).
pub fn viber_callback(body: &[u8]) -> Result<Start, ArrivalError> {
    let v = parse(body)?;
    let event = v
        .get("event")
        .and_then(Value::as_str)
        .ok_or(ArrivalError::Missing("event"))?;
    if !matches!(event, "conversation_started" | "subscribed") {
        return Err(ArrivalError::NotAStart(truncate(event)));
    }
    let user = v.get("user").ok_or(ArrivalError::Missing("user"))?;
    let user_id = user
        .get("id")
        .and_then(id_string)
        .ok_or(ArrivalError::Missing("user.id"))?;
    let param = v
        .get("context")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    Ok(Start {
        channel: Channel::Viber,
        chat_id: user_id.clone(),
        user_id,
        param,
        user_name: user.get("name").and_then(Value::as_str).map(str::to_string),
        event_id: v.get("message_token").and_then(id_string),
    })
}

#[derive(Deserialize)]
struct MetaBody {
    object: Option<String>,
    #[serde(default)]
    entry: Vec<MetaEntry>,
}

#[derive(Deserialize)]
struct MetaEntry {
    #[serde(default)]
    messaging: Vec<Value>,
}

/// Messenger (`object: page`) and Instagram (`object: instagram`) referrals: a new thread's
/// `postback.referral.ref` (Get Started) and an existing thread's `referral.ref`
/// (`messaging_referrals`). One body may batch several; each becomes a [`Start`].
pub fn meta_referrals(body: &[u8]) -> Result<Vec<Start>, ArrivalError> {
    let b: MetaBody =
        serde_json::from_slice(body).map_err(|e| ArrivalError::NotJson(e.to_string()))?;
    let channel = match b.object.as_deref() {
        Some("page") => Channel::Messenger,
        Some("instagram") => Channel::Instagram,
        _ => return Err(ArrivalError::Missing("object \"page\" or \"instagram\"")),
    };
    let mut out = Vec::new();
    for m in b.entry.iter().flat_map(|e| &e.messaging) {
        let referral = m
            .get("postback")
            .and_then(|p| p.get("referral"))
            .or_else(|| m.get("referral"));
        let is_get_started = m.get("postback").is_some();
        if referral.is_none() && !is_get_started {
            continue; // an ordinary message, not a start
        }
        let Some(user_id) = m
            .get("sender")
            .and_then(|s| s.get("id"))
            .and_then(id_string)
        else {
            continue;
        };
        let param = referral
            .and_then(|r| r.get("ref"))
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        let event_id = m
            .get("postback")
            .and_then(|p| p.get("mid"))
            .and_then(id_string)
            .or_else(|| {
                m.get("timestamp")
                    .and_then(id_string)
                    .map(|t| format!("{user_id}:{t}"))
            });
        out.push(Start {
            channel,
            chat_id: user_id.clone(),
            user_id,
            param,
            user_name: None,
            event_id,
        });
    }
    Ok(out)
}

/// The parameter after `marker` in visible text (WhatsApp, LINE): the run of
/// `[A-Za-z0-9_=-]` that follows it.
pub fn marker_param(text: &str, marker: &str) -> Option<String> {
    if marker.is_empty() {
        return None;
    }
    let at = text.find(marker)?;
    let p: String = text[at + marker.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '='))
        .collect();
    (!p.is_empty()).then_some(p)
}

/// WhatsApp Cloud API text messages; the parameter is read after `marker` (e.g. `ref:`).
/// Messages of other types are skipped; a text without the marker gives `param: None`.
pub fn whatsapp_messages(body: &[u8], marker: &str) -> Result<Vec<Start>, ArrivalError> {
    let v = parse(body)?;
    let entries = v
        .get("entry")
        .and_then(Value::as_array)
        .ok_or(ArrivalError::Missing("entry"))?;
    let mut out = Vec::new();
    for change in entries
        .iter()
        .filter_map(|e| e.get("changes").and_then(Value::as_array))
        .flatten()
    {
        let Some(value) = change.get("value") else {
            continue;
        };
        let names: Vec<(String, String)> = value
            .get("contacts")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| {
                        let id = c.get("wa_id").and_then(id_string)?;
                        let name = c.pointer("/profile/name").and_then(Value::as_str)?;
                        Some((id, name.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for m in value
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(text) = m.pointer("/text/body").and_then(Value::as_str) else {
                continue;
            };
            let Some(from) = m.get("from").and_then(id_string) else {
                continue;
            };
            out.push(Start {
                channel: Channel::Whatsapp,
                user_name: names
                    .iter()
                    .find(|(id, _)| *id == from)
                    .map(|(_, n)| n.clone()),
                chat_id: from.clone(),
                user_id: from,
                param: marker_param(text, marker),
                event_id: m.get("id").and_then(id_string),
            });
        }
    }
    Ok(out)
}

/// LINE webhook text messages; the parameter is read after `marker`.
pub fn line_events(body: &[u8], marker: &str) -> Result<Vec<Start>, ArrivalError> {
    let v = parse(body)?;
    let events = v
        .get("events")
        .and_then(Value::as_array)
        .ok_or(ArrivalError::Missing("events"))?;
    let mut out = Vec::new();
    for e in events {
        if e.get("type").and_then(Value::as_str) != Some("message") {
            continue;
        }
        let Some(text) = e.pointer("/message/text").and_then(Value::as_str) else {
            continue;
        };
        let Some(user_id) = e.pointer("/source/userId").and_then(id_string) else {
            continue;
        };
        out.push(Start {
            channel: Channel::Line,
            chat_id: user_id.clone(),
            user_id,
            param: marker_param(text, marker),
            user_name: None,
            event_id: e.get("webhookEventId").and_then(id_string),
        });
    }
    Ok(out)
}

/// A MAX `bot_started` update; its `payload` is the parameter.
pub fn max_update(body: &[u8]) -> Result<Start, ArrivalError> {
    let v = parse(body)?;
    let kind = v
        .get("update_type")
        .and_then(Value::as_str)
        .ok_or(ArrivalError::Missing("update_type"))?;
    if kind != "bot_started" {
        return Err(ArrivalError::NotAStart(truncate(kind)));
    }
    let user = v.get("user").ok_or(ArrivalError::Missing("user"))?;
    let user_id = user
        .get("user_id")
        .and_then(id_string)
        .ok_or(ArrivalError::Missing("user.user_id"))?;
    let chat_id = v
        .get("chat_id")
        .and_then(id_string)
        .unwrap_or_else(|| user_id.clone());
    Ok(Start {
        channel: Channel::Max,
        param: v
            .get("payload")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .map(str::to_string),
        user_name: user.get("name").and_then(Value::as_str).map(str::to_string),
        event_id: v
            .get("timestamp")
            .and_then(id_string)
            .map(|t| format!("{user_id}:{t}")),
        user_id,
        chat_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telegram_text() {
        assert_eq!(
            telegram_start_param("/start abc", None).unwrap().as_deref(),
            Some("abc")
        );
        assert_eq!(telegram_start_param("/start", None).unwrap(), None);
        assert_eq!(
            telegram_start_param("/start@MyBot team_1", Some("mybot"))
                .unwrap()
                .as_deref(),
            Some("team_1")
        );
        assert!(matches!(
            telegram_start_param("/start@other x", Some("mybot")),
            Err(ArrivalError::OtherBot { .. })
        ));
        assert!(matches!(
            telegram_start_param("/help", None),
            Err(ArrivalError::NotAStart(_))
        ));
        assert!(matches!(
            telegram_start_param("/startx", None),
            Err(ArrivalError::NotAStart(_))
        ));
        assert!(matches!(
            telegram_start_param("", None),
            Err(ArrivalError::NotAStart(_))
        ));
    }

    #[test]
    fn markers() {
        assert_eq!(
            marker_param("Hello! ref:summer_sale", "ref:").as_deref(),
            Some("summer_sale")
        );
        assert_eq!(marker_param("ref:a1 thanks", "ref:").as_deref(), Some("a1"));
        assert_eq!(marker_param("ref: nothing", "ref:"), None);
        assert_eq!(marker_param("hello", "ref:"), None);
        assert_eq!(marker_param("ref:x", ""), None);
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(matches!(
            telegram_update(b"{", None),
            Err(ArrivalError::NotJson(_))
        ));
        assert!(matches!(
            telegram_update(b"{}", None),
            Err(ArrivalError::Missing("message"))
        ));
        assert!(matches!(
            viber_callback(b"[]"),
            Err(ArrivalError::Missing("event"))
        ));
        assert!(matches!(
            viber_callback(br#"{"event":"message","user":{"id":"x"}}"#),
            Err(ArrivalError::NotAStart(_))
        ));
        assert!(matches!(
            meta_referrals(b"{}"),
            Err(ArrivalError::Missing(_))
        ));
        assert!(matches!(
            whatsapp_messages(b"{}", "ref:"),
            Err(ArrivalError::Missing("entry"))
        ));
        assert!(matches!(
            line_events(b"{}", "ref:"),
            Err(ArrivalError::Missing("events"))
        ));
        assert!(matches!(
            max_update(b"{\"update_type\":\"message_created\"}"),
            Err(ArrivalError::NotAStart(_))
        ));
    }

    #[test]
    fn max_and_line() {
        let s = max_update(
            br#"{"update_type":"bot_started","timestamp":1763700000,"chat_id":555,"user":{"user_id":42,"name":"Ann"},"payload":"promo_1"}"#,
        )
        .unwrap();
        assert_eq!(
            (s.user_id.as_str(), s.chat_id.as_str(), s.param.as_deref()),
            ("42", "555", Some("promo_1"))
        );
        let l = line_events(
            br#"{"destination":"U0","events":[{"type":"follow","source":{"userId":"U1"}},{"type":"message","webhookEventId":"E1","source":{"type":"user","userId":"U1"},"message":{"type":"text","id":"1","text":"Hi ref:a1"}}]}"#,
            "ref:",
        )
        .unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].param.as_deref(), Some("a1"));
    }
}
