//! Slow-peer cooling (design.md, The mesh: "slow-peer cooling with exponential backoff and a
//! single recovery probe").
//!
//! A peer whose send times out is cooled for `backoff` (starting at [`CoolingConfig::base`]).
//! While cooled it gets no eager pushes: PlumTree announces to it lazily (IHAVE) instead and
//! still answers what it pulls, so the slow peer sets its own pace. When the period ends,
//! exactly one eager push is let through as a recovery probe. The next send outcome reported
//! for the peer decides: success lifts the cooling (and resets the backoff), a timeout cools
//! it again for twice the backoff, capped at [`CoolingConfig::max`].
//!
//! Send outcomes do not say which frame they belong to; the first outcome reported after the
//! probe was released is taken as the probe's. Frames are delivered in order on one stream,
//! so that outcome is the probe's or an older frame's — a conservative attribution for
//! timeouts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::NodeId;

/// Cooling backoff bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoolingConfig {
    /// First cooling period. Default 2 s.
    pub base: Duration,
    /// Cap of the doubled period. Default 60 s.
    pub max: Duration,
}

impl Default for CoolingConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
        }
    }
}

/// A cooled peer, for diagnostics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CooledPeer {
    /// The peer.
    pub peer: NodeId,
    /// When the current period ends and a probe may go out.
    pub until: Instant,
    /// Length of the current period.
    pub backoff: Duration,
    /// Whether the recovery probe has been sent and awaits its outcome.
    pub probe_in_flight: bool,
}

#[derive(Clone, Debug)]
struct Cooled {
    until: Instant,
    backoff: Duration,
    probe_in_flight: bool,
}

/// What a send outcome did to a peer's cooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed.
    Unchanged,
    /// The peer was not cooled and now is.
    Cooled,
    /// The recovery probe failed; the peer is cooled again with a doubled backoff.
    ProbeFailed,
    /// The recovery probe succeeded; the peer is no longer cooled.
    Recovered,
}

/// The cooling table of one node.
#[derive(Clone, Debug)]
pub struct Cooling {
    config: CoolingConfig,
    peers: BTreeMap<NodeId, Cooled>,
}

impl Cooling {
    /// An empty table.
    pub fn new(config: CoolingConfig) -> Self {
        Self {
            config,
            peers: BTreeMap::new(),
        }
    }

    /// A send to `peer` timed out at `now`.
    pub fn on_timeout(&mut self, peer: NodeId, now: Instant) -> Transition {
        match self.peers.get_mut(&peer) {
            None => {
                let backoff = self.config.base;
                self.peers.insert(
                    peer,
                    Cooled {
                        until: now + backoff,
                        backoff,
                        probe_in_flight: false,
                    },
                );
                Transition::Cooled
            }
            Some(cooled) if cooled.probe_in_flight => {
                cooled.backoff = (cooled.backoff * 2).min(self.config.max);
                cooled.until = now + cooled.backoff;
                cooled.probe_in_flight = false;
                Transition::ProbeFailed
            }
            // Timeouts of frames sent before the cooling began.
            Some(_) => Transition::Unchanged,
        }
    }

    /// A send to `peer` completed.
    pub fn on_success(&mut self, peer: NodeId) -> Transition {
        match self.peers.get(&peer) {
            Some(cooled) if cooled.probe_in_flight => {
                self.peers.remove(&peer);
                Transition::Recovered
            }
            _ => Transition::Unchanged,
        }
    }

    /// Whether an eager push to `peer` may go out at `now`. For a cooled peer whose period
    /// has ended this returns `true` exactly once (the probe) until an outcome is reported.
    pub fn allow_push(&mut self, peer: NodeId, now: Instant) -> bool {
        match self.peers.get_mut(&peer) {
            None => true,
            Some(cooled) if !cooled.probe_in_flight && now >= cooled.until => {
                cooled.probe_in_flight = true;
                true
            }
            Some(_) => false,
        }
    }

    /// Whether `peer` is cooled (including while its probe is in flight).
    pub fn is_cooled(&self, peer: &NodeId) -> bool {
        self.peers.contains_key(peer)
    }

    /// Drops the entry of a peer that left the active view.
    pub fn forget(&mut self, peer: &NodeId) {
        self.peers.remove(peer);
    }

    /// The cooled peers, ordered by id.
    pub fn cooled(&self) -> impl Iterator<Item = CooledPeer> + '_ {
        self.peers.iter().map(|(peer, c)| CooledPeer {
            peer: *peer,
            until: c.until,
            backoff: c.backoff,
            probe_in_flight: c.probe_in_flight,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> NodeId {
        NodeId::from_bytes([7; 32])
    }

    fn cooling() -> Cooling {
        Cooling::new(CoolingConfig {
            base: Duration::from_secs(2),
            max: Duration::from_secs(5),
        })
    }

    #[test]
    fn timeout_cools_and_blocks_pushes_until_period_ends() {
        let mut c = cooling();
        let t0 = Instant::now();
        assert!(c.allow_push(peer(), t0));
        assert_eq!(c.on_timeout(peer(), t0), Transition::Cooled);
        assert!(!c.allow_push(peer(), t0 + Duration::from_secs(1)));
        let listed: Vec<_> = c.cooled().collect();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].until, t0 + Duration::from_secs(2));
        assert_eq!(listed[0].backoff, Duration::from_secs(2));
    }

    #[test]
    fn exactly_one_probe_after_the_period() {
        let mut c = cooling();
        let t0 = Instant::now();
        c.on_timeout(peer(), t0);
        let later = t0 + Duration::from_secs(3);
        assert!(c.allow_push(peer(), later));
        assert!(!c.allow_push(peer(), later));
        assert!(!c.allow_push(peer(), later + Duration::from_secs(100)));
    }

    #[test]
    fn probe_success_resets() {
        let mut c = cooling();
        let t0 = Instant::now();
        c.on_timeout(peer(), t0);
        assert_eq!(c.on_success(peer()), Transition::Unchanged);
        assert!(c.allow_push(peer(), t0 + Duration::from_secs(2)));
        assert_eq!(c.on_success(peer()), Transition::Recovered);
        assert!(!c.is_cooled(&peer()));
        assert_eq!(c.on_timeout(peer(), t0), Transition::Cooled);
        assert_eq!(
            c.cooled().next().map(|p| p.backoff),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn probe_failure_doubles_backoff_up_to_cap() {
        let mut c = cooling();
        let mut now = Instant::now();
        c.on_timeout(peer(), now);
        let mut backoffs = Vec::new();
        for _ in 0..3 {
            now += Duration::from_secs(10);
            assert!(c.allow_push(peer(), now));
            assert_eq!(c.on_timeout(peer(), now), Transition::ProbeFailed);
            backoffs.push(c.cooled().next().map(|p| p.backoff));
        }
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(backoffs, vec![secs(4), secs(5), secs(5)]);
    }

    #[test]
    fn stale_timeouts_do_not_extend_cooling() {
        let mut c = cooling();
        let t0 = Instant::now();
        c.on_timeout(peer(), t0);
        assert_eq!(
            c.on_timeout(peer(), t0 + Duration::from_secs(1)),
            Transition::Unchanged
        );
        assert_eq!(
            c.cooled().next().map(|p| p.until),
            Some(t0 + Duration::from_secs(2))
        );
    }
}
