//! occupancy: keeps the set of occupied Pusher Channels channels from Pusher's webhooks, and
//! gates publishing on it over gRPC, so an encoding farm pays for Pusher API calls only while
//! someone is watching.
//!
//! ```text
//! Pusher ──webhooks──▶ webhook (axum) ──SADD/SREM──▶ store (Redis set | memory)
//!                                                          ▲
//! encoders ──gRPC──▶ gate (tonic) ──SISMEMBER──────────────┘
//!                      └──only if occupied──▶ pusher::Publisher ──▶ Pusher HTTP API
//! ```

pub mod admin;
pub mod apps;
pub mod channel;
pub mod config;
pub mod gate;
pub mod grpc_auth;
pub mod health;
pub mod http_listener;
pub mod metrics;
pub mod proto;
pub mod pusher;
pub mod pusher_api;
pub mod reconcile;
pub mod server;
pub mod store;
pub mod tools;
pub mod webhook;
