//! Helpers shared by the integration tests.
#![allow(dead_code)]

use weft_model::{parse_documents, Object, ServicePolicy};

/// Parses `text`, failing the test with every error if there is one.
pub fn parse_ok(file: &str, text: &str) -> Vec<Object> {
    let (objects, errors) = parse_documents(file, text);
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        messages.is_empty(),
        "{file}: unexpected errors:\n{}",
        messages.join("\n")
    );
    objects
}

/// A `v1 Service` manifest with one port.
pub fn service(namespace: &str, name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  selector:\n    app: {name}\n  ports:\n    - name: http\n      port: {port}\n      targetPort: 8080\n"
    )
}

/// Several manifests as one stream.
pub fn stream(docs: &[&str]) -> String {
    docs.join("---\n")
}

/// The policy for `authority`, failing the test if there is none.
pub fn policy<'a>(policies: &'a weft_model::Policies, authority: &str) -> &'a ServicePolicy {
    match policies.get(authority) {
        Some(p) => p,
        None => panic!(
            "no policy for {authority}; have {:?}",
            policies.services.keys().collect::<Vec<_>>()
        ),
    }
}

/// A request for `ServicePolicy::route_for`.
pub fn request<'a>(method: &'a str, path: &'a str) -> weft_model::policy::RequestInfo<'a> {
    weft_model::policy::RequestInfo {
        method,
        path,
        headers: &[],
        query: &[],
    }
}
