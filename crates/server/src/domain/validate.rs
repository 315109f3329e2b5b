//! The rules every free-text field follows (API, command line), in one place: a longest length per kind
//! of field, and no characters that hide or reorder text.
//!
//! Control characters (NUL, newlines, escapes) break the logs, CSV exports and messenger
//! payloads these values end up in, and the Unicode direction overrides (U+202A-U+202E,
//! U+2066-U+2069) make a name display as something other than what it is ("Trojan Source").
//! Both are refused with a 422 that names the field, the rule and the limit.
//!
//! The OpenAPI schemas carry the same limits as `maxLength` and [`PLAIN_TEXT`] as `pattern`
//! (utoipa takes only literals there); a test checks that the document and these constants
//! agree.

use crate::domain::DomainError;

/// Names of bots, API keys and workspaces.
pub const NAME_MAX: usize = 100;
/// Link titles.
pub const TITLE_MAX: usize = 200;
/// Scenario node names.
pub const NODE_MAX: usize = 64;
/// Entry point keys and default fields: they go into deep links, where every character counts.
pub const KEY_MAX: usize = 64;
/// Each UTM tag.
pub const UTM_MAX: usize = 200;
/// Public channel settings (usernames, page ids, numbers).
pub const SETTING_MAX: usize = 256;
/// A channel's `api_base_url`.
pub const URL_MAX: usize = 2048;
/// Tokens and secrets of a channel.
pub const SECRET_MAX: usize = 4096;
/// Each value of a link's payload (and each variable or field name).
pub const PAYLOAD_MAX: usize = 1024;

/// The `pattern` of plain text in the OpenAPI document: no control characters, no direction
/// overrides.
pub const PLAIN_TEXT: &str = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$";

/// The `pattern` of names: plain text with at least one character that is not white space
/// (names are trimmed, and an empty name is refused).
pub const NAME_TEXT: &str = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*[^\s\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069][^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$";

/// The `pattern` of entry point keys and default fields (see [`deep_link_key`]).
pub const KEY_PATTERN: &str = r"^[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*$";

/// How one kind of field is checked: the error code it fails with, its longest length, and
/// whether it may span lines.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The error code of a value that breaks the rule (e.g. `invalid_title`).
    pub code: &'static str,
    /// Longest length in characters (Unicode scalar values, as JSON Schema counts them).
    pub max: usize,
    /// Whether line breaks and tabs are allowed (a message text pre-filled in a chat).
    pub multiline: bool,
}

impl Rule {
    /// Plain one-line text of at most `max` characters.
    pub const fn plain(code: &'static str, max: usize) -> Rule {
        Rule {
            code,
            max,
            multiline: false,
        }
    }

    /// Checks `value`, the field `field` (as the caller wrote it, e.g. `links[0].title`).
    pub fn check(&self, field: &str, value: &str) -> Result<(), DomainError> {
        let len = value.chars().count();
        if len > self.max {
            return Err(DomainError::invalid(
                self.code,
                format!(
                    "{field} is {len} characters, over the limit of {}: shorten it",
                    self.max
                ),
            ));
        }
        if let Some((at, c)) = value.chars().enumerate().find(|(_, c)| !self.allows(*c)) {
            return Err(DomainError::invalid(
                self.code,
                format!(
                    "{field} has the {} U+{:04X} at character {}: remove it ({field} is text without control characters or direction overrides, at most {} characters)",
                    if is_direction_override(c) {
                        "direction override"
                    } else {
                        "control character"
                    },
                    u32::from(c),
                    at + 1,
                    self.max
                ),
            ));
        }
        Ok(())
    }

    /// Checks an optional value.
    pub fn check_opt(&self, field: &str, value: Option<&str>) -> Result<(), DomainError> {
        value.map_or(Ok(()), |v| self.check(field, v))
    }

    fn allows(&self, c: char) -> bool {
        if is_direction_override(c) {
            return false;
        }
        !c.is_control() || (self.multiline && matches!(c, '\n' | '\r' | '\t'))
    }
}

