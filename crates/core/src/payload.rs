//! Payload schemes: what goes into a deep link's parameter (`docs/payload-schemes.md`).
//!
//! | scheme  | example                                   |
//! |---------|-------------------------------------------|
//! | raw     | `customer_12345`                          |
//! | json    | `eyJlIjoiZW1haWxAZ21haWwuY29tIn0`         |
//! | entry   | `n__3`                                    |
//! | fields  | `giveaway--value1--738--value2`           |
//! | stored  | `l_Ab3dE9xQ` or `l_Ab3dE9xQ_Zk81mPq0Lw2c` |
//! | signed  | `s_<8-char tag>_<any of the above>`       |
//! | text    | aiogram's `encode_payload`: Base64URL of UTF-8 text, no padding |

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Base64URL that accepts input with or without `=` padding (real links carry both).
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How a parameter encodes its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Raw,
    Json,
    Entry,
    Fields,
    Stored,
    Signed,
    Text,
}

impl Scheme {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Raw => "raw",
            Scheme::Json => "json",
            Scheme::Entry => "entry",
            Scheme::Fields => "fields",
            Scheme::Stored => "stored",
            Scheme::Signed => "signed",
            Scheme::Text => "text",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = PayloadError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "raw" => Scheme::Raw,
            "json" => Scheme::Json,
            "entry" => Scheme::Entry,
            "fields" => Scheme::Fields,
            "stored" => Scheme::Stored,
            "signed" => Scheme::Signed,
            "text" => Scheme::Text,
            _ => {
                return Err(PayloadError::UnknownScheme {
                    scheme: s.to_string(),
                });
            }
        })
    }
}

/// Why a payload could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("unknown scheme {scheme:?}: use raw, json, entry, fields, stored, signed or text")]
    UnknownScheme { scheme: String },
    #[error(
        "the json payload is empty: give at least one of phone, email, external id or a variable"
    )]
    EmptyJson,
    #[error("{what} is empty: give a non-empty value")]
    Empty { what: &'static str },
    #[error("{what} {value:?} breaks the fields rule: {rule}; use the json scheme for such values")]
    FieldRule {
        what: &'static str,
        value: String,
        rule: &'static str,
    },
    #[error("{what} {value:?} has {ch:?}, outside [A-Za-z0-9_-]")]
    BadIdChar {
        what: &'static str,
        value: String,
        ch: char,
    },
    #[error("not valid Base64URL at character {pos}: {param:?} is not a {scheme} payload")]
    Base64 {
        scheme: Scheme,
        param: String,
        pos: usize,
    },
    #[error("the json payload is not a JSON object with keys p, e, eId, v: {detail}")]
    Json { detail: String },
    #[error("the text payload is not UTF-8 text after Base64URL decoding")]
    NotUtf8,
    #[error(
        "malformed fields payload {param:?}: expected <entry>--<value> followed by pairs of <field>--<value>, got {segments} parts"
    )]
    FieldsShape { param: String, segments: usize },
    #[error("malformed stored code {param:?}: expected l_<code> or l_<code>_<click id>")]
    StoredShape { param: String },
    #[error("malformed entry payload {param:?}: expected n__<entry id>")]
    EntryShape { param: String },
    #[error(
        "the signature does not match: the parameter was changed after it was signed, or it was signed with another key"
    )]
    BadSignature,
    #[error("malformed signed payload {param:?}: expected s_<8-character tag>_<parameter>")]
    SignedShape { param: String },
    #[error(
        "the signing key is {len} bytes long: give a key of at least {MIN_KEY_BYTES} bytes (e.g. `openssl rand -hex 16`)"
    )]
    ShortKey { len: usize },
}

// ---------------------------------------------------------------------------------------------
// json

/// The json scheme's data: phone, e-mail, external id and free variables, in that key order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JsonPayload {
    pub phone: Option<String>,
    pub email: Option<String>,
    pub external_id: Option<String>,
    /// Variables in the order they are written into `v`.
    pub variables: Vec<(String, String)>,
}

impl JsonPayload {
    pub fn is_empty(&self) -> bool {
        self.phone.is_none()
            && self.email.is_none()
            && self.external_id.is_none()
            && self.variables.is_empty()
    }
}

