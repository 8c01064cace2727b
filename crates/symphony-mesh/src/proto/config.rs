//! Protocol configuration with documented defaults.

use std::time::Duration;

use super::cooling::CoolingConfig;
use super::score::ScoreParams;
use super::wire;

/// Smallest accepted `pubsub.seen_max_bytes`: room for a few dozen ids.
const MIN_SEEN_BYTES: usize = 4096;

/// Configuration of one node's protocol state. `Config::default()` is the production
/// default; every field says its unit and why it has its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Period of the housekeeping [`super::Timer::Tick`]. Default 1 s.
    pub tick_interval: Duration,
    /// HyParView membership.
    pub membership: MembershipConfig,
    /// PlumTree pubsub.
    pub pubsub: PubsubConfig,
    /// Peer score (Gossipsub v1.1 §peer scoring, simplified).
    pub score: ScoreParams,
    /// Slow-peer cooling.
    pub cooling: CoolingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            tick_interval: Duration::from_secs(1),
            membership: MembershipConfig::default(),
            pubsub: PubsubConfig::default(),
            score: ScoreParams::default(),
            cooling: CoolingConfig::default(),
        }
    }
}

/// HyParView parameters (HyParView §4, §5 for the paper's values) plus the re-join and
/// re-merge rules of this implementation (see `hyparview` module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct MembershipConfig {
    /// Active view capacity: the connected neighbours gossip flows over. Default 5
    /// (log10(10 000) + 1, HyParView §5).
    pub active_capacity: usize,
    /// Passive view capacity: known addresses used to repair the active view. Default 30.
    pub passive_capacity: usize,
    /// Capacity of the lost list: addresses that failed and are probed with backoff so the
    /// overlay re-merges after a partition. Default 30.
    pub lost_capacity: usize,
    /// Active random walk length for ForwardJoin and Shuffle. Default 6 (HyParView §5).
    pub arwl: u8,
    /// Passive random walk length: the ForwardJoin hop at which the joiner is added to the
    /// passive view. Default 3 (HyParView §5).
    pub prwl: u8,
    /// Mean period between shuffles (each randomised in [0.5, 1.5) × this). Default 30 s.
    pub shuffle_interval: Duration,
    /// Active-view entries sent in a shuffle (besides ourselves). Default 3 (HyParView §4.4).
    pub shuffle_active: usize,
    /// Passive-view entries sent in a shuffle. Default 4 (HyParView §4.4).
    pub shuffle_passive: usize,
    /// A dial or neighbour/join request without an answer after this is a failure.
    /// Default 5 s.
    pub request_timeout: Duration,
    /// Dials and requests in flight at once; further ones (walk ends, shuffle replies a peer
    /// asks for) are skipped and counted, so no peer can make this node dial without bound.
    /// Default 16.
    pub max_pending: usize,
    /// First backoff after a failed dial or a rejected request, doubled per consecutive
    /// failure (×[1, 1.5) jitter). Default 1 s.
    pub backoff_base: Duration,
    /// Backoff cap for dials and requests. Default 60 s.
    pub backoff_max: Duration,
    /// Backoff cap for probes of lost addresses, which stay until evicted by newer failures
    /// (oldest first, bootstrap addresses last): with a full lost list of dead peers a node
    /// spends at most `lost_capacity / lost_backoff_max` dials per second on them, and a
    /// healed partition is noticed within about this long. Default 300 s.
    pub lost_backoff_max: Duration,
    /// Minimum time between two forced (high-priority) merge links made by this node when
    /// a lost peer answers again while the active view is full. Default 60 s.
    pub merge_cooldown: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            active_capacity: 5,
            passive_capacity: 30,
            lost_capacity: 30,
            arwl: 6,
            prwl: 3,
            shuffle_interval: Duration::from_secs(30),
            shuffle_active: 3,
            shuffle_passive: 4,
            request_timeout: Duration::from_secs(5),
            max_pending: 16,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            lost_backoff_max: Duration::from_secs(300),
            merge_cooldown: Duration::from_secs(60),
        }
    }
}

