use super::*;

fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn accrual(kv: &[(&str, &str)]) -> FailureAccrual {
    let (accrual, invalid) = failure_accrual_annotations(&map(kv));
    assert!(invalid.is_empty(), "{invalid:?}");
    match accrual {
        Some(a) => a,
        None => panic!("{kv:?} should turn failure accrual on"),
    }
}

/// The messages (`annotation: error`) of a set that must not turn failure accrual on.
fn invalid(kv: &[(&str, &str)]) -> Vec<String> {
    let (accrual, invalid) = failure_accrual_annotations(&map(kv));
    assert_eq!(accrual, None, "{kv:?} must not turn failure accrual on");
    invalid.iter().map(ToString::to_string).collect()
}

#[test]
fn absent_mode_is_off() {
    assert_eq!(failure_accrual_annotations(&map(&[])), (None, Vec::new()));
    assert_eq!(
        failure_accrual_annotations(&map(&[(FAILURE_ACCRUAL_MAX_FAILURES, "3")])),
        (None, Vec::new()),
        "tuning without the mode does nothing"
    );
}

#[test]
fn consecutive_alone_gets_linkerd_defaults() {
    assert_eq!(
        accrual(&[(FAILURE_ACCRUAL, "consecutive")]),
        FailureAccrual {
            max_failures: 7,
            min_penalty: Duration::from_secs(1),
            max_penalty: Duration::from_secs(60),
            jitter_ratio: 0.5,
        }
    );
    // Case and spaces are free.
    assert_eq!(
        accrual(&[(FAILURE_ACCRUAL, " Consecutive ")]).max_failures,
        7
    );
}

#[test]
fn every_setting_is_read() {
    assert_eq!(
        accrual(&[
            (FAILURE_ACCRUAL, "consecutive"),
            (FAILURE_ACCRUAL_MAX_FAILURES, " 3 "),
            (FAILURE_ACCRUAL_MIN_PENALTY, "250ms"),
            (FAILURE_ACCRUAL_MAX_PENALTY, "1m30s"),
            (FAILURE_ACCRUAL_JITTER_RATIO, "0.1"),
        ]),
        FailureAccrual {
            max_failures: 3,
            min_penalty: Duration::from_millis(250),
            max_penalty: Duration::from_secs(90),
            jitter_ratio: 0.1,
        }
    );
    // Equal penalties (a fixed backoff) and a zero minimum are fine.
    let a = accrual(&[
        (FAILURE_ACCRUAL, "consecutive"),
        (FAILURE_ACCRUAL_MIN_PENALTY, "5s"),
        (FAILURE_ACCRUAL_MAX_PENALTY, "5s"),
    ]);
    assert_eq!(
        (a.min_penalty, a.max_penalty),
        (Duration::from_secs(5), Duration::from_secs(5))
    );
    let a = accrual(&[
        (FAILURE_ACCRUAL, "consecutive"),
        (FAILURE_ACCRUAL_MIN_PENALTY, "0"),
    ]);
    assert_eq!(a.min_penalty, Duration::ZERO);
    let a = accrual(&[
        (FAILURE_ACCRUAL, "consecutive"),
        (FAILURE_ACCRUAL_JITTER_RATIO, "0"),
    ]);
    assert_eq!(a.jitter_ratio, 0.0);
}

#[test]
fn bad_values_with_their_messages() {
    let on = (FAILURE_ACCRUAL, "consecutive");
    assert_eq!(
        invalid(&[(FAILURE_ACCRUAL, "errors")]),
        vec![
            r#"balancer.linkerd.io/failure-accrual: "errors" is not a failure accrual mode: expected consecutive (the only one Linkerd has)"#
        ]
    );
    assert_eq!(
        invalid(&[on, (FAILURE_ACCRUAL_MAX_FAILURES, "0")]),
        vec![
            r#"balancer.linkerd.io/failure-accrual-consecutive-max-failures: "0" is not a number of failures: expected a whole number of at least 1, like 7"#
        ]
    );
    for bad in ["-1", "3.5", "three", ""] {
        assert_eq!(
            invalid(&[on, (FAILURE_ACCRUAL_MAX_FAILURES, bad)]).len(),
            1,
            "{bad:?}"
        );
    }
    assert_eq!(
        invalid(&[on, (FAILURE_ACCRUAL_MIN_PENALTY, "10")]),
        vec![
            r#"balancer.linkerd.io/failure-accrual-consecutive-min-penalty: "10" is not a duration: "10" has no unit (expected e.g. 300ms, 2s or 1m30s)"#
        ]
    );
    assert_eq!(
        invalid(&[on, (FAILURE_ACCRUAL_MAX_PENALTY, "0s")]),
        vec!["balancer.linkerd.io/failure-accrual-consecutive-max-penalty: the maximum penalty cannot be zero"]
    );
    assert_eq!(
        invalid(&[on, (FAILURE_ACCRUAL_JITTER_RATIO, "half")]),
        vec![
            r#"balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio: "half" is not a jitter ratio: expected a number from 0 to 100, like 0.5"#
        ]
    );
    for bad in ["-0.1", "101", "NaN", "inf"] {
        assert_eq!(
            invalid(&[on, (FAILURE_ACCRUAL_JITTER_RATIO, bad)]).len(),
            1,
            "{bad:?}"
        );
    }
    // Every bad value is reported, not just the first.
    assert_eq!(
        invalid(&[
            (FAILURE_ACCRUAL, "consecutive-ish"),
            (FAILURE_ACCRUAL_MAX_FAILURES, "many"),
            (FAILURE_ACCRUAL_MAX_PENALTY, "1 minute"),
        ])
        .len(),
        3
    );
}

#[test]
fn penalties_out_of_order_name_the_annotation_that_was_written() {
    let on = (FAILURE_ACCRUAL, "consecutive");
    assert_eq!(
        invalid(&[on, (FAILURE_ACCRUAL_MIN_PENALTY, "10s"), (FAILURE_ACCRUAL_MAX_PENALTY, "5s")]),
        vec!["balancer.linkerd.io/failure-accrual-consecutive-max-penalty: the minimum penalty 10s is longer than the maximum penalty 5s"]
    );
    // A minimum above the default maximum (1m) is the minimum's fault.
    assert_eq!(
        invalid(&[on, (FAILURE_ACCRUAL_MIN_PENALTY, "2m")]),
        vec!["balancer.linkerd.io/failure-accrual-consecutive-min-penalty: the minimum penalty 2m is longer than the maximum penalty 1m"]
    );
    // A maximum below the default minimum (1s) is the maximum's.
    assert_eq!(
        invalid(&[on, (FAILURE_ACCRUAL_MAX_PENALTY, "500ms")]),
        vec!["balancer.linkerd.io/failure-accrual-consecutive-max-penalty: the minimum penalty 1s is longer than the maximum penalty 500ms"]
    );
}

#[test]
fn unused_annotations_are_found() {
    let typo = "balancer.linkerd.io/failure-accrual-consecutive-max-failure";
    assert_eq!(
        unused_accrual_annotations(&map(&[
            (FAILURE_ACCRUAL, "consecutive"),
            (FAILURE_ACCRUAL_MAX_FAILURES, "3"),
            (typo, "3"),
            ("retry.linkerd.io/http", "5xx"),
        ])),
        vec![typo]
    );
    assert_eq!(
        unused_accrual_annotations(&map(&[(FAILURE_ACCRUAL_MAX_FAILURES, "3")])),
        vec![FAILURE_ACCRUAL_MAX_FAILURES],
        "tuning without the mode"
    );
}
