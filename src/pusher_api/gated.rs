//! Triggers (`/events`) and batches (`/batch_events`) split by the gate's answer: vacant
//! channels are dropped, the rest go to Pusher in one request (batches in chunks of
//! [`BATCH_CHUNK`]), and with `info` the answer still covers every channel asked for.
//!
//! Channels are asked of the same store and under the same `--publish-when-store-down` policy as
//! `PublishIfOccupied` ([`crate::gate::occupied_or_policy`]), and counted in the same
//! `occupancy_publish_channels_total` family (`published`, `skipped`), labelled
//! `via="pusher_api"`, so the calls saved add up across both ways in.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::events::{self, BATCH_CHUNK, BodyError, Channel, Event, Fields};
use super::{ApiState, Tally, forward, json_answer};
use crate::apps::App;
use crate::channel::ChannelName;
use crate::gate::{StoreDownPolicy, occupied_or_policy};
use crate::metrics::{Metrics, count};
use crate::store::{Occupied, StoreError};

/// `POST /apps/{id}/events`, verified: events whose `data` is over `--max-event-bytes` are
/// refused, and while the store cannot be asked `--publish-when-store-down` decides.
pub(super) async fn trigger(
    state: &ApiState,
    tally: Tally<'_>,
    app: &App,
    body: &[u8],
) -> Response {
    let event = match Fields::parse(body)
        .and_then(|fields| events::event(fields, state.max_event_bytes, false))
    {
        Ok(event) => event,
        Err(err) => return bad_body(tally, &err),
    };
    let channels: Vec<&Channel> = event.channels.iter().collect();
    let live = match decide(app, &channels, state.store_down, tally).await {
        Ok(live) => live,
        Err(response) => return response,
    };
    let (mut forwarded, mut dropped) = (Vec::new(), Vec::new());
    for (channel, live) in channels.iter().zip(live) {
        if live {
            forwarded.push(channel.name());
        } else {
            dropped.push(channel.name());
        }
    }
    count_channels(tally.metrics, app, "skipped", dropped.len());
    let info = event.info;
    if forwarded.is_empty() {
        tally.outcome("dropped");
        let answer = if info.any() {
            events::trigger_answer(None, &dropped, info)
        } else {
            b"{}".to_vec()
        };
        return json_answer(StatusCode::OK, answer);
    }
    // All channels pass: the body goes on exactly as received.
    let upstream_body = if dropped.is_empty() {
        body.to_vec()
    } else {
        event.fields.with_channels(&forwarded)
    };
    let upstream = match forward::send(
        &app.publisher,
        &app.id,
        tally,
        Method::POST,
        "events",
        Vec::new(),
        upstream_body,
    )
    .await
    {
        Ok(upstream) => upstream,
        Err(response) => return response,
    };
    if !(200..300).contains(&upstream.status) {
        tally.outcome("upstream_error");
        return forward::pass_through(upstream);
    }
    count_channels(tally.metrics, app, "published", forwarded.len());
    tally.outcome("forwarded");
    tracing::debug!(app = %app.id, forwarded = forwarded.len(), dropped = dropped.len(), "Pusher API trigger gated");
    if info.any() && !dropped.is_empty() {
        let status = StatusCode::from_u16(upstream.status).unwrap_or(StatusCode::OK);
        json_answer(
            status,
            events::trigger_answer(Some(&upstream.body), &dropped, info),
        )
    } else {
        forward::pass_through(upstream)
    }
}

