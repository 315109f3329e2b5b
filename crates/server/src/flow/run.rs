//! Driving a scenario run: its messages until it ends or asks for a request, turned into
//! the rows that [`crate::store::FlowCommit`] writes.

use botlink_scenario::{Effect, OutMessage, OutRequest, RequestKind, Runner, Scenario};

use crate::store::{Continuation, DeliveryId, MessageId, NewDelivery, NewMessage, RunId};

/// How far a run went.
#[derive(Debug)]
pub struct Drive {
    /// The messages to send, in order.
    pub messages: Vec<OutMessage>,
    /// The request it waits for, with the runner to resume once its first attempt is answered.
    pub request: Option<(OutRequest, Runner)>,
    /// Why it stopped early (a loop, a node gone...), when it did.
    pub halted: Option<String>,
}

/// Runs `runner` until it ends or asks for a request.
pub fn drive(scenario: &Scenario, mut runner: Runner) -> Drive {
    let mut messages = Vec::new();
    loop {
        match runner.next(scenario) {
            Effect::Message(m) => messages.push(m),
            Effect::Request(r) => {
                return Drive {
                    messages,
                    request: Some((r, runner)),
                    halted: None,
                };
            }
            Effect::Done => {
                return Drive {
                    messages,
                    request: None,
                    halted: None,
                };
            }
            Effect::Halted(reason) => {
                return Drive {
                    messages,
                    request: None,
                    halted: Some(reason),
                };
            }
        }
    }
}

impl Drive {
    /// The rows this run writes: its messages, and its request as a delivery carrying the
    /// run's continuation.
    pub fn into_rows(
        self,
        scenario_version: i64,
        run_id: Option<&RunId>,
    ) -> (Vec<NewMessage>, Vec<NewDelivery>) {
        let messages = self
            .messages
            .into_iter()
            .map(|m| NewMessage {
                id: MessageId::new(),
                message: serde_json::to_value(&m).expect("a rendered message serializes"),
                run_id: run_id.cloned(),
            })
            .collect();
        let deliveries = self
            .request
            .into_iter()
            .map(|(r, runner)| NewDelivery {
                id: DeliveryId::new(),
                kind: match r.kind {
                    RequestKind::SendMe => "send_me",
                    RequestKind::SendRequest => "send_request",
                }
                .to_owned(),
                method: r.method.as_str().to_owned(),
                url: r.url,
                headers: r.headers,
                data: r.data,
                continuation: Some(Continuation {
                    scenario_version,
                    runner: serde_json::to_value(&runner).expect("a runner serializes"),
                    run_id: run_id.cloned(),
                }),
            })
            .collect();
        (messages, deliveries)
    }
}
