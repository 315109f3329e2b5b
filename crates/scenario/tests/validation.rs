//! Every rule a scenario is held to, each error placed at the node, step and field a person
//! has to fix; and reading the same scenario from JSON and YAML.

use botlink_scenario::{Invalid, Scenario, ScenarioError, Step, Test, limits};
use serde_json::{Value, json};

/// Node `a` with these steps, and an empty node `b` to point at.
fn doc(steps: Value) -> Value {
    json!({"start": "a", "nodes": {"a": steps, "b": []}})
}

fn errors(document: Value) -> Vec<ScenarioError> {
    match Scenario::from_json(document.to_string().as_bytes()) {
        Ok(_) => panic!("expected {document} to be refused"),
        Err(Invalid { errors }) => errors,
    }
}

/// Where an error is: node, step, field.
type Place = (Option<String>, Option<usize>, Option<String>);

/// The one error a document has, as its place and its message.
fn one(document: Value) -> (Place, String) {
    let errors = errors(document);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    let e = errors.into_iter().next().unwrap();
    ((e.node, e.step, e.field), e.message)
}

fn at(node: &str, step: usize, field: &str) -> Place {
    (Some(node.into()), Some(step), Some(field.into()))
}

fn assert_has(message: &str, part: &str) {
    assert!(message.contains(part), "{message:?} does not say {part:?}");
}

#[test]
fn the_example_is_valid() {
    let scenario = Scenario::from_json(include_bytes!("fixtures/example.json")).unwrap();
    assert_eq!(scenario.start, "welcome");
    assert_eq!(scenario.nodes.len(), 6);
    assert_eq!(scenario.validate(), Ok(()));
}

#[test]
fn yaml_and_json_read_the_same_scenario() {
    let from_json = Scenario::from_json(include_bytes!("fixtures/example.json")).unwrap();
    let from_yaml = Scenario::from_yaml(include_bytes!("fixtures/example.yaml")).unwrap();
    assert_eq!(from_yaml, from_json);
    // `asked: yes` is the text "yes" (YAML 1.2), as in the JSON.
    assert_eq!(
        from_yaml.nodes["track"][0],
        Step::Set([("asked".to_owned(), "yes".to_owned())].into())
    );
}

#[test]
fn a_scenario_round_trips_through_json() {
    let scenario = Scenario::from_json(include_bytes!("fixtures/example.json")).unwrap();
    let written = serde_json::to_vec(&scenario).unwrap();
    assert_eq!(Scenario::from_json(&written).unwrap(), scenario);
    // Defaults are written out (method), empty lists are not.
    let value: Value = serde_json::from_slice(&written).unwrap();
    assert_eq!(value["nodes"]["track"][1], json!({"goto": "subscribed"}));
    assert_eq!(value["nodes"]["welcome"][1]["send_me"]["method"], "POST");
}

#[test]
fn yaml_scalars_read_as_text_where_text_is_expected_and_keep_leading_zeros_in_data() {
    let yaml = br#"
start: a
nodes:
  a:
    - if: {var: order, equals: 12345}
      then: b
    - send_request:
        url: https://crm.example/hook
        method: POST
        data: {phone: 0079001234567, opted_in: yes, count: 3, ok: true}
  b: []
"#;
    let scenario = Scenario::from_yaml(yaml).unwrap();
    let Step::If(branch) = &scenario.nodes["a"][0] else {
        panic!("expected an if")
    };
    assert_eq!(branch.condition.test, Test::Equals("12345".into()));
    let Step::SendRequest(call) = &scenario.nodes["a"][1] else {
        panic!("expected a request")
    };
    assert_eq!(
        call.request.data,
        Some(json!({"phone": "0079001234567", "opted_in": "yes", "count": 3, "ok": true}))
    );
}

#[test]
fn yaml_errors_are_placed_like_json_errors() {
    let yaml = b"start: a\nnodes:\n  a:\n    - message: hi\n    - send_me: {url: https://x.example, metod: GET}\n";
    let errors = Scenario::from_yaml(yaml).unwrap_err().errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].node.as_deref(), Some("a"));
    assert_eq!(errors[0].step, Some(1));
    assert_eq!(errors[0].field.as_deref(), Some("send_me.metod"));
    assert_has(&errors[0].message, "unknown field `metod`");

    let errors = Scenario::from_yaml(b"start: a\nnodes:\n  a: []\n  a: []\n")
        .unwrap_err()
        .errors;
    assert_has(&errors[0].message, "duplicate");
    let errors = Scenario::from_yaml(b"start: [\n").unwrap_err().errors;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].node, None);
}

