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

// What a user of the crate needs: the configuration, the service built from it, the gRPC
// contract, the operator tools, and Pusher's wire formats (to sign webhooks and API requests as
// Pusher does, in tools and tests).
pub mod config;
pub mod proto;
pub mod service;
pub mod tools;
pub mod wire;

mod admin;
mod app_config;
mod apps;
mod channel;
mod clock;
mod error_chain;
mod gate;
mod grpc_auth;
mod grpc_budget;
mod grpc_listener;
mod health;
mod hmac_hex;
mod http_listener;
mod http_url;
mod metrics;
mod pem_file;
mod pusher;
mod pusher_api;
mod reconcile;
mod refusals;
mod store;
mod webhook;
