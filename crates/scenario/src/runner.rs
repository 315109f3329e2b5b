//! The runner: a resumable state machine over a scenario. It asks for one effect at a time
//! (a message to send, a request to make); `set`, `if` and `goto` happen inside
//! [`Runner::next`]. While a request is in flight the runner waits for its outcome; it is
//! plain data (Serialize + Deserialize), so botlink can store it and resume it in another
//! process.
//!
//! Nothing here panics on a scenario that changed or was never validated: what cannot go on
//! halts the run with a reason ([`Effect::Halted`]). A template that fails to render halts
//! the run too, rather than send a half-rendered message or request.

use std::collections::BTreeMap;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::document::{
    ButtonTarget, Call, Condition, Message, Method, Request, Scenario, Step, Test, Vars,
    WhatsappTemplate,
};
use crate::error::{ScenarioError, shown};
use crate::limits;
use crate::template::{self, Context};
use crate::validate::{OWN_VARS, url_rule};

/// What the runner asks the caller to do next.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Send this message to the person; then call [`Runner::next`] again.
    Message(OutMessage),
    /// Make this request; then call [`Runner::resume`] with its outcome, then
    /// [`Runner::next`].
    Request(OutRequest),
    /// The run ended: the last node ran to its end.
    Done,
    /// The run stopped before its end, for this reason (a loop, a node that no longer exists,
    /// a template that failed to render, ...). A reason that starts with `loop:` is the loop
    /// guard. The reason names the node, step and field where the run stopped.
    Halted(String),
}

/// A rendered message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutMessage {
    /// The text.
    pub text: String,
    /// The buttons, in order.
    pub buttons: Vec<OutButton>,
    /// The Messenger message tag, as written.
    pub tag: Option<String>,
    /// The WhatsApp template, its components rendered.
    pub template: Option<WhatsappTemplate>,
}

/// A rendered button.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutButton {
    /// The text.
    pub text: String,
    /// The node it runs, or the URL it opens (rendered, and an absolute http(s) URL).
    pub target: ButtonTarget,
}

/// Which step asked for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// `send_me`: a report to the bot's own CRM.
    SendMe,
    /// `send_request`: any HTTP endpoint.
    SendRequest,
}

/// A rendered request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutRequest {
    /// The step that asked for it.
    pub kind: RequestKind,
    /// The method.
    pub method: Method,
    /// The URL, an absolute http(s) URL. Whether its host may be reached (no private
    /// addresses) is for the caller to check.
    pub url: String,
    /// The headers, by name in byte order.
    pub headers: Vec<(String, String)>,
    /// The body: the step's `data` with every string rendered; `null` when a `send_request`
    /// has no `data`. For `send_me`, `chat_id` and `channel` are set in it from the variables
    /// of those names when it is an object or was not given.
    pub data: Value,
}

/// How a request went, as the caller tells the runner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Whether it succeeded (for botlink: a 2xx answer, after retries).
    pub ok: bool,
    /// The answer's body, when it was JSON. On success, the step's `save` reads from it.
    pub answer: Option<Value>,
}

/// [`Runner::start`] was given a node the scenario does not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no node named {0:?} in this scenario")]
pub struct UnknownNode(pub String);

/// [`Runner::resume`] was called while no request was in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the run is not waiting for a request's outcome")]
pub struct NotWaiting;

