//! The node's configuration as a program or the `mesh:` block of WORKFLOW.md gives it
//! (docs/mesh.md, "Configuration"). Every key is optional; defaults come from the layer they
//! tune ([`crate::proto::Config`], [`TransportConfig`], [`DirectConfig`]), so each default is
//! written once. Durations are integer milliseconds (`*_ms`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::direct::DirectConfig;
use crate::proto::{self, wire};
use crate::{NodeId, ParseNodeIdError, TransportConfig, TrustPolicy};

/// Default key file, relative to the repository root (or the WORKFLOW.md directory).
pub const DEFAULT_KEY_PATH: &str = ".symphony/node.key";

/// Everything a node needs to start. `MeshConfig::default()` is a single node on
/// `127.0.0.1:7400` that trusts nobody.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeshConfig {
    /// The Ed25519 key file (PKCS#8, mode 0600, created when missing). Default
    /// `.symphony/node.key`; callers resolve it against their base directory.
    pub key_path: PathBuf,
    /// UDP address the QUIC endpoint binds. Default `127.0.0.1:7400` (not reachable from
    /// other hosts: set `listen` and `advertise` for a multi-host mesh).
    pub listen: SocketAddr,
    /// The address other nodes should dial, advertised in membership messages (needed behind
    /// NAT or a relay, and when `listen` is an unspecified address like `0.0.0.0`). Default:
    /// the bound address.
    pub advertise: Option<SocketAddr>,
    /// Nodes to join through: `"host:port"` (the NodeId is learnt from the handshake) or
    /// `"<node id hex>@host:port"`. Default none (a single node until others join it).
    pub bootstrap: Vec<BootstrapPeer>,
    /// Who may connect: `open` or a list of NodeIds (hex). Default: an empty list.
    pub trust: TrustConfig,
    /// Deliveries buffered per subscription; when full, further deliveries to it are dropped
    /// and counted. Default 1024.
    pub subscriber_queue: usize,
    /// Membership events buffered per listener; a listener that falls behind loses the
    /// oldest and is told how many. Default 256.
    pub membership_queue: usize,
    /// API requests buffered towards the node actor. Default 1024.
    pub api_queue: usize,
    /// Direct messages.
    pub direct: DirectSettings,
    /// QUIC transport.
    pub transport: TransportSettings,
    /// HyParView, PlumTree, scores and cooling.
    pub proto: ProtoSettings,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            key_path: PathBuf::from(DEFAULT_KEY_PATH),
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            advertise: None,
            bootstrap: Vec::new(),
            trust: TrustConfig::default(),
            subscriber_queue: 1024,
            membership_queue: 256,
            api_queue: 1024,
            direct: DirectSettings::default(),
            transport: TransportSettings::default(),
            proto: ProtoSettings::default(),
        }
    }
}

/// A setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mesh config: {field} {reason}")]
pub struct ConfigError {
    /// The key path, e.g. `direct.max_hops`.
    pub field: &'static str,
    /// What is expected.
    pub reason: &'static str,
}

