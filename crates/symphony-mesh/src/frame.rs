//! Length-prefixed, versioned frames on mesh streams (docs/wire.md, "Frames").
//!
//! ```text
//! offset  size  field
//! 0       1     version   = 1
//! 1       1     flags     bit 0: DROPPABLE; bits 1-7 reserved, must be 0
//! 2       4     length    payload length in bytes, big-endian u32
//! 6       len   payload   opaque bytes for the layer above
//! ```
//!
//! The length is checked against the configured maximum before any buffer for the payload is
//! allocated. A frame that breaks these rules is a [`Violation`]: the reader closes the stream
//! with the violation's code and counts it.

use std::io;

use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The frame format version this node speaks.
pub const FRAME_VERSION: u8 = 1;

/// Bytes in a frame header: version, flags, length.
pub const HEADER_LEN: usize = 6;

/// Flag bit: the frame may be dropped under receive overload (gossip; repaired later).
pub const FLAG_DROPPABLE: u8 = 0b0000_0001;

/// Default maximum payload length: 1 MiB.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 1 << 20;

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Whether the sender marked the frame droppable (gossip) rather than must-deliver.
    pub droppable: bool,
    /// The opaque payload, at most the configured maximum length.
    pub payload: Bytes,
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The DROPPABLE flag.
    pub droppable: bool,
    /// Payload length in bytes.
    pub len: u32,
}

/// A breach of the frame format by the peer; each closes the stream with its own code.
///
/// Codes are QUIC application error codes sent in STOP_SENDING and RESET_STREAM (RFC 9000
/// §19.4-19.5); docs/wire.md lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Violation {
    /// The version byte is not [`FRAME_VERSION`].
    BadVersion,
    /// A reserved flag bit is set.
    BadFlags,
    /// The declared length exceeds the maximum.
    Oversized,
    /// The stream ended inside a frame.
    Truncated,
    /// A stream began with an unknown purpose byte.
    BadPurpose,
    /// A second stream was opened for a purpose that already has one.
    DuplicatePurpose,
}

impl Violation {
    /// Every violation, in code order.
    pub const ALL: [Violation; 6] = [
        Self::BadVersion,
        Self::BadFlags,
        Self::Oversized,
        Self::Truncated,
        Self::BadPurpose,
        Self::DuplicatePurpose,
    ];

    /// The application error code sent when closing a stream for this violation.
    pub const fn code(self) -> u32 {
        match self {
            Self::BadVersion => 0x10,
            Self::BadFlags => 0x11,
            Self::Oversized => 0x12,
            Self::Truncated => 0x13,
            Self::BadPurpose => 0x14,
            Self::DuplicatePurpose => 0x15,
        }
    }

    /// Position in [`Violation::ALL`], for counter arrays.
    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// The violation a received close code stands for, if it is one of ours.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|v| u64::from(v.code()) == code)
    }

    /// The counter name used in stats and logs (`bad_version`, `truncated`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadVersion => "bad_version",
            Self::BadFlags => "bad_flags",
            Self::Oversized => "oversized",
            Self::Truncated => "truncated",
            Self::BadPurpose => "bad_purpose",
            Self::DuplicatePurpose => "duplicate_purpose",
        }
    }
}

/// Why a frame could not be read or built.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The version byte is not [`FRAME_VERSION`].
    #[error("frame version {found}, expected {FRAME_VERSION}")]
    BadVersion {
        /// The version byte received.
        found: u8,
    },
    /// Reserved flag bits are set.
    #[error("frame flags {flags:#04x} set reserved bits (only {FLAG_DROPPABLE:#04x} is defined)")]
    BadFlags {
        /// The flags byte received.
        flags: u8,
    },
    /// The payload length exceeds the maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    Oversized {
        /// The declared (or requested) payload length.
        len: u64,
        /// The configured maximum.
        max: u32,
    },
    /// The stream ended before the frame was complete.
    #[error("stream ended {received} bytes into a {expected}-byte frame")]
    Truncated {
        /// Bytes of the frame (header included) received before the end.
        received: usize,
        /// Bytes the frame needed (header included; header length while in the header).
        expected: usize,
    },
    /// Reading the stream failed (reset by the peer, connection lost).
    #[error("stream read failed: {0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// The format violation this error stands for; `None` for I/O failures.
    pub fn violation(&self) -> Option<Violation> {
        match self {
            Self::BadVersion { .. } => Some(Violation::BadVersion),
            Self::BadFlags { .. } => Some(Violation::BadFlags),
            Self::Oversized { .. } => Some(Violation::Oversized),
            Self::Truncated { .. } => Some(Violation::Truncated),
            Self::Io(_) => None,
        }
    }
}

