//! `weft inject`, run as the real binary: golden outputs for realistic manifests in both modes,
//! round trips (re-parsing, original fields kept, idempotence, stdin = file = directory, JSON),
//! and the failure contract for malformed input (exit 1, one line naming file, document and line,
//! nothing on stdout).
//!
//! Goldens live in tests/fixtures/inject: for `X.yaml`, `X.golden.yaml` / `X.manual.golden.yaml`
//! (stdout) and `X.stderr` / `X.manual.stderr` (the report). The CLI's version appears in them as
//! `{VERSION}`. `UPDATE_GOLDEN=1 cargo test -p weft-cli --test inject` rewrites them; read the
//! diff before keeping it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_yaml_ng::Value;

/// The inputs with goldens.
const FIXTURES: &[&str] = &[
    "emojivoto.yaml",
    "deployments-list.yaml",
    "workloads.yaml",
    "namespace.yaml",
    "already-injected.yaml",
    "disabled.yaml",
    "host-network.yaml",
    "udp.yaml",
    "web.json",
];

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        &self.stdout
    }

    /// Exit 1, nothing on stdout, one line `error: <prefix>...` containing `reason`.
    #[track_caller]
    fn fails(&self, prefix: &str, reason: &str) {
        assert_eq!(self.code, 1, "expected exit status 1: {self:#?}");
        assert_eq!(self.stdout, "", "nothing on stdout: {self:#?}");
        assert_eq!(self.stderr.lines().count(), 1, "one line: {self:#?}");
        assert!(
            self.stderr.starts_with(&format!("error: {prefix}")),
            "{prefix:?}: {self:#?}"
        );
        assert!(self.stderr.contains(reason), "{reason:?}: {self:#?}");
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inject")
}

