//! Every rule a scenario is held to before botlink stores it, each error placed at its node,
//! step and field.

use serde_json::Value;

use crate::document::{Button, ButtonTarget, Call, Message, Request, Scenario, Step, Test};
use crate::error::{Invalid, ScenarioError, shown};
use crate::limits;
use crate::template;

/// Variables botlink sets for every run and a scenario may not overwrite: `send_me` reports
/// them to the CRM, which trusts them to reach the person back.
pub(crate) const OWN_VARS: [&str; 2] = ["chat_id", "channel"];

/// Headers botlink's HTTP client sets: the framing ones (RFC 9110 §7.2, §8.6, RFC 9112 §6.1,
/// §9.6) and the Standard Webhooks signature of each delivery.
const OWN_HEADERS: [&str; 7] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

impl Scenario {
    /// Checks every rule: `start` names a node; every node a step names (a button's `node`,
    /// `then` / `else`, `ok` / `not_ok`, `goto`) exists; templates compile; a URL without
    /// template markers is an absolute http(s) URL; `matches` patterns compile; `save`
    /// pointers are JSON pointers; header names are HTTP tokens; and the
    /// [limits](crate::limits). Returns every error found (up to
    /// [`limits::ERRORS`](crate::limits::ERRORS)), in document order.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut checker = Checker {
            scenario: self,
            errors: Vec::new(),
            more: 0,
        };
        checker.scenario();
        checker.finish()
    }
}

struct Checker<'a> {
    scenario: &'a Scenario,
    errors: Vec<ScenarioError>,
    more: usize,
}