#[test]
fn start_must_name_a_node() {
    let (place, message) = one(json!({"start": "nope", "nodes": {"a": []}}));
    assert_eq!(place, (None, None, Some("start".into())));
    assert_eq!(message, r#"no node named "nope" in this scenario"#);
}

#[test]
fn every_node_a_step_names_must_exist() {
    let errors = errors(doc(json!([
        {"message": "hi", "buttons": [{"text": "ok", "node": "b"}, {"text": "x", "node": "x1"}]},
        {"if": {"var": "v", "exists": true}, "then": "x2", "else": "x3"},
        {"send_request": {"url": "https://x.example"}, "ok": "x4", "not_ok": "x5"},
        {"send_me": {"url": "https://x.example"}, "ok": "b", "not_ok": "x6"},
        {"goto": "x7"}
    ])));
    let places: Vec<_> = errors
        .iter()
        .map(|e| (e.step.unwrap(), e.field.clone().unwrap(), e.message.clone()))
        .collect();
    assert_eq!(
        places,
        vec![
            (
                0,
                "buttons[1].node".into(),
                r#"no node named "x1" in this scenario"#.into()
            ),
            (
                1,
                "then".into(),
                r#"no node named "x2" in this scenario"#.into()
            ),
            (
                1,
                "else".into(),
                r#"no node named "x3" in this scenario"#.into()
            ),
            (
                2,
                "ok".into(),
                r#"no node named "x4" in this scenario"#.into()
            ),
            (
                2,
                "not_ok".into(),
                r#"no node named "x5" in this scenario"#.into()
            ),
            (
                3,
                "not_ok".into(),
                r#"no node named "x6" in this scenario"#.into()
            ),
            (
                4,
                "goto".into(),
                r#"no node named "x7" in this scenario"#.into()
            ),
        ]
    );
    assert!(errors.iter().all(|e| e.node.as_deref() == Some("a")));
}

#[test]
fn errors_read_with_their_place_step_counted_from_one() {
    let errors = errors(doc(
        json!([{"message": "hi"}, {"send_me": {"url": "crm.example/hook"}}]),
    ));
    assert_eq!(
        errors[0].to_string(),
        r#"node "a", step 2, field "send_me.url": not an absolute http(s) URL: relative URL without a base"#
    );
    let invalid =
        Scenario::from_json(br#"{"start": "x", "nodes": {"x": [{"goto": "y"}]}}"#).unwrap_err();
    assert_eq!(
        invalid.to_string(),
        r#"invalid scenario: node "x", step 1, field "goto": no node named "y" in this scenario"#
    );
}

#[test]
fn a_step_does_exactly_one_thing() {
    let (place, message) = one(doc(
        json!([{"message": "hi"}, {"message": "hi", "goto": "b"}]),
    ));
    assert_eq!(place, (Some("a".into()), Some(1), None));
    assert_has(&message, "this one has message and goto");

    let (place, message) = one(doc(json!([{}])));
    assert_eq!(place, (Some("a".into()), Some(0), None));
    assert_has(
        &message,
        "a step needs one of: message, set, if, send_request, send_me, goto",
    );

    let (place, message) = one(doc(json!([{"goto": "b", "buttons": []}])));
    assert_eq!(place, (Some("a".into()), Some(0), None));
    assert_has(
        &message,
        "`buttons` belongs to a message step, not to a goto step",
    );

    let (_, message) = one(doc(json!([{"message": "hi", "ok": "b"}])));
    assert_has(&message, "`ok` belongs to a send_request or send_me step");
}

#[test]
fn a_typo_is_an_error_not_an_ignored_field() {
    let (place, message) = one(doc(json!([{"mesage": "hi"}])));
    assert_eq!(place, at("a", 0, "mesage"));
    assert_has(&message, "unknown field `mesage`");

    let (place, message) = one(doc(
        json!([{"send_me": {"url": "https://x.example", "hedaers": {}}}]),
    ));
    assert_eq!(place, at("a", 0, "send_me.hedaers"));
    assert_has(&message, "unknown field `hedaers`");

    let (place, message) = one(json!({"start": "a", "nodes": {"a": []}, "extra": 1}));
    assert_eq!(place, (None, None, Some("extra".into())));
    assert_has(&message, "unknown field `extra`");
}

#[test]
fn a_wrong_type_is_placed_at_its_field() {
    let (place, message) = one(doc(
        json!([{"message": "hi", "buttons": [{"text": "a", "node": "b"}, {"text": 5, "node": "b"}]}]),
    ));
    assert_eq!(place, at("a", 0, "buttons[1].text"));
    assert_has(&message, "invalid type: integer `5`, expected a string");

    let (place, _) = one(doc(json!([{"if": {"var": "v", "exists": "yes"}}])));
    assert_eq!(place, at("a", 0, "if.exists"));

    let (place, message) = one(json!({"start": "a", "nodes": []}));
    assert_eq!(place, (None, None, Some("nodes".into())));
    assert_has(&message, "expected an object");
}

#[test]
fn json_syntax_errors_say_where() {
    let errors = Scenario::from_json(b"{\"start\": \"a\",\n \"nodes\": {\"a\": [}}")
        .unwrap_err()
        .errors;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].node.as_deref(), Some("a"));
    assert_has(&errors[0].message, "line 2 column");
    let errors = Scenario::from_json(b"{\"start\": \"a\", \"nodes\": {\"a\": []}} trailing")
        .unwrap_err()
        .errors;
    assert_has(&errors[0].message, "trailing characters");
}