/// One run of a scenario for one person: where it is, its variables, and whether it waits for
/// a request's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Runner {
    node: String,
    /// The step to run next (while waiting: the request's step).
    step: usize,
    /// Nodes entered in this run, for the loop guard.
    entries: u32,
    vars: Vars,
    state: State,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum State {
    Running,
    /// A request is in flight; what its step said to do with the outcome is kept here, so the
    /// outcome is handled as the step said when the request was made.
    Waiting(Pending),
    Done,
    Halted(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Pending {
    ok: Option<String>,
    not_ok: Option<String>,
    save: BTreeMap<String, String>,
}

const WAITING: &str =
    "a request is in flight: resume the run with its outcome before asking for the next effect";

impl Runner {
    /// A run of `scenario` from `node` (the scenario's `start` when `None`) with these
    /// variables.
    pub fn start(
        scenario: &Scenario,
        node: Option<&str>,
        vars: Vars,
    ) -> Result<Runner, UnknownNode> {
        let node = node.unwrap_or(&scenario.start);
        if !scenario.nodes.contains_key(node) {
            return Err(UnknownNode(node.to_owned()));
        }
        Ok(Runner {
            node: node.to_owned(),
            step: 0,
            entries: 1,
            vars,
            state: State::Running,
        })
    }

    /// The run's variables as they are now.
    pub fn vars(&self) -> &Vars {
        &self.vars
    }

    /// The node the run is in.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The index (from 0) of the step the run will take next, or of the request it waits on.
    pub fn step(&self) -> usize {
        self.step
    }

    /// Whether a request is in flight: [`Runner::resume`] must come before [`Runner::next`].
    pub fn is_waiting(&self) -> bool {
        matches!(self.state, State::Waiting(_))
    }

    /// Whether the run ended ([`Effect::Done`] or [`Effect::Halted`]); `next` will keep
    /// answering the same.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done | State::Halted(_))
    }

    /// Runs until the next effect. `set`, `if` and `goto` steps are taken here. Once the run
    /// ended, answers the same `Done` or `Halted` again. While a request is in flight, answers
    /// `Halted` with a reason that says so and changes nothing: the run still waits.
    pub fn next(&mut self, scenario: &Scenario) -> Effect {
        match &self.state {
            State::Running => {}
            State::Waiting(_) => return Effect::Halted(WAITING.to_owned()),
            State::Done => return Effect::Done,
            State::Halted(reason) => return Effect::Halted(reason.clone()),
        }
        loop {
            let Some(steps) = scenario.nodes.get(&self.node) else {
                let reason = format!(
                    "node {:?} is no longer in the scenario (it changed during the run)",
                    shown(&self.node)
                );
                return self.halt(reason);
            };
            let Some(step) = steps.get(self.step) else {
                self.state = State::Done;
                return Effect::Done;
            };
            match step {
                Step::Message(message) => {
                    return match self.message(message) {
                        Ok(out) => {
                            self.step += 1;
                            Effect::Message(out)
                        }
                        Err((field, e)) => self.halt_here(field, e),
                    };
                }
                Step::Set(set) => {
                    let context = Context::new(&self.vars);
                    let mut values = Vec::with_capacity(set.len());
                    for (var, source) in set {
                        if OWN_VARS.contains(&var.as_str()) {
                            let e = format!(
                                "{var} is botlink's own variable: a scenario cannot change it"
                            );
                            return self.halt_here(format!("set.{var}"), e);
                        }
                        match template::render(source, &context) {
                            Ok(value) => values.push((var.clone(), value)),
                            Err(e) => return self.halt_here(format!("set.{var}"), e),
                        }
                    }
                    self.vars.extend(values);
                    self.step += 1;
                }
                Step::If(branch) => {
                    let holds = match holds(&branch.condition, &self.vars) {
                        Ok(holds) => holds,
                        Err(e) => return self.halt_here("if.matches".into(), e),
                    };
                    let target = if holds {
                        &branch.then
                    } else {
                        &branch.otherwise
                    };
                    match target {
                        Some(target) => {
                            if let Some(halted) = self.enter(target) {
                                return halted;
                            }
                        }
                        None => self.step += 1,
                    }
                }
                Step::Goto(target) => {
                    if let Some(halted) = self.enter(target) {
                        return halted;
                    }
                }
                Step::SendRequest(call) | Step::SendMe(call) => {
                    let kind = match step {
                        Step::SendMe(_) => RequestKind::SendMe,
                        _ => RequestKind::SendRequest,
                    };
                    return match self.request(kind, call) {
                        Ok(request) => {
                            self.state = State::Waiting(Pending {
                                ok: call.ok.clone(),
                                not_ok: call.not_ok.clone(),
                                save: call.request.save.clone(),
                            });
                            Effect::Request(request)
                        }
                        Err((field, e)) => self.halt_here(field, e),
                    };
                }
            }
        }
    }

    /// Hands the runner the outcome of the request it asked for. On success, the step's
    /// `save` sets variables from the JSON answer: a JSON string as it is, any other JSON as
    /// its compact text; a pointer that finds nothing sets nothing. Then the run goes to the
    /// step's `ok` or `not_ok` node, or on with the next step when that is not given.
    pub fn resume(&mut self, outcome: Outcome) -> Result<(), NotWaiting> {
        let pending = match std::mem::replace(&mut self.state, State::Running) {
            State::Waiting(pending) => pending,
            other => {
                // Resuming a run that does not wait changes nothing.
                self.state = other;
                return Err(NotWaiting);
            }
        };
        if outcome.ok
            && let Some(answer) = &outcome.answer
        {
            for (var, pointer) in &pending.save {
                if OWN_VARS.contains(&var.as_str()) {
                    continue;
                }
                if let Some(found) = answer.pointer(pointer) {
                    let text = match found {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    self.vars.insert(var.clone(), text);
                }
            }
        }
        let target = if outcome.ok {
            pending.ok
        } else {
            pending.not_ok
        };
        match target {
            // A loop caught here leaves the run halted; `next` says so.
            Some(target) => {
                self.enter(&target);
            }
            None => self.step += 1,
        }
        Ok(())
    }

    /// Jumps to the start of `target`, unless the run has entered its limit of nodes.
    fn enter(&mut self, target: &str) -> Option<Effect> {
        if self.entries >= limits::NODE_ENTRIES {
            let reason = format!(
                "loop: this run entered {} nodes, the limit; the last jump was to {:?} from node {:?}, step {}",
                self.entries,
                shown(target),
                shown(&self.node),
                self.step + 1
            );
            return Some(self.halt(reason));
        }
        self.entries += 1;
        self.node = target.to_owned();
        self.step = 0;
        None
    }

    fn halt(&mut self, reason: String) -> Effect {
        self.state = State::Halted(reason.clone());
        Effect::Halted(reason)
    }

    /// Halts with a reason placed at the current node and step.
    fn halt_here(&mut self, field: String, message: String) -> Effect {
        let place = ScenarioError::new(Some(&self.node), Some(self.step), Some(field), message);
        self.halt(place.to_string())
    }

    fn message(&self, message: &Message) -> Result<OutMessage, (String, String)> {
        let context = Context::new(&self.vars);
        let text = template::render(&message.text, &context).map_err(|e| ("message".into(), e))?;
        let mut buttons = Vec::with_capacity(message.buttons.len());
        for (i, button) in message.buttons.iter().enumerate() {
            let text = template::render(&button.text, &context)
                .map_err(|e| (format!("buttons[{i}].text"), e))?;
            let target = match &button.target {
                ButtonTarget::Node(node) => ButtonTarget::Node(node.clone()),
                ButtonTarget::Url(source) => {
                    let field = || format!("buttons[{i}].url");
                    let url = template::render(source, &context).map_err(|e| (field(), e))?;
                    url_rule(&url).map_err(|e| (field(), e))?;
                    ButtonTarget::Url(url)
                }
            };
            buttons.push(OutButton { text, target });
        }
        let template = match &message.template {
            None => None,
            Some(t) => {
                let components = match &t.components {
                    None => None,
                    Some(components) => Some(
                        components
                            .iter()
                            .enumerate()
                            .map(|(i, c)| {
                                template::render_json(c, &context).map_err(|(path, e)| {
                                    (format!("template.components[{i}]{path}"), e)
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                };
                Some(WhatsappTemplate {
                    name: t.name.clone(),
                    language: t.language.clone(),
                    components,
                })
            }
        };
        Ok(OutMessage {
            text,
            buttons,
            tag: message.tag.clone(),
            template,
        })
    }

    fn request(&self, kind: RequestKind, call: &Call) -> Result<OutRequest, (String, String)> {
        let prefix = match kind {
            RequestKind::SendMe => "send_me",
            RequestKind::SendRequest => "send_request",
        };
        let Request {
            url,
            method,
            data,
            headers,
            save: _,
        } = &call.request;
        let context = Context::new(&self.vars);
        let field = |name: &str| format!("{prefix}.{name}");
        let url = template::render(url, &context).map_err(|e| (field("url"), e))?;
        url_rule(&url).map_err(|e| (field("url"), e))?;
        let mut out_headers = Vec::with_capacity(headers.len());
        for (name, source) in headers {
            let value = template::render(source, &context)
                .map_err(|e| (field(&format!("headers.{name}")), e))?;
            if value.contains(['\r', '\n', '\0']) {
                // RFC 9110 §5.5: a variable must not smuggle a line break into a header.
                let e = "the header's value rendered with a line break".to_owned();
                return Err((field(&format!("headers.{name}")), e));
            }
            out_headers.push((name.clone(), value));
        }
        let mut data = match data {
            Some(data) => template::render_json(data, &context)
                .map_err(|(path, e)| (format!("{prefix}.data{path}"), e))?,
            None => Value::Null,
        };
        if kind == RequestKind::SendMe {
            if data.is_null() {
                data = Value::Object(serde_json::Map::new());
            }
            if let Value::Object(map) = &mut data {
                for name in OWN_VARS {
                    if let Some(value) = self.vars.get(name) {
                        map.insert(name.to_owned(), Value::String(value.clone()));
                    }
                }
            }
        }
        Ok(OutRequest {
            kind,
            method: *method,
            url,
            headers: out_headers,
            data,
        })
    }
}

/// Whether a condition holds over these variables. An unset variable compares as "".
fn holds(condition: &Condition, vars: &Vars) -> Result<bool, String> {
    let value = vars.get(&condition.var);
    let text = value.map_or("", String::as_str);
    Ok(match &condition.test {
        Test::Equals(expected) => text == expected,
        Test::StartsWith(prefix) => text.starts_with(prefix.as_str()),
        Test::Matches(pattern) => compile_regex(pattern)?.is_match(text),
        Test::Exists(wanted) => value.is_some() == *wanted,
    })
}

/// A `matches` pattern, compiled within [`limits::REGEX_BYTES`].
pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .size_limit(limits::REGEX_BYTES)
        .dfa_size_limit(limits::REGEX_BYTES)
        .build()
        .map_err(|e| format!("the pattern does not compile: {e}"))
}
