//! The guarded outbound client and the messenger senders over real sockets: servers on
//! 127.0.0.1:0 stand in for CRMs and platforms, and nothing leaves the machine.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use botlink_server::outbound::channels::{
    Answer, Button, ButtonTarget, ChannelCreds, ChannelSender, CustomCreds, LineCreds, MaxCreds,
    MetaCreds, OutMessage, RegistrationOutcome, SendOutcome, TelegramCreds, ViberCreds,
    WhatsappCreds, custom,
};
use botlink_server::outbound::{
    Outbound, OutboundAllow, OutboundConfig, OutboundError, OutboundRequest, RefuseReason,
    TimeoutStage,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

const NOW_MS: i64 = 1_763_700_000_000;

fn outbound(allow: &str) -> Outbound {
    Outbound::new(OutboundConfig {
        allow: allow.parse().unwrap(),
        ..OutboundConfig::default()
    })
    .unwrap()
}

fn get(url: &str) -> OutboundRequest {
    OutboundRequest {
        method: Method::GET,
        url: Url::parse(url).unwrap(),
        headers: HeaderMap::new(),
        body: None,
    }
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 server that counts connections and answers each request with canned bytes.

#[derive(Clone, Copy)]
enum Reply {
    Bytes(&'static str),
    /// Reads the request and never answers.
    Hang,
}

struct RawServer {
    port: u16,
    /// The request line of every request, in order.
    requests: Arc<Mutex<Vec<String>>>,
    /// Raw request heads (request line and headers).
    heads: Arc<Mutex<Vec<String>>>,
    connections: Arc<Mutex<usize>>,
}

async fn raw_server(reply: Reply) -> RawServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(Mutex::new(0));
    let (r, h, c) = (requests.clone(), heads.clone(), connections.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            *c.lock().unwrap() += 1;
            let (r, h) = (r.clone(), h.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                r.lock()
                    .unwrap()
                    .push(head.lines().next().unwrap_or_default().to_string());
                h.lock().unwrap().push(head);
                match reply {
                    Reply::Bytes(bytes) => {
                        let _ = stream.write_all(bytes.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    }
                    Reply::Hang => std::future::pending::<()>().await,
                }
            });
        }
    });
    RawServer {
        port,
        requests,
        heads,
        connections,
    }
}