impl FrameHeader {
    /// A header for a payload of `len` bytes.
    ///
    /// Errors: [`FrameError::Oversized`] when `len` exceeds `max`.
    pub fn for_payload(len: usize, droppable: bool, max: u32) -> Result<Self, FrameError> {
        match u32::try_from(len) {
            Ok(len32) if len32 <= max => Ok(Self {
                droppable,
                len: len32,
            }),
            _ => Err(FrameError::Oversized {
                len: len as u64,
                max,
            }),
        }
    }

    /// The 6 header bytes.
    pub fn encode(self) -> [u8; HEADER_LEN] {
        let flags = if self.droppable { FLAG_DROPPABLE } else { 0 };
        let len = self.len.to_be_bytes();
        [FRAME_VERSION, flags, len[0], len[1], len[2], len[3]]
    }

    /// Parses and validates a header: version, then flags, then length against `max`.
    ///
    /// Errors: [`FrameError::BadVersion`], [`FrameError::BadFlags`], [`FrameError::Oversized`].
    pub fn decode(bytes: [u8; HEADER_LEN], max: u32) -> Result<Self, FrameError> {
        let [version, flags, l0, l1, l2, l3] = bytes;
        if version != FRAME_VERSION {
            return Err(FrameError::BadVersion { found: version });
        }
        if flags & !FLAG_DROPPABLE != 0 {
            return Err(FrameError::BadFlags { flags });
        }
        let len = u32::from_be_bytes([l0, l1, l2, l3]);
        if len > max {
            return Err(FrameError::Oversized {
                len: u64::from(len),
                max,
            });
        }
        Ok(Self {
            droppable: flags & FLAG_DROPPABLE != 0,
            len,
        })
    }
}

