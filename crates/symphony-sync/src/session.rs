//! The Automerge sync protocol with one peer, without IO (style.md, "Protocol logic
//! without IO"): the caller carries the bytes over whatever stream it has.
//!
//! A session holds the per-peer sync state (what the peer is known to have), so after a
//! reconnect only missing changes are sent; [`Session::encode`] gives the part worth
//! persisting. Input is hostile: a message over [`MAX_MESSAGE_BYTES`] or one that does not
//! decode is refused with a typed error before it touches the document, and the caller
//! should stop syncing with that peer and count it.

use automerge::sync::{self, SyncDoc};

use crate::replica::Replica;

/// Largest sync message accepted or produced, in bytes. A fresh peer catching up on 10k
/// issues of ~1 KB receives one message of a few MiB; 64 MiB bounds what one peer can make
/// this node buffer.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Why a peer's message was refused.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The message is larger than [`MAX_MESSAGE_BYTES`].
    #[error("sync message of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a sync message.
    #[error("undecodable sync message: {0}")]
    Undecodable(String),
    /// The document rejected the message's changes.
    #[error("sync message rejected by the document: {0}")]
    Rejected(String),
}

/// One peer's sync session.
#[derive(Debug, Default)]
pub struct Session {
    state: sync::State,
}

impl Session {
    /// A session with a peer this node knows nothing about.
    pub fn new() -> Session {
        Session::default()
    }

    /// A session resumed from [`Session::encode`]'s bytes; a state that does not decode
    /// starts over (costing one full exchange, never correctness).
    pub fn resume(bytes: &[u8]) -> Session {
        Session {
            state: sync::State::decode(bytes).unwrap_or_default(),
        }
    }

    /// The persistent part of the state (the peer's shared heads).
    pub fn encode(&self) -> Vec<u8> {
        self.state.encode()
    }

    /// The next message to send the peer, `None` when it is up to date as far as this node
    /// knows. Only changes already persisted should be in the document (persist before
    /// broadcast).
    pub fn generate(&mut self, replica: &Replica) -> Option<Vec<u8>> {
        replica
            .doc()
            .generate_sync_message(&mut self.state)
            .map(sync::Message::encode)
    }

    /// Applies a message from the peer. Errors: [`SessionError`]; the document is unchanged
    /// then. Call [`Replica::resolve_creations`] and persist after a message that changed
    /// the heads.
    pub fn receive(&mut self, replica: &mut Replica, bytes: &[u8]) -> Result<(), SessionError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(SessionError::TooLarge {
                len: bytes.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        let message =
            sync::Message::decode(bytes).map_err(|e| SessionError::Undecodable(e.to_string()))?;
        replica
            .receive_sync_message(&mut self.state, message)
            .map_err(|e| SessionError::Rejected(e.to_string()))
    }
}

/// Runs sessions between two replicas in memory until neither has anything to send, and
/// returns `(messages, bytes)` exchanged. For tests and the bench; a real node sends the
/// same messages over the mesh.
pub fn converge(
    a: &mut Replica,
    a_session: &mut Session,
    b: &mut Replica,
    b_session: &mut Session,
) -> Result<(usize, usize), SessionError> {
    let (mut messages, mut bytes) = (0, 0);
    for _ in 0..64 {
        let mut quiet = true;
        if let Some(message) = a_session.generate(a) {
            quiet = false;
            messages += 1;
            bytes += message.len();
            b_session.receive(b, &message)?;
        }
        if let Some(message) = b_session.generate(b) {
            quiet = false;
            messages += 1;
            bytes += message.len();
            a_session.receive(a, &message)?;
        }
        if quiet {
            break;
        }
    }
    Ok((messages, bytes))
}
