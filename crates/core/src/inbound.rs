//! What a webhook body says happened: each platform's update, callback or batch read into
//! [`Inbound`] events, which the server stores (deduplicated on [`Inbound::event_id`]) and
//! processes (a Start makes a contact and runs the scenario, and so on).
//!
//! One function per platform, each over the raw body, after its signature was checked
//! ([`crate::signature`]):
//!
//! | function | body | events |
//! |---|---|---|
//! | [`telegram`] | one Bot API `Update` | `/start` text, other text, `callback_query`, `my_chat_member` blocks and unblocks |
//! | [`viber`] | one REST Bot API callback | `conversation_started`, `subscribed`, `unsubscribed`, text `message` |
//! | [`messenger`], [`instagram`] | a Meta `page` / `instagram` batch | referrals, postbacks, quick replies, text messages |
//! | [`whatsapp`] | a Cloud API `whatsapp_business_account` batch | text (a Start when it holds the marker), button replies |
//! | [`line()`] | a Messaging API batch | `follow`, `unfollow`, text (a Start when it holds the marker), `postback` |
//! | [`max`] | one MAX Bot API `Update` | `bot_started`, `bot_stopped`, `message_created`, `message_callback` |
//! | [`custom`] | botlink's own format (`docs/custom-channel.md`) | all of the above |
//!
//! A body that is not JSON, or lacks what the platform always sends (the envelope, or the ids
//! of an event botlink uses), is an [`InboundError`]: the server answers 400, and the error
//! names what is missing. Anything of a kind botlink does not use (Telegram `edited_message`,
//! Viber `delivered` and `seen`, WhatsApp `statuses`, LINE `join`, a sticker...) yields no
//! event and no error, since platforms retry any answer but 2xx. Only text messages become
//! [`InboundKind::Message`] for now; other messages (photos, voice, stickers) yield nothing.
//!
//! The start parameter rules themselves (Telegram's `/start@bot <p>`, the visible-text marker)
//! are those of [`crate::arrival`], reused here.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::arrival::{
    ArrivalError, id_string, marker_param, telegram_start_param, telegram_user_name, truncate,
};

/// One thing a person did, as the platform reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbound {
    /// The platform's id for this event, unique among one bot's events on one channel (store
    /// and deduplicate it together with the bot and the channel): Telegram `update_id`, Viber
    /// `message_token`, Meta `message.mid` / `postback.mid`, WhatsApp message `id` (a wamid),
    /// LINE `webhookEventId`, MAX `message.body.mid`, custom `id`. Where the platform gives
    /// none (a Meta referral, MAX `bot_started`...), `<kind>:<user id>:<platform timestamp>`,
    /// the same for the same body every time.
    pub event_id: String,
    /// The platform's id for the person (Telegram user id, Viber user id, PSID, IGSID,
    /// wa_id, LINE userId, MAX user_id).
    pub user_id: String,
    /// Where to write back: the chat (Telegram, MAX, and LINE groups and rooms); elsewhere the
    /// person's own id.
    pub chat_id: String,
    /// The person's name when the platform sends it.
    pub user_name: Option<String>,
    /// The person's language or locale when the platform sends it (Telegram `language_code`,
    /// Viber `language`, MAX `user_locale`).
    pub language: Option<String>,
    pub kind: InboundKind,
}

