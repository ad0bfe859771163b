//! The generated `occupancy.v1` messages, server and client, and the descriptor set that server
//! reflection serves so `grpcurl` works without the `.proto` at hand.
#![allow(missing_docs, clippy::unwrap_used)]

tonic::include_proto!("occupancy.v1");

/// The encoded `FileDescriptorSet` of `occupancy.proto`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("occupancy_descriptor");