/// Runs `weft inject ARGS` in `dir`, with `stdin` (empty if `None`).
fn inject(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("inject")
        .args(args)
        .current_dir(dir)
        .env_remove("WEFT_CONTEXT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    // Written before reading, so inputs must stay under the pipe buffer unless the child reads
    // them all first (it does: it reads everything before writing anything).
    pipe.write_all(stdin.unwrap_or_default()).unwrap();
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn stem(fixture: &str) -> &str {
    fixture.rsplit_once('.').map_or(fixture, |(stem, _)| stem)
}

/// Golden text with the version replaced by `{VERSION}`, so a release does not touch them.
fn versionless(text: &str) -> String {
    text.replace(&format!("weft-proxy:{VERSION}"), "weft-proxy:{VERSION}")
        .replace(
            &format!("proxy-version: {VERSION}"),
            "proxy-version: {VERSION}",
        )
}

/// Compares `actual` with the golden file `name` (or rewrites it under UPDATE_GOLDEN); returns a
/// description of the mismatch.
fn golden(name: &str, actual: &str) -> Option<String> {
    let path = fixtures().join(name);
    let actual = versionless(actual);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    (expected != actual).then(|| {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .map_or_else(|| "the end".to_owned(), |i| format!("line {}", i + 1));
        format!("{name} differs at {line}; got:\n{actual}")
    })
}

fn modes() -> [(&'static str, &'static [&'static str]); 2] {
    [("", &[]), (".manual", &["--manual"])]
}

#[test]
fn goldens() {
    let mut failures = Vec::new();
    for fixture in FIXTURES {
        for (suffix, flags) in modes() {
            let mut args = flags.to_vec();
            args.push(fixture);
            let run = inject(&fixtures(), &args, None);
            let stdout = run.ok();
            let stem = stem(fixture);
            failures.extend(golden(&format!("{stem}{suffix}.golden.yaml"), stdout));
            failures.extend(golden(&format!("{stem}{suffix}.stderr"), &run.stderr));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The non-empty documents of a YAML or JSON stream.
fn documents(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    let docs: Vec<Value> = if text.trim_start().starts_with('{') {
        serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .map(Result::unwrap)
            .collect()
    } else {
        serde_yaml_ng::Deserializer::from_str(text)
            .map(|d| Value::deserialize(d).unwrap())
            .collect()
    };
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Whether everything in `original` is in `injected`: every key with a contained value, every
/// list at least as long with its first items contained (injection only appends). The one value
/// that changes is an octal file mode (`0644`, a string to YAML 1.2) that becomes the number
/// Kubernetes reads (420).
fn contained(original: &Value, injected: &Value, path: &str) -> Result<(), String> {
    match (original, injected) {
        (Value::Mapping(o), Value::Mapping(i)) => {
            for (k, v) in o {
                let key = k.as_str().unwrap_or("?");
                let here = format!("{path}.{key}");
                let Some(w) = i.get(k) else {
                    return Err(format!("{here} is gone"));
                };
                contained(v, w, &here)?;
            }
            Ok(())
        }
        (Value::Sequence(o), Value::Sequence(i)) if i.len() >= o.len() => o
            .iter()
            .zip(i)
            .enumerate()
            .try_for_each(|(n, (a, b))| contained(a, b, &format!("{path}[{n}]"))),
        (Value::String(mode), Value::Number(n))
            if mode.starts_with('0') && i64::from_str_radix(mode, 8).ok() == n.as_i64() =>
        {
            Ok(())
        }
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{path}: {a:?} became {b:?}")),
    }
}

#[test]
fn output_reparses_and_keeps_every_original_field() {
    for fixture in FIXTURES {
        let input = std::fs::read_to_string(fixtures().join(fixture)).unwrap();
        let originals = documents(&input);
        for (_, flags) in modes() {
            let mut args = flags.to_vec();
            args.push(fixture);
            let run = inject(&fixtures(), &args, None);
            let outputs = documents(run.ok());
            assert_eq!(outputs.len(), originals.len(), "{fixture} {flags:?}");
            for (n, (o, i)) in originals.iter().zip(&outputs).enumerate() {
                if let Err(e) = contained(o, i, "") {
                    panic!("{fixture} {flags:?} document {}: {e}", n + 1);
                }
            }
        }
    }
}

#[test]
fn injecting_twice_is_injecting_once() {
    for fixture in FIXTURES {
        for (_, flags) in modes() {
            let mut args = flags.to_vec();
            args.push(fixture);
            let once = inject(&fixtures(), &args, None);
            let mut args = flags.to_vec();
            args.push("-");
            let twice = inject(&fixtures(), &args, Some(once.ok().as_bytes()));
            assert_eq!(twice.ok(), once.stdout, "{fixture} {flags:?}");
            assert!(
                twice.stderr.contains("summary: 0 injected, 0 annotated"),
                "{fixture} {flags:?}: {}",
                twice.stderr
            );
        }
    }
}

#[test]
fn stdin_file_and_directory_agree() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("k8s");
    std::fs::create_dir_all(manifests.join("apps")).unwrap();
    let emojivoto = std::fs::read(fixtures().join("emojivoto.yaml")).unwrap();
    let web = std::fs::read(fixtures().join("web.json")).unwrap();
    std::fs::write(manifests.join("apps/emojivoto.yaml"), &emojivoto).unwrap();
    std::fs::write(manifests.join("web.json"), &web).unwrap();
    std::fs::write(manifests.join("README.md"), "not a manifest").unwrap();
    std::fs::write(dir.path().join("emojivoto.yaml"), &emojivoto).unwrap();
    std::fs::write(dir.path().join("web.json"), &web).unwrap();
    for (_, flags) in modes() {
        let with = |paths: &[&str], stdin: Option<&[u8]>| {
            let mut args = flags.to_vec();
            args.extend(paths);
            inject(dir.path(), &args, stdin)
        };
        let file = with(&["emojivoto.yaml"], None);
        let stdin = with(&["-"], Some(&emojivoto));
        assert_eq!(stdin.ok(), file.ok());
        assert_eq!(stdin.stderr, file.stderr);
        // A directory is its files in path order: apps/emojivoto.yaml, then web.json.
        let directory = with(&["k8s"], None);
        let both = with(&["emojivoto.yaml", "web.json"], None);
        assert_eq!(directory.ok(), both.ok());
        assert_eq!(directory.stderr, both.stderr);
        let web_only = with(&["web.json"], None);
        assert_eq!(
            both.stdout,
            format!("{}---\n{}", file.stdout, web_only.stdout)
        );
    }
    let empty = tempfile::tempdir().unwrap();
    inject(empty.path(), &["."], None).fails(".: ", "no .yaml, .yml or .json files");
    inject(empty.path(), &["missing.yaml"], None).fails("missing.yaml: ", "no such file");
}

#[test]
fn malformed_input_fails_naming_file_document_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixtures().join("emojivoto.yaml")).unwrap();
    std::fs::write(dir.path().join("good.yaml"), &good).unwrap();
    let bad = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: b\n    namespace: oops\n";
    std::fs::write(dir.path().join("bad.yaml"), bad).unwrap();
    // Nothing of good.yaml is written when bad.yaml, read after it, is malformed.
    inject(dir.path(), &["good.yaml", "bad.yaml"], None).fails(
        "bad.yaml: document 2, line 10, column 14: ",
        "mapping values are not allowed in this context",
    );
    inject(dir.path(), &["--manual", "-"], Some(bad.as_bytes())).fails(
        "-: document 2, line 10, column 14: ",
        "mapping values are not allowed",
    );
    inject(dir.path(), &["."], None).fails("./bad.yaml: document 2, line 10", "mapping values");
    inject(
        dir.path(),
        &["-"],
        Some(b"kind: Pod\n\x7fELF\x02\x01\x01\x00"),
    )
    .fails(
        "-: line 2, column 1: ",
        "control character U+007F is not allowed in YAML (a binary file?)",
    );
    inject(dir.path(), &["-"], Some(b"kind: \xc3\x28")).fails("-: line 1, column 7: ", "not UTF-8");
    let deep = format!("{}{}", "- ".repeat(5000), "x\n");
    inject(dir.path(), &["-"], Some(deep.as_bytes()))
        .fails("-: document 1, line 1, column ", "recursion limit exceeded");
    inject(
        dir.path(),
        &["-", "-o", "json"],
        Some(b"{\"kind\": \"Pod\"}\n{\"kind\":"),
    )
    .fails("-: document 2, line 2, column ", "EOF");
}

#[test]
fn hostile_input_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[&[u8]] = &[
        b"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: 5\n",
        b"apiVersion: v1\nkind: List\nitems: 5\n",
        b"apiVersion: v1\nkind: List\nitems: [1, [2], {kind: 3}]\n",
        b"kind: Pod\nmetadata: [1]\nspec: {containers: {a: b}}\n",
        b"kind: CronJob\nspec: {jobTemplate: {spec: {template: {spec: {containers: [7, null]}}}}}\n",
        b"? [a]\n: b\nkind: Pod\nspec: {containers: [{ports: [{protocol: UDP}]}]}\n",
        b"!!binary aGVsbG8=\n",
        b"--- !tag\nkind: Deployment\n",
        b"",
        b"---\n---\n",
    ];
    // And some garbage: a fixture with every 7th byte flipped, and a byte soup.
    let mut garbled = std::fs::read(fixtures().join("emojivoto.yaml")).unwrap();
    for (i, b) in garbled.iter_mut().enumerate() {
        if i % 7 == 3 {
            *b = b.wrapping_mul(31).wrapping_add(i as u8);
        }
    }
    let soup: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for (i, case) in cases
        .iter()
        .copied()
        .chain([&garbled[..], &soup[..]])
        .enumerate()
    {
        for flags in [&[][..], &["--manual"], &["--manual", "-o", "json"]] {
            let mut args = flags.to_vec();
            args.push("-");
            let run = inject(dir.path(), &args, Some(case));
            assert!(
                run.code == 0 || run.code == 1,
                "case {i} {flags:?}: {run:#?}"
            );
            assert!(!run.stderr.contains("panicked"), "case {i}: {run:#?}");
            if run.code == 1 {
                run.fails("-: ", "");
            }
        }
    }
    // A pod spec of the wrong shape is passed through with a warning.
    let run = inject(dir.path(), &["-"], Some(cases[0]));
    assert_eq!(
        run.ok(),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec: 5\n"
    );
    assert!(
        run.stderr.starts_with(
            "‼ deployment \"x\" has no pod template (spec is not a mapping): not injected\n"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn json_output_is_the_same_objects() {
    for fixture in ["emojivoto.yaml", "deployments-list.yaml", "web.json"] {
        for (_, flags) in modes() {
            let mut args = flags.to_vec();
            args.push(fixture);
            let yaml = inject(&fixtures(), &args, None);
            args.extend(["-o", "json"]);
            let json = inject(&fixtures(), &args, None);
            assert_eq!(json.stderr, yaml.stderr);
            let from_json: Vec<serde_json::Value> = serde_json::Deserializer::from_str(json.ok())
                .into_iter()
                .collect::<Result<_, _>>()
                .expect("-o json is a stream of JSON objects");
            let from_yaml: Vec<serde_json::Value> = documents(yaml.ok())
                .iter()
                .map(|d| serde_json::to_value(d).unwrap())
                .collect();
            assert_eq!(from_json, from_yaml, "{fixture} {flags:?}");
        }
    }
}

/// The sidecar's settings come from the flags.
#[test]
fn flags_shape_the_sidecar() {
    let run = inject(
        &fixtures(),
        &[
            "--manual",
            "--proxy-image",
            "registry.example.com/weft/proxy:dev",
            "--control-plane-namespace",
            "mesh",
            "--trust-domain",
            "prod.example.com",
            "--cluster-domain",
            "k8s.example.com",
            "--skip-inbound-ports",
            "22, 8000-8010",
            "--skip-outbound-ports",
            "3306,5432",
            "namespace.yaml",
            "udp.yaml",
        ],
        None,
    );
    let docs = documents(run.ok());
    let pod = &docs[1]["spec"]["template"]["spec"];
    let proxy = &pod["containers"][1];
    assert_eq!(
        proxy["image"].as_str(),
        Some("registry.example.com/weft/proxy:dev")
    );
    let env = |name: &str| {
        proxy["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"].as_str() == Some(name))
            .and_then(|e| e["value"].as_str())
            .map(str::to_owned)
    };
    assert_eq!(
        env("WEFT_PROXY_IDENTITY_NAME").as_deref(),
        Some("default.infra.serviceaccount.identity.mesh.prod.example.com")
    );
    assert_eq!(
        env("WEFT_PROXY_IDENTITY_SVC_ADDR").as_deref(),
        Some("weft-identity.mesh.svc.k8s.example.com:8080")
    );
    assert_eq!(
        env("WEFT_PROXY_DESTINATION_SVC_ADDR").as_deref(),
        Some("weft-dst.mesh.svc.k8s.example.com:8086")
    );
    let init = &pod["initContainers"][0];
    assert_eq!(
        init["image"].as_str(),
        Some("registry.example.com/weft/proxy:dev")
    );
    let args: Vec<&str> = init["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.contains(&"--skip-inbound-ports=4190,4191,22,8000-8010"),
        "{args:?}"
    );
    assert!(
        args.contains(&"--skip-outbound-ports=3306,5432"),
        "{args:?}"
    );

    for bad in [
        &["--skip-inbound-ports", "0"][..],
        &["--skip-outbound-ports", "9-1"],
        &["--control-plane-namespace", "Weft"],
        &["--trust-domain", "a..b"],
        &["--proxy-image", "a b"],
        &["-o", "table"],
    ] {
        let mut args = bad.to_vec();
        args.push("namespace.yaml");
        let run = inject(&fixtures(), &args, None);
        assert_eq!(run.code, 2, "{bad:?}: {run:#?}");
        assert_eq!(run.stdout, "");
    }
    let run = inject(&fixtures(), &["--help"], None);
    assert!(
        run.ok().contains("--skip-outbound-ports <PORTS>"),
        "{run:#?}"
    );
    assert_eq!(inject(&fixtures(), &[], None).code, 2, "FILE is required");
}
