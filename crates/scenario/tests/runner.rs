//! Runs of the example scenario (tests/fixtures/example.json, the one in docs/scenarios.md)
//! and of small scenarios for each step's rules, as botlink's server will drive them.

use botlink_scenario::{
    ButtonTarget, Effect, Method, NotWaiting, OutButton, OutMessage, OutRequest, Outcome,
    RequestKind, Runner, Scenario, UnknownNode, Vars, limits,
};
use serde_json::{Value, json};

fn example() -> Scenario {
    Scenario::from_json(include_bytes!("fixtures/example.json")).expect("the example is valid")
}

fn scenario(document: Value) -> Scenario {
    Scenario::from_json(document.to_string().as_bytes()).expect("the scenario is valid")
}

fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What a Start from Telegram carries for customer 12345.
fn start_vars() -> Vars {
    vars(&[
        ("user_name", "Ann"),
        ("clientExternalId", "12345"),
        ("chat_id", "398866372"),
        ("channel", "telegram"),
        ("messenger_input_param", "customer_12345"),
    ])
}

fn text(effect: Effect) -> String {
    match effect {
        Effect::Message(message) => message.text,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn request(effect: Effect) -> OutRequest {
    match effect {
        Effect::Request(request) => request,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn halted(effect: Effect) -> String {
    match effect {
        Effect::Halted(reason) => reason,
        other => panic!("expected the run to halt, got {other:?}"),
    }
}

/// Starts at `welcome` and takes the greeting and the CRM report.
fn welcome_until_request(scenario: &Scenario) -> (Runner, OutRequest) {
    let mut runner = Runner::start(scenario, None, start_vars()).unwrap();
    assert!(matches!(runner.next(scenario), Effect::Message(_)));
    let request = request(runner.next(scenario));
    assert!(runner.is_waiting());
    (runner, request)
}

#[test]
fn a_start_greets_with_buttons_then_reports_the_customer_to_the_crm() {
    let scenario = example();
    let mut runner = Runner::start(&scenario, None, start_vars()).unwrap();
    assert_eq!(runner.node(), "welcome");

    assert_eq!(
        runner.next(&scenario),
        Effect::Message(OutMessage {
            text: "Hello Ann! Customer 12345".into(),
            buttons: vec![
                OutButton {
                    text: "Track order".into(),
                    target: ButtonTarget::Node("track".into()),
                },
                OutButton {
                    text: "Site".into(),
                    target: ButtonTarget::Url("https://example.com".into()),
                },
            ],
            tag: None,
            template: None,
        })
    );
    assert_eq!(
        runner.next(&scenario),
        Effect::Request(OutRequest {
            kind: RequestKind::SendMe,
            method: Method::Post,
            url: "https://crm.example/hook".into(),
            headers: vec![("Authorization".into(), "Bearer X".into())],
            data: json!({"customer_id": "12345", "chat_id": "398866372", "channel": "telegram"}),
        })
    );
}

#[test]
fn a_crm_that_answers_ok_leads_to_the_subscribed_node_and_the_run_ends() {
    let scenario = example();
    let (mut runner, _) = welcome_until_request(&scenario);
    runner
        .resume(Outcome {
            ok: true,
            answer: Some(json!({"status": "ok"})),
        })
        .unwrap();
    assert_eq!(
        text(runner.next(&scenario)),
        "You will get order updates here."
    );
    assert_eq!(runner.next(&scenario), Effect::Done);
    assert!(runner.is_finished());
    // An ended run keeps saying so.
    assert_eq!(runner.next(&scenario), Effect::Done);
}

#[test]
fn a_crm_that_fails_leads_to_the_sorry_node() {
    let scenario = example();
    let (mut runner, _) = welcome_until_request(&scenario);
    runner
        .resume(Outcome {
            ok: false,
            answer: None,
        })
        .unwrap();
    assert_eq!(
        text(runner.next(&scenario)),
        "We could not reach the shop; we keep trying."
    );
    assert_eq!(runner.next(&scenario), Effect::Done);
}

#[test]
fn a_run_waiting_for_its_request_survives_serialization_into_another_process() {
    let scenario = example();
    let (runner, _) = welcome_until_request(&scenario);
    let stored = serde_json::to_string(&runner).unwrap();

    // Another process: the scenario read again from its document, the runner from storage.
    let scenario = Scenario::from_json(scenario_json(&scenario).as_bytes()).unwrap();
    let mut runner: Runner = serde_json::from_str(&stored).unwrap();
    assert!(runner.is_waiting());
    assert_eq!(runner.vars()["clientExternalId"], "12345");
    runner
        .resume(Outcome {
            ok: true,
            answer: None,
        })
        .unwrap();
    assert_eq!(
        text(runner.next(&scenario)),
        "You will get order updates here."
    );
    assert_eq!(runner.next(&scenario), Effect::Done);
}

fn scenario_json(scenario: &Scenario) -> String {
    serde_json::to_string(scenario).unwrap()
}

#[test]
fn next_while_waiting_halts_without_losing_the_request_and_resume_needs_a_request() {
    let scenario = example();
    let mut runner = Runner::start(&scenario, None, start_vars()).unwrap();
    let unused = Outcome {
        ok: true,
        answer: None,
    };
    assert_eq!(runner.resume(unused.clone()), Err(NotWaiting));
    assert!(matches!(runner.next(&scenario), Effect::Message(_)));
    request(runner.next(&scenario));

    let reason = halted(runner.next(&scenario));
    assert!(reason.contains("request is in flight"), "{reason}");
    assert!(runner.is_waiting(), "the run still waits for its request");
    runner.resume(unused.clone()).unwrap();
    assert_eq!(
        text(runner.next(&scenario)),
        "You will get order updates here."
    );
    assert_eq!(runner.next(&scenario), Effect::Done);
    assert_eq!(runner.resume(unused), Err(NotWaiting));
    assert_eq!(
        runner.next(&scenario),
        Effect::Done,
        "a refused resume changes nothing"
    );
}

#[test]
fn call_node_order_shipped_tells_the_order_when_there_is_one() {
    let scenario = example();
    let mut with_order = start_vars();
    with_order.insert("order".into(), "A-1042".into());
    let mut runner = Runner::start(&scenario, Some("order_shipped"), with_order).unwrap();
    assert_eq!(text(runner.next(&scenario)), "Order A-1042 has shipped.");
    assert_eq!(runner.node(), "shipped");
    assert_eq!(runner.next(&scenario), Effect::Done);

    let mut runner = Runner::start(&scenario, Some("order_shipped"), start_vars()).unwrap();
    assert_eq!(
        text(runner.next(&scenario)),
        "You will get order updates here."
    );
    assert_eq!(runner.next(&scenario), Effect::Done);
}

#[test]
fn track_sets_a_variable_and_jumps() {
    let scenario = example();
    let mut runner = Runner::start(&scenario, Some("track"), start_vars()).unwrap();
    assert_eq!(
        text(runner.next(&scenario)),
        "You will get order updates here."
    );
    assert_eq!(runner.node(), "subscribed");
    assert_eq!(runner.vars()["asked"], "yes");
    assert_eq!(runner.next(&scenario), Effect::Done);
}

#[test]
fn starting_at_a_node_that_does_not_exist_is_refused() {
    let scenario = example();
    let err = Runner::start(&scenario, Some("nope"), Vars::new()).unwrap_err();
    assert_eq!(err, UnknownNode("nope".into()));
    assert_eq!(err.to_string(), r#"no node named "nope" in this scenario"#);
}

fn lookup() -> Scenario {
    scenario(json!({"start": "look", "nodes": {
        "look": [
            {"send_request": {"url": "https://shop.example/orders/{{ vars['order-id'] }}", "method": "GET",
                              "save": {"status": "/order/status", "total": "/order/total",
                                       "items": "/order/items", "missing": "/order/nope",
                                       "answer": "", "slash": "/a~1b"}},
             "ok": "found"},
            {"message": "Not found: {{ status }}"}],
        "found": [{"message": "{{ status }}, {{ total }}, {{ items }}"}]}}))
}

#[test]
fn save_sets_variables_from_a_json_answer() {
    let scenario = lookup();
    let mut runner = Runner::start(
        &scenario,
        None,
        vars(&[("order-id", "A-7"), ("missing", "kept")]),
    )
    .unwrap();
    let out = request(runner.next(&scenario));
    assert_eq!(out.kind, RequestKind::SendRequest);
    assert_eq!(out.method, Method::Get);
    assert_eq!(out.url, "https://shop.example/orders/A-7");
    assert_eq!(out.data, Value::Null, "no data, no body");

    let answer =
        json!({"order": {"status": "shipped", "total": 12.5, "items": [1, "two"]}, "a/b": true});
    runner
        .resume(Outcome {
            ok: true,
            answer: Some(answer.clone()),
        })
        .unwrap();
    assert_eq!(text(runner.next(&scenario)), r#"shipped, 12.5, [1,"two"]"#);
    let vars = runner.vars();
    assert_eq!(vars["status"], "shipped", "a JSON string as it is");
    assert_eq!(
        vars["items"], r#"[1,"two"]"#,
        "other JSON as its compact text"
    );
    assert_eq!(vars["slash"], "true");
    assert_eq!(
        vars["missing"], "kept",
        "a pointer that finds nothing sets nothing"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&vars["answer"]).unwrap(),
        answer
    );
}

#[test]
fn a_failed_request_saves_nothing_and_goes_on_with_the_next_step() {
    let scenario = lookup();
    let mut runner = Runner::start(&scenario, None, vars(&[("order-id", "A-7")])).unwrap();
    request(runner.next(&scenario));
    runner
        .resume(Outcome {
            ok: false,
            answer: Some(json!({"order": {"status": "error page"}})),
        })
        .unwrap();
    assert_eq!(text(runner.next(&scenario)), "Not found: ");
    assert!(!runner.vars().contains_key("status"));
}

#[test]
fn variables_with_quotes_newlines_and_braces_stay_inside_their_json_strings() {
    let scenario = scenario(json!({"start": "a", "nodes": {"a": [
        {"send_request": {"url": "https://crm.example/{{ id }}",
            "data": {"greeting": "Hi {{ name }}", "list": ["{{ name }}", {"deep": "{{ name }}"}],
                     "count": 3, "flag": true, "none": null, "{{ name }}": "keys are not templates"},
            "headers": {"X-Customer": "id {{ id }}"}}}]}}));
    let nasty = "Ann \"the\" {{ id }} {% raw %}\n\t}\\ ', \u{1F600}";
    let mut runner = Runner::start(&scenario, None, vars(&[("name", nasty), ("id", "7")])).unwrap();
    let out = request(runner.next(&scenario));
    assert_eq!(out.url, "https://crm.example/7");
    assert_eq!(out.headers, vec![("X-Customer".into(), "id 7".into())]);
    let expected = json!({"greeting": format!("Hi {nasty}"), "list": [nasty, {"deep": nasty}],
                          "count": 3, "flag": true, "none": null, "{{ name }}": "keys are not templates"});
    assert_eq!(out.data, expected);
    // And the body a server would send reads back as the same JSON.
    let body = serde_json::to_vec(&out.data).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), expected);
}

#[test]
fn a_header_template_renders() {
    let scenario = scenario(json!({"start": "a", "nodes": {"a": [
        {"send_me": {"url": "https://crm.example/hook", "headers": {"Authorization": "Bearer {{ crm_token }}"}}}]}}));
    let mut runner = Runner::start(&scenario, None, vars(&[("crm_token", "t0k")])).unwrap();
    let out = request(runner.next(&scenario));
    assert_eq!(
        out.headers,
        vec![("Authorization".into(), "Bearer t0k".into())]
    );
}

#[test]
fn a_line_break_smuggled_into_a_header_halts_the_run() {
    let scenario = scenario(json!({"start": "a", "nodes": {"a": [
        {"send_me": {"url": "https://crm.example/hook", "headers": {"X-Name": "{{ user_name }}"}}}]}}));
    let mut runner = Runner::start(
        &scenario,
        None,
        vars(&[("user_name", "Ann\r\nX-Admin: yes")]),
    )
    .unwrap();
    let reason = halted(runner.next(&scenario));
    assert_eq!(
        reason,
        r#"node "a", step 1, field "send_me.headers.X-Name": the header's value rendered with a line break"#
    );
    assert!(runner.is_finished());
}

#[test]
fn send_me_adds_chat_id_and_channel_to_object_data_only() {
    let scenario = scenario(json!({"start": "a", "nodes": {
        "a": [{"send_me": {"url": "https://crm.example/hook"}, "ok": "b"}],
        "b": [{"send_me": {"url": "https://crm.example/hook", "data": ["{{ chat_id }}"]}, "ok": "c"}],
        "c": [{"send_me": {"url": "https://crm.example/hook", "data": {"chat_id": "mine", "x": 1}}}]}}));
    let mut runner = Runner::start(&scenario, None, start_vars()).unwrap();
    let ok = Outcome {
        ok: true,
        answer: None,
    };
    assert_eq!(
        request(runner.next(&scenario)).data,
        json!({"chat_id": "398866372", "channel": "telegram"})
    );
    runner.resume(ok.clone()).unwrap();
    assert_eq!(request(runner.next(&scenario)).data, json!(["398866372"]));
    runner.resume(ok.clone()).unwrap();
    // botlink's own values win: the CRM trusts them to reach the person.
    assert_eq!(
        request(runner.next(&scenario)).data,
        json!({"chat_id": "398866372", "channel": "telegram", "x": 1})
    );
    runner.resume(ok).unwrap();
    assert_eq!(runner.next(&scenario), Effect::Done);
}

#[test]
fn a_goto_loop_halts_at_the_guard() {
    let scenario =
        scenario(json!({"start": "a", "nodes": {"a": [{"goto": "b"}], "b": [{"goto": "a"}]}}));
    let mut runner = Runner::start(&scenario, None, Vars::new()).unwrap();
    let reason = halted(runner.next(&scenario));
    assert!(reason.starts_with("loop: "), "{reason}");
    assert!(reason.contains("100 nodes"), "{reason}");
    assert!(runner.is_finished());
    assert_eq!(
        halted(runner.next(&scenario)),
        reason,
        "an ended run keeps its reason"
    );
}

#[test]
fn a_loop_that_sends_messages_is_cut_at_the_guard_too() {
    let scenario =
        scenario(json!({"start": "a", "nodes": {"a": [{"message": "again"}, {"goto": "a"}]}}));
    let mut runner = Runner::start(&scenario, None, Vars::new()).unwrap();
    let mut messages = 0;
    let reason = loop {
        match runner.next(&scenario) {
            Effect::Message(_) => messages += 1,
            Effect::Halted(reason) => break reason,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(messages, limits::NODE_ENTRIES);
    assert!(reason.starts_with("loop: "), "{reason}");
}

#[test]
fn a_request_loop_is_caught_on_resume() {
    let scenario = scenario(json!({"start": "a", "nodes": {
        "a": [{"send_request": {"url": "https://x.example/"}, "ok": "a", "not_ok": "a"}]}}));
    let mut runner = Runner::start(&scenario, None, Vars::new()).unwrap();
    let mut requests = 0;
    let reason = loop {
        match runner.next(&scenario) {
            Effect::Request(_) => {
                requests += 1;
                runner
                    .resume(Outcome {
                        ok: requests % 2 == 0,
                        answer: None,
                    })
                    .unwrap();
            }
            Effect::Halted(reason) => break reason,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(requests, limits::NODE_ENTRIES);
    assert!(reason.starts_with("loop: "), "{reason}");
}

#[test]
fn a_node_removed_while_a_request_was_in_flight_halts_the_run() {
    let scenario = example();
    let (mut runner, _) = welcome_until_request(&scenario);
    let mut changed = scenario.clone();
    changed.nodes.remove("subscribed");
    runner
        .resume(Outcome {
            ok: true,
            answer: None,
        })
        .unwrap();
    let reason = halted(runner.next(&changed));
    assert_eq!(
        reason,
        r#"node "subscribed" is no longer in the scenario (it changed during the run)"#
    );
}

#[test]
fn conditions_compare_text_and_an_unset_variable_as_empty() {
    let scenario = scenario(json!({"start": "a", "nodes": {
        "a": [{"if": {"var": "phone", "starts_with": "+7"}, "then": "ru"},
              {"if": {"var": "email", "matches": "^[^@]+@example\\.com$"}, "then": "staff"},
              {"if": {"var": "language", "exists": false}, "else": "known"},
              {"if": {"var": "language", "equals": ""}, "then": "unknown"},
              {"message": "unreachable"}],
        "ru": [{"message": "ru"}], "staff": [{"message": "staff"}],
        "unknown": [{"message": "unknown"}], "known": [{"message": "known"}]}}));
    let run = |pairs: &[(&str, &str)]| {
        let mut runner = Runner::start(&scenario, None, vars(pairs)).unwrap();
        text(runner.next(&scenario))
    };
    assert_eq!(run(&[("phone", "+79001234567")]), "ru");
    assert_eq!(
        run(&[("phone", "+1555"), ("email", "ann@example.com")]),
        "staff"
    );
    assert_eq!(run(&[("email", "ann@example.com.evil")]), "unknown");
    assert_eq!(run(&[("language", "")]), "known", "set, though empty");
    assert_eq!(run(&[("language", "en")]), "known");
}

#[test]
fn set_renders_every_value_against_the_variables_before_the_step() {
    let scenario = scenario(json!({"start": "a", "nodes": {"a": [
        {"set": {"a": "{{ b }}!", "b": "new", "greeting": "Hi {{ user_name | upper }}"}},
        {"message": "{{ a }} {{ b }} {{ greeting }}"}]}}));
    let mut runner =
        Runner::start(&scenario, None, vars(&[("b", "old"), ("user_name", "ann")])).unwrap();
    assert_eq!(text(runner.next(&scenario)), "old! new Hi ANN");
}

#[test]
fn a_template_that_fails_at_run_time_halts_with_its_place() {
    let scenario = scenario(json!({"start": "a", "nodes": {"a": [
        {"message": "fine"}, {"message": "{{ 1 // zero | int }}"}]}}));
    let mut runner = Runner::start(&scenario, None, vars(&[("zero", "0")])).unwrap();
    assert_eq!(text(runner.next(&scenario)), "fine");
    let reason = halted(runner.next(&scenario));
    assert!(
        reason.starts_with(r#"node "a", step 2, field "message": "#),
        "{reason}"
    );
}

#[test]
fn a_url_that_renders_to_something_else_than_http_halts() {
    let scenario = scenario(json!({"start": "a", "nodes": {"a": [
        {"message": "go", "buttons": [{"text": "open", "url": "{{ link }}"}]},
        {"send_request": {"url": "{{ hook }}"}}]}}));
    let mut runner = Runner::start(
        &scenario,
        None,
        vars(&[
            ("link", "javascript:alert(1)"),
            ("hook", "https://ok.example"),
        ]),
    )
    .unwrap();
    let reason = halted(runner.next(&scenario));
    assert_eq!(
        reason,
        r#"node "a", step 1, field "buttons[0].url": the URL must be http or https, not javascript"#
    );

    let mut runner = Runner::start(
        &scenario,
        None,
        vars(&[("link", "https://shop.example/a"), ("hook", "")]),
    )
    .unwrap();
    let Effect::Message(message) = runner.next(&scenario) else {
        panic!("expected the message")
    };
    assert_eq!(
        message.buttons[0].target,
        ButtonTarget::Url("https://shop.example/a".into())
    );
    let reason = halted(runner.next(&scenario));
    assert!(
        reason.starts_with(
            r#"node "a", step 2, field "send_request.url": not an absolute http(s) URL"#
        ),
        "{reason}"
    );
}

#[test]
fn messenger_tags_and_whatsapp_templates_pass_through_rendered() {
    let scenario = scenario(json!({"start": "a", "nodes": {"a": [
        {"message": "Order {{ order }} shipped", "tag": "POST_PURCHASE_UPDATE",
         "template": {"name": "order_shipped", "language": "en_US",
                      "components": [{"type": "body", "parameters": [{"type": "text", "text": "{{ order }}"}]}]}}]}}));
    let mut runner = Runner::start(&scenario, None, vars(&[("order", "A-1")])).unwrap();
    let Effect::Message(message) = runner.next(&scenario) else {
        panic!("expected the message")
    };
    assert_eq!(message.tag.as_deref(), Some("POST_PURCHASE_UPDATE"));
    let template = message.template.unwrap();
    assert_eq!(template.name, "order_shipped");
    assert_eq!(template.language, "en_US");
    assert_eq!(
        template.components.unwrap(),
        vec![json!({"type": "body", "parameters": [{"type": "text", "text": "A-1"}]})]
    );
}

#[test]
fn an_empty_node_ends_the_run_at_once() {
    let scenario = scenario(json!({"start": "a", "nodes": {"a": []}}));
    let mut runner = Runner::start(&scenario, None, Vars::new()).unwrap();
    assert_eq!(runner.next(&scenario), Effect::Done);
}
