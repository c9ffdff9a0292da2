//! Weft's control plane, as a library: `weft-controller` (see `main.rs`) is a thin wrapper, so
//! tests link and start the real components in-process.
//!
//! One binary, one subcommand per component ([`cli::Command`]):
//! - [`identity`]: the certificate authority that signs workload certificates from CSRs
//!   (gRPC `weft.identity.v1.Identity`, port 8080; admin port 9990).
//! - [`destination`]: discovery and policy — each service's endpoints and compiled policy,
//!   streamed to proxies (gRPC `weft.destination.v1.Destination`, port 8086; admin port 9996).
//!
//! - [`all`]: every component of a local-mesh cluster in one process with one admin port
//!   (`weft-controller all --store local:DIR`).
//!
//! Coming with their issues: the injector webhook, the service mirror and failover.
//!
//! Shared pieces: [`admin`] (the `/metrics`, `/ready`, `/live` server every component has),
//! [`prom`] (Prometheus text encoding), [`duration`] (Go-style durations on the command line).

pub mod admin;
pub mod all;
pub mod cli;
pub mod destination;
pub mod duration;
pub mod grpc_task;
pub mod identity;
pub mod prom;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod viz;
