//! The gRPC length-prefixed message framing: a 1-byte compressed flag, a 4-byte big-endian
//! length, then the message. Messages are opaque bytes here; no protobuf is involved.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::Code;

/// Length of the prefix before every message.
pub const PREFIX_LEN: usize = 5;

/// Largest message accepted, gRPC's customary default receive limit (4 MiB).
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Why a request stream could not be decoded. Each maps to a gRPC status code via
/// [`DecodeError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The compressed flag was 1; this server negotiates no compression.
    #[error("compressed messages are not supported")]
    Compressed,
    /// The compressed flag was neither 0 nor 1.
    #[error("invalid compressed flag {0}")]
    InvalidFlag(u8),
    /// The declared length exceeds [`MAX_MESSAGE_SIZE`]; rejected before buffering anything.
    #[error("message of {0} bytes exceeds the limit of 4194304 bytes")]
    TooLarge(u32),
    /// The stream ended in the middle of a prefix or message.
    #[error("request stream ended inside a message ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes left over when the stream ended.
        buffered: usize,
    },
}

impl DecodeError {
    /// The status code a server answers with: UNIMPLEMENTED for compression (as grpc-go does),
    /// RESOURCE_EXHAUSTED for oversized messages, INTERNAL for malformed framing.
    pub fn code(&self) -> Code {
        match self {
            DecodeError::Compressed => Code::UNIMPLEMENTED,
            DecodeError::TooLarge(_) => Code::RESOURCE_EXHAUSTED,
            DecodeError::InvalidFlag(_) | DecodeError::Truncated { .. } => Code::INTERNAL,
        }
    }
}

/// Incremental decoder: feed it body chunks as they arrive with [`push`](Self::push), take
/// complete messages with [`next_message`](Self::next_message), and call
/// [`finish`](Self::finish) at the end of the stream to detect truncation.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a chunk of the request body.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete message, `Ok(None)` if more input is needed.
    ///
    /// The prefix is checked as soon as it is complete, so an oversized or compressed message
    /// is rejected without waiting for (or buffering) its body.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, DecodeError> {
        if self.buf.len() < PREFIX_LEN {
            return Ok(None);
        }
        match self.buf[0] {
            0 => {}
            1 => return Err(DecodeError::Compressed),
            flag => return Err(DecodeError::InvalidFlag(flag)),
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        if len as usize > MAX_MESSAGE_SIZE {
            return Err(DecodeError::TooLarge(len));
        }
        let len = len as usize;
        if self.buf.len() < PREFIX_LEN + len {
            return Ok(None);
        }
        self.buf.advance(PREFIX_LEN);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Call at the end of the stream, after draining [`next_message`](Self::next_message):
    /// errors if a partial prefix or message is left.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Truncated {
                buffered: self.buf.len(),
            })
        }
    }
}

/// Frames one uncompressed message. Callers keep messages under [`MAX_MESSAGE_SIZE`], which
/// fits the 4-byte length.
pub fn encode_message(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(PREFIX_LEN + message.len());
    out.put_u8(0);
    out.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.put_slice(message);
    out.freeze()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn drain(dec: &mut FrameDecoder) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(m) = dec.next_message().unwrap() {
            out.push(m);
        }
        out
    }

    #[test]
    fn roundtrip_single_message() {
        let mut dec = FrameDecoder::new();
        dec.push(&encode_message(b"hello"));
        assert_eq!(drain(&mut dec), vec![Bytes::from_static(b"hello")]);
        dec.finish().unwrap();
    }

    #[test]
    fn message_split_across_chunks_byte_by_byte() {
        let wire = encode_message(b"split me please");
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        for (i, b) in wire.iter().enumerate() {
            dec.push(&[*b]);
            let msgs = drain(&mut dec);
            if i + 1 < wire.len() {
                assert!(msgs.is_empty(), "message yielded early at byte {i}");
                assert!(dec.finish().is_err());
            }
            got.extend(msgs);
        }
        assert_eq!(got, vec![Bytes::from_static(b"split me please")]);
        dec.finish().unwrap();
    }

    #[test]
    fn several_messages_in_one_chunk_including_empty() {
        let mut wire = BytesMut::new();
        for m in [&b"one"[..], b"", b"three"] {
            wire.extend_from_slice(&encode_message(m));
        }
        // Plus the first two bytes of a fourth message.
        wire.extend_from_slice(&encode_message(b"four")[..2]);
        let mut dec = FrameDecoder::new();
        dec.push(&wire);
        assert_eq!(
            drain(&mut dec),
            vec![
                Bytes::from_static(b"one"),
                Bytes::new(),
                Bytes::from_static(b"three")
            ]
        );
        assert_eq!(dec.finish(), Err(DecodeError::Truncated { buffered: 2 }));
    }

    #[test]
    fn truncated_message_body_is_reported() {
        let wire = encode_message(b"truncated");
        let mut dec = FrameDecoder::new();
        dec.push(&wire[..wire.len() - 1]);
        assert!(drain(&mut dec).is_empty());
        let err = dec.finish().unwrap_err();
        assert_eq!(err, DecodeError::Truncated { buffered: 13 });
        assert_eq!(err.code(), Code::INTERNAL);
    }

    #[test]
    fn huge_declared_length_is_resource_exhausted_before_buffering() {
        let mut dec = FrameDecoder::new();
        dec.push(&[0, 0, 0x40, 0, 1]); // 4 MiB + 1
        let err = dec.next_message().unwrap_err();
        assert_eq!(err, DecodeError::TooLarge(MAX_MESSAGE_SIZE as u32 + 1));
        assert_eq!(err.code(), Code::RESOURCE_EXHAUSTED);

        let mut dec = FrameDecoder::new();
        dec.push(&[0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            dec.next_message().unwrap_err().code(),
            Code::RESOURCE_EXHAUSTED
        );

        // Exactly 4 MiB is allowed: the decoder waits for the body.
        let mut dec = FrameDecoder::new();
        dec.push(&[0, 0, 0x40, 0, 0]);
        assert_eq!(dec.next_message(), Ok(None));
    }

    #[test]
    fn compressed_and_invalid_flags() {
        let mut dec = FrameDecoder::new();
        dec.push(&[1, 0, 0, 0, 1, b'x']);
        let err = dec.next_message().unwrap_err();
        assert_eq!(err, DecodeError::Compressed);
        assert_eq!(err.code(), Code::UNIMPLEMENTED);

        let mut dec = FrameDecoder::new();
        dec.push(&[7, 0, 0, 0, 0]);
        assert_eq!(dec.next_message().unwrap_err().code(), Code::INTERNAL);
    }

    #[test]
    fn encode_prefix_layout() {
        let wire = encode_message(&[9; 300]);
        assert_eq!(&wire[..5], &[0, 0, 0, 1, 44]);
        assert_eq!(wire.len(), 305);
    }
}