/// PlumTree parameters (PlumTree §3) and cache bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct PubsubConfig {
    /// IHAVE announcements are batched per peer and flushed this long after the first one.
    /// Default 25 ms: small against the graft timeout, large enough to batch bursts.
    pub ihave_interval: Duration,
    /// Wait after the first IHAVE of a missing message before grafting an announcer
    /// (PlumTree §3.2 `timeout1`), when the path RTT to the announcer is measured: that RTT
    /// (about two link delays, the most an eager copy on a path one link longer lags the
    /// announcement), clamped to [`Self::graft_timeout_min`, `Self::graft_timeout`].
    pub graft_timeout_min: Duration,
    /// `timeout1` without an RTT sample, and its ceiling. Default 200 ms: above the
    /// eager-path delay of a few hops, so an IHAVE racing the eager copy does not graft
    /// needlessly.
    pub graft_timeout: Duration,
    /// Wait before grafting the next announcer when the previous one did not deliver
    /// (PlumTree §3.2 `timeout2`) without an RTT sample. Default 100 ms. With one:
    /// 1.25 × RTT of the asked peer + 5 ms (its answer needs a round trip), clamped to
    /// [`Self::graft_timeout_min`, `Self::graft_retry_max`].
    pub graft_retry: Duration,
    /// Ceiling of the RTT-derived `timeout2`. Default 1 s.
    pub graft_retry_max: Duration,
    /// A link whose measured packet loss share is at least this is lossy: lazy neighbours
    /// on it get payloads pushed besides the IHAVE (`plumtree` module docs). Default 0.01:
    /// a loopback or LAN path loses far less; at 1% loss a delivery over 4 hops waits for a
    /// retransmission once in 25.
    pub lossy_link_loss: f64,
    /// At most this many lazy neighbours get a lossy-link push per message and node.
    /// Default 3. In the simulator (20 nodes, 100 ms links, 5% loss, 10 msg/s) 0 / 1 / 2 /
    /// 3 / 4 put 93.2 / 98.4 / 99.1 / 99.5 / 99.3% of deliveries within 2 × path delay +
    /// 50 ms at RMR 0.3 / 1.1 / 1.8 / 2.3 / 2.6 (docs/mesh.md). 0 disables them.
    pub lossy_push_peers: usize,
    /// Announcers remembered per missing message. Default 8.
    pub max_announcers: usize,
    /// Missing messages tracked at once; further IHAVEs are ignored and counted. Default 4096.
    pub max_missing: usize,
    /// How long a seen message id is remembered for dedupe; must exceed the time a message
    /// can still be circulating, or a late copy is delivered again. Default 120 s.
    pub seen_ttl: Duration,
    /// Seen-id cache entry cap. Default 100 000.
    pub seen_max_entries: usize,
    /// Seen-id cache byte cap (estimated memory). Default 8 MiB.
    pub seen_max_bytes: usize,
    /// How long payloads are kept to serve IWANT/GRAFT. Default 30 s.
    pub payload_ttl: Duration,
    /// Payload cache entry cap. Default 10 000.
    pub payload_max_entries: usize,
    /// Payload cache byte cap (payload + topic + bookkeeping). Default 32 MiB.
    pub payload_max_bytes: usize,
    /// Topics with tree state at once; unsubscribed topics are evicted least recently used
    /// first. Default 256.
    pub max_topics: usize,
    /// Origin trees per topic; the least recently used is evicted (its next message floods
    /// once). Default 1024.
    pub max_trees_per_topic: usize,
    /// Pending IHAVE entries per peer before further ones are dropped and counted.
    /// Default 4096.
    pub max_lazy_queue: usize,
    /// Run opportunistic grafting every this many ticks. Default 60 (one minute).
    pub opportunistic_graft_ticks: u32,
    /// Per-peer counter entries kept besides the active view's. Default 256.
    pub max_peer_stats: usize,
}

