//! Response body types: the boxed body every handler returns, small constructors, and the
//! deterministic pattern body that `/bytes` and the `size` knob stream without buffering.

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

/// Error type of response bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body every handler answers with. `Unsync` because streaming bodies built from futures
/// are `Send` but not `Sync`, and hyper only needs `Send`.
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Chunk size of generated bodies: large enough that a 1 GiB `/bytes` is ~16k frames, small
/// enough that memory stays flat whatever the size.
pub(crate) const CHUNK: usize = 64 * 1024;

/// The period of [`pattern_byte`]: a prime, so the pattern does not line up with power-of-two
/// chunk and buffer sizes and a dropped or duplicated chunk changes the checksum.
const PERIOD: u64 = 251;

/// Byte `i` of every generated body: `(i % 251) as u8`.
///
/// Tests compute the expected checksum of `/bytes?size=N` (or a `size` knob body) from this.
pub fn pattern_byte(i: u64) -> u8 {
    (i % PERIOD) as u8
}

/// One chunk plus one period of the pattern, built once; every chunk is a zero-copy slice of it.
fn pattern_block() -> &'static Bytes {
    static BLOCK: OnceLock<Bytes> = OnceLock::new();
    BLOCK.get_or_init(|| {
        (0..(CHUNK as u64 + PERIOD))
            .map(pattern_byte)
            .collect::<Vec<u8>>()
            .into()
    })
}

/// A body of exactly `len` bytes of [`pattern_byte`], produced in [`CHUNK`]-sized frames on demand.
#[derive(Debug)]
pub(crate) struct PatternBody {
    pos: u64,
    len: u64,
}

impl PatternBody {
    pub(crate) fn new(len: u64) -> Self {
        Self { pos: 0, len }
    }
}

impl http_body::Body for PatternBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let remaining = self.len - self.pos;
        if remaining == 0 {
            return Poll::Ready(None);
        }
        let n = remaining.min(CHUNK as u64) as usize;
        let offset = (self.pos % PERIOD) as usize;
        let chunk = pattern_block().slice(offset..offset + n);
        self.pos += n as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos == self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.pos)
    }
}

/// A complete body from bytes or a string.
pub(crate) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// An empty body.
pub(crate) fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed_unsync()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body::Body as _;

    #[test]
    fn pattern_wraps_at_251() {
        assert_eq!(pattern_byte(0), 0);
        assert_eq!(pattern_byte(250), 250);
        assert_eq!(pattern_byte(251), 0);
        assert_eq!(pattern_byte(1 << 33), ((1u64 << 33) % 251) as u8);
    }

    #[tokio::test]
    async fn pattern_body_is_exact_and_chunked() {
        for len in [0u64, 1, 250, 251, CHUNK as u64, CHUNK as u64 * 3 + 17] {
            let body = PatternBody::new(len);
            assert_eq!(body.size_hint().exact(), Some(len));
            let mut body = body;
            let mut pos = 0u64;
            while let Some(frame) = body.frame().await {
                let data = frame.unwrap().into_data().unwrap();
                assert!(!data.is_empty() && data.len() <= CHUNK);
                for (j, b) in data.iter().enumerate() {
                    assert_eq!(*b, pattern_byte(pos + j as u64), "byte {}", pos + j as u64);
                }
                pos += data.len() as u64;
            }
            assert_eq!(pos, len);
            assert!(body.is_end_stream());
        }
    }
}