impl RawServer {
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

const OK: Reply =
    Reply::Bytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");

#[tokio::test]
async fn loopback_is_refused_without_an_allow_list_and_no_connection_is_made() {
    let server = raw_server(OK).await;
    let url = format!("http://127.0.0.1:{}/first", server.port);
    let e = outbound("").send(get(&url)).await.unwrap_err();
    let OutboundError::Refused { refusal, .. } = &e else {
        panic!("expected a refusal, got {e:?}");
    };
    assert_eq!(refusal.addr.to_string(), "127.0.0.1");
    assert_eq!(refusal.reason, RefuseReason::Loopback);
    assert_eq!(
        e.to_string(),
        format!(
            "refused 127.0.0.1 (loopback) for http://127.0.0.1:{}: allow it with --outbound-allow 127.0.0.0/8",
            server.port
        )
    );

    // Allowed, the same server is reached; the refused attempt never opened a connection.
    let second = format!("http://127.0.0.1:{}/second", server.port);
    let answer = outbound("127.0.0.0/8").send(get(&second)).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, b"ok");
    assert_eq!(server.requests(), ["GET /second HTTP/1.1"]);
    assert_eq!(server.connections(), 1);
    let head = server.heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        head.contains(&format!(
            "user-agent: botlink/{}\r\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{head}"
    );
}

#[tokio::test]
async fn ipv6_and_numeric_spellings_of_loopback_are_refused() {
    let server = raw_server(OK).await;
    let allowing_nothing = outbound("");
    for url in [
        format!("http://[::ffff:127.0.0.1]:{}/", server.port),
        format!("http://[::ffff:7f00:1]:{}/", server.port),
        format!("http://[::1]:{}/", server.port),
        format!("http://2130706433:{}/", server.port),
        format!("http://0x7f.1:{}/", server.port),
        format!("http://127.1:{}/", server.port),
    ] {
        let e = allowing_nothing.send(get(&url)).await.unwrap_err();
        assert!(
            matches!(&e, OutboundError::Refused { refusal, .. } if refusal.reason == RefuseReason::Loopback),
            "{url}: {e:?}"
        );
    }
    // The IPv4 allow-list does not open IPv6 loopback, only the IPv4 forms.
    let e = outbound("127.0.0.0/8")
        .send(get(&format!("http://[::1]:{}/", server.port)))
        .await
        .unwrap_err();
    assert!(matches!(e, OutboundError::Refused { .. }), "{e:?}");
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn a_name_is_checked_on_the_address_it_resolves_to() {
    let server = raw_server(OK).await;
    let url = format!("http://localhost:{}/named", server.port);
    let e = outbound("").send(get(&url)).await.unwrap_err();
    let OutboundError::Refused { refusal, target } = &e else {
        panic!("expected a refusal, got {e:?}");
    };
    assert_eq!(refusal.reason, RefuseReason::Loopback);
    assert_eq!(target, &format!("http://localhost:{}", server.port));
    assert_eq!(server.connections(), 0);

    // With 127.0.0.0/8 allowed, the resolver keeps 127.0.0.1 (and drops ::1 if the name has it).
    let answer = outbound("127.0.0.0/8").send(get(&url)).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(server.requests(), ["GET /named HTTP/1.1"]);
}

#[tokio::test]
async fn a_redirect_is_the_answer_and_is_not_followed() {
    let server = raw_server(Reply::Bytes(
        "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ))
    .await;
    let url = format!("http://127.0.0.1:{}/start", server.port);
    let answer = outbound("127.0.0.0/8").send(get(&url)).await.unwrap();
    assert_eq!(answer.status, StatusCode::FOUND);
    assert_eq!(answer.headers["location"], "/elsewhere");
    assert_eq!(server.requests(), ["GET /start HTTP/1.1"]);
}

#[tokio::test]
async fn an_answer_past_the_cap_is_refused() {
    let capped = Outbound::new(OutboundConfig {
        allow: "127.0.0.0/8".parse().unwrap(),
        max_response_bytes: 16,
        ..OutboundConfig::default()
    })
    .unwrap();
    // Declared too large.
    let declared = raw_server(Reply::Bytes(
        "HTTP/1.1 200 OK\r\nContent-Length: 17\r\nConnection: close\r\n\r\n01234567890123456",
    ))
    .await;
    let e = capped
        .send(get(&format!("http://127.0.0.1:{}/", declared.port)))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        OutboundError::TooLarge {
            target: format!("http://127.0.0.1:{}", declared.port),
            limit: 16
        }
    );
    // Chunked, with no length announced: cut while reading.
    let chunked = raw_server(Reply::Bytes(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\na\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
    ))
    .await;
    let e = capped
        .send(get(&format!("http://127.0.0.1:{}/", chunked.port)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, OutboundError::TooLarge { limit: 16, .. }),
        "{e:?}"
    );
    // At the cap exactly, the body is read whole.
    let exact = raw_server(Reply::Bytes(
        "HTTP/1.1 200 OK\r\nContent-Length: 16\r\nConnection: close\r\n\r\n0123456789012345",
    ))
    .await;
    let answer = capped
        .send(get(&format!("http://127.0.0.1:{}/", exact.port)))
        .await
        .unwrap();
    assert_eq!(answer.body, b"0123456789012345");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = raw_server(Reply::Hang).await;
    let impatient = Outbound::new(OutboundConfig {
        allow: "127.0.0.0/8".parse().unwrap(),
        timeout: Duration::from_millis(300),
        ..OutboundConfig::default()
    })
    .unwrap();
    let e = impatient
        .send(get(&format!("http://127.0.0.1:{}/slow", server.port)))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        OutboundError::Timeout {
            target: format!("http://127.0.0.1:{}", server.port),
            stage: TimeoutStage::Total,
            limit: Duration::from_millis(300),
        }
    );
    assert_eq!(server.requests(), ["GET /slow HTTP/1.1"]);
}

#[tokio::test]
async fn errors_name_the_origin_never_the_path_or_query() {
    let e = outbound("")
        .send(get(
            "http://10.0.0.5:8080/bot123456:SECRET-TOKEN/sendMessage?access_token=SECRET",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "refused 10.0.0.5 (private network) for http://10.0.0.5:8080: allow it with --outbound-allow 10.0.0.0/8"
    );
    assert!(!format!("{e:?}").contains("SECRET"));

    // Nothing listens on a port just released: a connection error, named by origin.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let e = outbound("127.0.0.0/8")
        .send(get(&format!(
            "http://127.0.0.1:{port}/botSECRET/x?t=SECRET"
        )))
        .await
        .unwrap_err();
    assert!(matches!(e, OutboundError::Connect { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("could not connect to http://127.0.0.1:{port}: ")),
        "{e}"
    );
    assert!(!e.to_string().contains("SECRET"), "{e}");

    let e = outbound("")
        .send(get("ftp://files.example.com/x"))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid URL: scheme \"ftp\" is not allowed: http or https only"
    );
}

#[test]
fn the_allow_list_value_is_parsed_with_clear_errors() {
    let allow = OutboundAllow::parse("127.0.0.0/8,10.1.0.0/16").unwrap();
    assert_eq!(allow.ranges().len(), 2);
    let e = "10.0.0.0/8,nonsense".parse::<OutboundAllow>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "--outbound-allow: \"nonsense\" is not an address or a CIDR range; write CIDR ranges separated by commas, e.g. 127.0.0.0/8,10.1.0.0/16"
    );
}

// ---------------------------------------------------------------------------------------------
// A platform stand-in: records every request and answers from a queue.

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }
}

