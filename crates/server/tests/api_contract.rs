//! The API keeps its contract: the OpenAPI document describes what the server answers, each
//! role does only what it is documented to do, and every text field refuses what it cannot
//! hold with a 422 naming the field, the rule and the limit.

use botlink_server::domain::validate;
use botlink_testkit::{ADMIN_KEY, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn make_bot(s: &TestServer) -> String {
    s.telegram_bot().await
}

async fn make_link(s: &TestServer, bot: &str) -> String {
    let (st, link) = s
        .post(
            "/api/v1/links",
            ADMIN_KEY,
            json!({"bot_id": bot, "title": "Winter sale"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{link}");
    link["id"].as_str().unwrap().to_string()
}

async fn new_key(s: &TestServer, role: &str) -> (String, String) {
    let (st, k) = s
        .post("/api/v1/api_keys", ADMIN_KEY, json!({"role": role}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{k}");
    (
        k["key"].as_str().unwrap().to_string(),
        k["id"].as_str().unwrap().to_string(),
    )
}

/// The error's message, after checking the status and the code.
fn error_message(st: StatusCode, body: &Value, status: StatusCode, code: &str) -> String {
    assert_eq!(st, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"]["message"].as_str().unwrap().to_string()
}

fn openapi() -> Value {
    serde_json::to_value(botlink_server::api::openapi()).unwrap()
}

/// Follows `$ref`s of the document down to the schema itself.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

#[tokio::test]
async fn a_batch_answers_links_as_documented_and_a_wrong_field_is_named() {
    let s = TestServer::start().await;
    let bot = make_bot(&s).await;

    // The batch answers {"links": [...]}, and the document says so.
    let (st, many) = s
        .post(
            "/api/v1/links",
            ADMIN_KEY,
            json!({"links": [{"bot_id": bot}, {"bot_id": bot}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{many}");
    assert_eq!(many["links"].as_array().unwrap().len(), 2);
    let doc = openapi();
    let created = resolve(
        &doc,
        &doc["paths"]["/api/v1/links"]["post"]["responses"]["201"]["content"]["application/json"]["schema"],
    );
    let shapes: Vec<&Value> = created["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("201 is one of two shapes: {created}"))
        .iter()
        .map(|s| resolve(&doc, s))
        .collect();
    assert!(
        shapes
            .iter()
            .any(|s| s["properties"]["links"]["type"] == "array"),
        "the 201 documents the batch's {{links: [...]}}: {created}"
    );
    assert!(
        shapes
            .iter()
            .any(|s| s["properties"]["short_url"].is_object()),
        "the 201 documents a single LinkOut: {created}"
    );

    // A wrong shape names the field, in a batch and alone.
    for (body, field) in [
        (
            json!({"links": [{"bot_id": bot}, {"bot_id": bot, "title": 5}]}),
            "links[1].title",
        ),
        (json!({"links": [{"bot_id": bot, "titel": "x"}]}), "titel"),
        (json!({"links": "all of them"}), "links"),
        (json!({"bot_id": bot, "max_clicks": "ten"}), "max_clicks"),
        (json!({"bot_id": bot, "titel": "x"}), "titel"),
        (json!({"title": "x"}), "bot_id"),
    ] {
        let (st, err) = s.post("/api/v1/links", ADMIN_KEY, body.clone()).await;
        let m = error_message(st, &err, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
        assert!(m.contains(field), "{body} -> {m}");
        assert!(!m.contains("untagged"), "{body} -> {m}");
    }
    s.stop().await;
}

/// serde reads a struct from a JSON array too, field by field in order; the API takes objects
/// only, as documented.
#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_refused() {
    let s = TestServer::start().await;
    let bot = make_bot(&s).await;
    let link = make_link(&s, &bot).await;
    for (method, path, body) in [
        ("POST", "/api/v1/bots".to_string(), json!(["Shop 2"])),
        ("PATCH", format!("/api/v1/links/{link}"), json!([true])),
        (
            "PATCH",
            format!("/api/v1/links/{link}"),
            json!([null, null]),
        ),
        ("POST", "/api/v1/links".to_string(), json!([1, 2])),
        ("POST", "/api/v1/links".to_string(), json!("x")),
    ] {
        let (st, err) = s
            .call(
                method.parse().unwrap(),
                &path,
                Some(ADMIN_KEY),
                Some(body.clone()),
            )
            .await;
        let m = error_message(st, &err, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
        assert!(m.contains("JSON object"), "{method} {path} {body}: {m}");
    }
    let (_, bots) = s.get("/api/v1/bots", ADMIN_KEY).await;
    assert_eq!(bots["bots"].as_array().unwrap().len(), 1, "{bots}");
    let (_, got) = s.get(&format!("/api/v1/links/{link}"), ADMIN_KEY).await;
    assert_eq!(got["disabled"], false, "{got}");
    // Still 400 for what is not JSON at all, 422 for an object of the wrong shape.
    let resp = s
        .client
        .post(s.url("/api/v1/bots"))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json")
        .body("[1,")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[test]
fn every_operation_documents_its_errors() {
    let doc = openapi();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let mut expected = vec!["401", "403", "429", "503"];
            if op["requestBody"].is_object() {
                expected.extend(["400", "422"]);
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            if params.iter().any(|p| p["in"] == "query") {
                expected.push("422");
            }
            if params.iter().any(|p| p["in"] == "path") {
                expected.push("404");
            }
            if (path.as_str(), method.as_str()) == ("/api/v1/bots/{bot_id}", "patch") {
                // Renaming a bot to another bot's name.
                expected.push("409");
            }
            for status in expected {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} does not document {status}: {:?}",
                    responses.keys().collect::<Vec<_>>()
                );
            }
            // A rate-limited request and one the database could not serve (locked, or away)
            // are told when to come back.
            for status in ["429", "503"] {
                assert!(
                    responses[status]["headers"]["Retry-After"].is_object(),
                    "{method} {path}: {status} without Retry-After: {}",
                    responses[status]
                );
            }
            let unavailable = responses["503"]["description"].as_str().unwrap();
            assert!(
                unavailable.contains("database_busy")
                    && unavailable.contains("database_unreachable"),
                "{method} {path}: {unavailable}"
            );
        }
    }
}

#[test]
fn the_document_carries_the_limits_the_server_enforces() {
    let doc = openapi();
    let schemas = &doc["components"]["schemas"];
    for (schema, field, max) in [
        ("BotIn", "name", validate::NAME_MAX),
        ("BotPatchIn", "name", validate::NAME_MAX),
        ("ApiKeyIn", "name", validate::NAME_MAX),
        ("LinkIn", "title", validate::TITLE_MAX),
        ("LinkPatchIn", "title", validate::TITLE_MAX),
        ("LinkIn", "slug", 64),
        ("EntryPointIn", "key", validate::KEY_MAX),
        ("EntryPointIn", "default_field", validate::KEY_MAX),
        ("EntryPointIn", "node", validate::NODE_MAX),
        ("EntryPointPatchIn", "default_field", validate::KEY_MAX),
        ("EntryPointPatchIn", "node", validate::NODE_MAX),
        ("ChannelIn", "token", validate::SECRET_MAX),
        ("ChannelIn", "page_id", validate::SETTING_MAX),
        ("ChannelIn", "api_base_url", validate::URL_MAX),
        ("Utm", "campaign", validate::UTM_MAX),
        ("Payload", "text", validate::PAYLOAD_MAX),
    ] {
        let prop = &schemas[schema]["properties"][field];
        assert_eq!(
            prop["maxLength"],
            json!(max),
            "{schema}.{field} documents its limit: {prop}"
        );
    }
    for (schema, field, pattern) in [
        ("BotIn", "name", validate::NAME_TEXT),
        ("ApiKeyIn", "name", validate::NAME_TEXT),
        ("EntryPointIn", "key", validate::KEY_PATTERN),
        ("EntryPointIn", "default_field", validate::KEY_PATTERN),
        ("LinkIn", "title", validate::PLAIN_TEXT),
        ("EntryPointIn", "node", validate::PLAIN_TEXT),
        ("ChannelIn", "token", validate::PLAIN_TEXT),
        ("Utm", "source", validate::PLAIN_TEXT),
    ] {
        let prop = &schemas[schema]["properties"][field];
        assert_eq!(
            prop["pattern"],
            json!(pattern),
            "{schema}.{field} documents its rule: {prop}"
        );
    }
    let role = resolve(&doc, &schemas["ApiKeyIn"]["properties"]["role"]);
    assert_eq!(role["enum"], json!(["admin", "links", "notify"]), "{role}");
    let scheme = resolve(&doc, &schemas["LinkIn"]["properties"]["scheme"]);
    assert_eq!(
        scheme["enum"],
        json!(["stored", "json", "fields", "raw", "entry"]),
        "{scheme}"
    );
    let listed = &schemas["ApiKeyOut"]["properties"];
    assert!(
        listed["revoked"].is_object() && listed["revoked_at"].is_object(),
        "{listed}"
    );
}

#[tokio::test]
async fn a_links_key_creates_and_reads_links_but_cannot_change_or_delete_them() {
    let s = TestServer::start().await;
    let bot = make_bot(&s).await;
    let link = make_link(&s, &bot).await;
    let (links_key, _) = new_key(&s, "links").await;
    let path = format!("/api/v1/links/{link}");

    let (st, mine) = s
        .post("/api/v1/links", &links_key, json!({"bot_id": bot}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{mine}");
    let (st, _) = s.get(&path, &links_key).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.get(&format!("{path}/stats"), &links_key).await;
    assert_eq!(st, StatusCode::OK);

    let (st, err) = s.patch(&path, &links_key, json!({"disabled": true})).await;
    let m = error_message(st, &err, StatusCode::FORBIDDEN, "forbidden");
    assert!(m.contains("links role") && m.contains("admin"), "{m}");
    let (st, err) = s.delete(&path, &links_key).await;
    let m = error_message(st, &err, StatusCode::FORBIDDEN, "forbidden");
    assert!(m.contains("admin"), "{m}");
    // Not even its own link.
    let mine = format!("/api/v1/links/{}", mine["id"].as_str().unwrap());
    let (st, _) = s.delete(&mine, &links_key).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Nothing changed; the admin still can.
    let (_, got) = s.get(&path, ADMIN_KEY).await;
    assert_eq!(got["disabled"], false, "{got}");
    let (st, got) = s.patch(&path, ADMIN_KEY, json!({"disabled": true})).await;
    assert_eq!((st, &got["disabled"]), (StatusCode::OK, &json!(true)));
    let (st, _) = s.delete(&path, ADMIN_KEY).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    s.stop().await;
}

#[tokio::test]
async fn revoked_keys_are_marked_in_the_list() {
    let s = TestServer::start().await;
    let (_, kept) = new_key(&s, "links").await;
    let (revoked_key, revoked) = new_key(&s, "links").await;
    let (st, _) = s
        .delete(&format!("/api/v1/api_keys/{revoked}"), ADMIN_KEY)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s.get("/api/v1/links", &revoked_key).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    let (_, list) = s.get("/api/v1/api_keys", ADMIN_KEY).await;
    let find = |id: &str| {
        list["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .unwrap_or_else(|| panic!("{id} listed: {list}"))
            .clone()
    };
    let (k, r) = (find(&kept), find(&revoked));
    assert_eq!(
        (&k["revoked"], &k["revoked_at"]),
        (&json!(false), &Value::Null)
    );
    assert_eq!(r["revoked"], true, "{r}");
    assert!(
        r["revoked_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{r}"
    );
    s.stop().await;
}

#[tokio::test]
async fn patching_a_link_checks_what_creating_one_checks() {
    let s = TestServer::start().await;
    let bot = make_bot(&s).await;
    let link = make_link(&s, &bot).await;
    let path = format!("/api/v1/links/{link}");

    for (body, code, needle) in [
        (
            json!({"title": "x".repeat(5000)}),
            "invalid_title",
            "limit of 200",
        ),
        (json!({"title": "a\u{202E}b"}), "invalid_title", "U+202E"),
        (
            json!({"expires_at": "2020-01-01T00:00:00Z"}),
            "invalid_time",
            "past",
        ),
        (json!({"max_clicks": 0}), "invalid_max_clicks", "at least 1"),
    ] {
        let (st, err) = s.patch(&path, ADMIN_KEY, body.clone()).await;
        let m = error_message(st, &err, StatusCode::UNPROCESSABLE_ENTITY, code);
        assert!(m.contains(needle), "{body} -> {m}");
        // The same body is refused when creating, with the same code.
        let mut create = body.clone();
        create["bot_id"] = json!(bot);
        let (st, err) = s.post("/api/v1/links", ADMIN_KEY, create).await;
        error_message(st, &err, StatusCode::UNPROCESSABLE_ENTITY, code);
    }
    let (_, got) = s.get(&path, ADMIN_KEY).await;
    assert_eq!(
        (&got["title"], &got["expires_at"], &got["max_clicks"]),
        (&json!("Winter sale"), &Value::Null, &Value::Null),
        "nothing was written: {got}"
    );
    // What is allowed still is.
    let (st, got) = s
        .patch(
            &path,
            ADMIN_KEY,
            json!({"title": "Spring sale", "expires_at": "2999-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got["title"], "Spring sale");
    let (st, got) = s
        .patch(&path, ADMIN_KEY, json!({"title": null, "expires_at": null}))
        .await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(
        (&got["title"], &got["expires_at"]),
        (&Value::Null, &Value::Null)
    );
    s.stop().await;
}

#[tokio::test]
async fn text_fields_refuse_control_characters_direction_overrides_and_overlong_values() {
    let s = TestServer::start().await;
    let bot = make_bot(&s).await;
    let eps = format!("/api/v1/bots/{bot}/entry_points");
    let (st, body) = s
        .post(&eps, ADMIN_KEY, json!({"key": "sale", "node": "welcome"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let ep = format!("{eps}/sale");
    let bot_path = format!("/api/v1/bots/{bot}");
    let long = |n: usize| "a".repeat(n);
    let tg = |v: Value| json!({"name": "Shop 2", "channels": {"telegram": v}});

    // (method, path, body, code, what the message must name)
    let cases: Vec<(&str, &str, Value, &str, Vec<&str>)> = vec![
        (
            "POST",
            "/api/v1/bots",
            json!({"name": "Shop\u{0}"}),
            "invalid_name",
            vec!["name", "U+0000"],
        ),
        (
            "POST",
            "/api/v1/bots",
            json!({"name": "evil\u{202E}gpj.exe"}),
            "invalid_name",
            vec!["name", "U+202E"],
        ),
        (
            "POST",
            "/api/v1/bots",
            json!({"name": long(101)}),
            "invalid_name",
            vec!["name", "101", "100"],
        ),
        (
            "PATCH",
            &bot_path,
            json!({"name": "a\u{2067}b"}),
            "invalid_name",
            vec!["name", "U+2067"],
        ),
        (
            "POST",
            "/api/v1/bots",
            tg(json!({"username": "shop_bot", "token": long(5000)})),
            "invalid_channel_settings",
            vec!["channels.telegram.token", "4096"],
        ),
        (
            "POST",
            "/api/v1/bots",
            tg(json!({"username": "shop_bot", "token": "12:AB\r\nX-Evil: 1"})),
            "invalid_channel_settings",
            vec!["channels.telegram.token", "U+000D"],
        ),
        (
            "PATCH",
            &bot_path,
            json!({"channels": {"webchat": {"id": long(300)}}}),
            "invalid_channel_settings",
            vec!["channels.webchat.id", "256"],
        ),
        (
            "POST",
            "/api/v1/api_keys",
            json!({"role": "links", "name": "crm\u{7}"}),
            "invalid_name",
            vec!["name", "U+0007"],
        ),
        (
            "POST",
            "/api/v1/api_keys",
            json!({"role": "links", "name": long(101)}),
            "invalid_name",
            vec!["name", "100"],
        ),
        (
            "POST",
            &eps,
            json!({"key": "k1", "node": long(65)}),
            "invalid_node",
            vec!["node", "64"],
        ),
        (
            "POST",
            &eps,
            json!({"key": "k1", "node": "a\nb"}),
            "invalid_node",
            vec!["node", "U+000A"],
        ),
        (
            "POST",
            &eps,
            json!({"key": "k1", "default_field": "a--b"}),
            "invalid_entry_point",
            vec!["default_field", "--"],
        ),
        (
            "POST",
            &eps,
            json!({"key": "k1", "default_field": "a b"}),
            "invalid_entry_point",
            vec!["default_field", "[A-Za-z0-9_-]"],
        ),
        (
            "POST",
            &eps,
            json!({"key": "k1", "default_field": long(65)}),
            "invalid_entry_point",
            vec!["default_field", "64"],
        ),
        (
            "POST",
            &eps,
            json!({"key": "k1", "utm": {"source": "a\u{202A}"}}),
            "invalid_utm",
            vec!["utm.source", "U+202A"],
        ),
        (
            "PATCH",
            &ep,
            json!({"node": "a\u{0}"}),
            "invalid_node",
            vec!["node", "U+0000"],
        ),
        (
            "PATCH",
            &ep,
            json!({"default_field": "-x"}),
            "invalid_entry_point",
            vec!["default_field"],
        ),
        (
            "POST",
            "/api/v1/links",
            json!({"bot_id": bot, "title": "a\u{1b}[31m"}),
            "invalid_title",
            vec!["title", "U+001B"],
        ),
        (
            "POST",
            "/api/v1/links",
            json!({"bot_id": bot, "payload": {"external_id": long(2000)}}),
            "invalid_payload",
            vec!["payload.external_id", "1024"],
        ),
        (
            "POST",
            "/api/v1/links",
            json!({"links": [{"bot_id": bot}, {"bot_id": bot, "title": "\u{2066}x"}]}),
            "invalid_title",
            vec!["links[1]", "title", "U+2066"],
        ),
    ];
    for (method, path, body, code, names) in cases {
        let (st, err) = s
            .call(
                method.parse().unwrap(),
                path,
                Some(ADMIN_KEY),
                Some(body.clone()),
            )
            .await;
        let m = error_message(st, &err, StatusCode::UNPROCESSABLE_ENTITY, code);
        for n in names {
            assert!(m.contains(n), "{method} {path} {body}: {m:?} names {n:?}");
        }
    }

    // Nothing of it was written.
    let (_, bots) = s.get("/api/v1/bots", ADMIN_KEY).await;
    assert_eq!(bots["bots"].as_array().unwrap().len(), 1, "{bots}");
    assert_eq!(bots["bots"][0]["name"], "Shop");
    let (_, list) = s.get(&eps, ADMIN_KEY).await;
    assert_eq!(list["entry_points"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["entry_points"][0]["node"], "welcome");
    let (_, links) = s.get("/api/v1/links", ADMIN_KEY).await;
    assert_eq!(links["links"], json!([]));

    // Plain text from any script, and a message text over several lines, still pass.
    let (st, body) = s
        .post(
            "/api/v1/links",
            ADMIN_KEY,
            json!({"bot_id": bot, "title": "Зимняя распродажа 🎁 — 50%",
                   "payload": {"text": "Hello!\nI'd like a quote."}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    s.stop().await;
}