/// What happened. Each variant says which platform events make it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InboundKind {
    /// The person opened the bot, through a deep link when `param` is set: Telegram `/start`
    /// (`/start@bot` in groups), Meta referrals (Get Started with a `ref`, `messaging_referrals`,
    /// a message or Instagram icebreaker carrying a `referral`), WhatsApp and LINE text holding
    /// the marker, MAX `bot_started`. `param` is the raw parameter, to decode with
    /// [`crate::decode`].
    Start { param: Option<String> },
    /// Viber only: the person opened the chat (`conversation_started`), with the deep link's
    /// `context`. Viber allows one welcome message in answer, but the person is not subscribed
    /// yet, and the later `subscribed` callback carries no context: save it now, keyed by the
    /// user id.
    ConversationStarted { context: Option<String> },
    /// The person can be written to again: Viber `subscribed`, LINE `follow` (a new friend or
    /// an unblock), Telegram `my_chat_member` going from `kicked`/`left` to a member (the bot
    /// unblocked, or added back to a group). Viber sends no `subscribed` when a person's first
    /// message subscribes them.
    Subscribed,
    /// The person can no longer be written to: Viber `unsubscribed`, LINE `unfollow` (blocked),
    /// MAX `bot_stopped`, Telegram `my_chat_member` turning `kicked` (the bot blocked in a
    /// private chat) or `left` (the bot removed from a group).
    Unsubscribed,
    /// The person wrote text: Telegram, Viber (keyboard `reply` buttons arrive this way too),
    /// Messenger, Instagram, WhatsApp and LINE text without the marker, MAX `message_created`
    /// (including `/start`, since MAX sends deep link payloads only in `bot_started`).
    Message { text: String },
    /// The person pressed a button that carries data: Telegram `callback_query.data`, Meta
    /// `postback.payload` without a referral and `quick_reply.payload`, WhatsApp
    /// `button_reply.id` / `list_reply.id` / template `button.payload`, LINE `postback.data`,
    /// MAX `message_callback` `payload`.
    Postback { payload: String },
}

/// Why a body cannot be read as the platform's webhook. Safe to answer with a 400: it names a
/// field, and quotes at most 40 characters of the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    /// A field the platform always sends is absent (or of another JSON type). Items of a batch
    /// are named with `[]`, or with their index in the custom format.
    #[error("the body has no {0}")]
    Missing(String),
    #[error("{field} {reason}")]
    Invalid { field: String, reason: String },
}

fn parse(body: &[u8]) -> Result<Value, InboundError> {
    serde_json::from_slice(body).map_err(|e| InboundError::NotJson(e.to_string()))
}

fn missing(field: impl Into<String>) -> InboundError {
    InboundError::Missing(field.into())
}

