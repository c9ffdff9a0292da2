//! The command line itself: `--help` everywhere, usage errors with clap's exit status 2, the
//! global `--context` flag and `-o/--output`.
#![allow(clippy::unwrap_used)]

mod support;

use support::Dir;

const COMMANDS: &[&[&str]] = &[
    &[],
    &["identity"],
    &["identity", "create-root"],
    &["identity", "create-issuer"],
    &["identity", "inspect"],
    &["identity", "verify"],
];

#[test]
fn help_works_for_every_command() {
    let dir = Dir::new();
    for command in COMMANDS {
        for flag in ["--help", "-h"] {
            let mut args = command.to_vec();
            args.push(flag);
            let run = dir.weft(&args);
            let out = run.ok();
            let usage = format!("Usage: weft {}", command.join(" "));
            assert!(out.contains(usage.trim_end()), "{args:?}: {out}");
            assert_eq!(run.stderr, "", "{args:?}");
        }
    }
    // `weft help <command>` as well.
    let out = dir.weft(&["help", "identity", "verify"]).ok().to_owned();
    assert!(out.contains("--anchors <BUNDLE>"), "{out}");
    // The long help explains what step command each create-* matches.
    let out = dir
        .weft(&["identity", "create-root", "--help"])
        .ok()
        .to_owned();
    assert!(out.contains("--profile root-ca"), "{out}");
    assert!(out.contains("[default: 87600h]"), "{out}");
    let out = dir
        .weft(&["identity", "create-issuer", "--help"])
        .ok()
        .to_owned();
    assert!(out.contains("--profile intermediate-ca"), "{out}");
    assert!(out.contains("[default: 8760h]"), "{out}");
    assert!(
        out.contains("[default: identity.linkerd.cluster.local]"),
        "{out}"
    );
}

#[test]
fn version_is_printed() {
    let out = Dir::new().weft(&["--version"]).ok().to_owned();
    assert_eq!(out.trim(), format!("weft {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_2() {
    let dir = Dir::new();
    let cases: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["identity"],
        &["identity", "create-root"],
        &["identity", "create-root", "only-one.crt"],
        &["identity", "create-issuer", "i.crt", "i.key"],
        &[
            "identity",
            "create-root",
            "a.crt",
            "a.key",
            "--not-after",
            "5x",
        ],
        &[
            "identity",
            "create-root",
            "a.crt",
            "a.key",
            "--not-after",
            "-1h",
        ],
        &["identity", "inspect"],
        &["identity", "inspect", "x.crt", "-o", "yaml"],
        &["identity", "verify", "x.crt"],
    ];
    for args in cases {
        let run = dir.weft(args);
        assert_eq!(run.code, 2, "{args:?}: {run:#?}");
        assert_eq!(run.stdout, "", "{args:?}");
    }
    let run = dir.weft(&[
        "identity",
        "create-root",
        "a.crt",
        "a.key",
        "--not-after",
        "5x",
    ]);
    assert!(run.stderr.contains("invalid duration \"5x\""), "{run:#?}");
    // Nothing was written by a refused command line.
    assert!(dir.names().is_empty(), "{:?}", dir.names());
}

#[test]
fn context_is_a_global_flag_and_output_a_per_command_flag() {
    let dir = Dir::new();
    dir.weft(&[
        "--context",
        "west",
        "identity",
        "create-root",
        "ca.crt",
        "ca.key",
    ])
    .ok();
    dir.weft(&[
        "identity",
        "inspect",
        "ca.crt",
        "--context",
        "east",
        "-o",
        "json",
    ])
    .ok();
    let run = dir.weft(&["identity", "inspect", "--output=table", "ca.crt"]);
    assert!(run.ok().contains("Subject:"), "{run:#?}");
}
