//! Weft's resources: parsing, validation and compilation into the policy proxies receive.
//!
//! Weft reads the kinds Linkerd users already have, with their API groups: `v1 Service`,
//! `workload.linkerd.io ExternalWorkload`, `linkerd.io ServiceProfile`,
//! `gateway.networking.k8s.io HTTPRoute` (with `retry.linkerd.io/*` and `timeout.linkerd.io/*`
//! annotations), `split.smi-spec.io TrafficSplit` and `multicluster.linkerd.io Link`.
//!
//! - [`parse_documents`] reads a multi-document YAML stream into typed [`Object`]s. Every
//!   problem is a [`ModelError`] naming the file, document, line, object and field
//!   (`web-split.yaml:1: TrafficSplit emojivoto/web-split: spec.backends[1].weight: "ten" is not
//!   a weight: …`); a bad document never takes down the others.
//! - [`compile`] turns objects into [`Policies`]: for every Service port, keyed by its FQDN
//!   authority, the ordered routes with their conditions, retries (conditions, limit, per-try
//!   timeout), timeouts, response classes, the retry budget, failure accrual
//!   (`balancer.linkerd.io/failure-accrual*`) and weighted backends — and what
//!   was overridden by what, so `weft check` can tell users why an annotation does nothing.
//! - [`annotations`] and [`duration`] parse annotation values forgivingly (`"5xx, 429"`,
//!   `1m30s`) with precise errors.
//!
//! Pure code: no I/O beyond the strings and bytes it is given.

pub mod annotations;
pub mod compile;
pub mod duration;
pub mod error;
pub mod httproute;
pub mod link;
pub mod meta;
pub mod object;
pub mod parse;
pub mod policy;
pub mod profile;
mod scalar;
pub mod service;
pub mod split;

pub use annotations::{
    parse_grpc_retry_conditions, parse_http_retry_conditions, parse_retry_limit, AnnotationError,
    GrpcCode, StatusRange,
};
pub use compile::{compile, compile_with, CompileOptions};
pub use duration::{format_duration, parse_duration, DurationError};
pub use error::{ErrorClass, ModelError, Source};
pub use meta::ObjectMeta;
pub use object::{Kind, Object, Resource};
pub use parse::{parse_bytes, parse_documents};
pub use policy::{
    Backend, FailureAccrual, Override, Policies, PolicySource, RequestMatch, RetryBudget,
    RetryPolicy, Route, ServicePolicy, Timeouts,
};
pub use split::parse_weight;
