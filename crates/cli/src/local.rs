//! The local mesh's moving parts as the CLI drives them: processes ([`process`]), admin probes
//! ([`probe`]), the control plane ([`control_plane`]) and workloads ([`workload`]).

pub mod control_plane;
pub mod probe;
pub mod process;
pub mod workload;
