//! Tests of `init`'s validation, plan and idempotent execution (against a model of the nat table).

#![allow(clippy::unwrap_used)]

use super::*;
use std::collections::BTreeMap;

fn args() -> InitArgs {
    InitArgs::default()
}

fn lines(args: &InitArgs) -> Vec<String> {
    plan(args)
        .unwrap()
        .iter()
        .map(|argv| display_command(argv))
        .collect()
}

fn err(args: &InitArgs) -> InitError {
    match plan(args) {
        Ok(p) => panic!("expected an error, got plan {p:?}"),
        Err(e) => e,
    }
}

#[test]
fn default_plan() {
    assert_eq!(
        lines(&args()),
        [
            "iptables -t nat -N WEFT_PROXY_INBOUND",
            "iptables -t nat -F WEFT_PROXY_INBOUND",
            "iptables -t nat -A WEFT_PROXY_INBOUND -p tcp --dport 4190 -j RETURN",
            "iptables -t nat -A WEFT_PROXY_INBOUND -p tcp --dport 4191 -j RETURN",
            "iptables -t nat -A WEFT_PROXY_INBOUND -p tcp -j REDIRECT --to-ports 4143",
            "iptables -t nat -N WEFT_PROXY_OUTPUT",
            "iptables -t nat -F WEFT_PROXY_OUTPUT",
            "iptables -t nat -A WEFT_PROXY_OUTPUT -m owner --uid-owner 2102 -j RETURN",
            "iptables -t nat -A WEFT_PROXY_OUTPUT -o lo -j RETURN",
            "iptables -t nat -A WEFT_PROXY_OUTPUT -p tcp -j REDIRECT --to-ports 4140",
            "iptables -t nat -A PREROUTING -j WEFT_PROXY_INBOUND",
            "iptables -t nat -A OUTPUT -j WEFT_PROXY_OUTPUT",
        ]
    );
}

#[test]
fn plan_first_element_is_the_binary() {
    let a = InitArgs {
        iptables: "/usr/sbin/iptables-legacy".into(),
        ..args()
    };
    for argv in plan(&a).unwrap() {
        assert_eq!(argv[0], "/usr/sbin/iptables-legacy");
        assert_eq!(argv[1..3], ["-t", "nat"]);
    }
}

#[test]
fn skips_ports_and_subnets() {
    let a = InitArgs {
        inbound_port: "5143".into(),
        outbound_port: "5140".into(),
        proxy_uid: "1337".into(),
        skip_inbound_ports: " 4190, 4191,22,4190,".into(),
        skip_outbound_ports: "3306,8000-8100".into(),
        skip_subnets: "10.96.0.0/12, 192.168.1.7".into(),
        ..args()
    };
    assert_eq!(
        lines(&a),
        [
            "iptables -t nat -N WEFT_PROXY_INBOUND",
            "iptables -t nat -F WEFT_PROXY_INBOUND",
            "iptables -t nat -A WEFT_PROXY_INBOUND -p tcp --dport 4190 -j RETURN",
            "iptables -t nat -A WEFT_PROXY_INBOUND -p tcp --dport 4191 -j RETURN",
            "iptables -t nat -A WEFT_PROXY_INBOUND -p tcp --dport 22 -j RETURN",
            "iptables -t nat -A WEFT_PROXY_INBOUND -p tcp -j REDIRECT --to-ports 5143",
            "iptables -t nat -N WEFT_PROXY_OUTPUT",
            "iptables -t nat -F WEFT_PROXY_OUTPUT",
            "iptables -t nat -A WEFT_PROXY_OUTPUT -m owner --uid-owner 1337 -j RETURN",
            "iptables -t nat -A WEFT_PROXY_OUTPUT -o lo -j RETURN",
            "iptables -t nat -A WEFT_PROXY_OUTPUT -p tcp --dport 3306 -j RETURN",
            "iptables -t nat -A WEFT_PROXY_OUTPUT -p tcp --dport 8000:8100 -j RETURN",
            "iptables -t nat -A WEFT_PROXY_OUTPUT -d 10.96.0.0/12 -j RETURN",
            "iptables -t nat -A WEFT_PROXY_OUTPUT -d 192.168.1.7/32 -j RETURN",
            "iptables -t nat -A WEFT_PROXY_OUTPUT -p tcp -j REDIRECT --to-ports 5140",
            "iptables -t nat -A PREROUTING -j WEFT_PROXY_INBOUND",
            "iptables -t nat -A OUTPUT -j WEFT_PROXY_OUTPUT",
        ]
    );
}

