//! The Pusher API listener (`--pusher-api-addr`) end to end: the real binary, a real Redis, and
//! the signature-checking Pusher stand-in as upstream; requests signed in the test as the
//! official SDKs sign them (the SDKs themselves are driven in tests/pusher_sdks.rs).

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::pusher_api::{ApiGate, encode, unix_now};
use support::{APP_ID, Behaviour, KEY, SECRET, free_port};

const EVENTS: &str = "/apps/4242/events";
const BATCH: &str = "/apps/4242/batch_events";

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn a_trigger_reaches_pusher_only_for_its_occupied_channels() {
    let gate = ApiGate::start(&[]).await;
    gate.occupy(&["job-a", "job-c"]).await;

    let body = r#"{"name":"progress","data":"{\"pct\":42}","channels":["job-a","job-b","job-c","job-d"],"socket_id":"123.456"}"#;
    let (status, answer) = gate.send("POST", EVENTS, body).await;
    assert_eq!((status, json_of(&answer)), (200, json!({})));
    let calls = gate.stub.calls();
    assert_eq!(calls.len(), 1, "one upstream request: {calls:?}");
    assert!(calls[0].signature_valid, "newly signed: {calls:?}");
    assert_eq!(calls[0].path, "/apps/4242/events");
    assert_eq!(
        calls[0].raw,
        r#"{"name":"progress","data":"{\"pct\":42}","channels":["job-a","job-c"],"socket_id":"123.456"}"#
    );

    // Nobody watches either channel: answered at once, nothing sent.
    let body = r#"{"name":"progress","data":"{}","channels":["job-b","job-d"]}"#;
    let (status, answer) = gate.send("POST", EVENTS, body).await;
    assert_eq!((status, json_of(&answer)), (200, json!({})));
    assert_eq!(gate.stub.calls().len(), 1, "no call for vacant channels");

    let family = "occupancy_publish_channels_total";
    let via = ("via", "pusher_api");
    assert_eq!(
        gate.metric(family, &[("outcome", "skipped"), via]).await,
        4.0
    );
    assert_eq!(
        gate.metric(family, &[("outcome", "published"), via]).await,
        2.0
    );
    let requests = "occupancy_pusher_api_requests_total";
    let events = ("endpoint", "events");
    assert_eq!(
        gate.metric(requests, &[events, ("outcome", "forwarded")])
            .await,
        1.0
    );
    assert_eq!(
        gate.metric(requests, &[events, ("outcome", "dropped")])
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_single_channel_as_php_sends_it_passes_unchanged_or_not_at_all() {
    let gate = ApiGate::start(&[]).await;
    gate.occupy(&["room-1"]).await;
    let body = r#"{"name":"msg","data":"hello","channel":"room-1"}"#;
    let (status, answer) = gate.send("POST", EVENTS, body).await;
    assert_eq!((status, answer.as_str()), (200, "{}"));
    let calls = gate.stub.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].raw, body,
        "every channel passes: the body is sent as received"
    );

    let (status, _) = gate
        .send(
            "POST",
            EVENTS,
            r#"{"name":"msg","data":"hello","channel":"room-2"}"#,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(gate.stub.calls().len(), 1);
}

#[tokio::test]
async fn info_answers_cover_every_requested_channel() {
    let gate = ApiGate::start(&[]).await;
    gate.occupy(&["a", "presence-b"]).await;
    let body = json!({
        "name": "e", "data": "x", "info": "subscription_count,user_count",
        "channels": ["a", "presence-b", "c", "presence-d"],
    })
    .to_string();
    let (status, answer) = gate.send("POST", EVENTS, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        json_of(&answer),
        json!({"channels": {
            "a": {"subscription_count": 1},
            "presence-b": {"subscription_count": 1, "user_count": 1},
            "c": {"subscription_count": 0},
            "presence-d": {"subscription_count": 0, "user_count": 0},
        }})
    );
    assert_eq!(
        gate.stub.calls()[0].body["channels"],
        json!(["a", "presence-b"])
    );

    // None occupied: still an entry for each.
    let body = json!({"name": "e", "data": "x", "info": "subscription_count", "channels": ["c"]});
    let (status, answer) = gate.send("POST", EVENTS, &body.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(
        json_of(&answer),
        json!({"channels": {"c": {"subscription_count": 0}}})
    );
    assert_eq!(gate.stub.calls().len(), 1);
}

#[tokio::test]
async fn a_batch_of_twelve_goes_up_in_chunks_of_ten_and_answers_in_order() {
    let gate = ApiGate::start(&[]).await;
    // c0..c10 occupied, c11 vacant: 11 events forwarded, as 10 and 1.
    let occupied: Vec<String> = (0..11).map(|i| format!("c{i}")).collect();
    gate.occupy(&occupied.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let batch: Vec<Value> = (0..12)
        .map(|i| json!({"channel": format!("c{i}"), "name": "e", "data": format!("d{i}"), "info": "subscription_count"}))
        .collect();
    let (status, answer) = gate
        .send("POST", BATCH, &json!({ "batch": batch }).to_string())
        .await;
    assert_eq!(status, 200, "{answer}");
    let answer = json_of(&answer);
    let entries = answer["batch"].as_array().expect("a batch answer");
    assert_eq!(entries.len(), 12);
    for (i, entry) in entries.iter().enumerate() {
        let expected = if i == 11 { 0 } else { 1 };
        assert_eq!(entry, &json!({"subscription_count": expected}), "entry {i}");
    }
    let calls = gate.stub.calls();
    assert_eq!(calls.len(), 2, "11 events in chunks of 10: {calls:?}");
    let sent: Vec<Vec<String>> = calls
        .iter()
        .map(|c| {
            assert!(c.signature_valid);
            assert_eq!(c.path, "/apps/4242/batch_events");
            c.body["batch"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["data"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect();
    assert_eq!(
        sent[0],
        (0..10).map(|i| format!("d{i}")).collect::<Vec<_>>()
    );
    assert_eq!(sent[1], ["d10"]);

    // All vacant, no info: `{}` and nothing sent.
    let batch = json!({"batch": [{"channel": "nobody", "name": "e", "data": "x"}]});
    let (status, answer) = gate.send("POST", BATCH, &batch.to_string()).await;
    assert_eq!((status, json_of(&answer)), (200, json!({})));
    assert_eq!(gate.stub.calls().len(), 2);
    assert_eq!(
        gate.metric(
            "occupancy_publish_channels_total",
            &[("outcome", "skipped"), ("via", "pusher_api")]
        )
        .await,
        2.0
    );
}

#[tokio::test]
async fn encrypted_data_reaches_pusher_byte_for_byte() {
    let gate = ApiGate::start(&[]).await;
    gate.occupy(&["private-encrypted-x"]).await;
    // Escapes a re-encoder would change: \/, \u00e9, \u003c.
    let data = r#""{\"nonce\":\"4x\/y+Q==\",\"ciphertext\":\"\u00e9\u003cb\u003e+/=\"}""#;
    let body = format!(
        r#"{{"name":"secret","data":{data},"channels":["private-encrypted-x","private-encrypted-y"]}}"#
    );
    let (status, _) = gate.send("POST", EVENTS, &body).await;
    assert_eq!(status, 200);
    let calls = gate.stub.calls();
    assert_eq!(
        calls[0].raw,
        format!(r#"{{"name":"secret","data":{data},"channels":["private-encrypted-x"]}}"#)
    );
}

#[tokio::test]
async fn cache_and_server_to_user_channels_always_pass() {
    let gate = ApiGate::start(&[]).await;
    let always = [
        "cache-a",
        "private-cache-b",
        "private-encrypted-cache-c",
        "presence-cache-d",
        "#server-to-user-7",
    ];
    let mut channels = always.to_vec();
    channels.push("vacant");
    let body = json!({"name": "e", "data": "x", "channels": channels}).to_string();
    let (status, answer) = gate.send("POST", EVENTS, &body).await;
    assert_eq!(status, 200, "{answer}");
    let calls = gate.stub.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].body["channels"], json!(always));
}

#[tokio::test]
async fn queries_and_other_calls_are_forwarded_with_their_parameters() {
    let gate = ApiGate::start(&[]).await;
    gate.stub
        .set_listing(&["presence-room", "other"], Duration::ZERO);
    let params = [("filter_by_prefix", "presence-"), ("info", "user_count")];
    let (status, answer) = gate
        .send_with(
            "GET",
            "/apps/4242/channels",
            &params,
            "",
            KEY,
            SECRET,
            unix_now(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(json_of(&answer), json!({"channels": {"presence-room": {}}}));
    let queries = gate.stub.queries();
    assert!(queries[0].signature_valid);
    assert_eq!(
        queries[0].params,
        [
            ("filter_by_prefix".to_owned(), "presence-".to_owned()),
            ("info".to_owned(), "user_count".to_owned())
        ]
    );

    // Python sends body_md5 (of nothing) on GET.
    let md5_of_nothing = ("body_md5", "d41d8cd98f00b204e9800998ecf8427e");
    let (status, answer) = gate
        .send_with(
            "GET",
            "/apps/4242/channels/other",
            &[md5_of_nothing],
            "",
            KEY,
            SECRET,
            unix_now(),
        )
        .await;
    assert_eq!((status, json_of(&answer)), (200, json!({"occupied": true})));
    let (status, answer) = gate
        .send("GET", "/apps/4242/channels/presence-room/users", "")
        .await;
    assert_eq!((status, json_of(&answer)), (200, json!({"users": []})));
    let (status, _) = gate
        .send("POST", "/apps/4242/users/7/terminate_connections", "{}")
        .await;
    assert_eq!(status, 200);
    // Python's terminate_connections leaves out /apps/{id}: its key names the app.
    let (status, _) = gate
        .send("POST", "/users/8/terminate_connections", "{}")
        .await;
    assert_eq!(status, 200);
    let queries = gate.stub.queries();
    assert_eq!(queries.len(), 5);
    assert_eq!(queries[4].path, "/apps/4242/users/8/terminate_connections");
    assert!(queries.iter().all(|q| q.signature_valid), "{queries:?}");
    assert_eq!(queries[3].path, "/apps/4242/users/7/terminate_connections");
    assert_eq!(
        gate.metric(
            "occupancy_pusher_api_requests_total",
            &[("endpoint", "channels"), ("outcome", "forwarded")]
        )
        .await,
        3.0
    );
}

#[tokio::test]
async fn refusals_say_why_and_send_nothing() {
    let gate = ApiGate::start(&["--pusher-extra-keys", "old-key:old-secret"]).await;
    gate.occupy(&["busy"]).await;
    let body = r#"{"name":"e","data":"x","channels":["busy"]}"#;
    let now = unix_now();
    let signed = |key: &str, secret: &str, ts: u64| {
        occupancy::wire::sign_api_request_with(
            Vec::new(),
            key,
            secret,
            "POST",
            EVENTS,
            body.as_bytes(),
            ts,
        )
    };

    let cases: Vec<(&str, u16, &str, String, String)> = vec![
        (
            "wrong secret",
            401,
            "Invalid signature",
            encode(&signed(KEY, "not-the-secret", now)),
            body.into(),
        ),
        (
            "wrong key",
            401,
            "Unknown auth_key",
            encode(&signed("nobody", SECRET, now)),
            body.into(),
        ),
        (
            "expired",
            401,
            "Timestamp expired",
            encode(&signed(KEY, SECRET, now - 601)),
            body.into(),
        ),
        (
            "body_md5 mismatch",
            401,
            "body_md5",
            encode(&signed(KEY, SECRET, now)),
            body.replace("\"x\"", "\"y\""),
        ),
    ];
    for (what, status, reason, query, body) in cases {
        let (got, answer) = gate.send_raw("POST", EVENTS, &query, &body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert!(answer.contains(reason), "{what}: {answer}");
        assert!(!answer.contains('\n'), "{what}: one line: {answer}");
    }

    let channels: Vec<String> = (0..101).map(|i| format!("busy{i}")).collect();
    let too_many = json!({"name": "e", "data": "x", "channels": channels}).to_string();
    let big = json!({"name": "e", "data": "x".repeat(11 * 1024), "channels": ["busy"]}).to_string();
    for (what, path, body, status, reason) in [
        ("101 channels", EVENTS, too_many.as_str(), 400, "channels"),
        ("11 KB of data", EVENTS, big.as_str(), 413, "10240 bytes"),
        ("bad JSON", EVENTS, "{\"name\":", 400, "JSON"),
        (
            "bad channel",
            EVENTS,
            r#"{"name":"e","data":"x","channels":["a b"]}"#,
            400,
            "channel",
        ),
        ("unknown app", "/apps/999/events", body, 404, "Unknown app"),
        ("batch of nothing", BATCH, r#"{"batch":[]}"#, 400, "batch"),
    ] {
        let (got, answer) = gate.send("POST", path, body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert!(answer.contains(reason), "{what}: {answer}");
    }
    let (got, _) = gate.send("GET", EVENTS, "").await;
    assert_eq!(got, 405);
    assert!(
        gate.stub.calls().is_empty(),
        "nothing forwarded: {:?}",
        gate.stub.calls()
    );
    assert!(gate.stub.queries().is_empty());
    assert_eq!(
        gate.metric(
            "occupancy_pusher_api_requests_total",
            &[("outcome", "unauthorized")]
        )
        .await,
        4.0
    );

    // An extra key (rotation) signs as well as the main one; upstream gets the app's own key.
    let (status, answer) = gate
        .send_with("POST", EVENTS, &[], body, "old-key", "old-secret", now)
        .await;
    assert_eq!(status, 200, "{answer}");
    let calls = gate.stub.calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].signature_valid);
}

#[tokio::test]
async fn pushers_failures_pass_through() {
    let gate = ApiGate::start(&[]).await;
    gate.occupy(&["busy"]).await;
    let body = r#"{"name":"e","data":"x","channels":["busy","idle"]}"#;
    for (status, text) in [
        (403, "Application disabled"),
        (
            413,
            "The data content of this event exceeds the allowed maximum (10240 bytes)",
        ),
        (429, "Too many requests"),
        (500, "Internal error"),
    ] {
        gate.stub.set_behaviour(Behaviour {
            status: axum::http::StatusCode::from_u16(status).unwrap(),
            body: text.into(),
            ..Behaviour::default()
        });
        let (got, answer) = gate.send("POST", EVENTS, body).await;
        assert_eq!((got, answer.as_str()), (status, text));
        let batch = r#"{"batch":[{"channel":"busy","name":"e","data":"x"}]}"#;
        let (got, answer) = gate.send("POST", BATCH, batch).await;
        assert_eq!((got, answer.as_str()), (status, text), "batch");
    }
    assert_eq!(
        gate.metric(
            "occupancy_pusher_api_requests_total",
            &[("outcome", "upstream_error")]
        )
        .await,
        8.0
    );
}

#[tokio::test]
async fn an_unreachable_pusher_is_a_502_and_vacant_triggers_still_succeed() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let gate = ApiGate::start(&["--pusher-api-url", &closed]).await;
    gate.occupy(&["busy"]).await;
    let (status, answer) = gate
        .send(
            "POST",
            EVENTS,
            r#"{"name":"e","data":"x","channels":["busy"]}"#,
        )
        .await;
    assert_eq!(status, 502, "{answer}");
    assert!(answer.contains("could not be reached"), "{answer}");
    let (status, _) = gate
        .send(
            "POST",
            EVENTS,
            r#"{"name":"e","data":"x","channels":["idle"]}"#,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        gate.metric(
            "occupancy_pusher_api_requests_total",
            &[("outcome", "unreachable")]
        )
        .await,
        1.0
    );
}

/// pusher-http-go v5 (`client.go`, `encoder.go`, `request_url.go`): the body is
/// `json.Marshal` of a map (keys sorted, `<>&` escaped as `\u003c`...), the query is
/// `url.Values.Encode()` (sorted, `auth_signature` among them) then unescaped, and the host is
/// `Host` ("host:port") with `Secure` false for http. Its SDK is not served by the module proxy
/// here, so the request is built as its source builds it.
#[tokio::test]
async fn a_request_built_as_the_go_sdk_builds_it_is_accepted() {
    use md5::Digest;
    let gate = ApiGate::start(&[]).await;
    gate.occupy(&["presence-go"]).await;

    let go_request = |method: &str, path: &str, body: &[u8], extra: &[(&str, &str)]| {
        let mut params: Vec<(String, String)> = vec![
            ("auth_key".into(), KEY.into()),
            ("auth_timestamp".into(), unix_now().to_string()),
            ("auth_version".into(), "1.0".into()),
        ];
        if !body.is_empty() {
            params.push(("body_md5".into(), hex::encode(md5::Md5::digest(body))));
        }
        params.extend(extra.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        params.sort();
        let unescaped = |params: &[(String, String)]| {
            params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        };
        let to_sign = format!("{method}\n{path}\n{}", unescaped(&params));
        params.push((
            "auth_signature".into(),
            occupancy::wire::sign_api_request(SECRET, &to_sign),
        ));
        params.sort();
        unescaped(&params)
    };

    // TriggerMultiWithParams(["presence-go", "go-idle"], "ev", "<b>&", {Info: "user_count"}).
    let body = br#"{"channels":["presence-go","go-idle"],"data":"\u003cb\u003e\u0026","info":"user_count","name":"ev"}"#;
    let query = go_request("POST", EVENTS, body, &[]);
    let (status, answer) = gate
        .send_raw("POST", EVENTS, &query, std::str::from_utf8(body).unwrap())
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        json_of(&answer),
        json!({"channels": {"presence-go": {"user_count": 1}, "go-idle": {}}})
    );
    let calls = gate.stub.calls();
    assert_eq!(
        calls[0].raw,
        r#"{"channels":["presence-go"],"data":"\u003cb\u003e\u0026","info":"user_count","name":"ev"}"#
    );

    // Channels(ChannelsParams{FilterByPrefix: "presence-", Info: "user_count"}): no body.
    let path = format!("/apps/{APP_ID}/channels");
    let query = go_request(
        "GET",
        &path,
        b"",
        &[("filter_by_prefix", "presence-"), ("info", "user_count")],
    );
    let (status, answer) = gate.send_raw("GET", &path, &query, "").await;
    assert_eq!(status, 200, "{answer}");
    assert!(gate.stub.queries()[0].signature_valid);
}

#[tokio::test]
async fn the_listener_serves_tls_when_given_a_certificate() {
    let pki = support::TestPki::create();
    let gate = ApiGate::start_with(&[], Some(&pki)).await;
    gate.occupy(&["busy"]).await;
    let (status, answer) = gate
        .send(
            "POST",
            EVENTS,
            r#"{"name":"e","data":"x","channels":["busy","idle"]}"#,
        )
        .await;
    assert_eq!((status, answer.as_str()), (200, "{}"));
    assert_eq!(gate.stub.calls()[0].body["channels"], json!(["busy"]));
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/apps/4242/channels", gate.api))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    // A head over the 16 KiB bound is answered 431 over TLS as over plain HTTP.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca_cert).unwrap()).unwrap();
    let tls = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let oversized = tls
        .get(format!(
            "https://localhost:{}/apps/4242/channels",
            gate.api.port()
        ))
        .header("x-filler", "y".repeat(20 * 1024))
        .send()
        .await
        .expect("an answer to an oversized head");
    assert_eq!(oversized.status().as_u16(), 431);
}

/// With the store down, the listener follows `--publish-when-store-down` as `PublishIfOccupied`
/// does: `all` sends to every channel, `none` answers 503 and sends nothing.
#[tokio::test]
async fn a_store_outage_follows_the_publish_when_store_down_policy() {
    for policy in ["all", "none"] {
        let mut gate = ApiGate::start(&[
            "--redis-timeout",
            "300ms",
            "--publish-when-store-down",
            policy,
        ])
        .await;
        gate.occupy(&["before"]).await;
        gate.redis.stop();
        let body = r#"{"name":"e","data":"x","channels":["before","never"]}"#;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, answer) = gate.send("POST", EVENTS, body).await;
            let all_sent = gate
                .stub
                .calls()
                .last()
                .is_some_and(|c| c.body["channels"] == json!(["before", "never"]));
            match policy {
                "all" if status == 200 && all_sent => break,
                "none" if status == 503 => {
                    assert!(answer.contains("store"), "{answer}");
                    break;
                }
                _ => {}
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{policy}: still {status} {answer}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn a_pusher_slower_than_the_publish_timeout_is_a_504() {
    let gate = ApiGate::start(&["--pusher-timeout", "300ms"]).await;
    gate.occupy(&["busy"]).await;
    gate.stub.set_behaviour(Behaviour {
        delay: Duration::from_secs(2),
        ..Behaviour::default()
    });
    let (status, answer) = gate
        .send(
            "POST",
            EVENTS,
            r#"{"name":"e","data":"x","channels":["busy"]}"#,
        )
        .await;
    assert_eq!(status, 504, "{answer}");
    assert!(answer.contains("did not answer within"), "{answer}");
    assert_eq!(
        gate.metric(
            "occupancy_pusher_api_requests_total",
            &[("endpoint", "events"), ("outcome", "timeout")]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_body_over_the_listeners_limit_is_refused_while_reading() {
    // --max-event-bytes 1000: the limit is 100 × 2 × 1000 + 256 KiB = 462,144 bytes.
    let gate = ApiGate::start(&["--max-event-bytes", "1000"]).await;
    gate.occupy(&["busy"]).await;
    let huge = json!({"name": "e", "data": "x".repeat(500_000), "channels": ["busy"]}).to_string();
    // The 413 is sent while the client is still writing, and the connection closed: depending on
    // timing the client reads the answer or sees the connection reset. Either way nothing is
    // forwarded (checked below).
    if let Some((status, answer)) = gate.send_refusable("POST", EVENTS, &huge).await {
        assert_eq!(status, 413, "{answer}");
        assert!(answer.contains("size limit"), "{answer}");
    }
    // Under the body limit but over --max-event-bytes: the event's own limit.
    let big = json!({"name": "e", "data": "x".repeat(1001), "channels": ["busy"]}).to_string();
    let (status, answer) = gate.send("POST", EVENTS, &big).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("(1000 bytes)"), "{answer}");
    assert!(gate.stub.calls().is_empty());
}

/// The stand-in behind every test checks signatures as Pusher does, so a test that finds its
/// calls signed proves something: a wrong secret, a changed body, an old timestamp, another
/// app and a `body_md5` on a GET (which the gate never sends) are each refused with 401.
#[tokio::test]
async fn the_pusher_stand_in_refuses_what_pusher_refuses() {
    let stub = support::PusherStub::start().await;
    let http = reqwest::Client::new();
    let body = r#"{"name":"e","data":"x","channels":["c"]}"#;
    let events = format!("/apps/{APP_ID}/events");
    let channels = format!("/apps/{APP_ID}/channels");
    let sign = |method: &str, path: &str, secret: &str, signed_body: &str, at: u64| {
        encode(&occupancy::wire::sign_api_request_with(
            Vec::new(),
            KEY,
            secret,
            method,
            path,
            signed_body.as_bytes(),
            at,
        ))
    };
    // Signed over the MD5 of nothing, as the Python SDK signs a GET: Pusher takes it, the
    // stand-in that checks the gate's own requests does not.
    let md5_of_nothing = encode(&occupancy::wire::sign_api_request_with(
        vec![("body_md5".into(), "d41d8cd98f00b204e9800998ecf8427e".into())],
        KEY,
        SECRET,
        "GET",
        &channels,
        b"",
        unix_now(),
    ));
    let cases = [
        (
            "signed",
            "POST",
            events.clone(),
            sign("POST", &events, SECRET, body, unix_now()),
            body,
            200,
        ),
        (
            "wrong secret",
            "POST",
            events.clone(),
            sign("POST", &events, "other", body, unix_now()),
            body,
            401,
        ),
        (
            "changed body",
            "POST",
            events.clone(),
            sign("POST", &events, SECRET, body, unix_now()),
            "{}",
            401,
        ),
        (
            "old timestamp",
            "POST",
            events.clone(),
            sign("POST", &events, SECRET, body, unix_now() - 700),
            body,
            401,
        ),
        (
            "another app",
            "POST",
            "/apps/1/events".to_owned(),
            sign("POST", "/apps/1/events", SECRET, body, unix_now()),
            body,
            401,
        ),
        (
            "listing",
            "GET",
            channels.clone(),
            sign("GET", &channels, SECRET, "", unix_now()),
            "",
            200,
        ),
        (
            "listing with body_md5",
            "GET",
            channels.clone(),
            md5_of_nothing,
            "",
            401,
        ),
    ];
    for (case, method, path, query, sent, expected) in cases {
        let mut request = http.request(
            method.parse().unwrap(),
            format!("{}{path}?{query}", stub.url()),
        );
        if !sent.is_empty() {
            request = request.body(sent);
        }
        let status = request.send().await.expect("the stand-in answers").status();
        assert_eq!(status.as_u16(), expected, "{case}");
    }
}
