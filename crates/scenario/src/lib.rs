//! botlink's bot scenarios: the document a bot runs when a person presses Start (or when a CRM
//! calls `call_node`), its validation, and a resumable runner. Pure: no I/O, no clock, no async.
//! The server executes what the runner asks for (send a message, make an HTTP request) and
//! persists the runner while a request is in flight.
//!
//! # The document
//!
//! A scenario is JSON (or YAML) with a `start` node and named `nodes`. A node is a list of
//! steps run in order; each step is one of:
//!
//! | step | does |
//! |---|---|
//! | `message` | sends a text (a template), with optional `buttons` (each to a `node` or a `url`), and the optional `tag` (Messenger) and `template` (WhatsApp) |
//! | `set` | sets variables: `{"name": "template", ...}` |
//! | `if` | tests one variable (`equals`, `starts_with`, `matches` or `exists`) and jumps to `then` or `else` |
//! | `send_request` | an HTTP request (`url`, `method`, `data`, `headers`, `save`), then `ok` / `not_ok` |
//! | `send_me` | as `send_request`, with `chat_id` and `channel` added to `data` |
//! | `goto` | jumps to a node |
//!
//! A step that names a node for its outcome jumps there; otherwise the next step runs; the end
//! of a node ends the run. Every string a person or a CRM will see is a
//! [MiniJinja](https://docs.rs/minijinja) template over the run's variables: `{{ user_name }}`,
//! or `{{ vars["order-id"] }}` for a name that is not an identifier. An unset variable renders
//! as the empty string.
//!
//! The full reference, with the variables botlink sets and examples, is `docs/scenarios.md`
//! in the repository.
//!
//! # Running one
//!
//! ```
//! use botlink_scenario::{Effect, Outcome, Runner, Scenario, Vars};
//!
//! let scenario = Scenario::from_json(br#"{"start": "hi", "nodes": {
//!     "hi": [{"message": "Hello {{ user_name }}!"},
//!            {"send_me": {"url": "https://crm.example/hook"}, "ok": "thanks"}],
//!     "thanks": [{"message": "Subscribed."}]}}"#).unwrap();
//! let vars = Vars::from([("user_name".into(), "Ann".into()), ("chat_id".into(), "42".into()),
//!                        ("channel".into(), "telegram".into())]);
//! let mut runner = Runner::start(&scenario, None, vars).unwrap();
//! let Effect::Message(hello) = runner.next(&scenario) else { panic!() };
//! assert_eq!(hello.text, "Hello Ann!");
//! let Effect::Request(request) = runner.next(&scenario) else { panic!() };
//! assert_eq!(request.data, serde_json::json!({"chat_id": "42", "channel": "telegram"}));
//! // ... the server sends it, maybe in another process, then:
//! runner.resume(Outcome { ok: true, answer: None }).unwrap();
//! let Effect::Message(thanks) = runner.next(&scenario) else { panic!() };
//! assert_eq!(thanks.text, "Subscribed.");
//! assert_eq!(runner.next(&scenario), Effect::Done);
//! ```

mod document;
mod error;
mod runner;
mod template;
mod validate;

pub use document::{
    Branch, Button, ButtonTarget, Call, Condition, Message, Method, Node, Request, Scenario, Step,
    Test, Vars, WhatsappTemplate,
};
pub use error::{Invalid, ScenarioError};
pub use runner::{
    Effect, NotWaiting, OutButton, OutMessage, OutRequest, Outcome, RequestKind, Runner,
    UnknownNode,
};

/// The limits a scenario is held to. Each validation error that one of them causes names the
/// limit and the size it found. The document's size in bytes is the caller's concern.
pub mod limits {
    /// Nodes in a scenario.
    pub const NODES: usize = 1_000;
    /// Steps in one node.
    pub const STEPS: usize = 100;
    /// Characters of a node's name (at least one).
    pub const NODE_NAME: usize = 64;
    /// Characters of a variable's name (at least one).
    pub const VAR_NAME: usize = 64;
    /// Characters of a message's text, as written. Telegram and WhatsApp cap a text message at
    /// 4,096 characters.
    pub const MESSAGE_TEXT: usize = 4_096;
    /// Buttons under one message.
    pub const BUTTONS: usize = 10;
    /// Characters of a button's text, as written.
    pub const BUTTON_TEXT: usize = 256;
    /// Characters of a URL, as written (a request's `url`, a button's `url`).
    pub const URL: usize = 2_048;
    /// Characters of any other template, as written (a `set` value, a string in `data`, a
    /// header's value, a string in a WhatsApp template's components).
    pub const TEMPLATE: usize = 16_384;
    /// Characters of an `if` step's `equals` / `starts_with` value or `matches` pattern.
    pub const CONDITION: usize = 1_024;
    /// Bytes a `matches` pattern may compile to (the regex crate's size limit).
    pub const REGEX_BYTES: usize = 1 << 20;
    /// Entries in one `set`, one `save` or one `headers` object.
    pub const ENTRIES: usize = 100;
    /// Bytes of one rendered template. A render that comes out longer halts the run.
    pub const RENDERED: usize = 65_536;
    /// MiniJinja fuel for one render: it bounds both the instructions run and the memory a
    /// template can allocate (roughly 64 bytes a unit).
    pub const FUEL: u64 = 50_000;
    /// Nodes a single run may enter, counting the one it started at. A run that would enter
    /// one more halts with a reason that starts with `loop:`.
    pub const NODE_ENTRIES: u32 = 100;
    /// Errors one validation reports; the rest are counted in one last error.
    pub const ERRORS: usize = 100;
}