/// An id (string or number) at `pointer`, or the error naming `field`.
fn id_at(v: &Value, pointer: &str, field: &str) -> Result<String, InboundError> {
    v.pointer(pointer)
        .and_then(id_string)
        .ok_or_else(|| missing(field))
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// A string at `pointer`, `None` when absent or empty.
fn text_at(v: &Value, pointer: &str) -> Option<String> {
    str_at(v, pointer)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The id of an event the platform gives no id for: deterministic for the same body.
fn derived_id(kind: &str, user_id: &str, timestamp: &str) -> String {
    format!("{kind}:{user_id}:{timestamp}")
}

/// Who an event is from and where to answer.
struct Who {
    user_id: String,
    chat_id: String,
    user_name: Option<String>,
    language: Option<String>,
}

impl Who {
    /// A person whose chat with the bot is addressed by their own id.
    fn person(user_id: String) -> Who {
        Who {
            chat_id: user_id.clone(),
            user_id,
            user_name: None,
            language: None,
        }
    }

    fn event(self, event_id: String, kind: InboundKind) -> Inbound {
        Inbound {
            event_id,
            user_id: self.user_id,
            chat_id: self.chat_id,
            user_name: self.user_name,
            language: self.language,
            kind,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Telegram

/// One Telegram Bot API `Update` (core.telegram.org/bots/api#update: at most one of its
/// optional fields is present). `event_id` is its `update_id`.
///
/// - `message` with text: `/start [p]` or `/start@bot [p]` is a Start (the rules of
///   [`telegram_start_param`]; with `bot_username`, a command addressed to another bot yields
///   nothing); any other text is a Message. The chat is `message.chat.id` (the group's in
///   groups). Messages without `from` or from bots yield nothing.
/// - `callback_query` with `data`: a Postback; the chat is that of the message the button was
///   on (inline-mode queries, which have no chat, yield nothing).
/// - `my_chat_member`: Telegram sends it in private chats only when the person blocks or
///   unblocks the bot. New status `kicked` or `left` is Unsubscribed; from `kicked` or `left`
///   to `member`, `administrator` or `creator` is Subscribed; other changes yield nothing.
/// - Every other update (`edited_message`, `channel_post`, `inline_query`...) yields nothing.
pub fn telegram(body: &[u8], bot_username: Option<&str>) -> Result<Vec<Inbound>, InboundError> {
    let v = parse(body)?;
    let event_id = v
        .get("update_id")
        .filter(|id| id.is_i64() || id.is_u64())
        .and_then(id_string)
        .ok_or_else(|| missing("update_id"))?;
    let event = if let Some(m) = v.get("message") {
        telegram_message(m, bot_username)?
    } else if let Some(q) = v.get("callback_query") {
        telegram_callback(q)?
    } else if let Some(u) = v.get("my_chat_member") {
        telegram_membership(u)?
    } else {
        None
    };
    Ok(event
        .map(|(who, kind)| who.event(event_id, kind))
        .into_iter()
        .collect())
}

fn telegram_who(from: &Value, chat_id: String, from_field: &str) -> Result<Who, InboundError> {
    Ok(Who {
        user_id: id_at(from, "/id", from_field)?,
        chat_id,
        user_name: telegram_user_name(from),
        language: text_at(from, "/language_code"),
    })
}

fn telegram_message(
    m: &Value,
    bot_username: Option<&str>,
) -> Result<Option<(Who, InboundKind)>, InboundError> {
    // `from` is empty for messages sent on behalf of a channel; a bot's own messages and
    // anonymous group admins (`GroupAnonymousBot`) are not a person writing to the bot.
    let Some(from) = m.get("from") else {
        return Ok(None);
    };
    if from.get("is_bot").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let chat_id = id_at(m, "/chat/id", "message.chat.id")?;
    let who = telegram_who(from, chat_id, "message.from.id")?;
    let Some(text) = m.get("text").and_then(Value::as_str) else {
        return Ok(None);
    };
    let kind = match telegram_start_param(text, bot_username) {
        Ok(param) => InboundKind::Start { param },
        Err(ArrivalError::OtherBot { .. }) => return Ok(None),
        Err(_) => InboundKind::Message {
            text: text.to_string(),
        },
    };
    Ok(Some((who, kind)))
}

fn telegram_callback(q: &Value) -> Result<Option<(Who, InboundKind)>, InboundError> {
    let from = q
        .get("from")
        .ok_or_else(|| missing("callback_query.from"))?;
    let Some(data) = q.get("data").and_then(Value::as_str) else {
        return Ok(None); // a game's callback: no data
    };
    let Some(chat_id) = q.pointer("/message/chat/id").and_then(id_string) else {
        return Ok(None); // a button on an inline-mode message: no chat
    };
    let who = telegram_who(from, chat_id, "callback_query.from.id")?;
    Ok(Some((
        who,
        InboundKind::Postback {
            payload: data.to_string(),
        },
    )))
}

fn telegram_membership(u: &Value) -> Result<Option<(Who, InboundKind)>, InboundError> {
    let from = u
        .get("from")
        .ok_or_else(|| missing("my_chat_member.from"))?;
    let chat_id = id_at(u, "/chat/id", "my_chat_member.chat.id")?;
    let who = telegram_who(from, chat_id, "my_chat_member.from.id")?;
    let gone = |s: Option<&str>| matches!(s, Some("kicked" | "left"));
    let member = |s: Option<&str>| matches!(s, Some("member" | "administrator" | "creator"));
    let old = str_at(u, "/old_chat_member/status");
    let new = str_at(u, "/new_chat_member/status");
    let kind = if gone(new) && !gone(old) {
        InboundKind::Unsubscribed
    } else if gone(old) && member(new) {
        InboundKind::Subscribed
    } else {
        return Ok(None);
    };
    Ok(Some((who, kind)))
}

// ---------------------------------------------------------------------------------------------
// Viber

/// One Viber REST Bot API callback (developers.viber.com/docs/api/rest-bot-api/#callbacks).
/// `event_id` is its `message_token` ("unique ID of the message"; a 64-bit number, kept
/// exactly). The chat is always the person's own id (the send API's `receiver`).
///
/// - `conversation_started` (user id in `user.id`): ConversationStarted with the deep link's
///   `context`.
/// - `subscribed` (`user.id`): Subscribed. `unsubscribed` (`user_id`): Unsubscribed.
/// - `message` of type `text` (`sender.id`): Message.
/// - `delivered`, `seen`, `failed`, `webhook` (sent when the webhook is set), other message
///   types: nothing.
pub fn viber(body: &[u8]) -> Result<Vec<Inbound>, InboundError> {
    let v = parse(body)?;
    let event = v
        .get("event")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("event"))?;
    let (who, kind) = match event {
        "conversation_started" => (
            viber_person(&v, "user")?,
            InboundKind::ConversationStarted {
                context: text_at(&v, "/context"),
            },
        ),
        "subscribed" => (viber_person(&v, "user")?, InboundKind::Subscribed),
        "unsubscribed" => (
            Who::person(id_at(&v, "/user_id", "user_id")?),
            InboundKind::Unsubscribed,
        ),
        "message" => {
            if str_at(&v, "/message/type") != Some("text") {
                return Ok(vec![]);
            }
            let text = str_at(&v, "/message/text").ok_or_else(|| missing("message.text"))?;
            (
                viber_person(&v, "sender")?,
                InboundKind::Message {
                    text: text.to_string(),
                },
            )
        }
        _ => return Ok(vec![]),
    };
    let event_id = match v.get("message_token").and_then(id_string) {
        Some(token) => token,
        None => derived_id(
            event,
            &who.user_id,
            &id_at(&v, "/timestamp", "message_token")?,
        ),
    };
    Ok(vec![who.event(event_id, kind)])
}

/// Viber's user object under `key` (`user` or `sender`): `id`, `name`, `language`.
fn viber_person(v: &Value, key: &str) -> Result<Who, InboundError> {
    let person = v.get(key).ok_or_else(|| missing(key))?;
    let mut who = Who::person(id_at(person, "/id", &format!("{key}.id"))?);
    who.user_name = text_at(person, "/name");
    who.language = text_at(person, "/language");
    Ok(who)
}

// ---------------------------------------------------------------------------------------------
// Messenger and Instagram

/// A Messenger webhook batch (`object: "page"`), entry by entry, `messaging` item by item
/// (developers.facebook.com/docs/messenger-platform/webhooks). The person is `sender.id` (the
/// PSID), which is also the chat.
///
/// - `postback` with a `referral` (Get Started from an `m.me/<page>?ref=` link in a new thread):
///   Start with `referral.ref`; `event_id` is `postback.mid`.
/// - `referral` (the `messaging_referrals` event: the link opened an existing thread): Start;
///   Meta gives it no id, so `event_id` is `referral:<sender>:<timestamp>`.
/// - `message` with a `referral` (a message sent from an ad or link): Start; `message.mid`.
/// - `message` with `quick_reply.payload`: Postback; with `text`: Message; `message.mid`.
/// - `postback` without a referral: Postback with its `payload`; `postback.mid`.
/// - `message.is_echo` (the page's own messages), `read`, `delivery`, `reaction`, other
///   messages: nothing.
pub fn messenger(body: &[u8]) -> Result<Vec<Inbound>, InboundError> {
    meta(body, "page")
}

/// An Instagram messaging webhook batch (`object: "instagram"`), read by the rules of
/// [`messenger`]; the person is the IGSID. An `ig.me/m/<user>?ref=` link arrives as a
/// `referral` item, as a `referral` inside the person's first message, or inside an
/// icebreaker's `postback` (Instagram sends the ref only when icebreakers are set): each is a
/// Start.
pub fn instagram(body: &[u8]) -> Result<Vec<Inbound>, InboundError> {
    meta(body, "instagram")
}

fn meta(body: &[u8], object: &'static str) -> Result<Vec<Inbound>, InboundError> {
    let v = parse(body)?;
    let found = v
        .get("object")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("object"))?;
    if found != object {
        return Err(InboundError::Invalid {
            field: "object".into(),
            reason: format!("is {:?}; this endpoint takes {object:?}", truncate(found)),
        });
    }
    let entries = v
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| missing("entry"))?;
    let mut out = Vec::new();
    let items = entries
        .iter()
        .filter_map(|e| e.get("messaging").and_then(Value::as_array))
        .flatten();
    for m in items {
        let Some((name, mid, kind)) = meta_kind(m) else {
            continue;
        };
        let user_id = id_at(m, "/sender/id", "entry[].messaging[].sender.id")?;
        let event_id = match mid {
            Some(mid) => mid,
            None => derived_id(
                name,
                &user_id,
                &id_at(m, "/timestamp", "entry[].messaging[].timestamp")?,
            ),
        };
        out.push(Who::person(user_id).event(event_id, kind));
    }
    Ok(out)
}

/// What one Meta `messaging` item is: its kind's name (for derived ids), its `mid` if it has
/// one, and the event; `None` for items botlink does not use.
fn meta_kind(m: &Value) -> Option<(&'static str, Option<String>, InboundKind)> {
    let start = |r: &Value| InboundKind::Start {
        param: text_at(r, "/ref"),
    };
    if let Some(msg) = m.get("message") {
        if msg.get("is_echo").and_then(Value::as_bool) == Some(true) {
            return None;
        }
        let mid = msg.get("mid").and_then(id_string);
        if let Some(r) = msg.get("referral") {
            return Some(("referral", mid, start(r)));
        }
        if let Some(payload) = str_at(msg, "/quick_reply/payload") {
            let payload = payload.to_string();
            return Some(("quick_reply", mid, InboundKind::Postback { payload }));
        }
        let text = str_at(msg, "/text")?.to_string();
        return Some(("message", mid, InboundKind::Message { text }));
    }
    if let Some(pb) = m.get("postback") {
        let mid = pb.get("mid").and_then(id_string);
        if let Some(r) = pb.get("referral") {
            return Some(("postback", mid, start(r)));
        }
        let payload = str_at(pb, "/payload")?.to_string();
        return Some(("postback", mid, InboundKind::Postback { payload }));
    }
    m.get("referral").map(|r| ("referral", None, start(r)))
}

// ---------------------------------------------------------------------------------------------
// WhatsApp

/// A WhatsApp Cloud API webhook batch (`object: "whatsapp_business_account"`; the `messages`
/// field of each change). WhatsApp links carry no hidden parameter: botlink puts it in the
/// visible text after `marker` (`ref:` as a rule, [`crate::link::TEXT_MARKER`]).
///
/// - `text` holding the marker: Start with the parameter after it ([`marker_param`]); other
///   text: Message. A text without the marker from someone new is still that person's first
///   message: the server decides whether it starts them.
/// - `interactive` `button_reply.id` / `list_reply.id`, and a template's quick-reply
///   `button.payload`: Postback.
/// - `statuses` (sent, delivered, read), other message types, other fields: nothing.
///
/// The person is the message's `from` (the wa_id), also the chat; `event_id` is the message
/// `id` (a wamid); the name comes from the `contacts` profile with the same wa_id.
pub fn whatsapp(body: &[u8], marker: &str) -> Result<Vec<Inbound>, InboundError> {
    let v = parse(body)?;
    match v.get("object").and_then(Value::as_str) {
        Some("whatsapp_business_account") => {}
        Some(other) => {
            return Err(InboundError::Invalid {
                field: "object".into(),
                reason: format!(
                    "is {:?}; this endpoint takes \"whatsapp_business_account\"",
                    truncate(other)
                ),
            });
        }
        None => return Err(missing("object")),
    }
    let entries = v
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| missing("entry"))?;
    let changes = entries
        .iter()
        .filter_map(|e| e.get("changes").and_then(Value::as_array))
        .flatten()
        .filter(|c| str_at(c, "/field") == Some("messages"))
        .filter_map(|c| c.get("value"));
    let mut out = Vec::new();
    for value in changes {
        let messages = value.get("messages").and_then(Value::as_array);
        for m in messages.into_iter().flatten() {
            let Some(kind) = whatsapp_kind(m, marker)? else {
                continue;
            };
            let from = id_at(m, "/from", "entry[].changes[].value.messages[].from")?;
            let event_id = id_at(m, "/id", "entry[].changes[].value.messages[].id")?;
            let mut who = Who::person(from);
            who.user_name = whatsapp_name(value, &who.user_id);
            out.push(who.event(event_id, kind));
        }
    }
    Ok(out)
}

fn whatsapp_kind(m: &Value, marker: &str) -> Result<Option<InboundKind>, InboundError> {
    Ok(match str_at(m, "/type") {
        Some("text") => {
            let text = str_at(m, "/text/body")
                .ok_or_else(|| missing("entry[].changes[].value.messages[].text.body"))?;
            Some(match marker_param(text, marker) {
                Some(param) => InboundKind::Start { param: Some(param) },
                None => InboundKind::Message {
                    text: text.to_string(),
                },
            })
        }
        Some("interactive") => str_at(m, "/interactive/button_reply/id")
            .or_else(|| str_at(m, "/interactive/list_reply/id"))
            .map(|id| InboundKind::Postback {
                payload: id.to_string(),
            }),
        Some("button") => str_at(m, "/button/payload").map(|p| InboundKind::Postback {
            payload: p.to_string(),
        }),
        _ => None,
    })
}

fn whatsapp_name(value: &Value, wa_id: &str) -> Option<String> {
    value
        .get("contacts")?
        .as_array()?
        .iter()
        .find(|c| c.get("wa_id").and_then(id_string).as_deref() == Some(wa_id))
        .and_then(|c| text_at(c, "/profile/name"))
}

// ---------------------------------------------------------------------------------------------
// LINE

/// A LINE Messaging API webhook batch (developers.line.biz/en/reference/messaging-api/#webhook-event-objects).
/// `event_id` is each event's `webhookEventId` (a ULID; the same on a redelivery). LINE links
/// carry no hidden parameter either: it is read after `marker` in the visible text.
///
/// - `follow` (a new friend, or an unblock): Subscribed. `unfollow` (blocked): Unsubscribed.
/// - `message` of type `text`: Start when it holds the marker, else Message.
/// - `postback`: Postback with its `data`.
/// - Other events (`join`, `leave`, `unsend`, `beacon`...) and other message types: nothing.
///
/// The person is `source.userId`. The chat is the person's id in a one-to-one chat, the
/// `groupId` in a group and the `roomId` in a multi-person chat, since replies and pushes go
/// there. LINE leaves `userId` out of some group events; those yield nothing. An empty
/// `events` list (LINE's check when the webhook URL is set) yields nothing.
pub fn line(body: &[u8], marker: &str) -> Result<Vec<Inbound>, InboundError> {
    let v = parse(body)?;
    let events = v
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| missing("events"))?;
    let mut out = Vec::new();
    for e in events {
        let kind = match str_at(e, "/type") {
            Some("follow") => InboundKind::Subscribed,
            Some("unfollow") => InboundKind::Unsubscribed,
            Some("message") => {
                if str_at(e, "/message/type") != Some("text") {
                    continue;
                }
                let text =
                    str_at(e, "/message/text").ok_or_else(|| missing("events[].message.text"))?;
                match marker_param(text, marker) {
                    Some(param) => InboundKind::Start { param: Some(param) },
                    None => InboundKind::Message {
                        text: text.to_string(),
                    },
                }
            }
            Some("postback") => InboundKind::Postback {
                payload: str_at(e, "/postback/data")
                    .ok_or_else(|| missing("events[].postback.data"))?
                    .to_string(),
            },
            _ => continue,
        };
        let event_id = id_at(e, "/webhookEventId", "events[].webhookEventId")?;
        let Some(user_id) = e.pointer("/source/userId").and_then(id_string) else {
            continue;
        };
        let chat_id = match str_at(e, "/source/type") {
            Some("group") => id_at(e, "/source/groupId", "events[].source.groupId")?,
            Some("room") => id_at(e, "/source/roomId", "events[].source.roomId")?,
            _ => user_id.clone(),
        };
        let who = Who {
            user_id,
            chat_id,
            user_name: None,
            language: None,
        };
        out.push(who.event(event_id, kind));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// MAX

/// One MAX Bot API `Update` (the `Update` schema of the MAX Bot API, `update_type` and
/// `timestamp` in milliseconds on every one). MAX gives updates no id of their own: messages
/// use `message.body.mid` ("unique identifier of message"), the rest
/// `<update_type>:<user_id>:<timestamp>`.
///
/// - `bot_started` (the person pressed Start, through `max.ru/<bot>?start=<p>` when `payload`
///   is set): Start with `payload`; the chat is its `chat_id` (the dialog).
/// - `bot_stopped`: Unsubscribed.
/// - `message_created` with text, from a person: Message, the chat being
///   `message.recipient.chat_id`. MAX delivers a deep link's payload only in `bot_started`, so
///   a typed `/start x` is a Message too.
/// - `message_callback` with a `payload`: Postback, on the chat of the message the button was
///   on (nothing if that message was deleted).
/// - Other updates (`message_edited`, `bot_added`, `dialog_muted`...): nothing.
///
/// The name is `first_name` and `last_name` (or the older `name`); the language `user_locale`.
pub fn max(body: &[u8]) -> Result<Vec<Inbound>, InboundError> {
    let v = parse(body)?;
    let update_type = v
        .get("update_type")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("update_type"))?;
    let language = text_at(&v, "/user_locale");
    let event = match update_type {
        "bot_started" | "bot_stopped" => {
            let user = v.get("user").ok_or_else(|| missing("user"))?;
            let who = Who {
                user_id: id_at(user, "/user_id", "user.user_id")?,
                chat_id: id_at(&v, "/chat_id", "chat_id")?,
                user_name: max_user_name(user),
                language,
            };
            let timestamp = id_at(&v, "/timestamp", "timestamp")?;
            let kind = if update_type == "bot_started" {
                InboundKind::Start {
                    param: text_at(&v, "/payload"),
                }
            } else {
                InboundKind::Unsubscribed
            };
            let event_id = derived_id(update_type, &who.user_id, &timestamp);
            who.event(event_id, kind)
        }
        "message_created" => {
            let m = v.get("message").ok_or_else(|| missing("message"))?;
            // `sender` is null for posts made on behalf of a channel.
            let Some(sender) = m.get("sender").filter(|s| s.is_object()) else {
                return Ok(vec![]);
            };
            if sender.get("is_bot").and_then(Value::as_bool) == Some(true) {
                return Ok(vec![]);
            }
            let Some(text) = text_at(m, "/body/text") else {
                return Ok(vec![]); // attachments only
            };
            let who = Who {
                user_id: id_at(sender, "/user_id", "message.sender.user_id")?,
                chat_id: id_at(m, "/recipient/chat_id", "message.recipient.chat_id")?,
                user_name: max_user_name(sender),
                language,
            };
            let event_id = id_at(m, "/body/mid", "message.body.mid")?;
            who.event(event_id, InboundKind::Message { text })
        }
        "message_callback" => {
            let cb = v.get("callback").ok_or_else(|| missing("callback"))?;
            let user = cb.get("user").ok_or_else(|| missing("callback.user"))?;
            let Some(payload) = str_at(cb, "/payload") else {
                return Ok(vec![]);
            };
            let Some(chat_id) = v.pointer("/message/recipient/chat_id").and_then(id_string) else {
                return Ok(vec![]);
            };
            let who = Who {
                user_id: id_at(user, "/user_id", "callback.user.user_id")?,
                chat_id,
                user_name: max_user_name(user),
                language,
            };
            // `callback_id` names the keyboard, not the press: the press is the user and the
            // time.
            let timestamp = cb
                .get("timestamp")
                .and_then(id_string)
                .map_or_else(|| id_at(&v, "/timestamp", "timestamp"), Ok)?;
            let event_id = derived_id(update_type, &who.user_id, &timestamp);
            who.event(
                event_id,
                InboundKind::Postback {
                    payload: payload.to_string(),
                },
            )
        }
        _ => return Ok(vec![]),
    };
    Ok(vec![event])
}

fn max_user_name(user: &Value) -> Option<String> {
    match (text_at(user, "/first_name"), text_at(user, "/last_name")) {
        (Some(first), Some(last)) => Some(format!("{first} {last}")),
        (Some(first), None) => Some(first),
        _ => text_at(user, "/name"),
    }
}

// ---------------------------------------------------------------------------------------------
// custom

/// The longest id (`id`, `user.id`, `chat_id`) the custom format takes, in bytes.
pub const MAX_CUSTOM_ID_LEN: usize = 256;

/// botlink's own format, for a messenger botlink has no adapter for, signed by the sender with
/// Standard Webhooks (the format is described in `docs/custom-channel.md`):
///
/// ```json
/// {"events": [{"id": "evt_1", "type": "start", "user": {"id": "u1", "name": "Ann",
///              "language": "en"}, "chat_id": "c1", "param": "l_Ab3dE9xQ"}]}
/// ```
///
/// `type` is `start` (optional `param`), `message` (`text`), `postback` (`payload`),
/// `subscribed` or `unsubscribed`; `chat_id` defaults to `user.id`. Unknown fields are
/// ignored; an unknown `type`, a missing or empty id, an id over [`MAX_CUSTOM_ID_LEN`] bytes
/// or a field of the wrong JSON type is an error naming the event by its index.
pub fn custom(body: &[u8]) -> Result<Vec<Inbound>, InboundError> {
    let v = parse(body)?;
    let events = v
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| missing("events"))?;
    events
        .iter()
        .enumerate()
        .map(|(i, e)| custom_event(i, e))
        .collect()
}

