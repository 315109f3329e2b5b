//! `botlink decode`: read a deep link or a parameter back.

use botlink_core::link::{MESSENGER_URL_PREFIXES, PaddedParam, check_read_param, rule_for};
use botlink_core::{Channel, Decoded, LinkKind, ParsedLink, Scheme, decode, parse_link};
use clap::Args;
use serde_json::{Map, Value, json};

use super::{CliError, print_line};

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// A deep link (https://t.me/mybot?start=..., viber://pa?..., t.me/mybot?start=...) or a
    /// bare parameter.
    #[arg(value_name = "URL-OR-PARAMETER", allow_hyphen_values = true)]
    pub input: String,
    /// Also check a bare parameter against this channel's rule (characters and length).
    #[arg(long, value_name = "C")]
    pub channel: Option<Channel>,
    /// Verify a signed parameter with this key; a parameter changed after signing is refused.
    #[arg(
        long,
        value_name = "KEY",
        env = "BOTLINK_SIGN_KEY",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub sign_key: Option<String>,
    /// Decode as this scheme instead of detecting it: raw, json, entry, fields, stored,
    /// signed or text.
    #[arg(long, value_name = "S")]
    pub scheme: Option<Scheme>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Reads the argument as a link when it looks like one, else `None` (a bare parameter).
fn as_link(input: &str) -> Result<Option<ParsedLink>, CliError> {
    let trimmed = input.trim();
    if trimmed.contains("://") {
        return Ok(Some(parse_link(trimmed)?));
    }
    let lower = trimmed.to_ascii_lowercase();
    let lower = lower.strip_prefix("www.").unwrap_or(&lower);
    // The messengers' https links are often pasted without `https://`.
    let mut bare_hosts = MESSENGER_URL_PREFIXES
        .iter()
        .filter_map(|p| p.strip_prefix("https://"));
    if bare_hosts.any(|h| lower.starts_with(h)) {
        return Ok(Some(parse_link(&format!("https://{trimmed}"))?));
    }
    Ok(None)
}

pub fn run(args: DecodeArgs) -> Result<(), CliError> {
    let link = as_link(&args.input)?;
    // A parameter that breaks its channel's rule does not work: an error, except for Base64
    // padding, which is read with a note saying why the link does not work as given.
    let mut padded: Option<PaddedParam> = None;
    let param = match &link {
        Some(l) => {
            if let Some(c) = args.channel.filter(|c| *c != l.channel) {
                return Err(CliError::input(format!(
                    "the link is a {} link but --channel says {c}: leave --channel out for links",
                    l.channel
                )));
            }
            if let Some(p) = &l.param {
                padded = check_read_param(l.channel, rule_for(l.channel, l.kind), p)?;
            }
            l.param.clone()
        }
        None => {
            if let Some(c) = args.channel {
                padded = check_read_param(c, c.param_rule(), &args.input)?;
            }
            Some(args.input.clone())
        }
    };
    let key = args.sign_key.as_deref().map(str::as_bytes);
    let decoded = match &param {
        Some(p) => Some(decode(p, key, args.scheme)?),
        None => None,
    };
    let channel = link.as_ref().map(|l| l.channel).or(args.channel);
    let note = padded.map(|p| p.to_string());
    if args.json {
        let mut v = to_json(channel, link.as_ref(), decoded.as_ref());
        v["note"] = note.map_or(Value::Null, Value::String);
        print_line(&v.to_string())
    } else {
        let mut text = human(channel, link.as_ref(), decoded.as_ref());
        if let Some(note) = note {
            text.push_str(&format!("\nnote: {note}"));
        }
        print_line(&text)
    }
}

fn object(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

fn to_json(channel: Option<Channel>, link: Option<&ParsedLink>, d: Option<&Decoded>) -> Value {
    let d_ = Decoded::default();
    let dd = d.unwrap_or(&d_);
    let scheme = |s: Option<Scheme>| s.map(Scheme::as_str);
    json!({
        "channel": channel.map(Channel::as_str),
        "bot": link.map(|l| l.bot.as_str()),
        "kind": link.map(|l| l.kind.as_str()),
        "app": link.and_then(|l| l.app.as_deref()),
        "admin": link.map(|l| l.admin.clone()).unwrap_or_default(),
        "link_text": link.and_then(|l| l.text.as_deref()),
        "param": d.map(|d| d.param.as_str()),
        "scheme": scheme(dd.scheme),
        "inner_scheme": scheme(dd.inner_scheme),
        "inner": d.map(|d| d.inner.as_str()),
        "verified": dd.verified,
        "entry": dd.entry,
        "entry_value": dd.entry_value,
        "external_id": dd.external_id,
        "phone": dd.phone,
        "email": dd.email,
        "variables": object(&dd.variables),
        "fields": object(&dd.fields),
        "text": dd.text,
        "stored": dd.stored.as_ref().map(|s| json!({"code": s.code, "click": s.click})),
        "scenario_variables": d.map_or_else(|| object(&[]), |d| object(&d.scenario_variables())),
    })
}

/// Aligned `key: value` lines, for the values that are there.
fn human(channel: Option<Channel>, link: Option<&ParsedLink>, d: Option<&Decoded>) -> String {
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            lines.push((k.to_string(), v.to_string()));
        }
    };
    put("channel", channel.map(Channel::as_str));
    if let Some(l) = link {
        put("bot", Some(&l.bot));
        if l.kind != LinkKind::Start || l.channel == Channel::Telegram {
            put("kind", Some(l.kind.as_str()));
        }
        put("app", l.app.as_deref());
        if !l.admin.is_empty() {
            put("admin", Some(&l.admin.join("+")));
        }
        put("link text", l.text.as_deref());
    }
    match d {
        None => put(
            "param",
            Some("(none: the link opens the bot without a parameter)"),
        ),
        Some(d) => {
            put("param", Some(&d.param));
            put("scheme", d.scheme.map(Scheme::as_str));
            if d.scheme == Some(Scheme::Signed) {
                put("inner scheme", d.inner_scheme.map(Scheme::as_str));
                put("inner", Some(&d.inner));
            }
            put(
                "verified",
                d.verified
                    .map(|v| if v { "yes" } else { "no (not signed)" }),
            );
            put("entry", d.entry.as_deref());
            put("entry value", d.entry_value.as_deref());
            put("external id", d.external_id.as_deref());
            put("phone", d.phone.as_deref());
            put("email", d.email.as_deref());
            put("text", d.text.as_deref());
            if let Some(s) = &d.stored {
                put("stored code", Some(&s.code));
                put("stored click", s.click.as_deref());
            }
            for (k, v) in &d.variables {
                put(&format!("var {k}"), Some(v));
            }
            for (k, v) in &d.fields {
                put(&format!("field {k}"), Some(v));
            }
        }
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    lines
        .iter()
        .map(|(k, v)| format!("{:<width$} {v}", format!("{k}:")))
        .collect::<Vec<_>>()
        .join("\n")
}
