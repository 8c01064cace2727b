//! The embedded QUIC gossip mesh: identity and trust, HyParView membership, PlumTree pubsub,
//! direct messages and diagnostics. Knows nothing of issues: any Rust program can embed it.

pub mod node_id;
pub mod proto;

pub use node_id::{NodeId, ParseNodeIdError};
