//! Compiles `proto/*.proto` with protox (a protobuf compiler written in Rust, so the build needs
//! no system `protoc`) and generates the prost messages and tonic clients/servers from the
//! result. Which halves are generated follows the crate's `client` and `server-traits` features.

use std::error::Error;

const PROTOS: &[&str] = &[
    "proto/identity.proto",
    "proto/destination.proto",
    "proto/tap.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let client = std::env::var_os("CARGO_FEATURE_CLIENT").is_some();
    // `server` implies `server-traits`; the traits are all the generated server code needs.
    let server = std::env::var_os("CARGO_FEATURE_SERVER_TRAITS").is_some();

    let fds = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(client)
        .build_transport(client)
        .build_server(server)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}