#[test]
fn a_node_given_twice_is_an_error() {
    let errors =
        Scenario::from_json(br#"{"start": "a", "nodes": {"a": [], "a": [{"goto": "a"}]}}"#)
            .unwrap_err()
            .errors;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field.as_deref(), Some("nodes"));
    assert_has(&errors[0].message, r#"the key "a" is given twice"#);
}

#[test]
fn a_button_leads_to_a_node_or_a_url() {
    let (place, message) = one(doc(
        json!([{"message": "hi", "buttons": [{"text": "x", "node": "b", "url": "https://x.example"}]}]),
    ));
    assert_eq!(place, at("a", 0, "buttons[0]"));
    assert_has(&message, "`node` or `url`, not both");
    let (place, _) = one(doc(json!([{"message": "hi", "buttons": [{"text": "x"}]}])));
    assert_eq!(place, at("a", 0, "buttons[0]"));
    let (place, message) = one(doc(
        json!([{"message": "hi", "buttons": [{"text": "x", "url": "ftp://x.example"}]}]),
    ));
    assert_eq!(place, at("a", 0, "buttons[0].url"));
    assert_eq!(message, "the URL must be http or https, not ftp");
    let (place, message) = one(doc(
        json!([{"message": "hi", "buttons": [{"text": "", "node": "b"}]}]),
    ));
    assert_eq!(place, at("a", 0, "buttons[0].text"));
    assert_eq!(message, "a button needs a text");
}

#[test]
fn an_if_has_one_test() {
    let (place, message) = one(doc(
        json!([{"if": {"var": "v", "equals": "1", "exists": true}}]),
    ));
    assert_eq!(place, at("a", 0, "if"));
    assert_has(&message, "an `if` has one test");
    let (place, message) = one(doc(json!([{"if": {"var": "v"}}])));
    assert_eq!(place, at("a", 0, "if"));
    assert_has(&message, "an `if` needs one test");
}

#[test]
fn the_method_must_be_known() {
    let (place, message) = one(doc(
        json!([{"send_request": {"url": "https://x.example", "method": "FETCH"}}]),
    ));
    assert_eq!(place, at("a", 0, "send_request.method"));
    assert_has(&message, "unknown variant `FETCH`, expected one of");
    assert_has(
        &message,
        "expected one of `GET`, `POST`, `PUT`, `PATCH`, `DELETE`",
    );
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        let document =
            doc(json!([{"send_request": {"url": "https://x.example", "method": method}}]));
        assert!(
            Scenario::from_json(document.to_string().as_bytes()).is_ok(),
            "{method}"
        );
    }
}

#[test]
fn a_url_without_template_markers_must_be_absolute_http() {
    for (url, expected) in [
        (
            "/hook",
            "not an absolute http(s) URL: relative URL without a base",
        ),
        (
            "mailto:a@example.com",
            "the URL must be http or https, not mailto",
        ),
        ("https://", "not an absolute http(s) URL: empty host"),
    ] {
        let (place, message) = one(doc(json!([{"send_me": {"url": url}}])));
        assert_eq!(place, at("a", 0, "send_me.url"), "{url}");
        assert_eq!(message, expected, "{url}");
    }
    // With markers, only the template is checked now; the rendered URL is checked at run time.
    let document = doc(json!([{"send_me": {"url": "{{ crm_url }}/hook"}}]));
    assert!(Scenario::from_json(document.to_string().as_bytes()).is_ok());
    let (place, message) = one(doc(
        json!([{"send_me": {"url": "https://x.example/{{ id }"}}]),
    ));
    assert_eq!(place, at("a", 0, "send_me.url"));
    assert_has(&message, "template: syntax error");
}

