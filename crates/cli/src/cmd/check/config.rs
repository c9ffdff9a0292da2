//! `weft-config`: the cluster's manifests parse, their settings are usable, and nothing is
//! silently overridden (a ServiceProfile or TrafficSplit hiding HTTPRoutes and retry/timeout
//! annotations is Linkerd's quietest trap; Weft says so).

use std::collections::BTreeSet;

use weft_model::{compile_with, CompileOptions, ErrorClass, ModelError, Object};
use weft_store::cluster::{ClusterConfig, ClusterDir};
use weft_store::manifests::{read_all, Problem};

use super::report::{Category, Check};

/// Category name.
pub const CATEGORY: &str = "weft-config";

/// Check ids.
pub mod ids {
    /// Every manifest file parses and every object in it is valid.
    pub const MANIFESTS_VALID: &str = "weft-config/manifests-valid";
    /// Every annotation value and cross-object setting can be used.
    pub const SETTINGS_VALID: &str = "weft-config/settings-valid";
    /// Nothing looks unintended (references to missing Services, unsupported fields).
    pub const NO_WARNINGS: &str = "weft-config/no-suspicious-settings";
    /// No HTTPRoute or Service annotation is overridden by a ServiceProfile or TrafficSplit.
    pub const NOTHING_OVERRIDDEN: &str = "weft-config/nothing-overridden";
}

const DESCRIPTIONS: &[(&str, &str)] = &[
    (ids::MANIFESTS_VALID, "manifests parse and are valid"),
    (
        ids::SETTINGS_VALID,
        "annotation values and object references are usable",
    ),
    (ids::NO_WARNINGS, "no setting looks unintended"),
    (
        ids::NOTHING_OVERRIDDEN,
        "no HTTPRoute or annotation is overridden by a ServiceProfile or TrafficSplit",
    ),
];

fn desc(id: &str) -> &'static str {
    DESCRIPTIONS
        .iter()
        .find(|(i, _)| *i == id)
        .map_or("", |(_, d)| d)
}

/// Runs the `weft-config` checks and returns the valid objects (for the data-plane checks).
pub fn check(cluster: Option<(&ClusterDir, &ClusterConfig)>) -> (Category, Option<Vec<Object>>) {
    let mut cat = Category::new(CATEGORY);
    let Some((dir, config)) = cluster else {
        for (id, d) in DESCRIPTIONS {
            cat.push(Check::skipped(
                id,
                *d,
                super::existence::ids::CLUSTER_EXISTS,
            ));
        }
        return (cat, None);
    };
    let manifests = dir.manifests_dir();
    let prefix = format!("{}/", dir.root().display());
    let short = |file: &str| file.strip_prefix(&prefix).unwrap_or(file).to_owned();
    let loaded = if manifests.is_dir() {
        match read_all(&[&manifests]) {
            Ok(l) => l,
            Err(e) => {
                cat.push(Check::error(
                    ids::MANIFESTS_VALID,
                    desc(ids::MANIFESTS_VALID),
                    e.to_string(),
                ));
                for (id, d) in DESCRIPTIONS.iter().skip(1) {
                    cat.push(Check::skipped(id, *d, ids::MANIFESTS_VALID));
                }
                return (cat, None);
            }
        }
    } else {
        weft_store::manifests::Loaded::default()
    };

    // Problems that reject a document or object are errors here; a bad annotation keeps its
    // object and is reported with the settings below.
    let mut rejected = Vec::new();
    let mut settings = Vec::new();
    for problem in &loaded.problems {
        match problem {
            Problem::Model(e) if e.class == ErrorClass::Annotation => {
                settings.push(shorten(e, &short))
            }
            Problem::Model(e) => rejected.push(shorten(e, &short)),
            Problem::Unreadable { .. } => rejected.push(short(&problem.to_string())),
        }
    }
    if rejected.is_empty() {
        cat.push(Check::success(
            ids::MANIFESTS_VALID,
            desc(ids::MANIFESTS_VALID),
        ));
    } else {
        cat.push(
            Check::error(
                ids::MANIFESTS_VALID,
                desc(ids::MANIFESTS_VALID),
                rejected.join("\n"),
            )
            .hint(
                "fix each file at the line and field named; the control plane serves the last \
                 good version of a file until then (`weft apply -f FILE` validates before writing)",
            ),
        );
    }

    // Compiled as the control plane compiles them (`weft-controller all` uses the trust
    // domain as the cluster's DNS domain).
    let options = CompileOptions {
        cluster_domain: config.trust_domain.clone(),
    };
    let policies = compile_with(&loaded.objects, &options);
    settings.extend(policies.errors.iter().map(|e| shorten(e, &short)));
    if settings.is_empty() {
        cat.push(Check::success(
            ids::SETTINGS_VALID,
            desc(ids::SETTINGS_VALID),
        ));
    } else {
        cat.push(
            Check::error(
                ids::SETTINGS_VALID,
                desc(ids::SETTINGS_VALID),
                settings.join("\n"),
            )
            .hint("each message says what is used instead; fix the annotation or object named"),
        );
    }
    let warnings: Vec<String> = policies
        .warnings
        .iter()
        .map(|e| shorten(e, &short))
        .collect();
    if warnings.is_empty() {
        cat.push(Check::success(ids::NO_WARNINGS, desc(ids::NO_WARNINGS)));
    } else {
        cat.push(Check::warning(
            ids::NO_WARNINGS,
            desc(ids::NO_WARNINGS),
            warnings.join("\n"),
        ));
    }

    // One policy per Service port: the same override shows once per port.
    let overridden: BTreeSet<String> = policies
        .services
        .values()
        .flat_map(|p| &p.overridden)
        .map(ToString::to_string)
        .collect();
    if overridden.is_empty() {
        cat.push(Check::success(
            ids::NOTHING_OVERRIDDEN,
            desc(ids::NOTHING_OVERRIDDEN),
        ));
    } else {
        cat.push(
            Check::warning(
                ids::NOTHING_OVERRIDDEN,
                desc(ids::NOTHING_OVERRIDDEN),
                overridden.into_iter().collect::<Vec<_>>().join("\n"),
            )
            .hint(
                "a ServiceProfile with routes (or a TrafficSplit) takes precedence, as in Linkerd: \
                 move the retries and timeouts into it, or delete it to use the HTTPRoutes",
            ),
        );
    }
    (cat, Some(loaded.objects))
}

/// A problem's text with its file relative to the cluster directory.
fn shorten(e: &ModelError, short: &dyn Fn(&str) -> String) -> String {
    let mut e = e.clone();
    e.file = short(&e.file);
    e.to_string()
}