fn custom_event(i: usize, e: &Value) -> Result<Inbound, InboundError> {
    let field = |name: &str| format!("events[{i}].{name}");
    // A string field: `Ok(None)` when absent or null, an error when of another type.
    let string = |pointer: &str, name: &str| -> Result<Option<String>, InboundError> {
        match e.pointer(pointer) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(InboundError::Invalid {
                field: field(name),
                reason: "is not a string".into(),
            }),
        }
    };
    let required =
        |pointer: &str, name: &str| string(pointer, name)?.ok_or_else(|| missing(field(name)));
    let id = |pointer: &str, name: &str| -> Result<Option<String>, InboundError> {
        let Some(id) = string(pointer, name)? else {
            return Ok(None);
        };
        if id.is_empty() || id.len() > MAX_CUSTOM_ID_LEN {
            return Err(InboundError::Invalid {
                field: field(name),
                reason: format!(
                    "is {} bytes long; an id is 1 to {MAX_CUSTOM_ID_LEN} bytes",
                    id.len()
                ),
            });
        }
        Ok(Some(id))
    };

    let event_id = id("/id", "id")?.ok_or_else(|| missing(field("id")))?;
    let kind_name = required("/type", "type")?;
    let user_id = id("/user/id", "user.id")?.ok_or_else(|| missing(field("user.id")))?;
    let chat_id = id("/chat_id", "chat_id")?.unwrap_or_else(|| user_id.clone());
    let kind = match kind_name.as_str() {
        "start" => InboundKind::Start {
            param: string("/param", "param")?.filter(|p| !p.is_empty()),
        },
        "message" => InboundKind::Message {
            text: required("/text", "text")?,
        },
        "postback" => InboundKind::Postback {
            payload: required("/payload", "payload")?,
        },
        "subscribed" => InboundKind::Subscribed,
        "unsubscribed" => InboundKind::Unsubscribed,
        other => {
            return Err(InboundError::Invalid {
                field: field("type"),
                reason: format!(
                    "is {:?}; expected start, message, postback, subscribed or unsubscribed",
                    truncate(other)
                ),
            });
        }
    };
    Ok(Inbound {
        event_id,
        user_id,
        chat_id,
        user_name: string("/user/name", "user.name")?.filter(|n| !n.is_empty()),
        language: string("/user/language", "user.language")?.filter(|l| !l.is_empty()),
        kind,
    })
}
