//! The scenario document: its types, and how they read from and write to JSON and YAML.
//!
//! Steps, buttons and conditions are read through "raw" structs that hold every field a step
//! may carry (`deny_unknown_fields`, so a typo is an error), then checked into the typed form:
//! exactly one kind per step, and only the fields that kind takes. Writing goes the other way,
//! so a scenario round-trips through JSON and YAML.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Invalid;

/// A run's variables, name to value. Names may be anything (payload variables may be digits or
/// hold `-` and `.`); templates reach every one as `{{ vars["name"] }}`.
pub type Vars = BTreeMap<String, String>;

/// A node: steps run in order. The end of a node ends the run.
pub type Node = Vec<Step>;

/// A bot's scenario: where a Start begins, and the nodes by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The node a Start runs when nothing names another.
    pub start: String,
    /// The nodes by name.
    #[serde(deserialize_with = "unique_map")]
    pub nodes: BTreeMap<String, Node>,
}

impl Scenario {
    /// Reads a scenario from JSON and [validates](Scenario::validate) it. A syntax or type error
    /// comes back as one [`ScenarioError`](crate::ScenarioError) placed at the node, step and
    /// field where it was found.
    pub fn from_json(bytes: &[u8]) -> Result<Scenario, Invalid> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let scenario: Scenario = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| Invalid::at_path(e.path(), e.inner().to_string()))?;
        de.end().map_err(|e| Invalid::whole(e.to_string()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads a scenario from YAML and [validates](Scenario::validate) it.
    ///
    /// YAML is read with `serde-saphyr` (safe Rust, fuzzed, with budgets against alias bombs)
    /// under YAML 1.2's rules: only `true` / `false` are booleans (`yes` stays a string), and a
    /// number with a leading zero (`0079...`) stays a string inside `data`. A string field
    /// accepts a plain scalar as written (`equals: 12345` is the text `12345`). Duplicate keys
    /// are errors.
    pub fn from_yaml(bytes: &[u8]) -> Result<Scenario, Invalid> {
        let options = serde_saphyr::options! {
            with_snippet: false,
            strict_booleans: true,
            leading_zero_numbers_as_strings: true,
        };
        // The error goes back through serde-saphyr (which adds where it happened, and would
        // take an early `Ok` for a second document), and its path beside it.
        let mut path = None;
        let read = serde_saphyr::with_deserializer_from_slice_with_options(bytes, options, |de| {
            serde_path_to_error::deserialize::<_, Scenario>(de).map_err(|e| {
                path = Some(e.path().clone());
                e.into_inner()
            })
        });
        let scenario = read.map_err(|e| {
            let message = e.without_snippet().to_string();
            match &path {
                Some(path) => Invalid::at_path(path, message),
                None => Invalid::whole(message),
            }
        })?;
        scenario.validate()?;
        Ok(scenario)
    }
}

/// One step of a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawStep", into = "RawStep")]
pub enum Step {
    /// `{"message": "...", "buttons": [...]}`: sends a message, then the next step runs.
    Message(Message),
    /// `{"set": {"name": "template"}}`: sets variables. Every value renders against the
    /// variables as they were before the step, so the order of the names does not matter.
    Set(BTreeMap<String, String>),
    /// `{"if": {...}, "then": "node", "else": "node"}`: a missing branch goes on with the next
    /// step.
    If(Branch),
    /// `{"send_request": {...}, "ok": "node", "not_ok": "node"}`.
    SendRequest(Call),
    /// `{"send_me": {...}, "ok": "node", "not_ok": "node"}`: as `send_request`, with
    /// `chat_id` and `channel` added to `data`.
    SendMe(Call),
    /// `{"goto": "node"}`.
    Goto(String),
}

impl Step {
    /// The key that names this step's kind in the document (`"message"`, `"send_me"`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Message(_) => "message",
            Step::Set(_) => "set",
            Step::If(_) => "if",
            Step::SendRequest(_) => "send_request",
            Step::SendMe(_) => "send_me",
            Step::Goto(_) => "goto",
        }
    }
}

/// A message step.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// The text, a template.
    pub text: String,
    /// Buttons under the message.
    pub buttons: Vec<Button>,
    /// A Messenger message tag (`CONFIRMED_EVENT_UPDATE`, `POST_PURCHASE_UPDATE`,
    /// `ACCOUNT_UPDATE`, `HUMAN_AGENT`), which lets a message out after Messenger's 24-hour
    /// window. Kept for the Messenger sender; other channels ignore it.
    pub tag: Option<String>,
    /// A WhatsApp template, the only kind of message WhatsApp lets out after its 24-hour
    /// window. Kept for the WhatsApp sender; other channels ignore it.
    pub template: Option<WhatsappTemplate>,
}

/// A WhatsApp message template, as the Cloud API names it: `{"name", "language",
/// "components"}`. Every string inside `components` is a template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsappTemplate {
    /// The template's name, as approved in WhatsApp Manager.
    pub name: String,
    /// The template's language code, such as `en_US`.
    pub language: String,
    /// The template's components (header, body, button parameters), as the Cloud API takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<Value>>,
}

