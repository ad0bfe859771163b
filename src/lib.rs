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
pub mod clock;
pub mod config;
pub mod error_chain;
pub mod gate;
pub mod grpc_auth;
pub mod health;
pub mod hmac_hex;
pub mod http_listener;
pub mod http_url;
pub mod metrics;
pub mod pem_file;
pub mod proto;
pub mod pusher;
pub mod reconcile;
pub mod server;
pub mod service;
pub mod store;
pub mod tools;
pub mod webhook;
