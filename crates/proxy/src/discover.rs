//! Which destinations are meshed, and where their inbound proxy is.
//!
//! Two sources behind one seam: static configuration (`WEFT_PROXY_MESHED_PEERS`, answered by
//! [`Discover::meshed`], which wins) and the destination service (`WEFT_PROXY_DESTINATION_SVC_ADDR`,
//! whose outbound client [`Discover::outbound`] returns, with per-authority watches, policies and
//! balancers).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::MeshedPeer;
use crate::outbound::Outbound;

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
    /// A statically known meshed endpoint (HTTP and opaque TCP).
    fn meshed(&self, authority: &str) -> Option<MeshedEndpoint>;

    /// The destination service's client, when discovery is dynamic: outbound HTTP requests to
    /// authorities it knows go through their service policy.
    fn outbound(&self) -> Option<&Arc<Outbound>> {
        None
    }
}

/// Static peers plus, optionally, the destination service.
pub struct Discovery {
    pub statics: StaticDiscover,
    pub destination: Option<Arc<Outbound>>,
}

impl Discover for Discovery {
    fn meshed(&self, authority: &str) -> Option<MeshedEndpoint> {
        self.statics.meshed(authority)
    }

    fn outbound(&self) -> Option<&Arc<Outbound>> {
        self.destination.as_ref()
    }
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