#[test]
fn empty_skip_inbound_list_redirects_everything() {
    let a = InitArgs {
        skip_inbound_ports: String::new(),
        ..args()
    };
    let l = lines(&a);
    assert!(!l
        .iter()
        .any(|l| l.contains("WEFT_PROXY_INBOUND -p tcp --dport")));
    assert!(l.contains(
        &"iptables -t nat -A WEFT_PROXY_INBOUND -p tcp -j REDIRECT --to-ports 4143".to_string()
    ));
}

#[test]
fn ipv6_repeats_rules_with_ip6tables() {
    let a = InitArgs {
        ipv6: true,
        skip_subnets: "10.0.0.0/8,fd00::/8".into(),
        ..args()
    };
    let l = lines(&a);
    assert_eq!(l.len(), 2 * 12 + 2);
    let (v4, v6) = l.split_at(13);
    assert!(v4.iter().all(|l| l.starts_with("iptables ")));
    assert!(v6.iter().all(|l| l.starts_with("ip6tables ")));
    assert!(
        v4.contains(&"iptables -t nat -A WEFT_PROXY_OUTPUT -d 10.0.0.0/8 -j RETURN".to_string())
    );
    assert!(v6.contains(&"ip6tables -t nat -A WEFT_PROXY_OUTPUT -d fd00::/8 -j RETURN".to_string()));
    assert!(!v6.iter().any(|l| l.contains("10.0.0.0/8")));
    assert!(!v4.iter().any(|l| l.contains("fd00::")));
    assert_eq!(
        v6.last().unwrap(),
        "ip6tables -t nat -A OUTPUT -j WEFT_PROXY_OUTPUT"
    );
}

#[test]
fn ip6tables_binary_follows_iptables() {
    assert_eq!(default_ip6tables("iptables"), "ip6tables");
    assert_eq!(default_ip6tables("iptables-legacy"), "ip6tables-legacy");
    assert_eq!(
        default_ip6tables("/usr/sbin/iptables-nft"),
        "/usr/sbin/ip6tables-nft"
    );
    assert_eq!(default_ip6tables("/opt/iptables/bin/xt"), "ip6tables");
    let a = InitArgs {
        ipv6: true,
        iptables: "iptables-legacy".into(),
        ..args()
    };
    assert_eq!(plan(&a).unwrap().last().unwrap()[0], "ip6tables-legacy");
    let a = InitArgs {
        ipv6: true,
        ip6tables: Some("/bin/my6".into()),
        ..args()
    };
    assert_eq!(plan(&a).unwrap().last().unwrap()[0], "/bin/my6");
}