/// Appends `s` as a JSON string literal (the compact form serde_json writes).
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The compact JSON for a payload: keys `p`, `e`, `eId`, `v` in that order, no spaces.
pub fn json_text(p: &JsonPayload) -> String {
    let mut out = String::with_capacity(64);
    out.push('{');
    let mut first = true;
    let mut key = |out: &mut String, k: &str| {
        if !first {
            out.push(',');
        }
        first = false;
        push_json_str(out, k);
        out.push(':');
    };
    if let Some(v) = &p.phone {
        key(&mut out, "p");
        push_json_str(&mut out, v);
    }
    if let Some(v) = &p.email {
        key(&mut out, "e");
        push_json_str(&mut out, v);
    }
    if let Some(v) = &p.external_id {
        key(&mut out, "eId");
        push_json_str(&mut out, v);
    }
    if !p.variables.is_empty() {
        key(&mut out, "v");
        out.push('{');
        for (i, (k, v)) in p.variables.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_str(&mut out, k);
            out.push(':');
            push_json_str(&mut out, v);
        }
        out.push('}');
    }
    out.push('}');
    out
}

/// Encodes a json payload: compact JSON, then Base64URL without padding.
pub fn encode_json(p: &JsonPayload) -> Result<String, PayloadError> {
    if p.is_empty() {
        return Err(PayloadError::EmptyJson);
    }
    Ok(URL_SAFE_NO_PAD.encode(json_text(p)))
}

fn base64_error(scheme: Scheme, param: &str, e: base64::DecodeError) -> PayloadError {
    let pos = match e {
        base64::DecodeError::InvalidByte(pos, _) => pos,
        base64::DecodeError::InvalidLastSymbol(pos, _) => pos,
        _ => param.len(),
    };
    PayloadError::Base64 {
        scheme,
        param: param.to_string(),
        pos,
    }
}

/// A scalar JSON value as the string a scenario variable holds.
fn scalar_to_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Decodes a json payload (padded or not). Unknown top-level keys are ignored.
pub fn decode_json(param: &str) -> Result<JsonPayload, PayloadError> {
    let bytes = URL_SAFE_LENIENT
        .decode(param)
        .map_err(|e| base64_error(Scheme::Json, param, e))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| PayloadError::Json {
            detail: e.to_string(),
        })?;
    let obj = value.as_object().ok_or_else(|| PayloadError::Json {
        detail: "the top level is not an object".into(),
    })?;
    let field = |k: &str| obj.get(k).and_then(scalar_to_string);
    let variables = match obj.get("v") {
        None | Some(serde_json::Value::Null) => vec![],
        Some(serde_json::Value::Object(m)) => m
            .iter()
            .filter_map(|(k, v)| scalar_to_string(v).map(|v| (k.clone(), v)))
            .collect(),
        Some(_) => {
            return Err(PayloadError::Json {
                detail: "\"v\" is not an object".into(),
            });
        }
    };
    Ok(JsonPayload {
        phone: field("p"),
        email: field("e"),
        external_id: field("eId"),
        variables,
    })
}

// ---------------------------------------------------------------------------------------------
// entry and fields

fn check_id(what: &'static str, id: &str) -> Result<(), PayloadError> {
    if id.is_empty() {
        return Err(PayloadError::Empty { what });
    }
    if let Some(ch) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(PayloadError::BadIdChar {
            what,
            value: id.to_string(),
            ch,
        });
    }
    Ok(())
}

/// The prefix of the entry scheme.
pub const ENTRY_PREFIX: &str = "n__";

/// Encodes the entry scheme: `n__<id>`.
pub fn encode_entry(id: &str) -> Result<String, PayloadError> {
    check_id("the entry point id", id)?;
    Ok(format!("{ENTRY_PREFIX}{id}"))
}

/// The fields scheme's data: an entry point, the value for its default field, then field pairs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Fields {
    pub entry: String,
    pub value: String,
    pub fields: Vec<(String, String)>,
}

/// A fields part may not contain `--`, nor start or end with `-` (which would glue onto the
/// separator and split differently on the way back), nor be empty.
fn check_part(what: &'static str, s: &str) -> Result<(), PayloadError> {
    let rule = if s.is_empty() {
        "it may not be empty"
    } else if s.contains("--") {
        "it may not contain '--', the separator"
    } else if s.starts_with('-') || s.ends_with('-') {
        "it may not start or end with '-', which would merge with the '--' separator"
    } else {
        return Ok(());
    };
    Err(PayloadError::FieldRule {
        what,
        value: s.to_string(),
        rule,
    })
}

