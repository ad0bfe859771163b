//! End-to-end behaviour of the gate, against the real binary, a real `redis-server` (or the
//! in-memory store: every scenario runs on both) and the signature-checking Pusher stand-in.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use occupancy::proto::occupancy_client::OccupancyClient;
use occupancy::proto::{IsOccupiedRequest, PublishIfOccupiedRequest};
use serde_json::json;
use support::{
    Behaviour, KEY, Occupancy, PusherStub, RedisServer, SECRET, StoreKind, post_raw, post_signed,
    webhook_body,
};
use tonic::Code;
use tonic::transport::Channel;

struct Env {
    redis: Option<RedisServer>,
    stub: PusherStub,
    service: Occupancy,
    gate: OccupancyClient<Channel>,
}

impl Env {
    async fn start(kind: StoreKind, extra: &[&str]) -> Self {
        let stub = PusherStub::start().await;
        let redis = (kind == StoreKind::Redis).then(RedisServer::start);
        let mut args = Vec::new();
        if !extra.contains(&"--pusher-api-url") {
            args.extend(["--pusher-api-url".to_owned(), stub.url()]);
        }
        if let Some(redis) = &redis {
            args.extend(["--redis-url".to_owned(), redis.url()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let service = Occupancy::start(&args);
        let gate = OccupancyClient::connect(service.grpc_url())
            .await
            .expect("connect to the gate");
        Self {
            redis,
            stub,
            service,
            gate,
        }
    }

    async fn webhook(&self, events: &[(&str, &str)]) -> StatusCode {
        let (status, body) = self.service.send_webhook(events).await;
        assert!(body.is_object(), "webhook answers JSON: {body}");
        status
    }

    async fn occupied(&self, channel: &str) -> bool {
        self.gate
            .clone()
            .is_occupied(IsOccupiedRequest {
                channel: channel.into(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("IsOccupied({channel}) failed: {s:?}"))
            .into_inner()
            .occupied
    }

    async fn publish(
        &self,
        channels: &[&str],
        event: &str,
        data: &str,
        socket_id: &str,
    ) -> Result<(Vec<String>, Vec<String>), tonic::Status> {
        self.gate
            .clone()
            .publish_if_occupied(PublishIfOccupiedRequest {
                channels: channels.iter().map(|c| (*c).to_owned()).collect(),
                event: event.into(),
                data: data.into(),
                socket_id: socket_id.into(),
                ..Default::default()
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                (r.published, r.skipped)
            })
    }

    /// What the store holds, seen from outside the service: through Redis for the Redis store
    /// (as encoders calling SISMEMBER see it), through the gate otherwise.
    async fn snapshot(&self, channels: &[&str]) -> Vec<bool> {
        let mut out = Vec::new();
        for channel in channels {
            out.push(match &self.redis {
                Some(redis) => redis
                    .members("pusher:channels")
                    .await
                    .contains(&(*channel).to_owned()),
                None => self.occupied(channel).await,
            });
        }
        out
    }
}

use support::both_stores::on_both_stores;

on_both_stores!(
    occupied_channel_is_published_once_and_vacated_one_is_not,
    mixed_publish_calls_pusher_once_for_the_occupied_channels,
    a_batch_is_applied_whole_and_other_events_are_ignored,
    bad_webhooks_are_answered_and_change_nothing,
    bad_grpc_requests_are_invalid_argument_naming_the_field,
    pusher_failures_map_to_grpc_statuses_with_the_reason,
    health_is_serving_and_sigterm_exits_zero,
    both_keys_are_accepted_while_rotating,
);

async fn occupied_channel_is_published_once_and_vacated_one_is_not(kind: StoreKind) {
    let env = Env::start(kind, &[]).await;
    assert!(!env.occupied("private-job-1").await);

    assert_eq!(
        env.webhook(&[("channel_occupied", "private-job-1")]).await,
        StatusCode::OK
    );
    assert!(env.occupied("private-job-1").await);
    let (published, skipped) = env
        .publish(&["private-job-1"], "progress", r#"{"pct":42}"#, "123.456")
        .await
        .expect("publish");
    assert_eq!(
        (published, skipped),
        (vec!["private-job-1".to_owned()], vec![])
    );
    let calls = env.stub.calls();
    assert_eq!(calls.len(), 1, "exactly one Pusher call: {calls:?}");
    assert!(calls[0].signature_valid);
    assert_eq!(calls[0].path, format!("/apps/{}/events", support::APP_ID));
    assert_eq!(
        calls[0].body,
        json!({"name": "progress", "data": "{\"pct\":42}", "channels": ["private-job-1"], "socket_id": "123.456"})
    );

    assert_eq!(
        env.webhook(&[("channel_vacated", "private-job-1")]).await,
        StatusCode::OK
    );
    assert!(!env.occupied("private-job-1").await);
    let (published, skipped) = env
        .publish(&["private-job-1"], "progress", "{}", "")
        .await
        .expect("publish");
    assert_eq!(
        (published, skipped),
        (vec![], vec!["private-job-1".to_owned()])
    );
    assert_eq!(env.stub.calls().len(), 1, "no call for a vacant channel");

    // Duplicate deliveries (Pusher delivers at least once) are harmless.
    for _ in 0..2 {
        assert_eq!(
            env.webhook(&[("channel_vacated", "private-job-1")]).await,
            StatusCode::OK
        );
    }
    assert!(!env.occupied("private-job-1").await);

    if let Some(redis) = &env.redis {
        // Encoders that read Redis directly see the same set.
        assert_eq!(
            env.webhook(&[("channel_occupied", "legacy")]).await,
            StatusCode::OK
        );
        let member: bool = redis::cmd("SISMEMBER")
            .arg("pusher:channels")
            .arg("legacy")
            .query_async(&mut redis.connection().await)
            .await
            .expect("SISMEMBER");
        assert!(member);
    }
}

async fn mixed_publish_calls_pusher_once_for_the_occupied_channels(kind: StoreKind) {
    let env = Env::start(kind, &[]).await;
    assert_eq!(
        env.webhook(&[("channel_occupied", "a"), ("channel_occupied", "c")])
            .await,
        StatusCode::OK
    );
    let (published, skipped) = env
        .publish(&["a", "b", "c", "a", "d"], "tick", "x", "")
        .await
        .expect("publish");
    assert_eq!(published, ["a", "c"]);
    assert_eq!(skipped, ["b", "d"]);
    let calls = env.stub.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].signature_valid);
    assert_eq!(
        calls[0].body,
        json!({"name": "tick", "data": "x", "channels": ["a", "c"]})
    );

    // All vacant: no call at all.
    let (published, skipped) = env
        .publish(&["b", "d"], "tick", "x", "")
        .await
        .expect("publish");
    assert!(published.is_empty());
    assert_eq!(skipped, ["b", "d"]);
    assert_eq!(env.stub.calls().len(), 1);
}

async fn a_batch_is_applied_whole_and_other_events_are_ignored(kind: StoreKind) {
    let env = Env::start(kind, &[]).await;
    let (status, body) = post_signed(
        &env.service.webhook_url(),
        KEY,
        SECRET,
        &json!({"time_ms": support::now_ms(), "events": [
            {"name": "channel_occupied", "channel": "one"},
            {"name": "channel_occupied", "channel": "two"},
            {"name": "member_added", "channel": "presence-x", "user_id": "u1"},
            {"name": "client_event", "channel": "one", "event": "client-hi", "data": "{}", "socket_id": "1.1"},
            {"name": "subscription_count", "channel": "one", "subscription_count": 2},
            {"name": "channel_occupied", "channel": "three"},
            {"name": "channel_vacated", "channel": "one"},
            {"name": "cache_miss", "channel": "cache-x"}
        ]})
        .to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"occupied": 3, "vacated": 1, "stale": 0, "ignored": 4, "invalid": 0})
    );
    assert_eq!(
        env.snapshot(&["one", "two", "three", "presence-x"]).await,
        [false, true, true, false]
    );
    // The batch is counted as applied, once.
    let applied = env
        .service
        .metric(
            "occupancy_webhook_requests_total",
            &[r#"outcome="applied""#],
        )
        .await;
    assert_eq!(applied, 1.0, "one applied batch counted");
}

async fn bad_webhooks_are_answered_and_change_nothing(kind: StoreKind) {
    let env = Env::start(kind, &["--webhook-body-limit", "2048"]).await;
    assert_eq!(
        env.webhook(&[("channel_occupied", "kept")]).await,
        StatusCode::OK
    );
    let url = env.service.webhook_url();
    let body = webhook_body(&[
        ("channel_occupied", "intruder"),
        ("channel_vacated", "kept"),
    ]);
    let good_sig = occupancy::wire::sign_webhook(SECRET, body.as_bytes());

    /// What is wrong, X-Pusher-Key, X-Pusher-Signature, body, expected answer.
    type BadRequest<'a> = (
        &'a str,
        Option<&'a str>,
        Option<String>,
        Vec<u8>,
        StatusCode,
    );
    let cases: Vec<BadRequest> = vec![
        (
            "no key",
            None,
            Some(good_sig.clone()),
            body.clone().into(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no signature",
            Some(KEY),
            None,
            body.clone().into(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unknown key",
            Some("other-key"),
            Some(good_sig.clone()),
            body.clone().into(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong secret",
            Some(KEY),
            Some(occupancy::wire::sign_webhook("wrong", body.as_bytes())),
            body.clone().into(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "tampered body",
            Some(KEY),
            Some(good_sig.clone()),
            body.replace("intruder", "intruded").into(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "garbage signature",
            Some(KEY),
            Some("zz".into()),
            body.clone().into(),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (what, key, sig, payload, expected) in cases {
        let (status, answer) = post_raw(&url, key, sig.as_deref(), payload).await;
        assert_eq!(status, expected, "{what}: {answer}");
        assert!(
            answer["error"].is_string(),
            "{what} explains itself: {answer}"
        );
        assert!(
            !answer.to_string().contains(SECRET),
            "{what} echoes no secret"
        );
    }

    for (what, payload) in [
        ("not json", "this is not json".to_owned()),
        ("no events", r#"{"time_ms": 1}"#.to_owned()),
        (
            "an event without a name",
            r#"{"time_ms": 1, "events": [{"channel": "intruder"}]}"#.to_owned(),
        ),
    ] {
        let (status, answer) = post_signed(&url, KEY, SECRET, &payload).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert!(answer["error"].is_string(), "{what}: {answer}");
    }

    let huge = webhook_body(&[("channel_occupied", &"x".repeat(3000))]);
    let (status, answer) = post_signed(&url, KEY, SECRET, &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");

    assert_eq!(
        env.snapshot(&["kept", "intruder"]).await,
        [true, false],
        "nothing changed"
    );
}

async fn bad_grpc_requests_are_invalid_argument_naming_the_field(kind: StoreKind) {
    let env = Env::start(kind, &[]).await;
    let status = env
        .gate
        .clone()
        .is_occupied(IsOccupiedRequest {
            channel: "bad channel!".into(),
            ..Default::default()
        })
        .await
        .expect_err("invalid channel");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("channel:"),
        "{}",
        status.message()
    );

    let long = "c".repeat(165);
    let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let big = "d".repeat(10 * 1024 + 1);
    let long_event = "e".repeat(201);
    let with_long = ["ok", long.as_str()];
    let cases: Vec<(&[&str], &str, &str, &str, &str)> = vec![
        (&[], "e", "", "", "channels"),
        (&many, "e", "", "", "channels"),
        (&with_long, "e", "", "", "channels[1]"),
        (&["ok", "#reserved"], "e", "", "", "channels[1]"),
        (&["ok"], "", "", "", "event"),
        (&["ok"], &long_event, "", "", "event"),
        (&["ok"], "e", &big, "", "data"),
        (&["ok"], "e", "", "abc", "socket_id"),
    ];
    assert_eq!(
        env.webhook(&[("channel_occupied", "ok")]).await,
        StatusCode::OK
    );
    for (channels, event, data, socket_id, field) in cases {
        let status = env
            .publish(channels, event, data, socket_id)
            .await
            .expect_err("invalid request");
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().starts_with(&format!("{field}:")),
            "message names {field}: {}",
            status.message()
        );
    }
    assert!(
        env.stub.calls().is_empty(),
        "nothing invalid reached Pusher"
    );
}

async fn pusher_failures_map_to_grpc_statuses_with_the_reason(kind: StoreKind) {
    let env = Env::start(kind, &["--pusher-timeout", "300ms"]).await;
    assert_eq!(
        env.webhook(&[("channel_occupied", "live")]).await,
        StatusCode::OK
    );
    for (status, code) in [
        (StatusCode::BAD_REQUEST, Code::InvalidArgument),
        (StatusCode::FORBIDDEN, Code::PermissionDenied),
        (StatusCode::PAYLOAD_TOO_LARGE, Code::InvalidArgument),
        (StatusCode::TOO_MANY_REQUESTS, Code::ResourceExhausted),
        (StatusCode::INTERNAL_SERVER_ERROR, Code::Unavailable),
        (StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable),
    ] {
        env.stub.set_behaviour(Behaviour {
            status,
            body: format!("stub says {}", status.as_u16()),
            ..Behaviour::default()
        });
        let err = env
            .publish(&["live"], "e", "d", "")
            .await
            .expect_err("fails");
        assert_eq!(err.code(), code, "HTTP {status}: {err:?}");
        assert!(
            err.message()
                .contains(&format!("stub says {}", status.as_u16())),
            "reason kept: {}",
            err.message()
        );
    }
    env.stub.set_behaviour(Behaviour {
        delay: Duration::from_secs(2),
        ..Behaviour::default()
    });
    let err = env
        .publish(&["live"], "e", "d", "")
        .await
        .expect_err("times out");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");

    // Pusher unreachable: a port nobody listens on.
    drop(env);
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    let env = Env::start(kind, &["--pusher-api-url", &dead]).await;
    assert_eq!(
        env.webhook(&[("channel_occupied", "live")]).await,
        StatusCode::OK
    );
    let err = env
        .publish(&["live"], "e", "d", "")
        .await
        .expect_err("unreachable");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // The caller gets a short, stable message; the cause is in the log, without the signed URL.
    assert_eq!(err.message(), "Pusher could not be reached");
    support::eventually(Duration::from_secs(2), "the cause is logged", || {
        let log = env.service.log_text();
        async move { log.contains("publish failed") && log.to_lowercase().contains("connect") }
    })
    .await;
    let log = env.service.log_text();
    assert!(!log.contains(SECRET), "secret never logged");
    assert!(!log.contains("auth_signature"), "signed URL never logged");
}

async fn health_client(
    service: &Occupancy,
) -> tonic_health::pb::health_client::HealthClient<Channel> {
    tonic_health::pb::health_client::HealthClient::new(service.channel().await)
}

async fn health_is_serving_and_sigterm_exits_zero(kind: StoreKind) {
    let env = Env::start(kind, &[]).await;
    let mut health = health_client(&env.service).await;
    for service in ["", "occupancy.v1.Occupancy"] {
        support::eventually(Duration::from_secs(5), "SERVING", || {
            let mut health = health.clone();
            async move {
                health
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: service.into(),
                    })
                    .await
                    .is_ok_and(|r| r.into_inner().status == 1)
            }
        })
        .await;
    }
    let unknown = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), Code::NotFound);

    let Env { service, .. } = env;
    let status = service.terminate("TERM");
    assert!(status.success(), "exit status after SIGTERM: {status:?}");

    // Ctrl-C (SIGINT) drains the same way.
    let stub = PusherStub::start().await;
    let service = Occupancy::start(&["--pusher-api-url".into(), stub.url()]);
    let status = service.terminate("INT");
    assert!(status.success(), "exit status after SIGINT: {status:?}");
}

async fn both_keys_are_accepted_while_rotating(kind: StoreKind) {
    let env = Env::start(kind, &["--pusher-extra-keys", "old-key:old-secret"]).await;
    let url = env.service.webhook_url();
    let body = webhook_body(&[("channel_occupied", "by-old-key")]);
    assert_eq!(
        post_signed(&url, "old-key", "old-secret", &body).await.0,
        StatusCode::OK
    );
    let body = webhook_body(&[("channel_occupied", "by-new-key")]);
    assert_eq!(
        post_signed(&url, KEY, SECRET, &body).await.0,
        StatusCode::OK
    );
    // A secret is only good for its own key.
    let body = webhook_body(&[("channel_occupied", "crossed")]);
    assert_eq!(
        post_signed(&url, KEY, "old-secret", &body).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        env.snapshot(&["by-old-key", "by-new-key", "crossed"]).await,
        [true, true, false]
    );
    let log = env.service.log_text();
    assert!(
        !log.contains("old-secret") && !log.contains(SECRET),
        "secrets never logged"
    );
    let warned = log.contains("kept in memory, local to this one process");
    assert_eq!(
        warned,
        kind == StoreKind::Memory,
        "start-up says where state lives"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_publish_finish() {
    let env = Env::start(StoreKind::Memory, &[]).await;
    assert_eq!(
        env.webhook(&[("channel_occupied", "busy")]).await,
        StatusCode::OK
    );
    env.stub.set_behaviour(Behaviour {
        delay: Duration::from_millis(800),
        ..Behaviour::default()
    });
    let mut gate = env.gate.clone();
    let in_flight = tokio::spawn(async move {
        gate.publish_if_occupied(PublishIfOccupiedRequest {
            channels: vec!["busy".into()],
            event: "e".into(),
            data: "d".into(),
            socket_id: String::new(),
            ..Default::default()
        })
        .await
    });
    // Wait until the request has reached "Pusher", then ask the service to stop.
    support::eventually(
        Duration::from_secs(5),
        "the publish to reach Pusher",
        || async { !env.stub.calls().is_empty() },
    )
    .await;
    let Env { service, stub, .. } = env;
    let status = tokio::task::spawn_blocking(move || service.terminate("TERM"))
        .await
        .expect("join");
    assert!(status.success(), "{status:?}");
    let answer = in_flight
        .await
        .expect("join")
        .expect("in-flight publish completed");
    assert_eq!(answer.into_inner().published, ["busy"]);
    drop(stub);
}

#[tokio::test]
async fn a_webhook_stamped_far_in_the_future_cannot_pin_its_channel() {
    let gate = Occupancy::start(&[]);
    let now = support::now_ms();
    let (status, _) = gate
        .send_webhook_at(now + 3_600_000, &[("channel_occupied", "fast-clock")])
        .await;
    assert_eq!(status, StatusCode::OK);
    // Without the bound this later real event (61 s ahead, inside the hour) would be stale.
    let (status, body) = gate
        .send_webhook_at(now + 61_000, &[("channel_vacated", "fast-clock")])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["vacated"], 1, "{body}");
    let bounded = gate
        .metric(
            "occupancy_webhook_future_bounded_total",
            &[&format!(r#"app="{}""#, support::APP_ID)],
        )
        .await;
    // Both are further ahead than the bound (a minute), so both were bounded and counted.
    assert_eq!(
        bounded, 2.0,
        "the webhooks stamped in the future were bounded"
    );
}