/// Encodes a whole frame into one buffer (header then payload).
///
/// Errors: [`FrameError::Oversized`] when the payload exceeds `max`.
pub fn encode(payload: &[u8], droppable: bool, max: u32) -> Result<Vec<u8>, FrameError> {
    let header = FrameHeader::for_payload(payload.len(), droppable, max)?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Reads one frame. `Ok(None)` means the stream ended cleanly between frames.
///
/// The payload buffer is allocated only after the header is validated, and is exactly the
/// declared length (at most `max` bytes).
///
/// Errors: the header errors of [`FrameHeader::decode`]; [`FrameError::Truncated`] when the
/// stream ends inside a frame; [`FrameError::Io`] when the read fails.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
) -> Result<Option<Frame>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        let n = reader.read(&mut header[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated {
                received: filled,
                expected: HEADER_LEN,
            });
        }
        filled += n;
    }
    let header = FrameHeader::decode(header, max)?;
    let len = header.len as usize;
    let mut payload = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = reader.read(&mut payload[got..]).await?;
        if n == 0 {
            let expected = HEADER_LEN + len;
            return Err(FrameError::Truncated {
                received: HEADER_LEN + got,
                expected,
            });
        }
        got += n;
    }
    Ok(Some(Frame {
        droppable: header.droppable,
        payload: Bytes::from(payload),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::ReadBuf;

    /// An in-memory stream that records the largest buffer the decoder asked it to fill: the
    /// decoder reads the payload straight into the buffer it allocated, so this bounds the
    /// allocation.
    struct Recording<'a> {
        data: &'a [u8],
        largest_read_buffer: usize,
    }

    impl AsyncRead for Recording<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.largest_read_buffer = self.largest_read_buffer.max(buf.remaining());
            let n = buf.remaining().min(self.data.len());
            let (now, rest) = self.data.split_at(n);
            buf.put_slice(now);
            self.data = rest;
            Poll::Ready(Ok(()))
        }
    }

    fn decode_all(bytes: &[u8], max: u32) -> (Vec<Frame>, Option<FrameError>, usize) {
        let mut reader = Recording {
            data: bytes,
            largest_read_buffer: 0,
        };
        let mut frames = Vec::new();
        let err = futures::executor::block_on(async {
            loop {
                match read_frame(&mut reader, max).await {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => return None,
                    Err(err) => return Some(err),
                }
            }
        });
        (frames, err, reader.largest_read_buffer)
    }

    #[test]
    fn header_layout_is_version_flags_big_endian_length() {
        let header = FrameHeader {
            droppable: true,
            len: 0x0102_0304,
        };
        assert_eq!(header.encode(), [1, 1, 1, 2, 3, 4]);
        assert_eq!(FrameHeader::decode([1, 0, 0, 0, 0, 5], 10).unwrap().len, 5);
    }

    #[test]
    fn each_malformation_maps_to_its_violation() {
        let cases: [(&[u8], Violation); 5] = [
            (&[2, 0, 0, 0, 0, 0], Violation::BadVersion),
            (&[1, 2, 0, 0, 0, 0], Violation::BadFlags),
            (&[1, 0, 0, 0, 0, 9], Violation::Oversized),
            (&[1, 0, 0, 0, 0, 4, 1, 2], Violation::Truncated),
            (&[1, 0, 0], Violation::Truncated),
        ];
        for (bytes, expected) in cases {
            let (_, err, _) = decode_all(bytes, 8);
            assert_eq!(err.and_then(|e| e.violation()), Some(expected), "{bytes:?}");
        }
    }

    #[test]
    fn a_huge_declared_length_is_refused_before_reading_the_payload() {
        let mut bytes = vec![1, 0, 0xff, 0xff, 0xff, 0xff];
        bytes.extend_from_slice(&[0; 64]);
        let (_, err, largest) = decode_all(&bytes, DEFAULT_MAX_FRAME_LEN);
        assert!(matches!(
            err,
            Some(FrameError::Oversized {
                len: 0xffff_ffff,
                ..
            })
        ));
        assert_eq!(largest, HEADER_LEN);
    }

    #[test]
    fn encode_refuses_payloads_over_the_maximum() {
        assert!(matches!(
            encode(&[0; 9], false, 8),
            Err(FrameError::Oversized { len: 9, max: 8 })
        ));
    }

    proptest! {
        #[test]
        fn frames_round_trip(
            frames in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..300), any::<bool>()), 0..8),
        ) {
            let mut wire = Vec::new();
            for (payload, droppable) in &frames {
                wire.extend(encode(payload, *droppable, 300).unwrap());
            }
            let (decoded, err, _) = decode_all(&wire, 300);
            prop_assert!(err.is_none());
            let decoded: Vec<(Vec<u8>, bool)> =
                decoded.into_iter().map(|f| (f.payload.to_vec(), f.droppable)).collect();
            prop_assert_eq!(decoded, frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_over_allocate(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            max in 0u32..1024,
        ) {
            let (frames, err, largest) = decode_all(&bytes, max);
            prop_assert!(largest <= HEADER_LEN.max(max as usize));
            prop_assert!(frames.iter().all(|f| f.payload.len() <= max as usize));
            if let Some(err) = err {
                prop_assert!(err.violation().is_some(), "in-memory reads cannot fail: {}", err);
            }
        }

        #[test]
        fn valid_prefix_then_garbage_yields_the_frames_then_an_error_or_end(
            payload in proptest::collection::vec(any::<u8>(), 0..100),
            garbage in proptest::collection::vec(any::<u8>(), 1..64),
        ) {
            let mut wire = encode(&payload, false, 128).unwrap();
            wire.extend(&garbage);
            let (frames, _, largest) = decode_all(&wire, 128);
            prop_assert!(largest <= 128);
            prop_assert_eq!(&frames[0].payload[..], &payload[..]);
        }
    }
}