/// Encodes the fields scheme: `<entry>--<value>[--<field>--<value>]...`.
pub fn encode_fields(f: &Fields) -> Result<String, PayloadError> {
    check_part("the entry point", &f.entry)?;
    check_part("the value", &f.value)?;
    let mut out = String::with_capacity(f.entry.len() + f.value.len() + 16 * f.fields.len());
    out.push_str(&f.entry);
    out.push_str("--");
    out.push_str(&f.value);
    for (id, v) in &f.fields {
        check_part("the field id", id)?;
        check_part("the field value", v)?;
        out.push_str("--");
        out.push_str(id);
        out.push_str("--");
        out.push_str(v);
    }
    Ok(out)
}

/// Decodes the fields scheme.
pub fn decode_fields(param: &str) -> Result<Fields, PayloadError> {
    let parts: Vec<&str> = param.split("--").collect();
    let shape = || PayloadError::FieldsShape {
        param: param.to_string(),
        segments: parts.len(),
    };
    if parts.len() < 2 || !parts.len().is_multiple_of(2) || parts.iter().any(|p| p.is_empty()) {
        return Err(shape());
    }
    Ok(Fields {
        entry: parts[0].to_string(),
        value: parts[1].to_string(),
        fields: parts[2..]
            .chunks_exact(2)
            .map(|c| (c[0].to_string(), c[1].to_string()))
            .collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// stored

/// The prefix of botlink's stored scheme.
pub const STORED_PREFIX: &str = "l_";

/// A stored-scheme parameter: a link code, and the click that led here when the person came
/// through the short link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredRef {
    pub code: String,
    pub click: Option<String>,
}

fn is_base62(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Encodes a stored reference: `l_<code>` or `l_<code>_<click>`; both parts are base62.
pub fn encode_stored(code: &str, click: Option<&str>) -> Result<String, PayloadError> {
    let bad = || PayloadError::StoredShape {
        param: format!("{STORED_PREFIX}{code}"),
    };
    if !is_base62(code) || click.is_some_and(|c| !is_base62(c)) {
        return Err(bad());
    }
    Ok(match click {
        Some(c) => format!("{STORED_PREFIX}{code}_{c}"),
        None => format!("{STORED_PREFIX}{code}"),
    })
}

/// Parses a stored reference.
pub fn decode_stored(param: &str) -> Result<StoredRef, PayloadError> {
    let bad = || PayloadError::StoredShape {
        param: param.to_string(),
    };
    let rest = param.strip_prefix(STORED_PREFIX).ok_or_else(bad)?;
    let (code, click) = match rest.split_once('_') {
        Some((code, click)) => (code, Some(click)),
        None => (rest, None),
    };
    if !is_base62(code) || click.is_some_and(|c| !is_base62(c)) {
        return Err(bad());
    }
    Ok(StoredRef {
        code: code.to_string(),
        click: click.map(str::to_string),
    })
}

// ---------------------------------------------------------------------------------------------
// signed

/// The prefix of a signed parameter.
pub const SIGNED_PREFIX: &str = "s_";
/// Bytes of the HMAC-SHA256 tag kept: 48 bits, 8 Base64URL characters. A forger must guess
/// through the bot itself, one Start at a time, so 2^48 tries are out of reach.
const TAG_BYTES: usize = 6;
const TAG_CHARS: usize = 8;
/// Shortest signing key accepted: a shorter one could be guessed offline from one signed link.
pub const MIN_KEY_BYTES: usize = 16;
/// Length the signature adds to a parameter: `s_` + tag + `_`.
pub const SIGNED_OVERHEAD: usize = 2 + TAG_CHARS + 1;

fn tag(key: &[u8], param: &str) -> [u8; TAG_BYTES] {
    // Keys of any length are valid for HMAC.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"botlink-param-v1\0");
    mac.update(param.as_bytes());
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; TAG_BYTES];
    out.copy_from_slice(&full[..TAG_BYTES]);
    out
}

fn check_key(key: &[u8]) -> Result<(), PayloadError> {
    if key.len() < MIN_KEY_BYTES {
        return Err(PayloadError::ShortKey { len: key.len() });
    }
    Ok(())
}

/// Signs a parameter: `s_<tag>_<param>`.
pub fn sign(key: &[u8], param: &str) -> Result<String, PayloadError> {
    check_key(key)?;
    if param.is_empty() {
        return Err(PayloadError::Empty {
            what: "the parameter to sign",
        });
    }
    let t = URL_SAFE_NO_PAD.encode(tag(key, param));
    let mut out = String::with_capacity(SIGNED_OVERHEAD + param.len());
    out.push_str(SIGNED_PREFIX);
    out.push_str(&t);
    out.push('_');
    out.push_str(param);
    Ok(out)
}

/// Splits a signed parameter into its tag and inner parameter, without checking the tag.
pub fn split_signed(param: &str) -> Option<(&str, &str)> {
    let rest = param.strip_prefix(SIGNED_PREFIX)?;
    if rest.len() <= TAG_CHARS + 1 || !rest.is_char_boundary(TAG_CHARS) {
        return None;
    }
    let (t, tail) = rest.split_at(TAG_CHARS);
    let inner = tail.strip_prefix('_')?;
    let tag_ok = t
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (tag_ok && !inner.is_empty()).then_some((t, inner))
}

/// Verifies a signed parameter with `key` (in constant time) and returns the inner parameter.
pub fn verify(key: &[u8], param: &str) -> Result<String, PayloadError> {
    check_key(key)?;
    let (t, inner) = split_signed(param).ok_or_else(|| PayloadError::SignedShape {
        param: param.to_string(),
    })?;
    let given = URL_SAFE_NO_PAD
        .decode(t)
        .map_err(|_| PayloadError::BadSignature)?;
    let expected = tag(key, inner);
    if given.len() == TAG_BYTES && bool::from(given.as_slice().ct_eq(&expected)) {
        Ok(inner.to_string())
    } else {
        Err(PayloadError::BadSignature)
    }
}

// ---------------------------------------------------------------------------------------------
// text (aiogram compatible)

/// Encodes text the way aiogram's `encode_payload` does: Base64URL of the UTF-8, no padding.
pub fn encode_text(text: &str) -> Result<String, PayloadError> {
    if text.is_empty() {
        return Err(PayloadError::Empty { what: "the text" });
    }
    Ok(URL_SAFE_NO_PAD.encode(text))
}

/// Decodes aiogram-style text; padded and unpadded input are both accepted.
pub fn decode_text(param: &str) -> Result<String, PayloadError> {
    let bytes = URL_SAFE_LENIENT
        .decode(param)
        .or_else(|_| URL_SAFE.decode(param))
        .map_err(|e| base64_error(Scheme::Text, param, e))?;
    String::from_utf8(bytes).map_err(|_| PayloadError::NotUtf8)
}

/// Whether decoded text looks like something a person encoded: printable, and either
/// containing a character the raw scheme could not carry, or words of at least two letters.
fn looks_like_text(s: &str) -> bool {
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return false;
    }
    if s.chars().any(|c| c == '\u{FFFD}') {
        return false;
    }
    // Random raw parameters decode to binary; text has letters or digits in most places.
    let total = s.chars().count();
    let wordy = s
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace() || ".,:;!?@+-_/=&()'\"#%".contains(*c))
        .count();
    wordy * 10 >= total * 9
}