#[test]
fn templates_are_compiled_where_they_are_written() {
    let errors = errors(doc(json!([
        {"message": "Hello {{ user_name"},
        {"set": {"x": "{% if %}"}},
        {"send_request": {"url": "https://x.example", "data": {"a": ["ok", "{{ }}"]},
                          "headers": {"Authorization": "Bearer {{ token"}}},
        {"message": "hi", "template": {"name": "t", "language": "en",
                                       "components": [{"parameters": [{"text": "{{"}]}]}}
    ])));
    let places: Vec<_> = errors
        .iter()
        .map(|e| (e.step.unwrap(), e.field.clone().unwrap()))
        .collect();
    assert_eq!(
        places,
        vec![
            (0, "message".into()),
            (1, "set.x".into()),
            (2, "send_request.headers.Authorization".into()),
            (2, "send_request.data.a[1]".into()),
            (3, "template.components[0].parameters[0].text".into()),
        ]
    );
    assert!(
        errors
            .iter()
            .all(|e| e.message.starts_with("template: syntax error")),
        "{errors:#?}"
    );
}

#[test]
fn a_matches_pattern_must_compile() {
    let (place, message) = one(doc(
        json!([{"if": {"var": "v", "matches": "(unclosed"}, "then": "b"}]),
    ));
    assert_eq!(place, at("a", 0, "if.matches"));
    assert_has(&message, "the pattern does not compile");
    // A pattern that compiles past the size limit is refused too.
    let (place, message) = one(doc(
        json!([{"if": {"var": "v", "matches": "\\w{1000}\\w{1000}"}}]),
    ));
    assert_eq!(place, at("a", 0, "if.matches"));
    assert_has(&message, "size limit");
}

#[test]
fn save_takes_json_pointers() {
    let errors = errors(doc(json!([{"send_request": {"url": "https://x.example",
        "save": {"a": "/ok", "b": "", "c": "/a~1b~0", "d": "order/id", "e": "/x~2"}}}])));
    let places: Vec<_> = errors
        .iter()
        .map(|e| (e.field.clone().unwrap(), e.message.clone()))
        .collect();
    assert_eq!(places.len(), 2, "{places:#?}");
    assert_eq!(places[0].0, "send_request.save.d");
    assert_has(&places[0].1, "starts with /");
    assert_eq!(places[1].0, "send_request.save.e");
    assert_has(&places[1].1, "~ is written ~0");
}

#[test]
fn chat_id_and_channel_cannot_be_changed_by_a_scenario() {
    let errors = errors(doc(json!([
        {"set": {"chat_id": "1"}},
        {"send_request": {"url": "https://x.example", "save": {"channel": "/c"}}}
    ])));
    let places: Vec<_> = errors.iter().map(|e| e.field.clone().unwrap()).collect();
    assert_eq!(places, vec!["set.chat_id", "send_request.save.channel"]);
    assert_has(&errors[0].message, "chat_id is botlink's own variable");
    // Reading them is fine.
    let document = doc(
        json!([{"if": {"var": "channel", "equals": "telegram"}, "then": "b"},
                              {"message": "{{ chat_id }}"}]),
    );
    assert!(Scenario::from_json(document.to_string().as_bytes()).is_ok());
}

#[test]
fn headers_are_tokens_and_not_botlinks_own() {
    let errors = errors(doc(
        json!([{"send_me": {"url": "https://x.example", "headers": {
        "Bad Header": "x", "Webhook-Signature": "v1,forged", "Content-Length": "1",
        "X-Fine": "ok", "X-Split": "a\r\nb"}}}]),
    ));
    let places: Vec<_> = errors
        .iter()
        .map(|e| (e.field.clone().unwrap(), e.message.clone()))
        .collect();
    assert_eq!(
        places,
        vec![
            (
                "send_me.headers.Bad Header".into(),
                "a header's name is letters, digits and !#$%&'*+-.^_`|~ (RFC 9110)".into()
            ),
            (
                "send_me.headers.Content-Length".into(),
                "botlink sets the Content-Length header itself".into()
            ),
            (
                "send_me.headers.Webhook-Signature".into(),
                "botlink sets the Webhook-Signature header itself".into()
            ),
            (
                "send_me.headers.X-Split".into(),
                "a header's value may not hold a line break".into()
            ),
        ]
    );
}

