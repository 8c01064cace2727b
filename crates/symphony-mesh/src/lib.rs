//! The embedded QUIC gossip mesh: identity and trust, HyParView membership, PlumTree pubsub,
//! direct messages and diagnostics. Knows nothing of issues: any Rust program can embed it.
//!
//! Start a node with [`Mesh::start`] (docs/mesh.md); the layers underneath are public for
//! tests, tools and the bench: [`transport`] (QUIC), [`proto`] (IO-free HyParView and
//! PlumTree), [`direct`] (direct-message routing), [`relay`] (a UDP impairment relay for
//! tests and the bench).

pub mod config;
pub mod diagnostics;
pub mod direct;
pub mod frame;
pub mod identity;
pub mod mesh;
mod node;
pub mod node_id;
pub mod proto;
pub mod relay;
pub mod tls;
pub mod transport;
pub mod trust;

pub use config::{BootstrapPeer, MeshConfig, TrustConfig};
pub use diagnostics::Diagnostics;
pub use direct::{DirectError, Receipt};
pub use identity::Identity;
pub use mesh::{
    Delivery, DirectMessages, InboundMessage, MembershipEvent, MembershipEvents, Mesh, MeshError,
    PeerInfo, PeerView, Subscription, SyncFrame, SyncFrames,
};
pub use node_id::{NodeId, ParseNodeIdError};
pub use proto::{MessageId, Topic};
pub use transport::{Event, Events, Purpose, SendError, Transport, TransportConfig};
pub use trust::TrustPolicy;
