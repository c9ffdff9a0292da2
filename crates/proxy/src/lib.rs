//! Weft's data plane: a lean sidecar proxy.
//!
//! The outbound listener carries the app's traffic to other services (redirected by iptables,
//! or sent explicitly as HTTP proxy requests and CONNECT tunnels); the inbound listener carries
//! traffic to the app. Connections are classified by [`detect`] and then served by the HTTP
//! request path ([`http`]) or forwarded as opaque TCP ([`server`]). The admin server ([`admin`])
//! exports metrics ([`telemetry`]) and controls shutdown ([`drain`]); the tap server ([`tap`])
//! streams live request events to the viz component.
//!
//! This crate depends on no control-plane, YAML or CLI code.

pub mod admin;
pub mod app;
pub mod config;
pub mod detect;
pub mod discover;
pub mod drain;
pub mod http;
pub mod identity;
pub mod init;
pub mod io;
pub mod metrics;
pub mod orig_dst;
pub mod outbound;
pub mod process;
pub mod server;
pub mod tap;
pub mod telemetry;
pub mod tls;
pub mod transport;
