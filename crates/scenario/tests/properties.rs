//! Properties: reading any input never panics; a scenario that reads back round-trips; and
//! a run over any scenario (valid or not) ends within the loop guard, whatever the requests'
//! outcomes.

use botlink_scenario::{Effect, Outcome, Runner, Scenario, Vars, limits};
use proptest::prelude::*;
use serde_json::{Value, json};

const NODES: [&str; 4] = ["a", "b", "c", "d"];

fn node() -> impl Strategy<Value = String> {
    prop::sample::select(NODES.to_vec()).prop_map(str::to_owned)
}

/// Node names that mostly exist, sometimes not.
fn target() -> impl Strategy<Value = String> {
    prop_oneof![29 => node(), 1 => Just("missing".to_owned())]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(vec![
            "hi",
            "{{ x }}",
            "{{ vars['y-z'] }}!",
            "{% if x %}a{% else %}b{% endif %}",
            "{{ x | upper }} {{ nobody.deep }}",
        ])
        .prop_map(str::to_owned),
        // Fails to compile, fails to render, renders too long, or is empty.
        1 => prop::sample::select(vec!["{{", "{{ 1 // 0 }}", "{{ 'w' * 100000 }}", ""])
            .prop_map(str::to_owned),
        1 => "[a-z{}% \"\\\\\n]{0,12}",
    ]
}

fn url() -> impl Strategy<Value = String> {
    prop_oneof![
        9 => prop::sample::select(vec![
            "https://crm.example/hook",
            "https://crm.example/{{ x }}",
            "{{ u }}",
        ]),
        1 => prop::sample::select(vec!["crm.example/hook", "ftp://x.example"]),
    ]
    .prop_map(str::to_owned)
}

fn opt<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::of(s)
}

/// Any JSON, small.
fn junk() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec!["message", "goto", "url", "x", "if", "var", "ok"])
                    .prop_map(str::to_owned),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A step as JSON: mostly well formed, sometimes not at all.
fn step() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (text(), prop::collection::vec((text(), target()), 0..3)).prop_map(|(t, buttons)| {
            let buttons: Vec<Value> = buttons
                .into_iter()
                .map(|(text, node)| json!({"text": text, "node": node}))
                .collect();
            json!({"message": t, "buttons": buttons})
        }),
        2 => (prop::sample::select(vec!["x", "y-z", "u", "saved", "chat_id"]), text())
            .prop_map(|(k, v)| json!({"set": {k: v}})),
        2 => (
            prop::sample::select(vec!["x", "y-z", "nobody"]),
            0..4usize,
            text(),
            opt(target()),
            opt(target())
        )
            .prop_map(|(var, test, value, then, otherwise)| {
                let mut condition = json!({"var": var});
                match test {
                    0 => condition["equals"] = json!(value),
                    1 => condition["starts_with"] = json!(value),
                    2 => condition["matches"] = json!(if value.contains('(') { "(" } else { "^h" }),
                    _ => condition["exists"] = json!(value.is_empty()),
                }
                let mut step = json!({"if": condition});
                if let Some(then) = then {
                    step["then"] = json!(then);
                }
                if let Some(otherwise) = otherwise {
                    step["else"] = json!(otherwise);
                }
                step
            }),
        3 => (
            any::<bool>(),
            url(),
            opt(junk()),
            opt(target()),
            opt(target()),
            prop::sample::select(vec!["/a", "", "/a/0", "/a/1", "bad"])
        )
            .prop_map(|(me, url, data, ok, not_ok, pointer)| {
                let mut request = json!({"url": url, "save": {"saved": pointer}});
                if let Some(data) = data {
                    request["data"] = data;
                }
                let mut step = json!({});
                step[if me { "send_me" } else { "send_request" }] = request;
                if let Some(ok) = ok {
                    step["ok"] = json!(ok);
                }
                if let Some(not_ok) = not_ok {
                    step["not_ok"] = json!(not_ok);
                }
                step
            }),
        2 => target().prop_map(|node| json!({"goto": node})),
        1 => junk(),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    (
        target(),
        prop::collection::vec(prop::collection::vec(step(), 0..5), NODES.len()),
    )
        .prop_map(|(start, steps)| {
            let nodes: serde_json::Map<String, Value> = NODES
                .iter()
                .zip(steps)
                .map(|(name, steps)| (name.to_string(), Value::from(steps)))
                .collect();
            json!({"start": start, "nodes": nodes})
        })
}

fn vars() -> impl Strategy<Value = Vars> {
    prop::collection::btree_map(
        prop::sample::select(vec!["x", "y-z", "u", "chat_id", "channel"]).prop_map(str::to_owned),
        prop_oneof![
            text(),
            Just("https://ok.example/".to_owned()),
            Just("a\r\nb".to_owned())
        ],
        0..5,
    )
}

/// Drives a run to its end; the number of effects is bounded by the loop guard: at most
/// `NODE_ENTRIES` nodes of at most `STEPS` steps each, plus the end.
fn drive(scenario: &Scenario, mut runner: Runner, outcomes: &[bool]) -> Result<(), TestCaseError> {
    let bound = limits::NODE_ENTRIES as usize * (limits::STEPS + 1) + 1;
    for i in 0..bound {
        match runner.next(scenario) {
            Effect::Message(_) => {}
            Effect::Request(_) => {
                let ok = outcomes[i % outcomes.len()];
                let answer = json!({"a": [i, "x"]});
                let resumed = runner.resume(Outcome {
                    ok,
                    answer: Some(answer),
                });
                prop_assert!(resumed.is_ok());
            }
            Effect::Done | Effect::Halted(_) => {
                prop_assert!(runner.is_finished());
                return Ok(());
            }
        }
    }
    Err(TestCaseError::fail(format!(
        "the run did not end within {bound} effects"
    )))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_are_read_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Scenario::from_json(&bytes);
        let _ = Scenario::from_yaml(&bytes);
    }

    #[test]
    fn any_document_is_read_and_validated_without_panicking(document in document()) {
        let bytes = document.to_string();
        let _ = Scenario::from_json(bytes.as_bytes());
        // The same document as YAML (JSON is YAML's flow style).
        let _ = Scenario::from_yaml(bytes.as_bytes());
        // And what parses but is not validated.
        if let Ok(scenario) = serde_json::from_value::<Scenario>(document) {
            let _ = scenario.validate();
        }
    }

    #[test]
    fn a_valid_scenario_round_trips_and_reads_the_same_as_yaml(document in document()) {
        if let Ok(scenario) = Scenario::from_json(document.to_string().as_bytes()) {
            let written = serde_json::to_vec(&scenario).unwrap();
            prop_assert_eq!(&Scenario::from_json(&written).unwrap(), &scenario);
            prop_assert_eq!(&Scenario::from_yaml(&written).unwrap(), &scenario);
        }
    }

    #[test]
    fn every_run_ends_within_the_guard(
        document in document(),
        vars in vars(),
        from in opt(target()),
        outcomes in prop::collection::vec(any::<bool>(), 1..4),
    ) {
        // Valid or not: a scenario that only parses must not make the runner panic either.
        let Ok(scenario) = serde_json::from_value::<Scenario>(document) else {
            return Ok(());
        };
        if let Ok(runner) = Runner::start(&scenario, from.as_deref(), vars) {
            drive(&scenario, runner, &outcomes)?;
        }
    }
}