#[test]
fn tags_and_whatsapp_templates_have_their_platforms_shapes() {
    let errors = errors(doc(json!([
        {"message": "x", "tag": "post purchase"},
        {"message": "x", "template": {"name": "Order Shipped", "language": "en-US"}},
        {"message": "", "template": {"name": "order_shipped", "language": "en_US"}},
        {"message": ""}
    ])));
    let places: Vec<_> = errors
        .iter()
        .map(|e| (e.step.unwrap(), e.field.clone().unwrap()))
        .collect();
    assert_eq!(
        places,
        vec![
            (0, "tag".into()),
            (1, "template.name".into()),
            (1, "template.language".into()),
            (3, "message".into()),
        ]
    );
    let (place, message) = one(doc(
        json!([{"message": "x", "template": {"name": "t", "language": "en", "namespace": "n"}}]),
    ));
    assert_eq!(place, at("a", 0, "template.namespace"));
    assert_has(&message, "unknown field `namespace`");
}

#[test]
fn limits_are_errors_that_name_the_limit_and_the_size() {
    let (place, message) = one(doc(
        json!([{"message": "x".repeat(limits::MESSAGE_TEXT + 1)}]),
    ));
    assert_eq!(place, at("a", 0, "message"));
    assert_eq!(message, "at most 4096 characters; this one has 4097");

    let buttons: Vec<Value> = (0..11)
        .map(|i| json!({"text": i.to_string(), "node": "b"}))
        .collect();
    let (place, message) = one(doc(json!([{"message": "x", "buttons": buttons}])));
    assert_eq!(place, at("a", 0, "buttons"));
    assert_eq!(message, "a message has at most 10 buttons; this one has 11");

    let steps: Vec<Value> = (0..101).map(|_| json!({"message": "x"})).collect();
    let (place, message) = one(doc(Value::Array(steps)));
    assert_eq!(place, (Some("a".into()), None, None));
    assert_eq!(message, "a node has at most 100 steps; this one has 101");

    let mut nodes: serde_json::Map<String, Value> =
        (0..1001).map(|i| (format!("n{i}"), json!([]))).collect();
    nodes.insert("a".into(), json!([]));
    let (place, message) = one(json!({"start": "a", "nodes": nodes}));
    assert_eq!(place, (None, None, Some("nodes".into())));
    assert_eq!(
        message,
        "a scenario has at most 1000 nodes; this one has 1002"
    );

    let set: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("v{i}"), json!("x"))).collect();
    let (place, message) = one(doc(json!([{"set": set}])));
    assert_eq!(place, at("a", 0, "set"));
    assert_eq!(message, "at most 100 entries; this one has 101");
}

#[test]
fn node_and_variable_names_are_bounded_and_printable() {
    let long = "n".repeat(65);
    let errors = errors(
        json!({"start": "a", "nodes": {"a": [], "": [], long.clone(): [], "tab\there": []}}),
    );
    let places: Vec<_> = errors
        .iter()
        .map(|e| (e.node.clone().unwrap(), e.message.clone()))
        .collect();
    assert_eq!(
        places,
        vec![
            (
                String::new(),
                "a node's name has 1 to 64 characters; this one has 0".into()
            ),
            (
                format!("{}…", "n".repeat(64)),
                "a node's name has 1 to 64 characters; this one has 65".into()
            ),
            (
                "tab\there".into(),
                "a node's name may not hold control characters".into()
            ),
        ]
    );
    let (place, message) = one(doc(json!([{"if": {"var": "", "exists": true}}])));
    assert_eq!(place, at("a", 0, "if.var"));
    assert_eq!(
        message,
        "a variable's name has 1 to 64 characters; this one has 0"
    );
    // Names of payload variables may be digits or hold - and .
    let document = doc(json!([{"set": {"7": "x", "order-id": "y", "utm.source": "z"}}]));
    assert!(Scenario::from_json(document.to_string().as_bytes()).is_ok());
}

#[test]
fn errors_stop_at_the_limit_and_count_the_rest() {
    let steps: Vec<Value> = (0..100)
        .map(|i| json!({"goto": format!("missing{i}")}))
        .collect();
    let mut nodes = serde_json::Map::new();
    nodes.insert("a".into(), Value::Array(steps.clone()));
    nodes.insert("b".into(), Value::Array(steps[..50].to_vec()));
    let errors = errors(json!({"start": "a", "nodes": nodes}));
    assert_eq!(errors.len(), limits::ERRORS + 1);
    assert_eq!(errors[limits::ERRORS].message, "and 50 more errors");
}

#[test]
fn validate_checks_a_scenario_built_in_code() {
    let mut scenario = Scenario::from_json(include_bytes!("fixtures/example.json")).unwrap();
    scenario.nodes.remove("sorry");
    let invalid = scenario.validate().unwrap_err();
    assert_eq!(
        invalid.errors,
        vec![ScenarioError {
            node: Some("welcome".into()),
            step: Some(1),
            field: Some("not_ok".into()),
            message: r#"no node named "sorry" in this scenario"#.into(),
        }]
    );
}