impl MeshConfig {
    /// Checks the settings this module owns; the transport and protocol check theirs when the
    /// node starts.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks = [
            ("subscriber_queue", self.subscriber_queue > 0),
            ("membership_queue", self.membership_queue > 0),
            ("api_queue", self.api_queue > 0),
            ("direct.inbound_queue", self.direct.inbound_queue > 0),
            ("direct.max_pending", self.direct.max_pending > 0),
            ("direct.max_hops", self.direct.max_hops > 0),
            ("direct.timeout_ms", self.direct.timeout_ms > 0),
        ];
        if let Some((field, _)) = checks.iter().find(|(_, ok)| !ok) {
            return Err(ConfigError {
                field,
                reason: "must be greater than zero",
            });
        }
        if self.advertise.is_none() && self.listen.ip().is_unspecified() {
            return Err(ConfigError {
                field: "advertise",
                reason: "is required when listen is an unspecified address (0.0.0.0 or ::): \
                         set it to the address other nodes dial",
            });
        }
        Ok(())
    }

    /// The trust policy.
    pub fn trust_policy(&self) -> TrustPolicy {
        match &self.trust {
            TrustConfig::Open => TrustPolicy::Open,
            TrustConfig::Allow(ids) => TrustPolicy::allowlist(ids.iter().copied()),
        }
    }

    /// The transport configuration. Frames are sized for the largest protocol message
    /// ([`wire::MAX_MESSAGE_LEN`]).
    pub fn transport_config(&self) -> TransportConfig {
        let t = &self.transport;
        let mut config = TransportConfig::new(self.listen);
        let max_frame = u32::try_from(wire::MAX_MESSAGE_LEN).unwrap_or(u32::MAX);
        config.trust = self.trust_policy();
        config.keep_alive = ms(t.keep_alive_ms);
        config.idle_timeout = ms(t.idle_timeout_ms);
        config.handshake_timeout = ms(t.handshake_timeout_ms);
        config.send_timeout = ms(t.send_timeout_ms);
        config.shutdown_grace = ms(t.shutdown_grace_ms);
        config.max_frame_len = max_frame;
        config.outbound_frames = t.outbound_frames;
        config.outbound_bytes = t.outbound_bytes.max(max_frame as usize);
        config.stream_window = t.stream_window;
        config.event_queue = t.event_queue;
        config
    }

    /// The protocol configuration.
    pub fn proto_config(&self) -> proto::Config {
        let p = &self.proto;
        let mut config = proto::Config {
            tick_interval: ms(p.tick_ms),
            ..proto::Config::default()
        };
        let m = &mut config.membership;
        m.active_capacity = p.active_capacity;
        m.passive_capacity = p.passive_capacity;
        m.shuffle_interval = ms(p.shuffle_interval_ms);
        m.request_timeout = ms(p.request_timeout_ms);
        m.backoff_base = ms(p.backoff_base_ms);
        m.backoff_max = ms(p.backoff_max_ms);
        m.lost_backoff_max = ms(p.lost_backoff_max_ms);
        m.merge_cooldown = ms(p.merge_cooldown_ms);
        let g = &mut config.pubsub;
        g.ihave_interval = ms(p.ihave_interval_ms);
        g.graft_timeout_min = ms(p.graft_timeout_min_ms);
        g.graft_timeout = ms(p.graft_timeout_ms);
        g.graft_retry = ms(p.graft_retry_ms);
        g.graft_retry_max = ms(p.graft_retry_max_ms);
        g.lossy_link_loss = f64::from(p.lossy_link_loss_permille) / 1000.0;
        g.lossy_push_peers = p.lossy_push_peers;
        g.seen_ttl = ms(p.seen_ttl_ms);
        g.payload_ttl = ms(p.payload_ttl_ms);
        config.cooling.base = ms(p.cooling_base_ms);
        config.cooling.max = ms(p.cooling_max_ms);
        config
    }

    /// The direct-message configuration.
    pub fn direct_config(&self) -> DirectConfig {
        DirectConfig {
            timeout: ms(self.direct.timeout_ms),
            max_hops: self.direct.max_hops,
            max_pending: self.direct.max_pending,
            ..DirectConfig::default()
        }
    }
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Direct-message settings (docs/mesh.md, "Direct messages").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectSettings {
    /// Wait for a receipt (and, for `request`, the default wait for the response), ms.
    /// Default 5000.
    pub timeout_ms: u64,
    /// Longest path in links, sender to addressee. Default 3.
    pub max_hops: u8,
    /// Inbound direct messages buffered for the application; when full the sender gets
    /// `Overloaded`. Default 256.
    pub inbound_queue: usize,
    /// Own messages awaiting receipts (and requests awaiting responses). Default 1024.
    pub max_pending: usize,
}

impl Default for DirectSettings {
    fn default() -> Self {
        let d = DirectConfig::default();
        Self {
            timeout_ms: millis(d.timeout),
            max_hops: d.max_hops,
            inbound_queue: 256,
            max_pending: d.max_pending,
        }
    }
}

/// QUIC transport settings (docs/wire.md, "Defaults").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportSettings {
    /// QUIC keep-alive interval, ms. Default 1000.
    pub keep_alive_ms: u64,
    /// Silence before a connection is dead: the failure detector, ms. Default 5000.
    pub idle_timeout_ms: u64,
    /// TLS handshake plus stream setup, ms. Default 5000.
    pub handshake_timeout_ms: u64,
    /// A write slower than this reports a send timeout (the peer gets cooled), ms.
    /// Default 2000.
    pub send_timeout_ms: u64,
    /// Drain time for queued frames on disconnect and shutdown, ms. Default 1000.
    pub shutdown_grace_ms: u64,
    /// Outbound budget per peer and stream, frames. Default 1024.
    pub outbound_frames: usize,
    /// Outbound budget per peer and stream, bytes (raised to the largest message). Default
    /// 4 MiB.
    pub outbound_bytes: usize,
    /// Flow-control credit per stream: how far behind a peer may fall before writes to it
    /// block and, after `send_timeout_ms`, it is cooled, bytes. Default 256 KiB.
    pub stream_window: u32,
    /// Receive queue shared by all peers, events. Default 4096.
    pub event_queue: usize,
}

