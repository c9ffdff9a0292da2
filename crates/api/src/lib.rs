//! Weft's gRPC contracts, generated at build time from `proto/` (see `build.rs`).
//!
//! - [`identity`] (`weft.identity.v1`): proxies trade a CSR and a bootstrap token for a workload
//!   certificate (`weft-controller identity`, port 8080).
//! - [`destination`] (`weft.destination.v1`): proxies watch a service authority's endpoints
//!   and compiled policy (`weft-controller destination`, port 8086).
//!
//! Features: `client` (the generated clients, with `connect()` over tonic's channel) and
//! `server` (the generated server traits); both by default. The proxy depends on the client half
//! only.

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
