//! `botlink link`: print one deep link.

use botlink_core::link::{LinkKind, TelegramForm, check_bot, parse_admin_rights};
use botlink_core::payload::{self, Fields, JsonPayload};
use botlink_core::{Channel, LinkSpec, Scheme, build_link};
use clap::{Args, ValueEnum};

use super::{CliError, PayloadOptions, explain_link_error, key_value, payload_scheme, print_line};

#[derive(Debug, Args)]
pub struct LinkArgs {
    /// The messenger: telegram, viber, messenger, instagram, whatsapp, line, max or webchat.
    pub channel: Channel,
    /// The bot in that channel: Telegram/MAX username, Viber URI, page name, Instagram user,
    /// WhatsApp number, LINE id or web chat bot id.
    pub bot: String,

    /// Carry this parameter as is (raw scheme), e.g. customer_12345.
    //
    // The values of this and the other payload options may start with `-` (a chat id such as
    // -100..., a Base64URL text): clap takes them as values rather than as options.
    #[arg(
        long,
        value_name = "P",
        allow_hyphen_values = true,
        help_heading = "Payload"
    )]
    pub param: Option<String>,
    /// Carry this text Base64URL-encoded, as aiogram's encode_payload does (text scheme).
    #[arg(
        long,
        value_name = "TEXT",
        allow_hyphen_values = true,
        help_heading = "Payload"
    )]
    pub encode: Option<String>,
    /// Phone for the json scheme (key p).
    #[arg(
        long,
        value_name = "P",
        allow_hyphen_values = true,
        help_heading = "Payload"
    )]
    pub phone: Option<String>,
    /// E-mail for the json scheme (key e).
    #[arg(
        long,
        value_name = "E",
        allow_hyphen_values = true,
        help_heading = "Payload"
    )]
    pub email: Option<String>,
    /// The customer's id in your CRM, for the json scheme (key eId).
    #[arg(
        long,
        value_name = "X",
        allow_hyphen_values = true,
        help_heading = "Payload"
    )]
    pub external_id: Option<String>,
    /// A variable for the json scheme (object v); repeat for more.
    #[arg(long = "var", value_name = "KEY=VALUE", help_heading = "Payload")]
    pub vars: Vec<String>,
    /// Start the scenario at this entry point: n__<ID> (entry scheme), or with --value,
    /// <ID>--<V>[--<field>--<value>...] (fields scheme).
    #[arg(
        long,
        value_name = "ID",
        allow_hyphen_values = true,
        help_heading = "Payload"
    )]
    pub entry: Option<String>,
    /// The value for the entry point's default field (fields scheme, needs --entry).
    #[arg(
        long,
        value_name = "V",
        allow_hyphen_values = true,
        help_heading = "Payload"
    )]
    pub value: Option<String>,
    /// A field id (or email, phone, external_id) and its value (fields scheme); repeat for more.
    #[arg(long = "field", value_name = "ID=VALUE", help_heading = "Payload")]
    pub fields: Vec<String>,

    #[command(flatten)]
    pub target: TargetArgs,

    /// Print one JSON object (url, param, length, limit, channel, bot, scheme, kind, signed).
    #[arg(long)]
    pub json: bool,
}

/// The options that shape a link around its parameter; shared with `botlink links`.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Telegram: add the bot to a group (startgroup).
    #[arg(long, help_heading = "Link")]
    pub group: bool,
    /// Telegram: admin rights to ask for with --group, joined with '+' or ','.
    #[arg(long, value_name = "RIGHTS", help_heading = "Link")]
    pub admin: Option<String>,
    /// Telegram: add the bot to a channel as admin with these rights (startchannel, no parameter).
    #[arg(long, value_name = "RIGHTS", help_heading = "Link")]
    pub channel_admin: Option<String>,
    /// Telegram: open this named mini app (t.me/<bot>/<NAME>?startapp=...).
    #[arg(long, value_name = "NAME", help_heading = "Link")]
    pub app: Option<String>,
    /// Telegram: open the bot's main mini app (startapp, parameters up to 512 characters).
    #[arg(long, help_heading = "Link")]
    pub startapp: bool,
    /// Pre-filled message text (Viber, WhatsApp, LINE).
    #[arg(
        long,
        value_name = "T",
        allow_hyphen_values = true,
        help_heading = "Link"
    )]
    pub text: Option<String>,
    /// Sign the parameter with this key (signed scheme), so that nobody can edit it.
    #[arg(
        long,
        value_name = "KEY",
        env = "BOTLINK_SIGN_KEY",
        hide_env_values = true,
        allow_hyphen_values = true,
        help_heading = "Link"
    )]
    pub sign_key: Option<String>,
    /// Telegram URL form.
    #[arg(long, value_enum, default_value = "tme", help_heading = "Link")]
    pub form: Form,
    /// botlink's public base URL, for web chat links.
    #[arg(
        long,
        value_name = "URL",
        env = "BOTLINK_PUBLIC_URL",
        help_heading = "Link"
    )]
    pub base_url: Option<String>,
}