// ---------------------------------------------------------------------------------------------
// decoding with auto-detection

/// A decoded parameter: the scheme found and the values it carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Decoded {
    /// The scheme of the outer parameter (`signed` when it carries a tag).
    pub scheme: Option<Scheme>,
    /// For signed parameters, the scheme of the inner parameter.
    pub inner_scheme: Option<Scheme>,
    /// The parameter as it arrived.
    pub param: String,
    /// The parameter without its signature.
    pub inner: String,
    /// `Some(true)` when a key verified the tag; `Some(false)` when a key was given but the
    /// parameter carries no signature; `None` when no key was given.
    pub verified: Option<bool>,
    pub entry: Option<String>,
    /// The value for the entry point's default field (fields scheme).
    pub entry_value: Option<String>,
    pub external_id: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub variables: Vec<(String, String)>,
    pub fields: Vec<(String, String)>,
    pub text: Option<String>,
    pub stored: Option<StoredRef>,
}

impl Decoded {
    /// The variables a scenario sees, by the names scenarios use: `messenger_input_param`,
    /// `clientExternalId`, `phone`, `email`, then the `v` variables and field values.
    pub fn scenario_variables(&self) -> Vec<(String, String)> {
        let mut out = vec![("messenger_input_param".to_string(), self.inner.clone())];
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                out.push((k.to_string(), v.clone()));
            }
        };
        put("clientExternalId", &self.external_id);
        put("phone", &self.phone);
        put("email", &self.email);
        put("entry", &self.entry);
        put("entry_value", &self.entry_value);
        put("text", &self.text);
        out.extend(self.variables.iter().cloned());
        out.extend(self.fields.iter().cloned());
        out
    }
}