impl Default for TransportSettings {
    fn default() -> Self {
        let t = TransportConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
        Self {
            keep_alive_ms: millis(t.keep_alive),
            idle_timeout_ms: millis(t.idle_timeout),
            handshake_timeout_ms: millis(t.handshake_timeout),
            send_timeout_ms: millis(t.send_timeout),
            shutdown_grace_ms: millis(t.shutdown_grace),
            outbound_frames: t.outbound_frames,
            outbound_bytes: t.outbound_bytes,
            stream_window: t.stream_window,
            event_queue: t.event_queue,
        }
    }
}

/// Protocol settings (HyParView §5, PlumTree §3, cooling); the meaning of each is documented
/// on [`proto::MembershipConfig`], [`proto::PubsubConfig`] and [`proto::CoolingConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtoSettings {
    /// Housekeeping tick, ms. Default 1000.
    pub tick_ms: u64,
    /// Active view capacity. Default 5.
    pub active_capacity: usize,
    /// Passive view capacity. Default 30.
    pub passive_capacity: usize,
    /// Mean shuffle period, ms. Default 30 000.
    pub shuffle_interval_ms: u64,
    /// Dial or neighbour request timeout, ms. Default 5000.
    pub request_timeout_ms: u64,
    /// First backoff after a failed dial, ms. Default 1000.
    pub backoff_base_ms: u64,
    /// Backoff cap, ms. Default 60 000.
    pub backoff_max_ms: u64,
    /// Backoff cap for probes of lost peers (bounds partition-heal detection), ms.
    /// Default 300 000.
    pub lost_backoff_max_ms: u64,
    /// Minimum time between two merge links, ms. Default 60 000.
    pub merge_cooldown_ms: u64,
    /// IHAVE batching delay, ms. Default 25.
    pub ihave_interval_ms: u64,
    /// Floor of the RTT-derived graft timers, ms. Default 10.
    pub graft_timeout_min_ms: u64,
    /// Wait after an IHAVE before grafting without an RTT sample, and the ceiling of the
    /// RTT-derived wait, ms. Default 200.
    pub graft_timeout_ms: u64,
    /// Wait before grafting the next announcer without an RTT sample, ms. Default 100.
    pub graft_retry_ms: u64,
    /// Ceiling of the RTT-derived wait before the next announcer, ms. Default 1000.
    pub graft_retry_max_ms: u64,
    /// Packet loss, per mille, at which a link counts as lossy (lazy neighbours on it get
    /// payloads besides IHAVE). Default 10 (1%).
    pub lossy_link_loss_permille: u32,
    /// Lazy neighbours pushed to per message over lossy links (0: never). Default 3.
    pub lossy_push_peers: usize,
    /// Dedupe memory of message ids, ms. Default 120 000.
    pub seen_ttl_ms: u64,
    /// How long payloads are kept for IWANT/GRAFT, ms. Default 30 000.
    pub payload_ttl_ms: u64,
    /// First cooling period of a slow peer, ms. Default 2000.
    pub cooling_base_ms: u64,
    /// Cooling period cap, ms. Default 60 000.
    pub cooling_max_ms: u64,
}

impl Default for ProtoSettings {
    fn default() -> Self {
        let c = proto::Config::default();
        let (m, p) = (&c.membership, &c.pubsub);
        Self {
            tick_ms: millis(c.tick_interval),
            active_capacity: m.active_capacity,
            passive_capacity: m.passive_capacity,
            shuffle_interval_ms: millis(m.shuffle_interval),
            request_timeout_ms: millis(m.request_timeout),
            backoff_base_ms: millis(m.backoff_base),
            backoff_max_ms: millis(m.backoff_max),
            lost_backoff_max_ms: millis(m.lost_backoff_max),
            merge_cooldown_ms: millis(m.merge_cooldown),
            ihave_interval_ms: millis(p.ihave_interval),
            graft_timeout_min_ms: millis(p.graft_timeout_min),
            graft_timeout_ms: millis(p.graft_timeout),
            graft_retry_ms: millis(p.graft_retry),
            graft_retry_max_ms: millis(p.graft_retry_max),
            lossy_link_loss_permille: (p.lossy_link_loss * 1000.0).round() as u32,
            lossy_push_peers: p.lossy_push_peers,
            seen_ttl_ms: millis(p.seen_ttl),
            payload_ttl_ms: millis(p.payload_ttl),
            cooling_base_ms: millis(c.cooling.base),
            cooling_max_ms: millis(c.cooling.max),
        }
    }
}

