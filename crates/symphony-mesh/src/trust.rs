//! Which peers may connect: the trust policy both TLS verifiers apply (design.md, The mesh).

use std::collections::BTreeSet;

use crate::NodeId;

/// The set of peers this node accepts, on both inbound and outbound connections.
///
/// The default is an empty allowlist: a node trusts nobody until configured. `Open` accepts
/// any peer that proves possession of an Ed25519 key; the transport logs a warning at startup
/// when it is in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustPolicy {
    /// Only these NodeIds may complete a handshake with this node.
    Allowlist(BTreeSet<NodeId>),
    /// Any NodeId may complete a handshake (still authenticated: the peer must hold its key).
    Open,
}

impl Default for TrustPolicy {
    fn default() -> Self {
        Self::Allowlist(BTreeSet::new())
    }
}

impl TrustPolicy {
    /// An allowlist of the given NodeIds.
    pub fn allowlist(peers: impl IntoIterator<Item = NodeId>) -> Self {
        Self::Allowlist(peers.into_iter().collect())
    }

    /// Whether `peer` may complete a handshake under this policy.
    pub fn allows(&self, peer: &NodeId) -> bool {
        match self {
            Self::Allowlist(peers) => peers.contains(peer),
            Self::Open => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_trusts_nobody_and_open_trusts_everyone() {
        let peer = NodeId::from_bytes([7; 32]);
        assert!(!TrustPolicy::default().allows(&peer));
        assert!(TrustPolicy::Open.allows(&peer));
        assert!(TrustPolicy::allowlist([peer]).allows(&peer));
        assert!(!TrustPolicy::allowlist([NodeId::from_bytes([8; 32])]).allows(&peer));
    }
}