/// The `--form` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Form {
    /// https://t.me/...
    #[value(name = "tme", alias = "t.me")]
    TMe,
    /// https://telegram.me/...
    #[value(name = "telegram.me")]
    TelegramMe,
    /// tg://resolve?domain=...
    #[value(name = "tg")]
    Tg,
}

impl From<Form> for TelegramForm {
    fn from(f: Form) -> Self {
        match f {
            Form::TMe => TelegramForm::TMe,
            Form::TelegramMe => TelegramForm::TelegramMe,
            Form::Tg => TelegramForm::Tg,
        }
    }
}

/// Where links go and how they look, resolved once from the options: everything but the
/// parameter.
#[derive(Debug)]
pub(crate) struct Target {
    pub channel: Channel,
    pub bot: String,
    pub kind: LinkKind,
    admin: Vec<&'static str>,
    app: Option<String>,
    text: Option<String>,
    form: TelegramForm,
    base_url: Option<String>,
    pub sign_key: Option<Vec<u8>>,
}

impl Target {
    pub(crate) fn new(channel: Channel, bot: &str, args: &TargetArgs) -> Result<Self, CliError> {
        let mut kinds = Vec::new();
        if args.group {
            kinds.push(("--group", LinkKind::StartGroup));
        }
        if args.channel_admin.is_some() {
            kinds.push(("--channel-admin", LinkKind::StartChannel));
        }
        if args.startapp {
            kinds.push(("--startapp", LinkKind::StartApp));
        } else if args.app.is_some() {
            kinds.push(("--app", LinkKind::StartApp));
        }
        let kind = match kinds.as_slice() {
            [] => LinkKind::Start,
            [(_, k)] => *k,
            [(a, _), (b, _), ..] => {
                return Err(CliError::input(format!(
                    "{a} and {b} ask for different kinds of link: use one of --group, --channel-admin, --startapp/--app"
                )));
            }
        };
        let admin = match (&args.admin, &args.channel_admin) {
            (Some(_), Some(_)) => {
                return Err(CliError::input(
                    "--admin goes with --group; --channel-admin carries its own rights: use one of them",
                ));
            }
            (Some(r), None) | (None, Some(r)) => parse_admin_rights(r)?,
            (None, None) => Vec::new(),
        };
        Ok(Target {
            channel,
            bot: bot.to_string(),
            kind,
            admin,
            app: args.app.clone(),
            text: args.text.clone(),
            form: args.form.into(),
            base_url: args.base_url.clone(),
            sign_key: args.sign_key.as_ref().map(|k| k.as_bytes().to_vec()),
        })
    }

    /// The link spec for one parameter.
    pub(crate) fn spec<'a>(&'a self, param: Option<&'a str>) -> LinkSpec<'a> {
        LinkSpec {
            channel: self.channel,
            bot: &self.bot,
            kind: self.kind,
            param,
            app: self.app.as_deref(),
            admin: &self.admin,
            text: self.text.as_deref(),
            form: self.form,
            base_url: self.base_url.as_deref(),
        }
    }
}

/// A parameter before signing: its scheme, the encoded text and its size before encoding.
struct Param {
    scheme: Scheme,
    value: String,
    unencoded_bytes: usize,
}