/// U+202A-U+202E (embeddings and overrides) and U+2066-U+2069 (isolates).
fn is_direction_override(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Bot, API key and workspace names.
pub const NAME: Rule = Rule::plain("invalid_name", NAME_MAX);
/// Link titles.
pub const TITLE: Rule = Rule::plain("invalid_title", TITLE_MAX);
/// Scenario nodes of entry points.
pub const NODE: Rule = Rule::plain("invalid_node", NODE_MAX);
/// UTM tags.
pub const UTM: Rule = Rule::plain("invalid_utm", UTM_MAX);
/// Public channel settings.
pub const SETTING: Rule = Rule::plain("invalid_channel_settings", SETTING_MAX);
/// A channel's API base URL.
pub const URL: Rule = Rule::plain("invalid_channel_settings", URL_MAX);
/// Channel tokens and secrets.
pub const SECRET: Rule = Rule::plain("invalid_channel_settings", SECRET_MAX);
/// Payload values.
pub const PAYLOAD: Rule = Rule::plain("invalid_payload", PAYLOAD_MAX);
/// A message text pre-filled in a chat: may span lines.
pub const PAYLOAD_TEXT: Rule = Rule {
    code: "invalid_payload",
    max: PAYLOAD_MAX,
    multiline: true,
};

/// A name (bot, API key, workspace): trimmed, 1 to [`NAME_MAX`] characters of plain text.
pub fn name(field: &str, value: &str) -> Result<String, DomainError> {
    // The limit applies to the value as sent, as the document's `maxLength` does.
    NAME.check(field, value)?;
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(DomainError::invalid(
            NAME.code,
            format!("{field} is empty: give 1-{NAME_MAX} characters"),
        ));
    }
    Ok(trimmed.to_string())
}

/// An identifier that goes into deep links (entry point keys, default fields): 1 to
/// [`KEY_MAX`] characters of `[A-Za-z0-9_-]`, without `--` (the fields scheme's separator)
/// and not starting or ending with `-`.
pub fn deep_link_key(code: &'static str, field: &str, value: &str) -> Result<(), DomainError> {
    let ok = (1..=KEY_MAX).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !value.contains("--")
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        let shown: String = value.chars().take(KEY_MAX + 1).collect();
        Err(DomainError::invalid(
            code,
            format!(
                "{field} {shown:?} must be 1-{KEY_MAX} characters of [A-Za-z0-9_-], without '--' and not starting or ending with '-' (it goes into deep links)"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(rule: Rule, value: &str) -> String {
        match rule.check("title", value) {
            Err(DomainError::Invalid { code, message }) => {
                assert_eq!(code, rule.code);
                message
            }
            other => panic!("{value:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn plain_text_refuses_controls_and_direction_overrides() {
        for c in [
            '\0', '\n', '\u{1b}', '\u{7f}', '\u{85}', '\u{202E}', '\u{2066}',
        ] {
            let m = refused(TITLE, &format!("a{c}b"));
            assert!(m.contains("at character 2"), "{m}");
            assert!(m.contains(&format!("U+{:04X}", u32::from(c))), "{m}");
        }
        assert!(TITLE.check("title", "Зимняя распродажа 🎁 — 50%").is_ok());
        assert!(
            PAYLOAD_TEXT
                .check("payload.text", "line 1\nline 2\t!")
                .is_ok()
        );
        refused(PAYLOAD_TEXT, "a\0b");
    }

    #[test]
    fn lengths_count_characters_and_name_the_limit() {
        assert!(TITLE.check("title", &"é".repeat(TITLE_MAX)).is_ok());
        let m = refused(TITLE, &"é".repeat(TITLE_MAX + 1));
        assert!(
            m.contains("201 characters") && m.contains("limit of 200"),
            "{m}"
        );
    }

    #[test]
    fn the_pattern_and_the_rule_agree_on_what_they_refuse() {
        let pattern = allowed_by_pattern(PLAIN_TEXT);
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            assert_eq!(
                pattern(c),
                TITLE.allows(c),
                "U+{:04X}: the OpenAPI pattern and the rule disagree",
                u32::from(c)
            );
        }
    }

    /// Reads the ranges of [`PLAIN_TEXT`] (`^[^\xNN-\xNN\uNNNN-\uNNNN...]*$`) into a
    /// predicate, so the test compares the published pattern itself with the rule.
    fn allowed_by_pattern(pattern: &str) -> impl Fn(char) -> bool {
        let mut rest = pattern
            .strip_prefix("^[^")
            .and_then(|p| p.strip_suffix("]*$"))
            .expect("a negated class");
        let mut points = Vec::new();
        while !rest.is_empty() {
            let (digits, body) = match (rest.strip_prefix(r"\x"), rest.strip_prefix(r"\u")) {
                (Some(body), _) => (2, body),
                (_, Some(body)) => (4, body),
                _ => panic!("an escape at {rest:?}"),
            };
            points.push(u32::from_str_radix(&body[..digits], 16).expect("hex digits"));
            rest = &body[digits..];
            rest = rest.strip_prefix('-').unwrap_or(rest);
        }
        assert!(points.len() % 2 == 0, "ranges only");
        let ranges: Vec<(u32, u32)> = points.chunks(2).map(|r| (r[0], r[1])).collect();
        move |c| {
            !ranges
                .iter()
                .any(|(a, b)| (*a..=*b).contains(&u32::from(c)))
        }
    }
}