#[test]
fn validation_errors_name_flag_and_value() {
    let cases: Vec<(InitArgs, &str)> = vec![
        (InitArgs { skip_subnets: "10.0.0/8".into(), ..args() }, "invalid --skip-subnets \"10.0.0/8\": \"10.0.0\" is not an IPv4 or IPv6 address"),
        (InitArgs { skip_subnets: "10.0.0.0/8,10.1.2.3/8".into(), ..args() }, "invalid --skip-subnets \"10.1.2.3/8\": host bits are set (did you mean 10.0.0.0/8?)"),
        (InitArgs { skip_subnets: "10.0.0.0/33".into(), ..args() }, "invalid --skip-subnets \"10.0.0.0/33\": prefix length \"33\""),
        (InitArgs { skip_subnets: "10.0.0.0/+8".into(), ..args() }, "invalid --skip-subnets \"10.0.0.0/+8\""),
        (InitArgs { skip_subnets: "fd00::/8".into(), ..args() }, "invalid --skip-subnets \"fd00::/8\": an IPv6 subnet, but"),
        (InitArgs { skip_inbound_ports: "4190,41x1".into(), ..args() }, "invalid --skip-inbound-ports \"41x1\": not a port number"),
        (InitArgs { skip_inbound_ports: "0".into(), ..args() }, "invalid --skip-inbound-ports \"0\": port out of range"),
        (InitArgs { skip_outbound_ports: "70000".into(), ..args() }, "invalid --skip-outbound-ports \"70000\": port out of range"),
        (InitArgs { skip_outbound_ports: "9000-8000".into(), ..args() }, "invalid --skip-outbound-ports \"9000-8000\": range is backwards (did you mean 8000-9000?)"),
        (InitArgs { skip_outbound_ports: "-5".into(), ..args() }, "invalid --skip-outbound-ports \"-5\": not a port number"),
        (InitArgs { inbound_port: "".into(), ..args() }, "invalid --inbound-port \"\": not a port number"),
        (InitArgs { outbound_port: "65536".into(), ..args() }, "invalid --outbound-port \"65536\": port out of range"),
        (InitArgs { proxy_uid: "weft".into(), ..args() }, "invalid --proxy-uid \"weft\": not a numeric uid"),
        (InitArgs { proxy_uid: "-1".into(), ..args() }, "invalid --proxy-uid \"-1\": not a numeric uid"),
        (InitArgs { proxy_uid: "4294967295".into(), ..args() }, "invalid --proxy-uid \"4294967295\": uid out of range"),
        (InitArgs { proxy_uid: "99999999999".into(), ..args() }, "invalid --proxy-uid \"99999999999\": uid out of range"),
        (InitArgs { iptables: "".into(), ..args() }, "invalid --iptables \"\": empty"),
        (InitArgs { iptables: "iptables -w".into(), ..args() }, "invalid --iptables \"iptables -w\": contains whitespace"),
        (InitArgs { ipv6: true, ip6tables: Some(" ".into()), ..args() }, "invalid --ip6tables \" \": empty"),
    ];
    for (a, want) in cases {
        let e = err(&a);
        let msg = e.to_string();
        assert!(msg.starts_with(want), "got {msg:?}, want prefix {want:?}");
        assert!(!msg.contains('\n'), "one line: {msg:?}");
        assert_eq!(e.exit_code(), 64, "{msg}");
    }
}

#[test]
fn accepts_edge_values() {
    let a = InitArgs {
        inbound_port: "65535".into(),
        outbound_port: "1".into(),
        proxy_uid: "0".into(),
        skip_subnets: "0.0.0.0/0".into(),
        skip_outbound_ports: "1-65535".into(),
        ..args()
    };
    let l = lines(&a);
    assert!(l.contains(&"iptables -t nat -A WEFT_PROXY_OUTPUT -d 0.0.0.0/0 -j RETURN".to_string()));
    assert!(l.contains(
        &"iptables -t nat -A WEFT_PROXY_OUTPUT -p tcp --dport 1:65535 -j RETURN".to_string()
    ));
    assert!(l.contains(
        &"iptables -t nat -A WEFT_PROXY_INBOUND -p tcp -j REDIRECT --to-ports 65535".to_string()
    ));
}

#[test]
fn cli_defaults_match_default_impl() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        init: InitArgs,
    }
    // Only meaningful when no WEFT_PROXY_INIT_* variable is set in the test's environment.
    if std::env::vars().any(|(k, _)| k.starts_with("WEFT_PROXY_INIT_")) {
        return;
    }
    let parsed = Cli::try_parse_from(["init"]).unwrap().init;
    assert_eq!(plan(&parsed).unwrap(), plan(&args()).unwrap());
    let parsed = Cli::try_parse_from([
        "init",
        "--dry-run",
        "--ipv6",
        "--skip-subnets",
        "10.0.0.0/8",
    ])
    .unwrap()
    .init;
    assert!(parsed.dry_run && parsed.ipv6);
    assert_eq!(parsed.skip_subnets, "10.0.0.0/8");
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn display_quotes_only_when_needed() {
    let argv: Vec<String> = ["/usr/sbin/iptables", "-t", "nat", "a b", "it's", ""]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        display_command(&argv),
        r"/usr/sbin/iptables -t nat 'a b' 'it'\''s' ''"
    );
}

// === Idempotence, against a model of iptables' nat table ===

/// A small model of `iptables -t nat` for each binary: chains with their rules as text.
#[derive(Default)]
struct FakeIptables {
    tables: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    calls: Vec<String>,
    /// Make the command whose display form equals this fail.
    fail: Option<String>,
}

impl FakeIptables {
    fn new() -> Self {
        Self::default()
    }

    fn table(&mut self, bin: &str) -> &mut BTreeMap<String, Vec<String>> {
        self.tables.entry(bin.to_string()).or_insert_with(|| {
            ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]
                .iter()
                .map(|c| (c.to_string(), Vec::new()))
                .collect()
        })
    }

    fn rules(&mut self, bin: &str, chain: &str) -> Vec<String> {
        self.table(bin).get(chain).cloned().unwrap_or_default()
    }
}