impl LinkArgs {
    /// Builds the parameter the payload options describe, or `None` when there is none.
    fn param(&self) -> Result<Option<Param>, CliError> {
        let scheme = payload_scheme(&PayloadOptions {
            raw: (self.param.is_some(), "--param"),
            text: (self.encode.is_some(), "--encode"),
            json: &[
                (self.phone.is_some(), "--phone"),
                (self.email.is_some(), "--email"),
                (self.external_id.is_some(), "--external-id"),
                (!self.vars.is_empty(), "--var"),
            ],
            entry: self.entry.is_some(),
            fields: &[
                (self.value.is_some(), "--value"),
                (!self.fields.is_empty(), "--field"),
            ],
        })?;
        let Some(scheme) = scheme else {
            return Ok(None);
        };
        let plain = |value: String| Param {
            scheme,
            unencoded_bytes: value.len(),
            value,
        };
        let param = match scheme {
            Scheme::Raw => plain(self.param.clone().unwrap_or_default()),
            Scheme::Text => {
                let text = self.encode.as_deref().unwrap_or_default();
                Param {
                    scheme,
                    value: payload::encode_text(text)?,
                    unencoded_bytes: text.len(),
                }
            }
            Scheme::Json => {
                let p = self.json_payload()?;
                Param {
                    scheme,
                    value: payload::encode_json(&p)?,
                    unencoded_bytes: payload::json_text(&p).len(),
                }
            }
            Scheme::Entry | Scheme::Fields => {
                // Given: payload_scheme refuses the fields options without --entry.
                let entry = self.entry.clone().unwrap_or_default();
                if scheme == Scheme::Entry {
                    plain(payload::encode_entry(&entry)?)
                } else {
                    let Some(value) = &self.value else {
                        return Err(CliError::input(
                            "--field needs --value: a fields payload starts with <entry>--<value>, then pairs of <field>--<value>",
                        ));
                    };
                    let fields = self
                        .fields
                        .iter()
                        .map(|f| key_value("--field", f).map(|(k, v)| (k.into(), v.into())))
                        .collect::<Result<_, _>>()?;
                    plain(payload::encode_fields(&Fields {
                        entry,
                        value: value.clone(),
                        fields,
                    })?)
                }
            }
            Scheme::Stored | Scheme::Signed => {
                unreachable!("no option picks the {scheme} scheme")
            }
        };
        Ok(Some(param))
    }

    fn json_payload(&self) -> Result<JsonPayload, CliError> {
        let non_empty = |option: &str, v: &Option<String>| match v {
            Some(s) if s.is_empty() => Err(CliError::input(format!(
                "{option} is empty: give a value or leave the option out"
            ))),
            _ => Ok(v.clone()),
        };
        let variables = self
            .vars
            .iter()
            .map(|kv| key_value("--var", kv).map(|(k, v)| (k.to_string(), v.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(JsonPayload {
            phone: non_empty("--phone", &self.phone)?,
            email: non_empty("--email", &self.email)?,
            external_id: non_empty("--external-id", &self.external_id)?,
            variables,
        })
    }
}

pub fn run(args: LinkArgs) -> Result<(), CliError> {
    let target = Target::new(args.channel, &args.bot, &args.target)?;
    let param = args.param()?;
    let (scheme, signed, value) = match (&param, &target.sign_key) {
        (None, _) => (None, false, None),
        (Some(p), None) => (Some(p.scheme), false, Some(p.value.clone())),
        (Some(p), Some(key)) => (Some(p.scheme), true, Some(payload::sign(key, &p.value)?)),
    };
    let link = build_link(&target.spec(value.as_deref())).map_err(|e| {
        explain_link_error(
            e,
            scheme,
            param.as_ref().map_or(0, |p| p.unencoded_bytes),
            signed,
        )
    })?;
    if !args.json {
        return print_line(&link.url);
    }
    let bot = check_bot(target.channel, &target.bot)?;
    let (outer, inner) = if signed {
        (Some(Scheme::Signed), scheme)
    } else {
        (scheme, None)
    };
    let out = serde_json::json!({
        "url": link.url,
        "param": link.param,
        "length": link.length,
        "limit": link.limit,
        "channel": link.channel.as_str(),
        "bot": bot,
        "kind": link.kind.as_str(),
        "scheme": outer.map(Scheme::as_str),
        "inner_scheme": inner.map(Scheme::as_str),
        "signed": signed,
    });
    print_line(&out.to_string())
}