/// `POST /apps/{id}/batch_events`, verified, by the same rules as [`trigger`].
pub(super) async fn batch(state: &ApiState, tally: Tally<'_>, app: &App, body: &[u8]) -> Response {
    let batch = match events::batch(body, state.max_event_bytes) {
        Ok(batch) => batch,
        Err(err) => return bad_body(tally, &err),
    };
    // A batch event has exactly one channel (checked in `events::batch`).
    let channels: Vec<&Channel> = batch
        .iter()
        .filter_map(|(_, event)| event.channels.first())
        .collect();
    let live = match decide(app, &channels, state.store_down, tally).await {
        Ok(live) => live,
        Err(response) => return response,
    };
    let with_info = batch.iter().any(|(_, event)| event.info.any());
    // Entries for dropped events now; forwarded ones filled from Pusher's answers.
    let mut entries: Vec<Value> = batch.iter().map(|(_, event)| vacant_entry(event)).collect();
    let forwarded: Vec<usize> = live
        .iter()
        .enumerate()
        .filter_map(|(index, live)| live.then_some(index))
        .collect();
    count_channels(tally.metrics, app, "skipped", batch.len() - forwarded.len());
    if forwarded.is_empty() {
        tally.outcome("dropped");
        return json_answer(StatusCode::OK, batch_answer(with_info, entries));
    }
    let whole = forwarded.len() == batch.len() && batch.len() <= BATCH_CHUNK;
    let chunks: Vec<&[usize]> = forwarded.chunks(BATCH_CHUNK).collect();
    let mut last = None;
    for (number, chunk) in chunks.iter().enumerate() {
        let upstream_body = if whole {
            body.to_vec()
        } else {
            let raws: Vec<&serde_json::value::RawValue> =
                chunk.iter().map(|&index| &*batch[index].0).collect();
            events::batch_body(&raws)
        };
        let upstream = match forward::send(
            &app.publisher,
            &app.id,
            tally,
            Method::POST,
            "batch_events",
            Vec::new(),
            upstream_body,
        )
        .await
        {
            Ok(upstream) => upstream,
            Err(response) => {
                sent_before_failure(app, number);
                return response;
            }
        };
        if !(200..300).contains(&upstream.status) {
            sent_before_failure(app, number);
            tally.outcome("upstream_error");
            return forward::pass_through(upstream);
        }
        count_channels(tally.metrics, app, "published", chunk.len());
        if with_info {
            let answers = events::batch_entries(&upstream.body, chunk.len())
                .unwrap_or_else(|| vec![json!({}); chunk.len()]);
            for (&index, answer) in chunk.iter().zip(answers) {
                entries[index] = answer;
            }
        }
        last = Some(upstream);
    }
    tally.outcome("forwarded");
    tracing::debug!(app = %app.id, events = batch.len(), forwarded = forwarded.len(), requests = chunks.len(), "Pusher API batch gated");
    match last {
        Some(upstream) if !with_info && chunks.len() == 1 => forward::pass_through(upstream),
        _ => json_answer(StatusCode::OK, batch_answer(with_info, entries)),
    }
}

/// What a dropped batch event's entry says: no subscribers.
fn vacant_entry(event: &Event) -> Value {
    match event.channels.first() {
        Some(channel) => event.info.vacant(channel.name()),
        None => json!({}),
    }
}

fn batch_answer(with_info: bool, entries: Vec<Value>) -> Vec<u8> {
    if with_info {
        json!({ "batch": entries }).to_string().into_bytes()
    } else {
        b"{}".to_vec()
    }
}

/// A later chunk failed after earlier ones were delivered: say so, since the SDK sees only the
/// failure.
fn sent_before_failure(app: &App, chunks_sent: usize) {
    if chunks_sent > 0 {
        tracing::warn!(app = %app.id, chunks_sent, "batch failed part-way: earlier chunks were delivered to Pusher");
    }
}

/// Whether each channel should be published to: always for cache and `#server-to-user-`
/// channels, otherwise the store's answer under the store-down policy.
async fn decide(
    app: &App,
    channels: &[&Channel],
    store_down: StoreDownPolicy,
    tally: Tally<'_>,
) -> Result<Vec<bool>, Response> {
    let gated: Vec<ChannelName> = channels
        .iter()
        .filter_map(|channel| match channel {
            Channel::Gated(name) => Some(name.clone()),
            Channel::Always(_) => None,
        })
        .collect();
    let answers = if gated.is_empty() {
        Occupied::default()
    } else {
        match occupied_or_policy(app, &gated, store_down, tally.metrics).await {
            Ok((answers, _store_unavailable)) => answers,
            Err(err) => return Err(store_failure(app, tally, err)),
        }
    };
    Ok(channels
        .iter()
        .map(|channel| match channel {
            Channel::Gated(name) => answers.is_occupied(name),
            Channel::Always(_) => true,
        })
        .collect())
}

fn store_failure(app: &App, tally: Tally<'_>, err: StoreError) -> Response {
    tracing::warn!(app = %app.id, error = ?err, "store call failed");
    match err {
        StoreError::Unavailable(_) => tally.refuse(
            "store_unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            "The occupancy store cannot be asked; retry later",
        ),
        StoreError::Failed(_) | StoreError::Unexpected(_) => tally.refuse(
            "store_failed",
            StatusCode::INTERNAL_SERVER_ERROR,
            "The occupancy store failed",
        ),
    }
}

fn bad_body(tally: Tally<'_>, err: &BodyError) -> Response {
    match err {
        BodyError::Invalid(reason) => tally.refuse("bad_request", StatusCode::BAD_REQUEST, reason),
        BodyError::TooLarge(reason) => {
            tally.refuse("too_large", StatusCode::PAYLOAD_TOO_LARGE, reason)
        }
    }
}

/// Counts channels in the family `PublishIfOccupied` counts in.
fn count_channels(metrics: &Metrics, app: &App, outcome: &str, n: usize) {
    count(
        &metrics.publish_channels,
        &[
            ("app", &app.id),
            ("outcome", outcome),
            ("via", "pusher_api"),
        ],
        n as u64,
    );
}