/// `trust:` — the string `open`, or a list of NodeIds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustConfig {
    /// Any node holding an Ed25519 key (logged as a warning at startup).
    Open,
    /// Only these nodes.
    Allow(Vec<NodeId>),
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self::Allow(Vec::new())
    }
}

impl Serialize for TrustConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Open => serializer.serialize_str("open"),
            Self::Allow(ids) => ids.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for TrustConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<NodeId>),
        }
        match Raw::deserialize(deserializer) {
            Ok(Raw::Word(word)) if word == "open" => Ok(Self::Open),
            Ok(Raw::List(ids)) => Ok(Self::Allow(ids)),
            _ => Err(serde::de::Error::custom(
                "expected `open` or a list of node ids (64 hex characters each)",
            )),
        }
    }
}

/// One `bootstrap:` entry: `host:port` or `<node id>@host:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootstrapPeer {
    /// The expected NodeId, when given; otherwise learnt from the handshake.
    pub id: Option<NodeId>,
    /// The address to dial.
    pub addr: SocketAddr,
}

/// A bootstrap entry that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapParseError {
    /// The part before `@` is not a NodeId.
    #[error(transparent)]
    NodeId(#[from] ParseNodeIdError),
    /// The address is not `ip:port`.
    #[error("invalid bootstrap address {input:?}: expected ip:port, e.g. 10.0.0.2:7400")]
    Addr {
        /// The rejected address.
        input: String,
    },
}

impl FromStr for BootstrapPeer {
    type Err = BootstrapParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, addr) = match s.split_once('@') {
            Some((id, addr)) => (Some(id.parse::<NodeId>()?), addr),
            None => (None, s),
        };
        let addr = addr.trim().parse().map_err(|_| BootstrapParseError::Addr {
            input: addr.chars().take(80).collect(),
        })?;
        Ok(Self { id, addr })
    }
}

impl fmt::Display for BootstrapPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "{id}@{}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

impl Serialize for BootstrapPeer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BootstrapPeer {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_block_gives_the_documented_defaults() {
        let config: MeshConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, MeshConfig::default());
        assert_eq!(config.proto_config(), proto::Config::default());
        assert_eq!(config.direct_config(), DirectConfig::default());
        let transport = config.transport_config();
        assert_eq!(transport.idle_timeout, Duration::from_secs(5));
        assert_eq!(transport.max_frame_len as usize, wire::MAX_MESSAGE_LEN);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn a_full_block_parses_with_both_bootstrap_forms_and_both_trust_forms() {
        let id = NodeId::from_bytes([0xab; 32]);
        let json = serde_json::json!({
            "key_path": "keys/node.key",
            "listen": "0.0.0.0:7400",
            "advertise": "10.0.0.1:7400",
            "bootstrap": ["10.0.0.2:7400", format!("{id}@10.0.0.3:7400")],
            "trust": [id.to_string()],
            "direct": {"max_hops": 2},
            "transport": {"idle_timeout_ms": 1500},
            "proto": {"active_capacity": 4}
        });
        let config: MeshConfig = serde_json::from_value(json).unwrap();
        assert_eq!(config.bootstrap[0].id, None);
        assert_eq!(config.bootstrap[1].id, Some(id));
        assert_eq!(config.trust, TrustConfig::Allow(vec![id]));
        assert_eq!(config.direct_config().max_hops, 2);
        assert_eq!(
            config.transport_config().idle_timeout,
            Duration::from_millis(1500)
        );
        assert_eq!(config.proto_config().membership.active_capacity, 4);
        assert_eq!(config.validate(), Ok(()));
        let open: MeshConfig = serde_json::from_str(r#"{"trust": "open"}"#).unwrap();
        assert_eq!(open.trust_policy(), TrustPolicy::Open);
    }

    #[test]
    fn bad_values_are_named() {
        let unknown = serde_json::from_str::<MeshConfig>(r#"{"lisen": "1.2.3.4:5"}"#);
        assert!(unknown.unwrap_err().to_string().contains("lisen"));
        let trust = serde_json::from_str::<MeshConfig>(r#"{"trust": "everyone"}"#);
        assert!(trust.unwrap_err().to_string().contains("expected `open`"));
        let peer = "zz@1.2.3.4:5".parse::<BootstrapPeer>();
        assert!(matches!(peer, Err(BootstrapParseError::NodeId(_))));
        let addr = "example.org".parse::<BootstrapPeer>();
        assert!(matches!(addr, Err(BootstrapParseError::Addr { .. })));
        let config = MeshConfig {
            listen: "0.0.0.0:7400".parse().unwrap(),
            ..MeshConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "advertise");
        let config = MeshConfig {
            subscriber_queue: 0,
            ..MeshConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "subscriber_queue");
    }
}