fn ok() -> Outcome {
    Outcome {
        success: true,
        status: "exit status: 0".into(),
        stderr: String::new(),
    }
}

fn fail(code: i32, stderr: &str) -> Outcome {
    Outcome {
        success: false,
        status: format!("exit status: {code}"),
        stderr: stderr.into(),
    }
}

impl Runner for FakeIptables {
    fn run(&mut self, argv: &[String]) -> Result<Outcome, InitError> {
        let line = display_command(argv);
        self.calls.push(line.clone());
        if self.fail.as_deref() == Some(line.as_str()) {
            return Ok(fail(4, "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)"));
        }
        assert_eq!(argv[1..3], ["-t", "nat"], "{line}");
        let (op, chain, rule) = (argv[3].as_str(), argv[4].clone(), argv[5..].join(" "));
        let table = self.table(&argv[0]);
        Ok(match op {
            "-N" if table.contains_key(&chain) => fail(1, "iptables: Chain already exists."),
            "-N" => {
                table.insert(chain, Vec::new());
                ok()
            }
            "-S" if table.contains_key(&chain) => ok(),
            "-F" | "-A" | "-C" | "-S" if !table.contains_key(&chain) => {
                fail(1, "iptables: No chain/target/match by that name.")
            }
            "-F" => {
                table.insert(chain, Vec::new());
                ok()
            }
            "-A" => {
                if let Some(target) = rule.strip_prefix("-j ").filter(|t| t.starts_with("WEFT")) {
                    if !table.contains_key(target) {
                        return Ok(fail(2, "Couldn't load target"));
                    }
                }
                table.entry(chain).or_default().push(rule);
                ok()
            }
            "-C" if table[&chain].contains(&rule) => ok(),
            "-C" => fail(
                1,
                "iptables: Bad rule (does a matching rule exist in that chain?).",
            ),
            other => panic!("unexpected operation {other} in {line}"),
        })
    }
}

fn apply(fake: &mut FakeIptables, a: &InitArgs) -> Result<(), InitError> {
    execute(&steps(a).unwrap(), fake)
}

#[test]
fn fresh_namespace_runs_exactly_the_plan_plus_checks() {
    let mut fake = FakeIptables::new();
    apply(&mut fake, &args()).unwrap();
    let mut expected = lines(&args());
    // The two jumps are each preceded by their -C check.
    let n = expected.len();
    expected.insert(
        n - 2,
        "iptables -t nat -C PREROUTING -j WEFT_PROXY_INBOUND".into(),
    );
    expected.insert(n, "iptables -t nat -C OUTPUT -j WEFT_PROXY_OUTPUT".into());
    assert_eq!(fake.calls, expected);
    assert_eq!(
        fake.rules("iptables", "PREROUTING"),
        ["-j WEFT_PROXY_INBOUND"]
    );
    assert_eq!(fake.rules("iptables", "OUTPUT"), ["-j WEFT_PROXY_OUTPUT"]);
    assert_eq!(
        fake.rules("iptables", OUTBOUND_CHAIN),
        [
            "-m owner --uid-owner 2102 -j RETURN",
            "-o lo -j RETURN",
            "-p tcp -j REDIRECT --to-ports 4140",
        ]
    );
}

#[test]
fn running_twice_leaves_one_copy() {
    let mut fake = FakeIptables::new();
    // Someone else's rules stay where they are.
    fake.table("iptables")
        .get_mut("OUTPUT")
        .unwrap()
        .push("-d 1.2.3.4/32 -j DNAT --to-destination 5.6.7.8".into());
    apply(&mut fake, &args()).unwrap();
    let once = fake.tables.clone();
    apply(&mut fake, &args()).unwrap();
    assert_eq!(fake.tables, once);
    assert_eq!(
        fake.rules("iptables", "OUTPUT"),
        [
            "-d 1.2.3.4/32 -j DNAT --to-destination 5.6.7.8",
            "-j WEFT_PROXY_OUTPUT"
        ]
    );
    assert_eq!(
        fake.rules("iptables", "PREROUTING"),
        ["-j WEFT_PROXY_INBOUND"]
    );
    // The second run created no chain and appended no jump.
    let second: Vec<_> = fake.calls.iter().skip(fake.calls.len() / 2).collect();
    assert!(second.iter().any(|c| c.ends_with("-S WEFT_PROXY_INBOUND")));
    assert!(!second
        .iter()
        .any(|c| c.contains("-A PREROUTING") || c.contains("-A OUTPUT")));
}