/// A button under a message: its text (a template) and where it leads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawButton", into = "RawButton")]
pub struct Button {
    /// The button's text, a template.
    pub text: String,
    /// A node to run when pressed, or a URL to open (a template).
    pub target: ButtonTarget,
}

/// Where a button leads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonTarget {
    /// Pressing it runs this node.
    Node(String),
    /// Pressing it opens this URL.
    Url(String),
}

/// An `if` step: a condition and where each answer leads.
#[derive(Clone, Debug, PartialEq)]
pub struct Branch {
    /// What is tested.
    pub condition: Condition,
    /// The node to jump to when the condition holds; `None` goes on with the next step.
    pub then: Option<String>,
    /// The node to jump to when it does not (`else` in the document); `None` goes on.
    pub otherwise: Option<String>,
}

/// A test of one variable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawCondition", into = "RawCondition")]
pub struct Condition {
    /// The variable's name.
    pub var: String,
    /// The test.
    pub test: Test,
}

/// How a variable is tested. An unset variable compares as the empty string; `exists` tells
/// unset from empty. The values are literal text, not templates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Test {
    /// The value is exactly this.
    Equals(String),
    /// The value starts with this.
    StartsWith(String),
    /// The value contains a match of this regular expression (the regex crate's syntax;
    /// anchor it with `^...$` to match the whole value).
    Matches(String),
    /// The variable is set (`true`) or not (`false`).
    Exists(bool),
}

/// A `send_request` or `send_me` step: the request and where each outcome leads.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The request.
    pub request: Request,
    /// The node to jump to when the request succeeds; `None` goes on with the next step.
    pub ok: Option<String>,
    /// The node to jump to when it fails; `None` goes on with the next step.
    pub not_ok: Option<String>,
}

/// An HTTP request a scenario asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The URL, a template; it must render to an absolute `http` or `https` URL.
    pub url: String,
    /// The method; `POST` when not given.
    #[serde(default)]
    pub method: Method,
    /// The body, any JSON; every string inside it (not the keys) is a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Headers, name to template.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_map"
    )]
    pub headers: BTreeMap<String, String>,
    /// Variables to set from a successful JSON answer: name to JSON pointer (RFC 6901).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_map"
    )]
    pub save: BTreeMap<String, String>,
}

/// An HTTP method a request may use, written in capitals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// GET
    Get,
    /// POST, the default.
    #[default]
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Method {
    /// The method as HTTP writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every field a step may carry, as written.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    buttons: Option<Vec<Button>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    template: Option<WhatsappTemplate>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_unique_map"
    )]
    set: Option<BTreeMap<String, String>>,
    #[serde(rename = "if", default, skip_serializing_if = "Option::is_none")]
    condition: Option<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    then: Option<String>,
    #[serde(rename = "else", default, skip_serializing_if = "Option::is_none")]
    otherwise: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    send_request: Option<Request>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    send_me: Option<Request>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ok: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_ok: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    goto: Option<String>,
}

const KINDS: &str = "message, set, if, send_request, send_me, goto";

impl TryFrom<RawStep> for Step {
    type Error = String;

    fn try_from(raw: RawStep) -> Result<Step, String> {
        let present: Vec<&str> = [
            ("message", raw.message.is_some()),
            ("set", raw.set.is_some()),
            ("if", raw.condition.is_some()),
            ("send_request", raw.send_request.is_some()),
            ("send_me", raw.send_me.is_some()),
            ("goto", raw.goto.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, here)| here.then_some(name))
        .collect();
        let kind = match present.as_slice() {
            [kind] => *kind,
            [] => return Err(format!("a step needs one of: {KINDS}")),
            many => {
                return Err(format!(
                    "a step does one thing: this one has {} (use one step for each)",
                    many.join(" and ")
                ));
            }
        };
        // The fields that only some kinds take, and which kinds.
        let extras = [
            ("buttons", raw.buttons.is_some(), "message"),
            ("tag", raw.tag.is_some(), "message"),
            ("template", raw.template.is_some(), "message"),
            ("then", raw.then.is_some(), "if"),
            ("else", raw.otherwise.is_some(), "if"),
            ("ok", raw.ok.is_some(), "send_request or send_me"),
            ("not_ok", raw.not_ok.is_some(), "send_request or send_me"),
        ];
        for (field, here, owner) in extras {
            if here && !owner.split(" or ").any(|o| o == kind) {
                return Err(format!(
                    "`{field}` belongs to a {owner} step, not to a {kind} step"
                ));
            }
        }
        Ok(match kind {
            "message" => Step::Message(Message {
                text: raw.message.unwrap_or_default(),
                buttons: raw.buttons.unwrap_or_default(),
                tag: raw.tag,
                template: raw.template,
            }),
            "set" => Step::Set(raw.set.unwrap_or_default()),
            "if" => match raw.condition {
                Some(condition) => Step::If(Branch {
                    condition,
                    then: raw.then,
                    otherwise: raw.otherwise,
                }),
                None => return Err(format!("a step needs one of: {KINDS}")),
            },
            "send_request" | "send_me" => {
                let request = if kind == "send_me" {
                    raw.send_me
                } else {
                    raw.send_request
                };
                let Some(request) = request else {
                    return Err(format!("a step needs one of: {KINDS}"));
                };
                let call = Call {
                    request,
                    ok: raw.ok,
                    not_ok: raw.not_ok,
                };
                if kind == "send_me" {
                    Step::SendMe(call)
                } else {
                    Step::SendRequest(call)
                }
            }
            _ => Step::Goto(raw.goto.unwrap_or_default()),
        })
    }
}

