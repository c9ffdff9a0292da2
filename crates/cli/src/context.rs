//! Which cluster a command talks to: `--context NAME` (or `WEFT_CONTEXT`), else
//! [`DEFAULT_CONTEXT`], as a local-mesh cluster directory under `$WEFT_HOME`.

use anyhow::{bail, Context as _};
use weft_store::cluster::{
    validate_name, weft_home, ClusterConfig, ClusterDir, ControlPlaneState, DEFAULT_CONTEXT,
};

/// What every command may use besides its own arguments.
#[derive(Clone, Debug, Default)]
pub struct Global {
    /// `--context`, when given.
    pub context: Option<String>,
}

impl Global {
    /// ` --context NAME` when a context was given, for the commands `weft` suggests.
    pub fn context_flag(&self) -> String {
        self.context
            .as_ref()
            .map_or_else(String::new, |c| format!(" --context {c}"))
    }

    /// The selected cluster's directory (which may not exist yet).
    pub fn cluster_dir(&self) -> anyhow::Result<ClusterDir> {
        let name = self.context.as_deref().unwrap_or(DEFAULT_CONTEXT);
        validate_name(name).map_err(|e| anyhow::anyhow!("--context: {e}"))?;
        Ok(ClusterDir::new(&weft_home(), name))
    }

    /// The selected cluster, which must exist.
    pub fn cluster(&self) -> anyhow::Result<Cluster> {
        let dir = self.cluster_dir()?;
        if !dir.exists() {
            bail!(
                "cluster {:?} does not exist in {} (create it with `weft install`{}, or run `weft demo`)",
                dir.name(),
                dir.root().parent().map_or_else(String::new, |p| p.display().to_string()),
                if dir.name() == DEFAULT_CONTEXT {
                    String::new()
                } else {
                    format!(" --context {}", dir.name())
                }
            );
        }
        let config = dir
            .read_config()
            .with_context(|| format!("cluster {:?}", dir.name()))?;
        Ok(Cluster { dir, config })
    }
}

/// An existing local cluster.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Its directory.
    pub dir: ClusterDir,
    /// Its `cluster.json`.
    pub config: ClusterConfig,
}

impl Cluster {
    /// The running control plane's state, or an error saying it is not running.
    pub fn control_plane(&self) -> anyhow::Result<ControlPlaneState> {
        // The recorded state, even if its process is gone: commands that use it report the
        // unreachable address themselves (and `weft check` says whether the process runs).
        match self.dir.read_control_plane()? {
            Some(s) => Ok(s),
            None => bail!(
                "the control plane of cluster {:?} is not running (start it with `weft install`)",
                self.dir.name()
            ),
        }
    }
}
