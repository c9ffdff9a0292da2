//! The original destination of a connection redirected by iptables (SO_ORIGINAL_DST).

use std::net::SocketAddr;

use tokio::net::TcpStream;

/// The address the client meant to reach, if the connection was redirected to us. Returns
/// `None` when it was not (the original destination is our own listening address) or when the
/// platform cannot tell.
pub fn original_dst(stream: &TcpStream) -> Option<SocketAddr> {
    let local = stream.local_addr().ok()?;
    let orig = lookup(stream, local)?;
    (orig != local).then_some(orig)
}

#[cfg(target_os = "linux")]
fn lookup(stream: &TcpStream, local: SocketAddr) -> Option<SocketAddr> {
    use nix::sys::socket::{getsockopt, sockopt};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    if local.is_ipv4() {
        let sa = getsockopt(stream, sockopt::OriginalDst).ok()?;
        let ip = Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
        Some(SocketAddr::V4(SocketAddrV4::new(
            ip,
            u16::from_be(sa.sin_port),
        )))
    } else {
        let sa = getsockopt(stream, sockopt::Ip6tOriginalDst).ok()?;
        let ip = Ipv6Addr::from(sa.sin6_addr.s6_addr);
        Some(SocketAddr::V6(SocketAddrV6::new(
            ip,
            u16::from_be(sa.sin6_port),
            0,
            0,
        )))
    }
}

#[cfg(not(target_os = "linux"))]
fn lookup(_: &TcpStream, _: SocketAddr) -> Option<SocketAddr> {
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[tokio::test]
    async fn unredirected_connection_has_no_original_dst() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        assert_eq!(super::original_dst(&s), None);
    }
}
