//! Weft's gRPC contracts, generated at build time from `proto/` (see `build.rs`).
//!
//! - [`identity`] (`weft.identity.v1`): proxies trade a CSR and a bootstrap token for a workload
//!   certificate (`weft-controller identity`, port 8080).
//! - [`destination`] (`weft.destination.v1`): proxies watch a service authority's endpoints
//!   and compiled policy (`weft-controller destination`, port 8086).
//! - [`tap`] (`weft.tap.v1`): the viz component observes live request events from each proxy's
//!   tap server (`weft-proxy`, port 4190, mTLS with the viz identity only).
//!
//! Features: `client` (the generated clients, with `connect()` over tonic's channel),
//! `server-traits` (the generated server traits and services) and `server` (those plus tonic's
//! router); `client` and `server` by default. The proxy uses the clients and, for tap, the
//! server traits, which it serves through hyper.

/// `weft.identity.v1`: the identity service.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod identity {
    tonic::include_proto!("weft.identity.v1");
}

/// `weft.destination.v1`: the destination service (discovery and policy).
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod destination {
    tonic::include_proto!("weft.destination.v1");
}

/// `weft.tap.v1`: live request events from a proxy to the viz component.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod tap {
    tonic::include_proto!("weft.tap.v1");
}
