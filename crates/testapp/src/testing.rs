//! Helpers for tests in any Weft crate that drive the testapp with real clients: where the
//! Python interpreter (with `grpcio` and `websockets`) and the gRPC client script live.
//!
//! A missing tool is reported as an error naming how to install it; tests must fail on it,
//! never skip silently.

use std::path::PathBuf;

/// The environment variable that overrides the Python interpreter used by tests.
pub const PYTHON_ENV: &str = "WEFT_TEST_PYTHON";

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python interpreter for client scripts: `$WEFT_TEST_PYTHON`, else the workspace's
/// `.venv/bin/python`. Errors with setup instructions when neither exists.
pub fn python() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(PYTHON_ENV) {
        let p = PathBuf::from(p);
        anyhow::ensure!(
            p.exists(),
            "{PYTHON_ENV}={} does not exist; point it at a Python with grpcio and websockets",
            p.display()
        );
        return Ok(p);
    }
    let venv = workspace_root().join(".venv/bin/python");
    anyhow::ensure!(
        venv.exists(),
        "no Python for client tests: {} is missing and {PYTHON_ENV} is unset; create it with \
         `python3 -m venv .venv && .venv/bin/pip install grpcio websockets` in the workspace root",
        venv.display()
    );
    Ok(venv)
}

/// The grpcio client script: `grpc_client.py TARGET METHOD MESSAGE [--count N]
/// [--expect-status CODE] [--authority AUTH] [--metadata KEY=VALUE]...`.
///
/// It exits 0 only when the call ended as expected (status, and for OK the echoed messages).
pub fn grpc_client_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/grpc_client.py")
}
