//! `weft-existence`: the cluster exists and its control plane runs, is live and ready, and
//! serves the identity, destination and viz ports.

use weft_store::cluster::{ClusterConfig, ClusterDir, ControlPlaneState, DEFAULT_CONTEXT};

use super::probe;
use super::report::{Category, Check};

/// Category name.
pub const CATEGORY: &str = "weft-existence";

/// Check ids.
pub mod ids {
    /// The cluster directory and its `cluster.json` exist and are readable.
    pub const CLUSTER_EXISTS: &str = "weft-existence/cluster-exists";
    /// `run/control-plane.json` names a process that is running.
    pub const CONTROL_PLANE_RUNNING: &str = "weft-existence/control-plane-running";
    /// The admin server's `/live` answers 200.
    pub const CONTROL_PLANE_LIVE: &str = "weft-existence/control-plane-live";
    /// The admin server's `/ready` answers 200.
    pub const CONTROL_PLANE_READY: &str = "weft-existence/control-plane-ready";
    /// The identity service accepts connections.
    pub const IDENTITY_REACHABLE: &str = "weft-existence/identity-reachable";
    /// The destination service accepts connections.
    pub const DESTINATION_REACHABLE: &str = "weft-existence/destination-reachable";
    /// The viz API accepts connections.
    pub const VIZ_REACHABLE: &str = "weft-existence/viz-reachable";
}

/// What the later categories need from this one.
pub struct Found {
    /// The cluster directory, when it exists.
    pub dir: Option<ClusterDir>,
    /// Its configuration.
    pub config: Option<ClusterConfig>,
}

/// `--context NAME` for hints, empty for the default cluster.
pub fn context_flag(name: &str) -> String {
    if name == DEFAULT_CONTEXT {
        String::new()
    } else {
        format!(" --context {name}")
    }
}

/// Runs the `weft-existence` checks for the cluster directory `dir`.
pub fn check(dir: &ClusterDir) -> (Category, Found) {
    let mut cat = Category::new(CATEGORY);
    let name = dir.name();
    let ctx = context_flag(name);
    let install = format!("weft install{ctx} (or `weft demo`)");
    let desc_exists = "cluster directory exists";
    let config = if !dir.exists() {
        let home = dir
            .root()
            .parent()
            .map_or_else(String::new, |p| p.display().to_string());
        cat.push(
            Check::error(
                ids::CLUSTER_EXISTS,
                desc_exists,
                format!("cluster {name:?} does not exist in {home} (no cluster.json)"),
            )
            .hint(install.clone()),
        );
        None
    } else {
        match dir.read_config() {
            Ok(c) => {
                cat.push(Check::success(ids::CLUSTER_EXISTS, desc_exists));
                Some(c)
            }
            Err(e) => {
                cat.push(
                    Check::error(
                        ids::CLUSTER_EXISTS,
                        desc_exists,
                        format!("{}: {e}", dir.config_file().display()),
                    )
                    .hint(format!(
                        "cluster.json is written by `weft install`; restore it or re-create the cluster ({install})"
                    )),
                );
                None
            }
        }
    };
    if config.is_none() {
        for (id, desc) in LATER {
            cat.push(Check::skipped(id, *desc, ids::CLUSTER_EXISTS));
        }
        return (
            cat,
            Found {
                dir: None,
                config: None,
            },
        );
    }

    let running_desc = "control plane is running";
    let state = match dir.read_control_plane() {
        Ok(Some(state))
            if crate::local::process::is_running(
                state.pid,
                crate::local::control_plane::CONTROLLER,
            ) =>
        {
            cat.push(Check::success(ids::CONTROL_PLANE_RUNNING, running_desc));
            Some(state)
        }
        Ok(Some(state)) => {
            cat.push(
                Check::error(
                    ids::CONTROL_PLANE_RUNNING,
                    running_desc,
                    format!(
                        "the control plane of {name:?} is not running (pid {} is gone)",
                        state.pid
                    ),
                )
                .hint(format!(
                    "weft install{ctx} starts it again; its log is in {}",
                    dir.logs_dir().display()
                )),
            );
            None
        }
        Ok(None) => {
            cat.push(
                Check::error(
                    ids::CONTROL_PLANE_RUNNING,
                    running_desc,
                    format!(
                        "no control plane was started for {name:?} (no {})",
                        dir.control_plane_file().display()
                    ),
                )
                .hint(format!("weft install{ctx}")),
            );
            None
        }
        Err(e) => {
            cat.push(
                Check::error(
                    ids::CONTROL_PLANE_RUNNING,
                    running_desc,
                    format!("{}: {e}", dir.control_plane_file().display()),
                )
                .hint(format!("weft install{ctx} rewrites it")),
            );
            None
        }
    };
    let Some(state) = state else {
        for (id, desc) in LATER.iter().skip(1) {
            cat.push(Check::skipped(id, *desc, ids::CONTROL_PLANE_RUNNING));
        }
        return (
            cat,
            Found {
                dir: Some(dir.clone()),
                config,
            },
        );
    };
    probe_control_plane(&mut cat, &state, dir);
    (
        cat,
        Found {
            dir: Some(dir.clone()),
            config,
        },
    )
}