impl Checker<'_> {
    fn report(
        &mut self,
        node: Option<&str>,
        step: Option<usize>,
        field: Option<String>,
        message: String,
    ) {
        if self.errors.len() < limits::ERRORS {
            self.errors
                .push(ScenarioError::new(node, step, field, message));
        } else {
            self.more += 1;
        }
    }

    fn at(&mut self, node: &str, step: usize, field: impl Into<String>, message: String) {
        self.report(Some(node), Some(step), Some(field.into()), message);
    }

    fn finish(mut self) -> Result<(), Invalid> {
        if self.more > 0 {
            let message = format!("and {} more errors", self.more);
            self.errors
                .push(ScenarioError::new(None, None, None, message));
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Invalid {
                errors: self.errors,
            })
        }
    }

    fn scenario(&mut self) {
        let scenario = self.scenario;
        if scenario.nodes.len() > limits::NODES {
            self.report(
                None,
                None,
                Some("nodes".into()),
                format!(
                    "a scenario has at most {} nodes; this one has {}",
                    limits::NODES,
                    scenario.nodes.len()
                ),
            );
        }
        if !scenario.nodes.contains_key(&scenario.start) {
            self.report(
                None,
                None,
                Some("start".into()),
                format!(
                    "no node named {:?} in this scenario",
                    shown(&scenario.start)
                ),
            );
        }
        for (name, steps) in &scenario.nodes {
            if let Err(message) = name_rule("a node's name", name, limits::NODE_NAME) {
                self.report(Some(name), None, None, message);
            }
            if steps.len() > limits::STEPS {
                self.report(
                    Some(name),
                    None,
                    None,
                    format!(
                        "a node has at most {} steps; this one has {}",
                        limits::STEPS,
                        steps.len()
                    ),
                );
            }
            for (index, step) in steps.iter().enumerate() {
                self.step(name, index, step);
            }
        }
    }

    fn step(&mut self, node: &str, index: usize, step: &Step) {
        match step {
            Step::Message(message) => self.message(node, index, message),
            Step::Set(set) => {
                self.entries(node, index, "set", set.len());
                for (var, value) in set {
                    let field = format!("set.{var}");
                    self.var_name(node, index, &field, var);
                    self.template(node, index, &field, value, limits::TEMPLATE);
                }
            }
            Step::If(branch) => {
                let condition = &branch.condition;
                if let Err(message) =
                    name_rule("a variable's name", &condition.var, limits::VAR_NAME)
                {
                    self.at(node, index, "if.var", message);
                }
                let (field, value) = match &condition.test {
                    Test::Equals(v) => ("if.equals", v),
                    Test::StartsWith(v) => ("if.starts_with", v),
                    Test::Matches(v) => ("if.matches", v),
                    Test::Exists(_) => ("if.exists", &String::new()),
                };
                let chars = value.chars().count();
                if chars > limits::CONDITION {
                    self.at(
                        node,
                        index,
                        field,
                        format!(
                            "at most {} characters; this one has {chars}",
                            limits::CONDITION
                        ),
                    );
                } else if let Test::Matches(pattern) = &condition.test
                    && let Err(e) = crate::runner::compile_regex(pattern)
                {
                    self.at(node, index, field, e);
                }
                self.reference(node, index, "then", branch.then.as_deref());
                self.reference(node, index, "else", branch.otherwise.as_deref());
            }
            Step::SendRequest(call) | Step::SendMe(call) => {
                self.call(node, index, step.kind(), call)
            }
            Step::Goto(target) => self.reference(node, index, "goto", Some(target)),
        }
    }

    fn message(&mut self, node: &str, index: usize, message: &Message) {
        if message.text.is_empty() && message.template.is_none() {
            self.at(node, index, "message", "a message needs a text".into());
        }
        self.template(node, index, "message", &message.text, limits::MESSAGE_TEXT);
        if message.buttons.len() > limits::BUTTONS {
            self.at(
                node,
                index,
                "buttons",
                format!(
                    "a message has at most {} buttons; this one has {}",
                    limits::BUTTONS,
                    message.buttons.len()
                ),
            );
        }
        for (i, Button { text, target }) in message.buttons.iter().enumerate() {
            let field = format!("buttons[{i}].text");
            if text.is_empty() {
                self.at(node, index, field, "a button needs a text".into());
            } else {
                self.template(node, index, &field, text, limits::BUTTON_TEXT);
            }
            match target {
                ButtonTarget::Node(target) => {
                    self.reference(node, index, &format!("buttons[{i}].node"), Some(target));
                }
                ButtonTarget::Url(url) => self.url(node, index, &format!("buttons[{i}].url"), url),
            }
        }
        if let Some(tag) = &message.tag {
            // Messenger's tags are capitalised words joined by underscores
            // (POST_PURCHASE_UPDATE); the Messenger sender knows which it accepts.
            let shape = !tag.is_empty()
                && tag.len() <= 64
                && tag.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
            if !shape {
                self.at(
                    node,
                    index,
                    "tag",
                    "a message tag is a Messenger tag in capitals, such as POST_PURCHASE_UPDATE"
                        .into(),
                );
            }
        }
        if let Some(template) = &message.template {
            // WhatsApp: "template names can only contain lowercase alphanumeric characters
            // and underscores", at most 512 characters.
            let name = &template.name;
            if name.is_empty()
                || name.len() > 512
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                self.at(
                    node,
                    index,
                    "template.name",
                    "a WhatsApp template's name has 1 to 512 characters of a-z, 0-9 and _".into(),
                );
            }
            // Language codes such as `en`, `en_US`, `zh_CN`.
            let language = &template.language;
            if language.is_empty()
                || language.len() > 16
                || !language
                    .bytes()
                    .all(|b| b.is_ascii_alphabetic() || b == b'_')
            {
                self.at(
                    node,
                    index,
                    "template.language",
                    "a WhatsApp template's language is a code such as en or en_US".into(),
                );
            }
            for (i, component) in template.components.iter().flatten().enumerate() {
                self.json(node, index, &format!("template.components[{i}]"), component);
            }
        }
    }

    fn call(&mut self, node: &str, index: usize, kind: &str, call: &Call) {
        let Request {
            url,
            method: _,
            data,
            headers,
            save,
        } = &call.request;
        self.url(node, index, &format!("{kind}.url"), url);
        self.entries(node, index, &format!("{kind}.headers"), headers.len());
        for (name, value) in headers {
            let field = format!("{kind}.headers.{name}");
            if name.is_empty() || !name.bytes().all(is_tchar) {
                // RFC 9110 §5.1: a field name is a token.
                self.at(
                    node,
                    index,
                    &field,
                    "a header's name is letters, digits and !#$%&'*+-.^_`|~ (RFC 9110)".into(),
                );
            } else if OWN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                self.at(
                    node,
                    index,
                    &field,
                    format!("botlink sets the {name} header itself"),
                );
            }
            if value.contains(['\r', '\n', '\0']) {
                // RFC 9110 §5.5: no CR, LF or NUL in a field value.
                self.at(
                    node,
                    index,
                    &field,
                    "a header's value may not hold a line break".into(),
                );
            }
            self.template(node, index, &field, value, limits::TEMPLATE);
        }
        if let Some(data) = data {
            self.json(node, index, &format!("{kind}.data"), data);
        }
        self.entries(node, index, &format!("{kind}.save"), save.len());
        for (var, pointer) in save {
            let field = format!("{kind}.save.{var}");
            self.var_name(node, index, &field, var);
            if let Err(message) = pointer_rule(pointer) {
                self.at(node, index, &field, message);
            }
        }
        self.reference(node, index, "ok", call.ok.as_deref());
        self.reference(node, index, "not_ok", call.not_ok.as_deref());
    }

    fn json(&mut self, node: &str, index: usize, field: &str, value: &Value) {
        let mut strings = Vec::new();
        template::each_string(value, &mut field.to_owned(), &mut |s, path| {
            strings.push((path.to_owned(), s.to_owned()));
        });
        for (path, s) in strings {
            self.template(node, index, &path, &s, limits::TEMPLATE);
        }
    }

    fn template(&mut self, node: &str, index: usize, field: &str, source: &str, limit: usize) {
        let chars = source.chars().count();
        if chars > limit {
            self.at(
                node,
                index,
                field,
                format!("at most {limit} characters; this one has {chars}"),
            );
        } else if let Err(e) = template::check(source) {
            self.at(node, index, field, format!("template: {e}"));
        }
    }

    fn url(&mut self, node: &str, index: usize, field: &str, source: &str) {
        let chars = source.chars().count();
        if chars > limits::URL {
            self.at(
                node,
                index,
                field,
                format!(
                    "a URL has at most {} characters; this one has {chars}",
                    limits::URL
                ),
            );
        } else if template::has_markers(source) {
            self.template(node, index, field, source, limits::URL);
        } else if let Err(e) = url_rule(source) {
            self.at(node, index, field, e);
        }
    }

    /// A variable `set` or `save` writes: a valid name, and not one of botlink's own.
    fn var_name(&mut self, node: &str, index: usize, field: &str, var: &str) {
        if let Err(message) = name_rule("a variable's name", var, limits::VAR_NAME) {
            self.at(node, index, field, message);
        } else if OWN_VARS.contains(&var) {
            self.at(
                node,
                index,
                field,
                format!("{var} is botlink's own variable: a scenario cannot change it"),
            );
        }
    }

    fn entries(&mut self, node: &str, index: usize, field: &str, count: usize) {
        if count > limits::ENTRIES {
            self.at(
                node,
                index,
                field,
                format!("at most {} entries; this one has {count}", limits::ENTRIES),
            );
        }
    }

    fn reference(&mut self, node: &str, index: usize, field: &str, target: Option<&str>) {
        if let Some(target) = target
            && !self.scenario.nodes.contains_key(target)
        {
            self.at(
                node,
                index,
                field,
                format!("no node named {:?} in this scenario", shown(target)),
            );
        }
    }
}

/// A node's or a variable's name: 1 to `limit` characters, none of them a control character.
fn name_rule(what: &str, name: &str, limit: usize) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 || chars > limit {
        return Err(format!(
            "{what} has 1 to {limit} characters; this one has {chars}"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} may not hold control characters"));
    }
    Ok(())
}

/// An absolute `http` or `https` URL with a host, as botlink can send a request to or a
/// messenger can open. The URL itself is not repeated in the error: it may carry a secret.
pub(crate) fn url_rule(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(()),
        Ok(parsed) => Err(format!(
            "the URL must be http or https, not {}",
            parsed.scheme()
        )),
        Err(e) => Err(format!("not an absolute http(s) URL: {e}")),
    }
}

/// A JSON pointer (RFC 6901): empty (the whole answer) or `/`-separated tokens, where `~` is
/// only ever `~0` or `~1`.
fn pointer_rule(pointer: &str) -> Result<(), String> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(format!(
            "{pointer:?} is not a JSON pointer: it is empty (the whole answer) or starts with /, as in /order/id"
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "{pointer:?} is not a JSON pointer: ~ is written ~0 and / inside a key ~1"
            ));
        }
    }
    Ok(())
}

/// RFC 9110 §5.6.2: tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
