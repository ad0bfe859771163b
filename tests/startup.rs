//! Start-up and introspection: bad configuration stops start-up with one clear line and no
//! secret in it, and server reflection answers in both the v1 and v1alpha dialects.

mod support;

use std::process::{Command, Stdio};

use support::{Occupancy, PusherStub};
use tokio_stream::StreamExt;

fn run_with(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_occupancy"))
        .args(args)
        .env_remove("PUSHER_APP_ID")
        .env_remove("PUSHER_KEY")
        .env_remove("PUSHER_SECRET")
        .env_remove("REDIS_URL")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run occupancy");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const CREDENTIALS: [(&str, &str); 3] = [
    ("PUSHER_APP_ID", "1"),
    ("PUSHER_KEY", "k"),
    ("PUSHER_SECRET", "very-secret-value"),
];

#[test]
fn missing_credentials_are_named() {
    let (code, stderr) = run_with(
        &["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    for option in ["--pusher-app-id", "--pusher-key", "--pusher-secret"] {
        assert!(stderr.contains(option), "{stderr}");
    }
}

#[test]
fn invalid_values_stop_start_up_with_one_line_and_no_secret() {
    for (extra, mentions) in [
        (
            ("PUSHER_EXTRA_KEYS", "very-secret-value"),
            "PUSHER_EXTRA_KEYS",
        ),
        (("PUSHER_API_URL", "not a url"), "PUSHER_API_URL"),
        (
            (
                "PUSHER_API_URL",
                "https://user:very-secret-value@api.example.com",
            ),
            "PUSHER_API_URL",
        ),
        (("PUSHER_CLUSTER", "eu/../x"), "PUSHER_CLUSTER"),
        (
            ("REDIS_URL", "mysql://u:very-secret-value@h/db"),
            "REDIS_URL",
        ),
        (
            ("OCCUPANCY_WEBHOOK_BODY_LIMIT", "0"),
            "OCCUPANCY_WEBHOOK_BODY_LIMIT",
        ),
    ] {
        let mut envs = CREDENTIALS.to_vec();
        envs.push(extra);
        let (code, stderr) = run_with(
            &["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"],
            &envs,
        );
        assert_eq!(code, 2, "{mentions}: {stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("occupancy:"))
            .collect();
        assert_eq!(errors.len(), 1, "one clear line for {mentions}: {stderr}");
        assert!(errors[0].contains(mentions), "{stderr}");
        assert!(
            !stderr.contains("very-secret-value"),
            "secret echoed: {stderr}"
        );
    }
}

#[test]
fn an_address_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let (code, stderr) = run_with(
        &["--grpc-addr", &addr, "--http-addr", "127.0.0.1:0"],
        &CREDENTIALS,
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen for gRPC on {addr}")),
        "{stderr}"
    );
}

#[test]
fn help_documents_every_option_with_its_variable() {
    let (code, stdout) = {
        let out = Command::new(env!("CARGO_BIN_EXE_occupancy"))
            .arg("--help")
            .env("PUSHER_SECRET", "very-secret-value")
            .output()
            .expect("run --help");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(code, Some(0));
    for (flag, var) in [
        ("--grpc-addr", "OCCUPANCY_GRPC_ADDR"),
        ("--http-addr", "OCCUPANCY_HTTP_ADDR"),
        ("--redis-url", "REDIS_URL"),
        ("--redis-key", "OCCUPANCY_REDIS_KEY"),
        ("--pusher-app-id", "PUSHER_APP_ID"),
        ("--pusher-key", "PUSHER_KEY"),
        ("--pusher-secret", "PUSHER_SECRET"),
        ("--pusher-cluster", "PUSHER_CLUSTER"),
        ("--pusher-api-url", "PUSHER_API_URL"),
    ] {
        assert!(
            stdout.contains(flag) && stdout.contains(var),
            "{flag}/{var} in --help"
        );
    }
    assert!(
        !stdout.contains("very-secret-value"),
        "--help shows a secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_services_in_v1_and_v1alpha() {
    let stub = PusherStub::start().await;
    let service = Occupancy::start(&["--pusher-api-url".into(), stub.url()]);
    let channel = service.channel().await;

    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("v1 reflection")
            .into_inner();
        let response = stream.next().await.expect("an answer").expect("ok");
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("not a list: {response:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for wanted in ["occupancy.v1.Occupancy", "grpc.health.v1.Health"] {
            assert!(
                names.iter().any(|n| n == wanted),
                "v1 lists {wanted}: {names:?}"
            );
        }
    }
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("v1alpha reflection")
            .into_inner();
        let response = stream.next().await.expect("an answer").expect("ok");
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("not a list: {response:?}");
        };
        assert!(
            list.service
                .iter()
                .any(|s| s.name == "occupancy.v1.Occupancy"),
            "v1alpha lists the gate"
        );
    }
}