/// Whether `param` reads as a hand-written identifier such as `customer_12345`, `team_1` or
/// `summer_sale`: lowercase ASCII words and numbers joined by single `_`. Base64URL of text
/// almost always carries capitals, while such raw parameters can decode by chance to a few
/// letters of some script (`yoo_3486` is Base64URL of "ʊ?ߏ:").
fn looks_like_identifier(param: &str) -> bool {
    param.contains('_')
        && param.split('_').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Guesses the scheme of an unsigned parameter.
pub fn detect(param: &str) -> Scheme {
    if param.starts_with(STORED_PREFIX) && decode_stored(param).is_ok() {
        Scheme::Stored
    } else if param.starts_with(ENTRY_PREFIX) && param.len() > ENTRY_PREFIX.len() {
        Scheme::Entry
    } else if param.starts_with("eyJ") && decode_json(param).is_ok() {
        // Before fields: Base64URL of non-ASCII JSON can contain `--` and would split into
        // fields; a fields parameter is almost never valid Base64URL of a JSON object.
        Scheme::Json
    } else if param.contains("--") && decode_fields(param).is_ok() {
        Scheme::Fields
    } else if param.len() >= 4
        && !looks_like_identifier(param)
        && decode_text(param).is_ok_and(|t| looks_like_text(&t))
    {
        Scheme::Text
    } else {
        Scheme::Raw
    }
}

/// Decodes a parameter, detecting its scheme unless `scheme` names it.
///
/// With a `key`, a signed parameter is verified and a tampered one is an error; an unsigned
/// one decodes with `verified: Some(false)` so that the caller can refuse it.
pub fn decode(
    param: &str,
    key: Option<&[u8]>,
    scheme: Option<Scheme>,
) -> Result<Decoded, PayloadError> {
    if param.is_empty() {
        return Err(PayloadError::Empty {
            what: "the parameter",
        });
    }
    let mut d = Decoded {
        param: param.to_string(),
        ..Decoded::default()
    };
    let looks_signed = split_signed(param).is_some();
    let inner = if scheme == Some(Scheme::Signed) || (scheme.is_none() && looks_signed) {
        d.scheme = Some(Scheme::Signed);
        match key {
            Some(k) => {
                let inner = verify(k, param)?;
                d.verified = Some(true);
                inner
            }
            None => split_signed(param)
                .ok_or_else(|| PayloadError::SignedShape {
                    param: param.to_string(),
                })?
                .1
                .to_string(),
        }
    } else {
        d.verified = key.map(|_| false);
        param.to_string()
    };
    let inner_scheme = match scheme {
        Some(Scheme::Signed) | None => detect(&inner),
        Some(s) => s,
    };
    if d.scheme.is_some() {
        d.inner_scheme = Some(inner_scheme);
    } else {
        d.scheme = Some(inner_scheme);
    }
    match inner_scheme {
        Scheme::Raw | Scheme::Signed => {}
        Scheme::Json => {
            let j = decode_json(&inner)?;
            d.phone = j.phone;
            d.email = j.email;
            d.external_id = j.external_id;
            d.variables = j.variables;
        }
        Scheme::Entry => {
            let id = inner
                .strip_prefix(ENTRY_PREFIX)
                .filter(|id| !id.is_empty())
                .ok_or_else(|| PayloadError::EntryShape {
                    param: inner.clone(),
                })?;
            d.entry = Some(id.to_string());
        }
        Scheme::Fields => {
            let f = decode_fields(&inner)?;
            d.entry = Some(f.entry);
            d.entry_value = Some(f.value);
            // Built-in names fill the contact's own fields too.
            for (k, v) in &f.fields {
                match k.as_str() {
                    "email" | "e" => d.email = Some(v.clone()),
                    "phone" | "p" => d.phone = Some(v.clone()),
                    "external_id" | "eId" | "clientExternalId" => d.external_id = Some(v.clone()),
                    _ => {}
                }
            }
            d.fields = f.fields;
        }
        Scheme::Stored => d.stored = Some(decode_stored(&inner)?),
        Scheme::Text => d.text = Some(decode_text(&inner)?),
    }
    d.inner = inner;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(p: Option<&str>, e: Option<&str>, id: Option<&str>, v: &[(&str, &str)]) -> JsonPayload {
        JsonPayload {
            phone: p.map(Into::into),
            email: e.map(Into::into),
            external_id: id.map(Into::into),
            variables: v.iter().map(|(a, b)| ((*a).into(), (*b).into())).collect(),
        }
    }

    #[test]
    fn design_vectors() {
        let cases = [
            (
                json(None, Some("email@gmail.com"), None, &[]),
                "eyJlIjoiZW1haWxAZ21haWwuY29tIn0",
            ),
            (
                json(Some("79000000000"), None, None, &[]),
                "eyJwIjoiNzkwMDAwMDAwMDAifQ",
            ),
            (
                json(None, None, Some("externalId"), &[]),
                "eyJlSWQiOiJleHRlcm5hbElkIn0",
            ),
            (
                json(None, None, None, &[("city", "Moscow")]),
                "eyJ2Ijp7ImNpdHkiOiJNb3Njb3cifX0",
            ),
        ];
        for (payload, expected) in cases {
            assert_eq!(encode_json(&payload).unwrap(), expected);
            assert_eq!(decode_json(expected).unwrap(), payload);
            let d = decode(expected, None, None).unwrap();
            assert_eq!(d.scheme, Some(Scheme::Json));
        }
        // Padded input, as real links carry it.
        assert_eq!(
            decode_json("eyJwIjoiNzkwMDAwMDAwMDAifQ==")
                .unwrap()
                .phone
                .as_deref(),
            Some("79000000000")
        );
    }

    #[test]
    fn json_key_order_and_escaping() {
        let p = json(
            Some("1"),
            Some("a\"b"),
            Some("x"),
            &[("z", "1"), ("a", "2")],
        );
        assert_eq!(
            json_text(&p),
            r#"{"p":"1","e":"a\"b","eId":"x","v":{"z":"1","a":"2"}}"#
        );
        let v: serde_json::Value = serde_json::from_str(&json_text(&p)).unwrap();
        assert_eq!(v["e"], "a\"b");
        assert_eq!(
            encode_json(&JsonPayload::default()),
            Err(PayloadError::EmptyJson)
        );
    }

    #[test]
    fn entry_and_fields() {
        assert_eq!(encode_entry("3").unwrap(), "n__3");
        let d = decode("n__3", None, None).unwrap();
        assert_eq!(
            (d.scheme, d.entry.as_deref()),
            (Some(Scheme::Entry), Some("3"))
        );
        let f = Fields {
            entry: "giveaway".into(),
            value: "value1".into(),
            fields: vec![
                ("738".into(), "value2".into()),
                ("514".into(), "value3".into()),
            ],
        };
        let s = encode_fields(&f).unwrap();
        assert_eq!(s, "giveaway--value1--738--value2--514--value3");
        assert_eq!(decode_fields(&s).unwrap(), f);
        let d = decode(&s, None, None).unwrap();
        assert_eq!(d.scheme, Some(Scheme::Fields));
        assert_eq!(d.entry_value.as_deref(), Some("value1"));
        let vars = d.scenario_variables();
        assert!(vars.contains(&("738".into(), "value2".into())));
        for bad in ["a--b", "-a", "a-", ""] {
            let f = Fields {
                entry: "e".into(),
                value: bad.into(),
                fields: vec![],
            };
            assert!(
                matches!(encode_fields(&f), Err(PayloadError::FieldRule { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            decode_fields("a--b--c"),
            Err(PayloadError::FieldsShape { segments: 3, .. })
        ));
        // Odd parts are not a fields payload: auto-detection falls back to raw.
        assert_eq!(
            decode("a--b--c", None, None).unwrap().scheme,
            Some(Scheme::Raw)
        );
        let d = decode("giveaway--v--email--x", None, None).unwrap();
        assert_eq!(d.email.as_deref(), Some("x"));
    }

    #[test]
    fn stored() {
        assert_eq!(encode_stored("Ab3", None).unwrap(), "l_Ab3");
        assert_eq!(encode_stored("Ab3", Some("Zz9")).unwrap(), "l_Ab3_Zz9");
        let d = decode("l_Ab3_Zz9", None, None).unwrap();
        assert_eq!(
            d.stored,
            Some(StoredRef {
                code: "Ab3".into(),
                click: Some("Zz9".into())
            })
        );
        assert!(encode_stored("a_b", None).is_err());
        assert!(decode_stored("l_").is_err());
    }

    #[test]
    fn signing() {
        let key = b"0123456789abcdef";
        let s = sign(key, "customer_12345").unwrap();
        assert_eq!(s.len(), "customer_12345".len() + SIGNED_OVERHEAD);
        assert!(s.starts_with("s_") && s.ends_with("_customer_12345"));
        let d = decode(&s, Some(key), None).unwrap();
        assert_eq!(d.scheme, Some(Scheme::Signed));
        assert_eq!(d.inner_scheme, Some(Scheme::Raw));
        assert_eq!(d.verified, Some(true));
        assert_eq!(d.inner, "customer_12345");
        // Tampering with the inner parameter is refused.
        let tampered = s.replace("12345", "12346");
        assert_eq!(
            decode(&tampered, Some(key), None),
            Err(PayloadError::BadSignature)
        );
        // Another key is refused too.
        assert_eq!(
            decode(&s, Some(b"another key 1234"), None),
            Err(PayloadError::BadSignature)
        );
        // Without a key it is recognised but not verified.
        let d = decode(&s, None, None).unwrap();
        assert_eq!((d.scheme, d.verified), (Some(Scheme::Signed), None));
        // An unsigned parameter with a key decodes, marked unverified.
        assert_eq!(
            decode("customer_12345", Some(key), None).unwrap().verified,
            Some(false)
        );
        // Signed json keeps its values.
        let inner = encode_json(&json(None, Some("email@gmail.com"), None, &[])).unwrap();
        let d = decode(&sign(key, &inner).unwrap(), Some(key), None).unwrap();
        assert_eq!(d.email.as_deref(), Some("email@gmail.com"));
        assert_eq!(sign(b"", "x"), Err(PayloadError::ShortKey { len: 0 }));
        assert_eq!(sign(b"secret", "x"), Err(PayloadError::ShortKey { len: 6 }));
        assert!(
            decode(&s, Some(b"secret"), None)
                .unwrap_err()
                .to_string()
                .contains("at least 16 bytes")
        );
    }

    #[test]
    fn aiogram_text() {
        // aiogram: base64.urlsafe_b64encode(b"hello world").decode().replace("=", "")
        assert_eq!(encode_text("hello world").unwrap(), "aGVsbG8gd29ybGQ");
        assert_eq!(decode_text("aGVsbG8gd29ybGQ").unwrap(), "hello world");
        assert_eq!(decode_text("aGVsbG8gd29ybGQ=").unwrap(), "hello world");
        assert_eq!(
            decode("aGVsbG8gd29ybGQ", None, None).unwrap().scheme,
            Some(Scheme::Text)
        );
        let uk = encode_text("Привіт, світ").unwrap();
        assert_eq!(
            decode(&uk, None, None).unwrap().text.as_deref(),
            Some("Привіт, світ")
        );
        // Typical raw parameters stay raw.
        for raw in [
            "customer_12345",
            "order_67890",
            "summer_sale",
            "team_1",
            "abc",
        ] {
            assert_eq!(
                decode(raw, None, None).unwrap().scheme,
                Some(Scheme::Raw),
                "{raw}"
            );
        }
        assert!(matches!(
            decode_text("###"),
            Err(PayloadError::Base64 { .. })
        ));
    }

    #[test]
    fn forced_scheme_errors() {
        assert!(matches!(
            decode("abc", None, Some(Scheme::Json)),
            Err(PayloadError::Json { .. }) | Err(PayloadError::Base64 { .. })
        ));
        assert!(matches!(
            decode("abc", None, Some(Scheme::Entry)),
            Err(PayloadError::EntryShape { .. })
        ));
        assert!(matches!(
            decode("abc", None, Some(Scheme::Signed)),
            Err(PayloadError::SignedShape { .. })
        ));
        assert_eq!(
            decode("", None, None),
            Err(PayloadError::Empty {
                what: "the parameter"
            })
        );
    }
}
