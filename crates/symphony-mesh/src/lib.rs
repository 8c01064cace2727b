//! The embedded QUIC gossip mesh: identity and trust, HyParView membership, PlumTree pubsub,
//! direct messages and diagnostics. Knows nothing of issues: any Rust program can embed it.

pub mod frame;
pub mod identity;
pub mod node_id;
pub mod proto;
pub mod tls;
pub mod transport;
pub mod trust;

pub use identity::Identity;
pub use node_id::{NodeId, ParseNodeIdError};
pub use transport::{Event, Events, Purpose, SendError, Transport, TransportConfig};
pub use trust::TrustPolicy;
