//! Which destinations are meshed, and where their inbound proxy is.
//!
//! Today the answer comes from static configuration (`WEFT_PROXY_MESHED_PEERS`); the destination
//! service's client implements the same trait when discovery lands.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::config::MeshedPeer;

/// A meshed endpoint: the peer's inbound proxy, the target port behind it, and the identity
/// the peer must prove (absent only when identity is disabled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshedEndpoint {
    pub peer: SocketAddr,
    pub port: u16,
    pub identity: Option<String>,
}

/// Answers whether a destination (normalized `host:port`) is meshed.
pub trait Discover: Send + Sync + 'static {
    fn meshed(&self, authority: &str) -> Option<MeshedEndpoint>;
}

/// Discovery from configuration.
#[derive(Debug, Default)]
pub struct StaticDiscover {
    peers: HashMap<String, MeshedEndpoint>,
}

impl StaticDiscover {
    pub fn new(peers: &[MeshedPeer]) -> Self {
        let peers = peers
            .iter()
            .map(|p| {
                let ep = MeshedEndpoint {
                    peer: p.peer,
                    port: p.port,
                    identity: p.identity.clone(),
                };
                (p.target.clone(), ep)
            })
            .collect();
        StaticDiscover { peers }
    }
}

impl Discover for StaticDiscover {
    fn meshed(&self, authority: &str) -> Option<MeshedEndpoint> {
        self.peers.get(authority).cloned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_by_authority() {
        let d = StaticDiscover::new(&[MeshedPeer {
            target: "web-svc:80".into(),
            peer: "127.0.1.2:4143".parse().unwrap(),
            port: 8080,
            identity: None,
        }]);
        let ep = d.meshed("web-svc:80").unwrap();
        assert_eq!((ep.peer.port(), ep.port), (4143, 8080));
        assert!(d.meshed("web-svc:81").is_none());
    }
}
