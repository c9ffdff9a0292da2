//! Weft's meshed opaque-TCP transport header.
//!
//! An outbound proxy that carries opaque TCP to a meshed peer connects to the peer's inbound port
//! and first sends: `MAGIC`, the target port (u16, big endian), the length of a target authority
//! (u16, big endian; 0 when absent — gateways use it) and the authority bytes. Then the
//! connection carries the client's bytes unchanged. With identity, the header is sent only after
//! mTLS with an ALPN that announces it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Marks the start of a transport header.
pub const MAGIC: &[u8] = b"weft.tcp/1\n";

/// The longest authority a header may carry.
pub const MAX_AUTHORITY: usize = 255;

/// A decoded header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub port: u16,
    pub authority: Option<String>,
}

/// Why a header could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("transport header is incomplete")]
    Incomplete,
    #[error("transport header does not start with the magic bytes")]
    BadMagic,
    #[error("transport header names port 0")]
    BadPort,
    #[error("transport header authority is longer than {MAX_AUTHORITY} bytes or not UTF-8")]
    BadAuthority,
}

impl Header {
    pub fn encode(&self) -> Bytes {
        let name = self.authority.as_deref().unwrap_or("");
        let mut b = BytesMut::with_capacity(MAGIC.len() + 4 + name.len());
        b.put_slice(MAGIC);
        b.put_u16(self.port);
        b.put_u16(name.len().min(MAX_AUTHORITY) as u16);
        b.put_slice(&name.as_bytes()[..name.len().min(MAX_AUTHORITY)]);
        b.freeze()
    }

    /// Decodes a header from the start of `buf`, removing it and leaving what follows.
    pub fn decode(buf: &mut BytesMut) -> Result<Header, DecodeError> {
        if buf.len() < MAGIC.len() + 4 {
            return Err(DecodeError::Incomplete);
        }
        if &buf[..MAGIC.len()] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let mut rest = &buf[MAGIC.len()..];
        let port = rest.get_u16();
        let len = rest.get_u16() as usize;
        if port == 0 {
            return Err(DecodeError::BadPort);
        }
        if len > MAX_AUTHORITY {
            return Err(DecodeError::BadAuthority);
        }
        if rest.len() < len {
            return Err(DecodeError::Incomplete);
        }
        let authority = if len == 0 {
            None
        } else {
            Some(
                std::str::from_utf8(&rest[..len])
                    .map_err(|_| DecodeError::BadAuthority)?
                    .to_string(),
            )
        };
        buf.advance(MAGIC.len() + 4 + len);
        Ok(Header { port, authority })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_payload() {
        let h = Header {
            port: 6379,
            authority: Some("redis.default:6379".into()),
        };
        let mut b = BytesMut::from(&h.encode()[..]);
        b.extend_from_slice(b"PING");
        assert_eq!(Header::decode(&mut b).unwrap(), h);
        assert_eq!(&b[..], b"PING");
    }

    #[test]
    fn rejects_bad_input() {
        let mut b = BytesMut::from(&b"weft.tcp/1\n"[..]);
        assert_eq!(Header::decode(&mut b), Err(DecodeError::Incomplete));
        let mut b = BytesMut::from(&b"weft.tcp/1\n\x00\x00\x00\x00"[..]);
        assert_eq!(Header::decode(&mut b), Err(DecodeError::BadPort));
        let mut b = BytesMut::from(&b"weft.tcp/1\n\x00\x50\xff\xff"[..]);
        assert_eq!(Header::decode(&mut b), Err(DecodeError::BadAuthority));
        let mut b = BytesMut::from(&b"xxxx.tcp/1\n\x00\x50\x00\x00"[..]);
        assert_eq!(Header::decode(&mut b), Err(DecodeError::BadMagic));
    }
}