type Canned = (u16, Vec<(&'static str, &'static str)>, Value);

#[derive(Clone, Default)]
struct Platform {
    seen: Arc<Mutex<Vec<Seen>>>,
    answers: Arc<Mutex<VecDeque<Canned>>>,
}

async fn answer(
    State(platform): State<Platform>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    platform.seen.lock().unwrap().push(Seen {
        method,
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body: body.to_vec(),
    });
    let (status, headers, body) = platform
        .answers
        .lock()
        .unwrap()
        .pop_front()
        .expect("a canned answer for every request");
    let mut response = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// Starts a stand-in answering `answers` in order; returns its origin.
async fn platform(answers: Vec<Canned>) -> (String, Platform) {
    let state = Platform {
        answers: Arc::new(Mutex::new(answers.into())),
        ..Platform::default()
    };
    let app = axum::Router::new()
        .fallback(answer)
        .with_state(state.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, state)
}

impl Platform {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn message(chat_id: &str) -> OutMessage {
    OutMessage {
        id: "0195f3c2-7a8b-7c3d-9e4f-a1b2c3d4e5f6".into(),
        chat_id: chat_id.into(),
        text: "Your order has shipped".into(),
        buttons: vec![
            Button {
                text: "Track".into(),
                target: ButtonTarget::Url("https://shop.example/track/42".into()),
            },
            Button {
                text: "Help".into(),
                target: ButtonTarget::Node("help".into()),
            },
        ],
        tag: None,
        template: None,
    }
}

/// Sends `msg` three times through a stand-in giving `answers`; returns the outcomes and what
/// the stand-in saw.
async fn send_three(
    creds: ChannelCreds,
    msg: &OutMessage,
    answers: Vec<Canned>,
) -> (Vec<SendOutcome>, Vec<Seen>) {
    let (base, platform) = platform(answers).await;
    let sender = ChannelSender::new(creds, Some(base));
    let out = outbound("127.0.0.0/8");
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(sender.send(&out, msg, NOW_MS).await);
    }
    (outcomes, platform.seen())
}

#[tokio::test]
async fn telegram_send_message_end_to_end() {
    let token = "123456:ABC-def_ghi";
    let (outcomes, seen) = send_three(
        ChannelCreds::Telegram(TelegramCreds {
            token: token.into(),
        }),
        &message("398866372"),
        vec![
            (200, vec![], json!({"ok": true, "result": {"message_id": 77, "chat": {"id": 398866372}, "date": 1763700000, "text": "Your order has shipped"}})),
            (429, vec![("retry-after", "5")], json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 5", "parameters": {"retry_after": 5}})),
            (403, vec![], json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"})),
        ],
    )
    .await;
    assert_eq!(
        outcomes,
        [
            SendOutcome::Sent {
                message_id: Some("77".into())
            },
            SendOutcome::RetryAfter(Duration::from_secs(5)),
            SendOutcome::Blocked {
                reason: "blocked_by_user",
                detail: "Forbidden: bot was blocked by the user".into()
            },
        ]
    );
    let first = &seen[0];
    assert_eq!(first.method, Method::POST);
    assert_eq!(first.path, format!("/bot{token}/sendMessage"));
    assert_eq!(first.header("content-type"), "application/json");
    assert_eq!(
        first.json(),
        json!({
            "chat_id": "398866372",
            "text": "Your order has shipped",
            "reply_markup": {"inline_keyboard": [
                [{"text": "Track", "url": "https://shop.example/track/42"}],
                [{"text": "Help", "callback_data": "n:help"}],
            ]},
        })
    );
}

#[tokio::test]
async fn viber_send_message_end_to_end() {
    let (outcomes, seen) = send_three(
        ChannelCreds::Viber(ViberCreds {
            token: "445da6az1s345z78-dazcczb2542zv51a".into(),
            sender_name: "Shop".into(),
        }),
        &message("01234567890A="),
        vec![
            (200, vec![], json!({"status": 0, "status_message": "ok", "message_token": 5741311803571721087u64, "chat_hostname": "SN-CHAT-05_"})),
            (200, vec![], json!({"status": 12, "status_message": "Too many requests", "message_token": 1234567890, "chat_hostname": "SN-CHAT-0x_"})),
            (200, vec![], json!({"status": 6, "status_message": "notSubscribed"})),
        ],
    )
    .await;
    assert_eq!(
        outcomes,
        [
            SendOutcome::Sent {
                message_id: Some("5741311803571721087".into())
            },
            SendOutcome::RetryAfter(Duration::from_secs(3600)),
            SendOutcome::Blocked {
                reason: "not_subscribed",
                detail: "notSubscribed".into()
            },
        ]
    );
    let first = &seen[0];
    assert_eq!(first.path, "/pa/send_message");
    assert_eq!(
        first.header("x-viber-auth-token"),
        "445da6az1s345z78-dazcczb2542zv51a"
    );
    let body = first.json();
    assert_eq!(body["receiver"], "01234567890A=");
    assert_eq!(body["sender"], json!({"name": "Shop"}));
    assert_eq!(body["type"], "text");
    assert_eq!(
        body["keyboard"]["Buttons"],
        json!([
            {"ActionType": "open-url", "ActionBody": "https://shop.example/track/42", "Text": "Track"},
            {"ActionType": "reply", "ActionBody": "n:help", "Text": "Help"},
        ])
    );
}

#[tokio::test]
async fn messenger_send_message_end_to_end() {
    let mut tagged = message("6543210987654321");
    tagged.tag = Some("ACCOUNT_UPDATE".into());
    let (outcomes, seen) = send_three(
        ChannelCreds::Messenger(MetaCreds {
            page_access_token: "EAAG-page-token".into(),
        }),
        &tagged,
        vec![
            (200, vec![], json!({"recipient_id": "6543210987654321", "message_id": "m_AG5Hz2U"})),
            (400, vec![("retry-after", "60")], json!({"error": {"message": "(#613) Calls to this API have exceeded the rate limit.", "type": "OAuthException", "code": 613, "fbtrace_id": "A1"}})),
            (400, vec![], json!({"error": {"message": "(#10) This message is sent outside of allowed window.", "type": "OAuthException", "code": 10, "error_subcode": 2018278, "fbtrace_id": "A2"}})),
        ],
    )
    .await;
    assert_eq!(
        outcomes,
        [
            SendOutcome::Sent {
                message_id: Some("m_AG5Hz2U".into())
            },
            SendOutcome::RetryAfter(Duration::from_secs(60)),
            SendOutcome::OutsideWindow {
                detail: "(#10) This message is sent outside of allowed window.".into()
            },
        ]
    );
    let first = &seen[0];
    assert_eq!(first.path, "/v21.0/me/messages");
    assert_eq!(first.query.as_deref(), Some("access_token=EAAG-page-token"));
    let body = first.json();
    assert_eq!(body["recipient"], json!({"id": "6543210987654321"}));
    assert_eq!(body["messaging_type"], "MESSAGE_TAG");
    assert_eq!(body["tag"], "ACCOUNT_UPDATE");
    assert_eq!(
        body["message"]["attachment"]["payload"]["template_type"],
        "button"
    );
    assert_eq!(
        body["message"]["attachment"]["payload"]["buttons"][1],
        json!({"type": "postback", "title": "Help", "payload": "n:help"})
    );
}

#[tokio::test]
async fn instagram_uses_the_same_send_api() {
    let mut plain = message("17841400000000000");
    plain.buttons.clear();
    let (outcomes, seen) = send_three(
        ChannelCreds::Instagram(MetaCreds {
            page_access_token: "EAAG-ig".into(),
        }),
        &plain,
        vec![
            (200, vec![], json!({"recipient_id": "17841400000000000", "message_id": "aWdfZAG"})),
            (400, vec![], json!({"error": {"message": "(#551) This person isn't available right now.", "type": "OAuthException", "code": 551, "error_subcode": 1545041, "fbtrace_id": "A3"}})),
            (500, vec![], json!({"error": {"message": "(#1200) Temporary send message failure. Please try again later.", "type": "OAuthException", "code": 1200, "fbtrace_id": "A4"}})),
        ],
    )
    .await;
    assert!(matches!(outcomes[0], SendOutcome::Sent { .. }));
    assert!(matches!(
        outcomes[1],
        SendOutcome::Blocked {
            reason: "user_unavailable",
            ..
        }
    ));
    assert!(matches!(
        outcomes[2],
        SendOutcome::Transient {
            reason: "temporary_failure",
            ..
        }
    ));
    assert_eq!(seen[0].path, "/v21.0/me/messages");
    assert_eq!(
        seen[0].json(),
        json!({
            "recipient": {"id": "17841400000000000"},
            "messaging_type": "RESPONSE",
            "message": {"text": "Your order has shipped"},
        })
    );
}

#[tokio::test]
async fn whatsapp_send_message_end_to_end() {
    let mut msg = message("16505551234");
    msg.buttons = vec![Button {
        text: "Help".into(),
        target: ButtonTarget::Node("help".into()),
    }];
    let (outcomes, seen) = send_three(
        ChannelCreds::Whatsapp(WhatsappCreds {
            access_token: "EAAJ-system-user".into(),
            phone_number_id: "106540352242922".into(),
        }),
        &msg,
        vec![
            (200, vec![], json!({"messaging_product": "whatsapp", "contacts": [{"input": "16505551234", "wa_id": "16505551234"}], "messages": [{"id": "wamid.HBgL"}]})),
            (400, vec![], json!({"error": {"message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429, "error_data": {"messaging_product": "whatsapp", "details": "Cloud API message throughput has been reached."}, "fbtrace_id": "B1"}})),
            (400, vec![], json!({"error": {"message": "(#131047) Re-engagement message", "type": "OAuthException", "code": 131047, "error_data": {"messaging_product": "whatsapp", "details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}, "fbtrace_id": "B2"}})),
        ],
    )
    .await;
    assert_eq!(
        outcomes[0],
        SendOutcome::Sent {
            message_id: Some("wamid.HBgL".into())
        }
    );
    assert_eq!(
        outcomes[1],
        SendOutcome::RetryAfter(Duration::from_secs(30))
    );
    assert!(matches!(outcomes[2], SendOutcome::OutsideWindow { .. }));
    let first = &seen[0];
    assert_eq!(first.path, "/v21.0/106540352242922/messages");
    assert_eq!(first.header("authorization"), "Bearer EAAJ-system-user");
    assert_eq!(
        first.json(),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "16505551234",
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "Your order has shipped"},
                "action": {"buttons": [{"type": "reply", "reply": {"id": "n:help", "title": "Help"}}]},
            },
        })
    );
}

#[tokio::test]
async fn line_push_end_to_end() {
    let (outcomes, seen) = send_three(
        ChannelCreds::Line(LineCreds {
            channel_access_token: "line-channel-token".into(),
        }),
        &message("U4af4980629a7f5c1cdb3e1e3e2a1e0c5"),
        vec![
            (200, vec![], json!({"sentMessages": [{"id": "461230966842064897", "quoteToken": "IStG5h1Tz7b"}]})),
            (429, vec![("retry-after", "7")], json!({"message": "The API rate limit has been exceeded. Try again later."})),
            (401, vec![], json!({"message": "Authentication failed due to the following reason: invalid token. Confirm that the access token in the authorization header is valid."})),
        ],
    )
    .await;
    assert_eq!(
        outcomes[0],
        SendOutcome::Sent {
            message_id: Some("461230966842064897".into())
        }
    );
    assert_eq!(outcomes[1], SendOutcome::RetryAfter(Duration::from_secs(7)));
    assert!(matches!(
        outcomes[2],
        SendOutcome::Failed {
            reason: "unauthorized",
            ..
        }
    ));
    let first = &seen[0];
    assert_eq!(first.path, "/v2/bot/message/push");
    assert_eq!(first.header("authorization"), "Bearer line-channel-token");
    assert_eq!(
        first.header("x-line-retry-key"),
        "0195f3c2-7a8b-7c3d-9e4f-a1b2c3d4e5f6"
    );
    let body = first.json();
    assert_eq!(body["to"], "U4af4980629a7f5c1cdb3e1e3e2a1e0c5");
    assert_eq!(body["messages"][0]["template"]["type"], "buttons");
    assert_eq!(
        body["messages"][0]["template"]["actions"],
        json!([
            {"type": "uri", "label": "Track", "uri": "https://shop.example/track/42"},
            {"type": "postback", "label": "Help", "data": "n:help", "displayText": "Help"},
        ])
    );
}

#[tokio::test]
async fn max_send_message_end_to_end() {
    let (outcomes, seen) = send_three(
        ChannelCreds::Max(MaxCreds {
            token: "max-bot-token".into(),
        }),
        &message("555"),
        vec![
            (200, vec![], json!({"message": {"recipient": {"chat_id": 555, "chat_type": "dialog"}, "timestamp": 1763700000000u64, "body": {"mid": "mid.00000000000001", "seq": 1, "text": "Your order has shipped"}}})),
            (429, vec![], json!({"code": "too.many.requests", "message": "Too many requests"})),
            (403, vec![], json!({"code": "chat.denied", "message": "chat.denied"})),
        ],
    )
    .await;
    assert_eq!(
        outcomes[0],
        SendOutcome::Sent {
            message_id: Some("mid.00000000000001".into())
        }
    );
    assert_eq!(
        outcomes[1],
        SendOutcome::RetryAfter(Duration::from_secs(30))
    );
    assert!(matches!(
        outcomes[2],
        SendOutcome::Blocked {
            reason: "forbidden",
            ..
        }
    ));
    let first = &seen[0];
    assert_eq!(first.path, "/messages");
    assert_eq!(first.query.as_deref(), Some("chat_id=555"));
    assert_eq!(first.header("authorization"), "max-bot-token");
    assert_eq!(
        first.json()["attachments"][0]["payload"]["buttons"],
        json!([
            [{"type": "link", "text": "Track", "url": "https://shop.example/track/42"}],
            [{"type": "callback", "text": "Help", "payload": "n:help"}],
        ])
    );
}

#[tokio::test]
async fn custom_channel_posts_a_signed_message() {
    let (base, platform) = platform(vec![
        (200, vec![], json!({"message_id": "crm-1"})),
        (503, vec![], json!({"error": "maintenance"})),
        (410, vec![], json!({"error": "gone"})),
    ])
    .await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let sender = ChannelSender::new(
        ChannelCreds::Custom(CustomCreds {
            url: format!("{base}/botlink/messages?tenant=7"),
            webhook_secret: secret.into(),
        }),
        None,
    );
    let out = outbound("127.0.0.0/8");
    let msg = message("c-42");
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(sender.send(&out, &msg, NOW_MS).await);
    }
    assert_eq!(
        outcomes[0],
        SendOutcome::Sent {
            message_id: Some("crm-1".into())
        }
    );
    assert!(matches!(
        outcomes[1],
        SendOutcome::Transient {
            reason: "server_error",
            ..
        }
    ));
    assert!(matches!(
        outcomes[2],
        SendOutcome::Failed {
            reason: "bad_request",
            ..
        }
    ));
    let seen = platform.seen();
    let first = &seen[0];
    assert_eq!(first.path, "/botlink/messages");
    assert_eq!(first.query.as_deref(), Some("tenant=7"));
    assert_eq!(first.header("webhook-id"), msg.id);
    assert_eq!(first.header("webhook-timestamp"), "1763700000");
    // The receiver's check: the signature over the exact bytes that arrived.
    assert_eq!(
        first.header("webhook-signature"),
        custom::standard_webhooks_sign(secret, &msg.id, 1_763_700_000, &first.body)
    );
    assert_eq!(
        first.json(),
        json!({
            "id": msg.id,
            "chat_id": "c-42",
            "text": "Your order has shipped",
            "buttons": [
                {"text": "Track", "url": "https://shop.example/track/42"},
                {"text": "Help", "node": "help"},
            ],
        })
    );
    // Retries keep the id, so the receiver can drop repeats.
    assert!(seen.iter().all(|s| s.header("webhook-id") == msg.id));
}

#[tokio::test]
async fn a_channel_on_a_private_address_is_refused_unless_allowed() {
    let (base, platform) = platform(vec![]).await;
    let sender = ChannelSender::new(
        ChannelCreds::Custom(CustomCreds {
            url: format!("{base}/hook"),
            webhook_secret: "s".into(),
        }),
        None,
    );
    let outcome = sender.send(&outbound(""), &message("c-1"), NOW_MS).await;
    let SendOutcome::Failed { reason, detail } = outcome else {
        panic!("expected a refusal, got {outcome:?}");
    };
    assert_eq!(reason, "refused_address");
    assert!(
        detail.starts_with("refused 127.0.0.1 (loopback)"),
        "{detail}"
    );
    assert!(platform.seen().is_empty());

    // The same holds for a platform's API base pointed at a private address.
    let telegram = ChannelSender::new(
        ChannelCreds::Telegram(TelegramCreds {
            token: "1:SECRET".into(),
        }),
        Some(base),
    );
    let outcome = telegram.send(&outbound(""), &message("1"), NOW_MS).await;
    assert!(
        matches!(&outcome, SendOutcome::Failed { reason: "refused_address", detail } if !detail.contains("SECRET")),
        "{outcome:?}"
    );
    assert!(platform.seen().is_empty());
}

#[tokio::test]
async fn webhooks_are_registered_where_the_platform_has_an_api() {
    let webhook = "https://botlink.example.com/webhooks/telegram/b1";
    let (base, platform) = platform(vec![
        (200, vec![], json!({"ok": true, "result": true, "description": "Webhook was set"})),
        (200, vec![], json!({"status": 0, "status_message": "ok", "event_types": ["subscribed", "unsubscribed", "conversation_started"]})),
        (200, vec![], json!({"success": true})),
        (401, vec![], json!({"ok": false, "error_code": 401, "description": "Unauthorized"})),
    ])
    .await;
    let out = outbound("127.0.0.0/8");
    let senders = [
        ChannelCreds::Telegram(TelegramCreds {
            token: "123:abc".into(),
        }),
        ChannelCreds::Viber(ViberCreds {
            token: "viber-token".into(),
            sender_name: "Shop".into(),
        }),
        ChannelCreds::Max(MaxCreds {
            token: "max-token".into(),
        }),
        ChannelCreds::Telegram(TelegramCreds {
            token: "123:wrong".into(),
        }),
    ];
    let mut outcomes = Vec::new();
    for creds in senders {
        let sender = ChannelSender::new(creds, Some(base.clone()));
        outcomes.push(
            sender
                .register_webhook(&out, webhook, "hook_secret-1", NOW_MS)
                .await,
        );
    }
    assert!(
        outcomes[..3]
            .iter()
            .all(|o| *o == RegistrationOutcome::Registered),
        "{outcomes:?}"
    );
    assert!(matches!(
        &outcomes[3],
        RegistrationOutcome::NotRegistered(SendOutcome::Failed {
            reason: "unauthorized",
            ..
        })
    ));
    let seen = platform.seen();
    assert_eq!(seen[0].path, "/bot123:abc/setWebhook");
    assert_eq!(
        seen[0].json(),
        json!({"url": webhook, "secret_token": "hook_secret-1", "allowed_updates": ["message", "callback_query", "my_chat_member"]})
    );
    assert_eq!(seen[1].path, "/pa/set_webhook");
    assert_eq!(seen[1].header("x-viber-auth-token"), "viber-token");
    assert_eq!(
        seen[1].json()["event_types"],
        json!(["conversation_started", "subscribed", "unsubscribed"])
    );
    assert_eq!(seen[2].path, "/subscriptions");
    assert_eq!(seen[2].header("authorization"), "max-token");
    assert_eq!(seen[2].json()["secret"], "hook_secret-1");

    // LINE, WhatsApp and Meta are set up in their consoles: nothing is sent.
    let line = ChannelSender::new(
        ChannelCreds::Line(LineCreds {
            channel_access_token: "t".into(),
        }),
        Some(base),
    );
    let outcome = line
        .register_webhook(
            &out,
            "https://botlink.example.com/webhooks/line/b2",
            "s",
            NOW_MS,
        )
        .await;
    let RegistrationOutcome::Manual {
        console,
        webhook_url,
    } = outcome
    else {
        panic!("expected a manual registration, got {outcome:?}");
    };
    assert!(
        console.starts_with("the LINE Developers Console"),
        "{console}"
    );
    assert_eq!(webhook_url, "https://botlink.example.com/webhooks/line/b2");
    assert_eq!(platform.seen().len(), 4);
}

#[test]
fn classifiers_read_an_answer_without_any_network() {
    // The pure classifiers take the same answers the senders get.
    let answer = Answer::new(
        403,
        br#"{"ok":false,"error_code":403,"description":"Forbidden: user is deactivated"}"#,
    );
    assert_eq!(
        ChannelSender::new(
            ChannelCreds::Telegram(TelegramCreds { token: "t".into() }),
            None
        )
        .classify(&answer),
        SendOutcome::Blocked {
            reason: "user_deactivated",
            detail: "Forbidden: user is deactivated".into()
        }
    );
}