#[test]
fn rerun_with_new_settings_replaces_old_rules() {
    let mut fake = FakeIptables::new();
    let first = InitArgs {
        skip_outbound_ports: "3306".into(),
        ..args()
    };
    apply(&mut fake, &first).unwrap();
    assert!(fake
        .rules("iptables", OUTBOUND_CHAIN)
        .contains(&"-p tcp --dport 3306 -j RETURN".to_string()));
    let second = InitArgs {
        skip_outbound_ports: "5432".into(),
        ..args()
    };
    apply(&mut fake, &second).unwrap();
    let rules = fake.rules("iptables", OUTBOUND_CHAIN);
    assert!(!rules.contains(&"-p tcp --dport 3306 -j RETURN".to_string()));
    assert_eq!(
        rules.iter().filter(|r| r.contains("--dport 5432")).count(),
        1
    );
    assert_eq!(fake.rules("iptables", "OUTPUT"), ["-j WEFT_PROXY_OUTPUT"]);
}

#[test]
fn ipv6_tables_are_separate_and_idempotent() {
    let mut fake = FakeIptables::new();
    let a = InitArgs {
        ipv6: true,
        ..args()
    };
    apply(&mut fake, &a).unwrap();
    apply(&mut fake, &a).unwrap();
    for bin in ["iptables", "ip6tables"] {
        assert_eq!(
            fake.rules(bin, "PREROUTING"),
            ["-j WEFT_PROXY_INBOUND"],
            "{bin}"
        );
        assert_eq!(fake.rules(bin, "OUTPUT"), ["-j WEFT_PROXY_OUTPUT"], "{bin}");
    }
}

#[test]
fn failing_command_stops_with_command_and_stderr() {
    let mut fake = FakeIptables::new();
    fake.fail = Some("iptables -t nat -F WEFT_PROXY_OUTPUT".into());
    let e = apply(&mut fake, &args()).unwrap_err();
    assert_eq!(e.exit_code(), 1);
    let msg = e.to_string();
    assert!(
        msg.starts_with("`iptables -t nat -F WEFT_PROXY_OUTPUT` failed (exit status: 4): "),
        "{msg}"
    );
    assert!(
        msg.contains("Permission denied (you must be root)"),
        "{msg}"
    );
    assert_eq!(
        fake.calls.last().unwrap(),
        "iptables -t nat -F WEFT_PROXY_OUTPUT"
    );
    assert!(
        fake.rules("iptables", "OUTPUT").is_empty(),
        "no jump after a failure"
    );
}

#[test]
fn new_chain_failure_is_an_error_when_the_chain_is_missing() {
    let mut fake = FakeIptables::new();
    fake.fail = Some("iptables -t nat -N WEFT_PROXY_INBOUND".into());
    let e = apply(&mut fake, &args()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("`iptables -t nat -N WEFT_PROXY_INBOUND` failed"),
        "{e}"
    );
    assert_eq!(
        fake.calls,
        [
            "iptables -t nat -N WEFT_PROXY_INBOUND",
            "iptables -t nat -S WEFT_PROXY_INBOUND"
        ]
    );
}

#[test]
fn failing_append_after_missing_check_is_reported() {
    let mut fake = FakeIptables::new();
    fake.fail = Some("iptables -t nat -A OUTPUT -j WEFT_PROXY_OUTPUT".into());
    let e = apply(&mut fake, &args()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("`iptables -t nat -A OUTPUT -j WEFT_PROXY_OUTPUT` failed"),
        "{e}"
    );
}

#[test]
fn missing_binary_is_a_spawn_error() {
    let a = InitArgs {
        iptables: "/nonexistent/iptables".into(),
        ..args()
    };
    let e = execute(&steps(&a).unwrap(), &mut SystemRunner).unwrap_err();
    assert!(matches!(e, InitError::Spawn { .. }), "{e:?}");
    assert_eq!(e.exit_code(), 1);
    assert!(
        e.to_string()
            .starts_with("could not run `/nonexistent/iptables -t nat -N WEFT_PROXY_INBOUND`: "),
        "{e}"
    );
}
