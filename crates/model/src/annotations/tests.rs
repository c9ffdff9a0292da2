use super::*;

fn ranges(pairs: &[(u16, u16)]) -> Vec<StatusRange> {
    pairs
        .iter()
        .map(|&(min, max)| StatusRange { min, max })
        .collect()
}

fn http(value: &str) -> Vec<StatusRange> {
    match parse_http_retry_conditions(value) {
        Ok(r) => r,
        Err(e) => panic!("{value:?} should parse: {e}"),
    }
}

fn http_err(value: &str) -> String {
    match parse_http_retry_conditions(value) {
        Ok(r) => panic!("{value:?} should not parse, got {r:?}"),
        Err(e) => e.to_string(),
    }
}

fn grpc_err(value: &str) -> String {
    match parse_grpc_retry_conditions(value) {
        Ok(r) => panic!("{value:?} should not parse, got {r:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn http_every_documented_form() {
    assert_eq!(http("5xx"), ranges(&[(500, 599)]));
    assert_eq!(http("gateway-error"), ranges(&[(502, 504)]));
    assert_eq!(http("504"), ranges(&[(504, 504)]));
    assert_eq!(http("500-504"), ranges(&[(500, 504)]));
    assert_eq!(http("500,502-504"), ranges(&[(500, 500), (502, 504)]));
}

#[test]
fn http_forgiving_spelling() {
    // Spaces after commas, as people write lists.
    assert_eq!(http("5xx, 429"), ranges(&[(429, 429), (500, 599)]));
    assert_eq!(http(" 500 , 502 - 504 "), ranges(&[(500, 500), (502, 504)]));
    assert_eq!(http("5XX"), ranges(&[(500, 599)]));
    assert_eq!(http("Gateway-Error"), ranges(&[(502, 504)]));
    assert_eq!(http("4xx"), ranges(&[(400, 499)]));
    // A trailing comma is harmless.
    assert_eq!(http("503,"), ranges(&[(503, 503)]));
    // Overlapping and adjacent items merge, so equal sets compare equal.
    assert_eq!(http("gateway-error, 5xx"), ranges(&[(500, 599)]));
    assert_eq!(http("500, 501, 502-504"), ranges(&[(500, 504)]));
}

#[test]
fn http_bad_values_with_their_messages() {
    assert_eq!(
        http_err(""),
        "empty value: expected a status like 504, a range like 500-504, a class like 5xx, or gateway-error"
    );
    assert_eq!(http_err(" , "), http_err(""));
    assert_eq!(
        http_err("5xx, abc"),
        r#""abc" is not an HTTP status: expected a status like 504, a range like 500-504, a class like 5xx, or gateway-error"#
    );
    assert_eq!(
        http_err("6xx"),
        r#""6xx" is not an HTTP status: expected a status like 504, a range like 500-504, a class like 5xx, or gateway-error"#
    );
    assert_eq!(
        http_err("600"),
        "600 is not an HTTP status: status codes go from 100 to 599"
    );
    assert_eq!(
        http_err("500-700"),
        "700 is not an HTTP status: status codes go from 100 to 599"
    );
    assert_eq!(
        http_err("504-500"),
        r#""504-500" is an empty range: 504 is larger than 500"#
    );
    assert_eq!(
        http_err("500-"),
        r#""500-" is not an HTTP status: expected a status like 504, a range like 500-504, a class like 5xx, or gateway-error"#
    );
    assert_eq!(
        http_err("5xx;429"),
        r#""5xx;429" is not an HTTP status: expected a status like 504, a range like 500-504, a class like 5xx, or gateway-error"#
    );
    assert!(http_err("-500").contains("is not an HTTP status"));
    assert!(http_err("500-502-504").contains("is not an HTTP status"));
}

#[test]
fn grpc_names_codes_and_spellings() {
    use GrpcCode::*;
    assert_eq!(
        parse_grpc_retry_conditions(
            "cancelled, deadline-exceeded, internal, resource-exhausted, unavailable"
        ),
        Ok(vec![
            Cancelled,
            DeadlineExceeded,
            ResourceExhausted,
            Internal,
            Unavailable
        ])
    );
    assert_eq!(
        parse_grpc_retry_conditions("UNAVAILABLE,Deadline_Exceeded, canceled, 14"),
        Ok(vec![Cancelled, DeadlineExceeded, Unavailable])
    );
    assert_eq!(parse_grpc_retry_conditions("2"), Ok(vec![Unknown]));
    for code in GrpcCode::ALL {
        assert_eq!(parse_grpc_retry_conditions(code.name()), Ok(vec![code]));
        assert_eq!(GrpcCode::from_code(code.code()), Some(code));
    }
}

#[test]
fn grpc_bad_values_with_their_messages() {
    assert_eq!(
        grpc_err("unavailable, timeout"),
        r#""timeout" is not a gRPC status: expected cancelled, deadline-exceeded, internal, resource-exhausted, unavailable or another gRPC status name"#
    );
    assert_eq!(grpc_err("17"), grpc_err("17"));
    assert!(grpc_err("17").starts_with(r#""17" is not a gRPC status"#));
    assert_eq!(grpc_err("ok"), r#""ok" is success, not a reason to retry"#);
    assert!(grpc_err("").starts_with("empty value: expected cancelled"));
    assert!(grpc_err("5xx").starts_with(r#""5xx" is not a gRPC status"#));
}

#[test]
fn limits() {
    assert_eq!(parse_retry_limit("2"), Ok(2));
    assert_eq!(parse_retry_limit(" 3 "), Ok(3));
    assert_eq!(parse_retry_limit("0"), Ok(0));
    assert_eq!(
        parse_retry_limit("two").map_err(|e| e.to_string()),
        Err(r#""two" is not a retry limit: expected a whole number like 2"#.to_string())
    );
    assert!(parse_retry_limit("-1").is_err());
    assert!(parse_retry_limit("1.5").is_err());
}

fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn retry_group_from_the_spec() {
    let (group, invalid) = retry_annotations(&map(&[
        (RETRY_HTTP, "5xx"),
        (RETRY_LIMIT, "2"),
        (RETRY_TIMEOUT, "300ms"),
        (TIMEOUT_REQUEST, "2s"),
    ]));
    assert!(invalid.is_empty());
    assert_eq!(
        group,
        Group::Present(RetryAnnotations {
            http: Some(ranges(&[(500, 599)])),
            grpc: None,
            limit: Some(2),
            timeout: Some(Duration::from_millis(300)),
        })
    );
}

#[test]
fn groups_absent_present_and_invalid() {
    let (group, invalid) = retry_annotations(&map(&[(TIMEOUT_REQUEST, "2s")]));
    assert_eq!(group, Group::Absent);
    assert!(invalid.is_empty());

    let (group, invalid) = timeout_annotations(&map(&[
        (TIMEOUT_REQUEST, "2s"),
        (TIMEOUT_RESPONSE, "1 second"),
        (TIMEOUT_IDLE, "1m30s"),
    ]));
    assert_eq!(
        group,
        Group::Present(TimeoutAnnotations {
            request: Some(Duration::from_secs(2)),
            response: None,
            idle: Some(Duration::from_secs(90)),
        })
    );
    assert_eq!(invalid.len(), 1);
    assert_eq!(invalid[0].annotation, TIMEOUT_RESPONSE);
    assert_eq!(
        invalid[0].to_string(),
        r#"timeout.linkerd.io/response: "1 second" is not a duration: "1" has no unit (expected e.g. 300ms, 2s or 1m30s)"#
    );

    let (group, invalid) = retry_annotations(&map(&[(RETRY_HTTP, "5xx, 42"), (RETRY_LIMIT, "2")]));
    assert_eq!(
        group.present().map(|g| g.limit),
        Some(Some(2)),
        "valid members are kept"
    );
    assert_eq!(invalid.len(), 1);
    assert_eq!(
        invalid[0].to_string(),
        "retry.linkerd.io/http: 42 is not an HTTP status: status codes go from 100 to 599"
    );
}

#[test]
fn unknown_policy_annotations_are_found() {
    let m = map(&[
        ("retry.linkerd.io/htpp", "5xx"),
        (RETRY_LIMIT, "2"),
        ("timeout.linkerd.io/requests", "2s"),
        ("linkerd.io/inject", "enabled"),
    ]);
    assert_eq!(
        unknown_policy_annotations(&m),
        vec!["retry.linkerd.io/htpp", "timeout.linkerd.io/requests"]
    );
}
