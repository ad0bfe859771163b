//! Generates the gRPC server and client code, and the descriptor set that server reflection
//! serves, from the one contract in `proto/`. A vendored `protoc` is used so that building needs
//! nothing beyond Cargo.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/occupancy/v1/occupancy.proto";
    println!("cargo:rerun-if-changed={proto}");

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("occupancy_descriptor.bin"))
        .compile_with_config(config, &[proto], &["proto"])?;
    Ok(())
}