impl From<Step> for RawStep {
    fn from(step: Step) -> RawStep {
        match step {
            Step::Message(m) => RawStep {
                message: Some(m.text),
                buttons: (!m.buttons.is_empty()).then_some(m.buttons),
                tag: m.tag,
                template: m.template,
                ..RawStep::default()
            },
            Step::Set(set) => RawStep {
                set: Some(set),
                ..RawStep::default()
            },
            Step::If(b) => RawStep {
                condition: Some(b.condition),
                then: b.then,
                otherwise: b.otherwise,
                ..RawStep::default()
            },
            Step::SendRequest(c) => RawStep {
                send_request: Some(c.request),
                ok: c.ok,
                not_ok: c.not_ok,
                ..RawStep::default()
            },
            Step::SendMe(c) => RawStep {
                send_me: Some(c.request),
                ok: c.ok,
                not_ok: c.not_ok,
                ..RawStep::default()
            },
            Step::Goto(node) => RawStep {
                goto: Some(node),
                ..RawStep::default()
            },
        }
    }
}

/// A button as written: its text and exactly one of `node` and `url`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawButton {
    text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

impl TryFrom<RawButton> for Button {
    type Error = &'static str;

    fn try_from(raw: RawButton) -> Result<Button, &'static str> {
        let target = match (raw.node, raw.url) {
            (Some(node), None) => ButtonTarget::Node(node),
            (None, Some(url)) => ButtonTarget::Url(url),
            (Some(_), Some(_)) => return Err("a button has `node` or `url`, not both"),
            (None, None) => return Err("a button needs `node` (a node to run) or `url`"),
        };
        Ok(Button {
            text: raw.text,
            target,
        })
    }
}

impl From<Button> for RawButton {
    fn from(button: Button) -> RawButton {
        let (node, url) = match button.target {
            ButtonTarget::Node(node) => (Some(node), None),
            ButtonTarget::Url(url) => (None, Some(url)),
        };
        RawButton {
            text: button.text,
            node,
            url,
        }
    }
}

/// A condition as written: `var` and exactly one test.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    var: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    equals: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    starts_with: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    matches: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exists: Option<bool>,
}

impl TryFrom<RawCondition> for Condition {
    type Error = &'static str;

    fn try_from(raw: RawCondition) -> Result<Condition, &'static str> {
        let tests = [
            raw.equals.map(Test::Equals),
            raw.starts_with.map(Test::StartsWith),
            raw.matches.map(Test::Matches),
            raw.exists.map(Test::Exists),
        ];
        let mut given = tests.into_iter().flatten();
        match (given.next(), given.next()) {
            (Some(test), None) => Ok(Condition { var: raw.var, test }),
            (None, _) => Err("an `if` needs one test: equals, starts_with, matches or exists"),
            (Some(_), Some(_)) => Err(
                "an `if` has one test: equals, starts_with, matches or exists (use one `if` step for each)",
            ),
        }
    }
}

impl From<Condition> for RawCondition {
    fn from(c: Condition) -> RawCondition {
        let mut raw = RawCondition {
            var: c.var,
            equals: None,
            starts_with: None,
            matches: None,
            exists: None,
        };
        match c.test {
            Test::Equals(v) => raw.equals = Some(v),
            Test::StartsWith(v) => raw.starts_with = Some(v),
            Test::Matches(v) => raw.matches = Some(v),
            Test::Exists(v) => raw.exists = Some(v),
        }
        raw
    }
}

/// A JSON object read into a map, refusing a key given twice (serde would keep the last one
/// silently, and a second node of the same name is a mistake worth hearing about).
fn unique_map<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(PhantomData<V>);

    impl<'de, V: Deserialize<'de>> de::Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                let value = map.next_value()?;
                if out.contains_key(&key) {
                    return Err(de::Error::custom(format_args!(
                        "the key {key:?} is given twice"
                    )));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_map(Unique(PhantomData))
}

fn some_unique_map<'de, D, V>(deserializer: D) -> Result<Option<BTreeMap<String, V>>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    unique_map(deserializer).map(Some)
}