impl Default for PubsubConfig {
    fn default() -> Self {
        Self {
            ihave_interval: Duration::from_millis(25),
            graft_timeout_min: Duration::from_millis(10),
            graft_timeout: Duration::from_millis(200),
            graft_retry: Duration::from_millis(100),
            graft_retry_max: Duration::from_secs(1),
            lossy_link_loss: 0.01,
            lossy_push_peers: 3,
            max_announcers: 8,
            max_missing: 4096,
            seen_ttl: Duration::from_secs(120),
            seen_max_entries: 100_000,
            seen_max_bytes: 8 << 20,
            payload_ttl: Duration::from_secs(30),
            payload_max_entries: 10_000,
            payload_max_bytes: 32 << 20,
            max_topics: 256,
            max_trees_per_topic: 1024,
            max_lazy_queue: 4096,
            opportunistic_graft_ticks: 60,
            max_peer_stats: 256,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field that must be positive is zero.
    #[error("mesh config: {field} must be greater than zero")]
    Zero {
        /// The field path, e.g. `membership.active_capacity`.
        field: &'static str,
    },
    /// A field exceeds what the wire format can carry.
    #[error("mesh config: {field} = {value} exceeds the wire limit {max}")]
    AboveWireLimit {
        /// The field path.
        field: &'static str,
        /// The configured value.
        value: usize,
        /// The limit from [`wire`].
        max: usize,
    },
    /// A bound is too small for the protocol to work.
    #[error("mesh config: {field} = {value} is below the minimum {min}")]
    TooSmall {
        /// The field path.
        field: &'static str,
        /// The configured value.
        value: usize,
        /// The smallest workable value.
        min: usize,
    },
    /// The passive walk length is longer than the active one, so it would never trigger.
    #[error("mesh config: membership.prwl ({prwl}) must not exceed membership.arwl ({arwl})")]
    PrwlAboveArwl {
        /// Passive random walk length.
        prwl: u8,
        /// Active random walk length.
        arwl: u8,
    },
}

impl Config {
    /// Checks the configuration.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let m = &self.membership;
        let p = &self.pubsub;
        let positive = [
            ("tick_interval", !self.tick_interval.is_zero()),
            ("membership.active_capacity", m.active_capacity > 0),
            ("membership.passive_capacity", m.passive_capacity > 0),
            ("membership.arwl", m.arwl > 0),
            ("membership.max_pending", m.max_pending > 0),
            ("membership.shuffle_interval", !m.shuffle_interval.is_zero()),
            ("membership.backoff_base", !m.backoff_base.is_zero()),
            ("pubsub.graft_timeout", !p.graft_timeout.is_zero()),
            ("pubsub.seen_ttl", !p.seen_ttl.is_zero()),
            ("pubsub.seen_max_entries", p.seen_max_entries > 0),
            ("pubsub.graft_retry", !p.graft_retry.is_zero()),
            ("pubsub.graft_timeout_min", !p.graft_timeout_min.is_zero()),
            ("pubsub.graft_retry_max", !p.graft_retry_max.is_zero()),
            ("pubsub.lossy_link_loss", p.lossy_link_loss > 0.0),
            ("pubsub.max_announcers", p.max_announcers > 0),
            ("pubsub.max_topics", p.max_topics > 0),
            ("pubsub.max_trees_per_topic", p.max_trees_per_topic > 0),
            (
                "pubsub.opportunistic_graft_ticks",
                p.opportunistic_graft_ticks > 0,
            ),
            ("cooling.base", !self.cooling.base.is_zero()),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, ok)| !ok) {
            return Err(ConfigError::Zero { field });
        }
        if m.prwl > m.arwl {
            return Err(ConfigError::PrwlAboveArwl {
                prwl: m.prwl,
                arwl: m.arwl,
            });
        }
        // A seen-id cache that cannot hold an entry treats every copy as new: messages loop.
        if p.seen_max_bytes < MIN_SEEN_BYTES {
            return Err(ConfigError::TooSmall {
                field: "pubsub.seen_max_bytes",
                value: p.seen_max_bytes,
                min: MIN_SEEN_BYTES,
            });
        }
        let shuffle_len = 1 + m.shuffle_active + m.shuffle_passive;
        if shuffle_len > wire::MAX_SHUFFLE_NODES {
            return Err(ConfigError::AboveWireLimit {
                field: "membership.shuffle_active + shuffle_passive + 1",
                value: shuffle_len,
                max: wire::MAX_SHUFFLE_NODES,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn zero_active_capacity_is_named() {
        let mut config = Config::default();
        config.membership.active_capacity = 0;
        assert_eq!(
            config.validate(),
            Err(ConfigError::Zero {
                field: "membership.active_capacity"
            })
        );
    }

    #[test]
    fn seen_cache_too_small_to_dedupe_is_rejected() {
        let mut config = Config::default();
        config.pubsub.seen_max_bytes = 100;
        assert_eq!(
            config.validate(),
            Err(ConfigError::TooSmall {
                field: "pubsub.seen_max_bytes",
                value: 100,
                min: MIN_SEEN_BYTES
            })
        );
    }

    #[test]
    fn oversized_shuffle_is_rejected() {
        let mut config = Config::default();
        config.membership.shuffle_passive = wire::MAX_SHUFFLE_NODES;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::AboveWireLimit { .. })
        ));
    }
}
