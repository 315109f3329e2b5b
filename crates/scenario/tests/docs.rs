//! docs/scenarios.md stays true: its example is the one the runner tests use, and every
//! step it shows reads as a step.

use botlink_scenario::{Effect, Runner, Scenario, Step, Vars};

const DOC: &str = include_str!("../../../docs/scenarios.md");

fn json_blocks() -> Vec<&'static str> {
    DOC.split("```json\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect()
}

#[test]
fn the_documented_example_is_the_tested_one() {
    let blocks = json_blocks();
    let documented = Scenario::from_json(blocks[0].as_bytes()).unwrap();
    let tested = Scenario::from_json(include_bytes!("fixtures/example.json")).unwrap();
    assert_eq!(documented, tested);
}

#[test]
fn every_documented_step_reads_as_a_step() {
    let blocks = json_blocks();
    assert!(
        blocks.len() >= 7,
        "the page shows an example and a step of each kind"
    );
    for block in &blocks[1..] {
        let step: Result<Step, _> = serde_json::from_str(block);
        assert!(step.is_ok(), "{block}: {step:?}");
    }
}

#[test]
fn the_documented_filters_work() {
    let scenario = Scenario::from_json(
        r#"{"start": "a", "nodes": {"a": [{"message":
            "{{ user_name | default('friend') }} {{ order | upper }} {{ total | float | round(2) }} {{ name | tojson }} {% if language == 'ru' %}Привет{% else %}Hello{% endif %}"}]}}"#
            .as_bytes(),
    )
    .unwrap();
    let vars = Vars::from([
        ("order".into(), "a-1".into()),
        ("total".into(), "3.14159".into()),
        ("name".into(), "Ann \"A\"".into()),
        ("language".into(), "ru".into()),
    ]);
    let mut runner = Runner::start(&scenario, None, vars).unwrap();
    let Effect::Message(message) = runner.next(&scenario) else {
        panic!("expected a message")
    };
    assert_eq!(message.text, r#"friend A-1 3.14 "Ann \"A\"" Привет"#);
}