/// The checks after `cluster-exists`, with their descriptions (for skipping).
const LATER: &[(&str, &str)] = &[
    (ids::CONTROL_PLANE_RUNNING, "control plane is running"),
    (ids::CONTROL_PLANE_LIVE, "control plane admin /live answers"),
    (ids::CONTROL_PLANE_READY, "control plane is ready"),
    (
        ids::IDENTITY_REACHABLE,
        "identity service accepts connections",
    ),
    (
        ids::DESTINATION_REACHABLE,
        "destination service accepts connections",
    ),
    (ids::VIZ_REACHABLE, "viz API accepts connections"),
];

fn probe_control_plane(cat: &mut Category, state: &ControlPlaneState, dir: &ClusterDir) {
    let logs = format!("its log is in {}", dir.logs_dir().display());
    let admin = state.admin;
    // Every probe at once: a control plane that does not answer costs one timeout, not five.
    let (live, ready, ports) = std::thread::scope(|s| {
        let live = s.spawn(|| probe::http_get(admin, "/live"));
        let ready = s.spawn(|| probe::http_get(admin, "/ready"));
        let ports = [
            (ids::IDENTITY_REACHABLE, state.identity),
            (ids::DESTINATION_REACHABLE, state.destination),
            (ids::VIZ_REACHABLE, state.viz),
        ]
        .map(|(id, addr)| (id, s.spawn(move || probe::connect(addr).map(drop))));
        (
            probe::join(live),
            probe::join(ready),
            ports.map(|(id, h)| (id, probe::join(h))),
        )
    });

    let desc = |id: &str| LATER.iter().find(|(i, _)| *i == id).map_or("", |(_, d)| *d);
    let live_check = match live {
        Ok((200, _)) => Check::success(ids::CONTROL_PLANE_LIVE, desc(ids::CONTROL_PLANE_LIVE)),
        Ok((status, body)) => Check::error(
            ids::CONTROL_PLANE_LIVE,
            desc(ids::CONTROL_PLANE_LIVE),
            format!("GET /live on {admin} answered {status}: {}", body.trim()),
        ),
        Err(e) => Check::error(ids::CONTROL_PLANE_LIVE, desc(ids::CONTROL_PLANE_LIVE), e),
    };
    cat.push(live_check.hint(logs.clone()));
    let ready_check = match ready {
        Ok((200, _)) => Check::success(ids::CONTROL_PLANE_READY, desc(ids::CONTROL_PLANE_READY)),
        Ok((status, body)) => Check::error(
            ids::CONTROL_PLANE_READY,
            desc(ids::CONTROL_PLANE_READY),
            format!("GET /ready on {admin} answered {status}:\n{}", body.trim()),
        )
        .hint(format!("the reasons above say what it waits for; {logs}")),
        Err(e) => Check::error(ids::CONTROL_PLANE_READY, desc(ids::CONTROL_PLANE_READY), e)
            .hint(logs.clone()),
    };
    cat.push(ready_check);
    for (id, result) in ports {
        let check = match result {
            Ok(()) => Check::success(id, desc(id)),
            Err(e) => Check::error(id, desc(id), e),
        };
        cat.push(check.hint(logs.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_context_only_when_needed() {
        assert_eq!(context_flag(DEFAULT_CONTEXT), "");
        assert_eq!(context_flag("east"), " --context east");
    }

    #[test]
    fn a_missing_cluster_skips_everything_else() {
        let home = std::env::temp_dir().join(format!("weft-check-none-{}", std::process::id()));
        let (cat, found) = check(&ClusterDir::new(&home, "nowhere"));
        assert!(found.dir.is_none());
        let results: Vec<_> = cat.checks.iter().map(|c| (c.id, c.result)).collect();
        assert_eq!(results.len(), 7);
        assert_eq!(
            results[0],
            (ids::CLUSTER_EXISTS, super::super::report::Outcome::Error)
        );
        assert!(results[1..]
            .iter()
            .all(|(_, r)| *r == super::super::report::Outcome::Skipped));
    }
}
