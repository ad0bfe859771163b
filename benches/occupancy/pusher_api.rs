//! The Pusher API listener (`--pusher-api-addr`): what an official SDK pointed at the gate sees.
//!
//! In one run, alternating so that noise falls on all alike: a trigger on a vacant channel
//! (answered by the gate alone), a trigger on an occupied channel (forwarded to a local stand-in
//! for Pusher), and the same trigger sent to the stand-in directly (the baseline: what the SDK
//! paid before the gate). Every request is signed here as the SDKs sign, so signing costs the
//! same on both paths; the stand-in answers `{}` without checking, the same for both.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use axum::Router;
use axum::routing::post;

use crate::launch::{APP_ID, KEY, SECRET, Service};
use crate::load::{Measured, ms};
use crate::{Plan, measure, post_webhook, webhook_client};

/// The occupied channel of the forwarded triggers.
const LIVE: &str = "bench-live";
/// Concurrency levels measured.
pub const LEVELS: [usize; 2] = [1, 16];

/// One concurrency level's figures.
pub struct Level {
    /// Workers.
    pub concurrency: usize,
    /// Triggers on a vacant channel, through the gate.
    pub vacant: Measured,
    /// Triggers on an occupied channel, through the gate to the stand-in.
    pub forwarded: Measured,
    /// The same trigger sent to the stand-in directly.
    pub direct: Measured,
}

/// Starts a stand-in and a service with `--pusher-api-addr` on Redis at `redis_url`, and
/// measures.
pub async fn section(plan: &Plan, redis_url: &str) -> anyhow::Result<Vec<Level>> {
    let stand_in = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let stand_in_addr = stand_in.local_addr()?;
    let router = Router::new().route(
        "/apps/{app_id}/events",
        post(|_body: axum::body::Bytes| async { "{}" }),
    );
    tokio::spawn(async move { axum::serve(stand_in, router).await });
    // A port found free can be taken (by an outgoing connection of an earlier section, say)
    // before the service binds it: then the service exits at start-up and another port is tried.
    let mut attempt = 0;
    let (service, api_addr) = loop {
        attempt += 1;
        let api_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        match Service::start_with(
            Some(redis_url),
            &plan.log_filter,
            &format!("http://{stand_in_addr}"),
            &["--pusher-api-addr".to_owned(), api_addr.to_string()],
        )
        .await
        {
            Ok(service) => break (service, api_addr),
            Err(err) if attempt < 3 && format!("{err:#}").contains("Address already in use") => {
                println!("(port {api_addr} was taken before the service bound it; another)");
            }
            Err(err) => return Err(err),
        }
    };
    let http = webhook_client()?;
    post_webhook(&http, &service.webhook_url(), &[("channel_occupied", LIVE)]).await?;

    println!(
        "\n## Pusher API listener: POST /apps/{{id}}/events signed as the SDKs sign\n\
         vacant: a channel nobody watches, answered by the gate; forwarded: an occupied channel, \
         through the gate to a local stand-in for Pusher; direct: the same trigger to the \
         stand-in itself (the baseline, what the SDK paid before); keep-alive connections"
    );
    println!(
        "{:>4} | {:>9} {:>7} {:>7} | {:>9} {:>7} {:>7} | {:>9} {:>7} {:>7}",
        "conc",
        "vac req/s",
        "p50 ms",
        "p99 ms",
        "fwd req/s",
        "p50 ms",
        "p99 ms",
        "dir req/s",
        "p50 ms",
        "p99 ms"
    );
    let gate = Arc::new(format!("http://{api_addr}"));
    let direct = Arc::new(format!("http://{stand_in_addr}"));
    let pids = [std::process::id(), service.pid()];
    let mut levels = Vec::new();
    for concurrency in LEVELS {
        let run = |base: Arc<String>, vacant: bool| {
            let http = http.clone();
            measure(plan, concurrency, plan.duration, &pids, move |worker, i| {
                let channel = if vacant {
                    format!("bench-vacant-{worker}-{}", i % 1000)
                } else {
                    LIVE.to_owned()
                };
                trigger(http.clone(), base.clone(), channel)
            })
        };
        let (vacant, _) = run(gate.clone(), true).await?;
        let (forwarded, _) = run(gate.clone(), false).await?;
        let (baseline, _) = run(direct.clone(), false).await?;
        println!(
            "{:>4} | {:>9.0} {:>7} {:>7} | {:>9.0} {:>7} {:>7} | {:>9.0} {:>7} {:>7}",
            concurrency,
            vacant.rate(),
            ms(vacant.p50),
            ms(vacant.p99),
            forwarded.rate(),
            ms(forwarded.p50),
            ms(forwarded.p99),
            baseline.rate(),
            ms(baseline.p50),
            ms(baseline.p99),
        );
        levels.push(Level {
            concurrency,
            vacant,
            forwarded,
            direct: baseline,
        });
    }
    Ok(levels)
}

/// One signed trigger of `channel` to `base`, which must answer 200.
async fn trigger(http: reqwest::Client, base: Arc<String>, channel: String) -> anyhow::Result<()> {
    let path = format!("/apps/{APP_ID}/events");
    let body = format!(r#"{{"name":"progress","data":"{{\"pct\":42}}","channels":["{channel}"]}}"#);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let query = occupancy::wire::signed_query(KEY, SECRET, "POST", &path, body.as_bytes(), now);
    let response = http
        .post(format!("{base}{path}"))
        .query(&query)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .context("trigger")?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    ensure!(status.is_success(), "trigger answered {status}: {text}");
    Ok(())
}

/// The targets: vacant p50, the forwarding overhead at p99, and triggers/s at concurrency 16.
pub fn targets(levels: &[Level]) -> Vec<(&'static str, String, bool)> {
    let mut targets = Vec::new();
    if let Some(one) = levels.iter().find(|l| l.concurrency == 1) {
        targets.push((
            "Pusher API trigger on vacant channels p50 < 0.5 ms",
            format!("{} ms", ms(one.vacant.p50)),
            one.vacant.p50 < Duration::from_micros(500),
        ));
        let added = one.forwarded.p99.saturating_sub(one.direct.p99);
        targets.push((
            "Pusher API forwarded trigger adds < 1 ms p99 over the stand-in called directly",
            format!(
                "+{} ms ({} vs {} ms p99; p50 {} vs {} ms)",
                ms(added),
                ms(one.forwarded.p99),
                ms(one.direct.p99),
                ms(one.forwarded.p50),
                ms(one.direct.p50)
            ),
            added < Duration::from_millis(1),
        ));
    }
    if let Some(sixteen) = levels.iter().find(|l| l.concurrency == 16) {
        targets.push((
            "Pusher API triggers/s at concurrency 16 (recorded)",
            format!(
                "vacant {:.0}/s, forwarded {:.0}/s, direct to the stand-in {:.0}/s",
                sixteen.vacant.rate(),
                sixteen.forwarded.rate(),
                sixteen.direct.rate()
            ),
            true,
        ));
    }
    targets
}
