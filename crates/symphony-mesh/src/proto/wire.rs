//! The versioned binary encoding of every mesh message (membership, pubsub, and the reserved
//! direct-message pair). Documented in `docs/wire.md`.
//!
//! A message is `version:u8 kind:u8 body`, big-endian integers, no padding. The frame layer
//! around it (length prefix, stream) is `frame.rs`'s. Decoding treats input as hostile:
//! every length and count is checked against its maximum — and against the bytes actually
//! left — before anything is allocated; truncation, trailing bytes, unknown versions, kinds
//! and enum values are typed errors, never panics. Payloads are sliced from the input
//! `Bytes` without copying.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use super::hyparview::{MembershipMessage, Priority};
use super::plumtree::{GossipMessage, IHaveEntry};
use super::{Message, MessageId, PeerAddr, Topic};
use crate::NodeId;

/// The wire version this node speaks; any other version is refused.
pub const VERSION: u8 = 1;
/// Maximum topic name length in bytes.
pub const MAX_TOPIC_LEN: usize = 128;
/// Maximum application payload (gossip or direct message) in bytes: 1 MiB.
pub const MAX_PAYLOAD_LEN: usize = 1 << 20;
/// Maximum entries in a Shuffle or ShuffleReply.
pub const MAX_SHUFFLE_NODES: usize = 64;
/// Maximum entries in one IHAVE.
pub const MAX_IHAVE_ENTRIES: usize = 512;
/// Maximum ids in one IWANT.
pub const MAX_IWANT_IDS: usize = 512;
/// Maximum sequence numbers in one GRAFT.
pub const MAX_GRAFT_IDS: usize = 64;
/// Upper bound of an encoded message in bytes: the largest payload plus the largest header
/// (a Gossip with a maximal topic). Frame limits must be at least this.
pub const MAX_MESSAGE_LEN: usize = MAX_PAYLOAD_LEN + 256;

const JOIN: u8 = 0x01;
const FORWARD_JOIN: u8 = 0x02;
const NEIGHBOR: u8 = 0x03;
const NEIGHBOR_REPLY: u8 = 0x04;
const SHUFFLE: u8 = 0x05;
const SHUFFLE_REPLY: u8 = 0x06;
const DISCONNECT: u8 = 0x07;
const GOSSIP: u8 = 0x10;
const IHAVE: u8 = 0x11;
const IWANT: u8 = 0x12;
const GRAFT: u8 = 0x13;
const PRUNE: u8 = 0x14;
const DIRECT: u8 = 0x20;
const RECEIPT: u8 = 0x21;

const NODE_ID_LEN: usize = 32;
const MESSAGE_ID_LEN: usize = NODE_ID_LEN + 8;
/// Smallest encoded `PeerAddr`: node id, family, IPv4 address, port.
const MIN_PEER_ADDR_LEN: usize = NODE_ID_LEN + 1 + 4 + 2;

/// Everything that travels on mesh streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireMessage {
    /// Membership and pubsub (control stream).
    Proto(Message),
    /// A direct message, possibly relayed through neighbours (direct stream).
    Direct(DirectMessage),
    /// The outcome of a direct message (direct stream).
    Receipt(Receipt),
}

/// A direct message addressed to one node, possibly relayed through neighbours
/// (docs/wire.md, "Direct messages").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectMessage {
    /// The sender.
    pub from: NodeId,
    /// The addressee.
    pub to: NodeId,
    /// Sender-chosen id, unique per sender; `(from, id)` is the dedupe key and is echoed in
    /// the receipt.
    pub id: u64,
    /// Links the message may still travel after the one it arrived on; a relay forwards to
    /// the addressee only with `hops_left >= 1` and to other relays only with
    /// `hops_left >= 2`.
    pub hops_left: u8,
    /// The id of the sender's earlier message this one answers (request/response).
    pub in_reply_to: Option<u64>,
    /// At most [`MAX_PAYLOAD_LEN`] bytes.
    pub payload: Bytes,
}

/// How a direct message went, travelling back to its sender along the reverse path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The direct message's sender, to whom the receipt travels.
    pub origin: NodeId,
    /// The direct message's id.
    pub id: u64,
    /// The outcome.
    pub status: ReceiptStatus,
}

/// Outcome of a direct message (design.md, The mesh: "loopback, direct, relayed or why it
/// failed").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptStatus {
    /// Addressed to the sender itself; short-circuited locally (never sent, code reserved).
    Loopback = 0,
    /// Delivered over a direct connection.
    Direct = 1,
    /// Delivered through at least one relay.
    Relayed = 2,
    /// No connection or relay towards the addressee on this branch (or the branch already
    /// carried a copy).
    NoRoute = 3,
    /// The hop budget ran out on this branch before the addressee.
    HopLimit = 4,
    /// The addressee's receive queue was full.
    Overloaded = 5,
}

impl ReceiptStatus {
    const ALL: [Self; 6] = [
        Self::Loopback,
        Self::Direct,
        Self::Relayed,
        Self::NoRoute,
        Self::HopLimit,
        Self::Overloaded,
    ];

    fn code(self) -> u8 {
        self as u8
    }
}

/// A message the encoder refuses because it exceeds a wire limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A byte string is longer than its maximum.
    #[error("cannot encode {field}: {len} bytes exceeds the maximum {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A list has more entries than its maximum.
    #[error("cannot encode {field}: {count} entries exceeds the maximum {max}")]
    TooMany {
        /// The field.
        field: &'static str,
        /// Its entry count.
        count: usize,
        /// The maximum.
        max: usize,
    },
}

/// Why received bytes are not a valid message. `offset` is the byte position in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("truncated message: {field} at byte {offset} needs {needed} bytes, {remaining} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left.
        remaining: usize,
    },
    /// Bytes remain after a complete message.
    #[error("{count} trailing bytes after a complete {kind} message")]
    TrailingBytes {
        /// The decoded kind.
        kind: &'static str,
        /// Extra bytes.
        count: usize,
    },
    /// The version byte is not [`VERSION`].
    #[error("unsupported wire version {found} (expected {VERSION})")]
    UnsupportedVersion {
        /// The version received.
        found: u8,
    },
    /// The kind byte is not a known message kind.
    #[error("unknown message kind 0x{kind:02x}")]
    UnknownKind {
        /// The kind byte.
        kind: u8,
    },
    /// A length exceeds its maximum.
    #[error("{field} at byte {offset} is {len} bytes, maximum {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Where its length prefix starts.
        offset: usize,
        /// The announced length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A count exceeds its maximum.
    #[error("{field} at byte {offset} has {count} entries, maximum {max}")]
    TooMany {
        /// The field.
        field: &'static str,
        /// Where its count starts.
        offset: usize,
        /// The announced count.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// A topic name is empty or not UTF-8.
    #[error("topic at byte {offset} is empty or not UTF-8")]
    InvalidTopic {
        /// Where the topic starts.
        offset: usize,
    },
    /// An enum byte (address family, priority, flag, receipt status) has no meaning.
    #[error("{field} at byte {offset} has invalid value {value}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// Where it is.
        offset: usize,
        /// The byte.
        value: u8,
    },
}

/// Encodes a message into a new buffer.
///
/// # Errors
/// [`EncodeError`] when a payload or list exceeds its wire maximum.
pub fn encode(message: &WireMessage) -> Result<Vec<u8>, EncodeError> {
    let mut buf = Vec::with_capacity(64);
    encode_into(message, &mut buf)?;
    Ok(buf)
}

/// Appends the encoding of `message` to `buf`. On error `buf` is left as it was.
///
/// # Errors
/// [`EncodeError`] when a payload or list exceeds its wire maximum.
pub fn encode_into(message: &WireMessage, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = buf.len();
    let result = Writer { buf }.message(message);
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

/// Decodes one complete message. Payloads share `frame`'s memory.
///
/// # Errors
/// [`DecodeError`] describing the first problem found.
pub fn decode(frame: Bytes) -> Result<WireMessage, DecodeError> {
    let mut reader = Reader { buf: frame, pos: 0 };
    let version = reader.u8("version")?;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion { found: version });
    }
    let kind = reader.u8("kind")?;
    let message = reader.body(kind)?;
    let count = reader.remaining();
    if count > 0 {
        return Err(DecodeError::TrailingBytes {
            kind: kind_name(kind),
            count,
        });
    }
    Ok(message)
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        JOIN => "Join",
        FORWARD_JOIN => "ForwardJoin",
        NEIGHBOR => "Neighbor",
        NEIGHBOR_REPLY => "NeighborReply",
        SHUFFLE => "Shuffle",
        SHUFFLE_REPLY => "ShuffleReply",
        DISCONNECT => "Disconnect",
        GOSSIP => "Gossip",
        IHAVE => "IHave",
        IWANT => "IWant",
        GRAFT => "Graft",
        PRUNE => "Prune",
        DIRECT => "Direct",
        RECEIPT => "Receipt",
        _ => "unknown",
    }
}

struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn message(&mut self, message: &WireMessage) -> Result<(), EncodeError> {
        self.u8(VERSION);
        match message {
            WireMessage::Proto(Message::Membership(m)) => self.membership(m),
            WireMessage::Proto(Message::Gossip(m)) => self.gossip(m),
            WireMessage::Direct(d) => {
                self.u8(DIRECT);
                self.node(&d.from);
                self.node(&d.to);
                self.u64(d.id);
                self.u8(d.hops_left);
                match d.in_reply_to {
                    Some(id) => {
                        self.u8(1);
                        self.u64(id);
                    }
                    None => self.u8(0),
                }
                self.payload(&d.payload)
            }
            WireMessage::Receipt(r) => {
                self.u8(RECEIPT);
                self.node(&r.origin);
                self.u64(r.id);
                self.u8(r.status.code());
                Ok(())
            }
        }
    }

    fn membership(&mut self, message: &MembershipMessage) -> Result<(), EncodeError> {
        match message {
            MembershipMessage::Join { addr } => {
                self.u8(JOIN);
                self.socket_addr(addr);
            }
            MembershipMessage::ForwardJoin { joiner, ttl } => {
                self.u8(FORWARD_JOIN);
                self.peer(joiner);
                self.u8(*ttl);
            }
            MembershipMessage::Neighbor { addr, priority } => {
                self.u8(NEIGHBOR);
                self.socket_addr(addr);
                self.u8(u8::from(*priority == Priority::High));
            }
            MembershipMessage::NeighborReply { accepted } => {
                self.u8(NEIGHBOR_REPLY);
                self.u8(u8::from(*accepted));
            }
            MembershipMessage::Shuffle { origin, ttl, nodes } => {
                self.u8(SHUFFLE);
                self.peer(origin);
                self.u8(*ttl);
                self.peers(nodes)?;
            }
            MembershipMessage::ShuffleReply { nodes } => {
                self.u8(SHUFFLE_REPLY);
                self.peers(nodes)?;
            }
            MembershipMessage::Disconnect => self.u8(DISCONNECT),
        }
        Ok(())
    }

    fn gossip(&mut self, message: &GossipMessage) -> Result<(), EncodeError> {
        match message {
            GossipMessage::Gossip {
                id,
                topic,
                hops,
                payload,
            } => {
                self.u8(GOSSIP);
                self.message_id(id);
                self.topic(topic);
                self.u16(*hops);
                self.payload(payload)?;
            }
            GossipMessage::IHave { topic, entries } => {
                self.u8(IHAVE);
                self.topic(topic);
                self.count("IHave.entries", entries.len(), MAX_IHAVE_ENTRIES)?;
                for entry in entries {
                    self.message_id(&entry.id);
                    self.u16(entry.hops);
                }
            }
            GossipMessage::IWant { ids } => {
                self.u8(IWANT);
                self.ids(ids)?;
            }
            GossipMessage::Graft {
                topic,
                origin,
                seqs,
            } => {
                self.u8(GRAFT);
                self.topic(topic);
                self.node(origin);
                self.count("Graft.seqs", seqs.len(), MAX_GRAFT_IDS)?;
                for seq in seqs {
                    self.u64(*seq);
                }
            }
            GossipMessage::Prune { topic, origin } => {
                self.u8(PRUNE);
                self.topic(topic);
                match origin {
                    Some(origin) => {
                        self.u8(1);
                        self.node(origin);
                    }
                    None => self.u8(0),
                }
            }
        }
        Ok(())
    }

    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn node(&mut self, id: &NodeId) {
        self.buf.extend_from_slice(id.as_bytes());
    }

    fn message_id(&mut self, id: &MessageId) {
        self.node(&id.origin);
        self.u64(id.seq);
    }

    fn socket_addr(&mut self, addr: &SocketAddr) {
        match addr.ip() {
            IpAddr::V4(ip) => {
                self.u8(4);
                self.buf.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                self.u8(6);
                self.buf.extend_from_slice(&ip.octets());
            }
        }
        self.u16(addr.port());
    }

    fn peer(&mut self, peer: &PeerAddr) {
        self.node(&peer.id);
        self.socket_addr(&peer.addr);
    }

    fn peers(&mut self, peers: &[PeerAddr]) -> Result<(), EncodeError> {
        self.count("Shuffle.nodes", peers.len(), MAX_SHUFFLE_NODES)?;
        for peer in peers {
            self.peer(peer);
        }
        Ok(())
    }

    fn ids(&mut self, ids: &[MessageId]) -> Result<(), EncodeError> {
        self.count("IWant.ids", ids.len(), MAX_IWANT_IDS)?;
        for id in ids {
            self.message_id(id);
        }
        Ok(())
    }

    fn topic(&mut self, topic: &Topic) {
        // `Topic::new` bounds the length to MAX_TOPIC_LEN, which fits a u8.
        let name = topic.as_str().as_bytes();
        self.u8(u8::try_from(name.len()).unwrap_or(u8::MAX));
        self.buf.extend_from_slice(name);
    }

    fn payload(&mut self, payload: &Bytes) -> Result<(), EncodeError> {
        let too_long = || EncodeError::TooLong {
            field: "payload",
            len: payload.len(),
            max: MAX_PAYLOAD_LEN,
        };
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(too_long());
        }
        let len = u32::try_from(payload.len()).map_err(|_| too_long())?;
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(payload);
        Ok(())
    }

    fn count(&mut self, field: &'static str, count: usize, max: usize) -> Result<(), EncodeError> {
        let too_many = || EncodeError::TooMany { field, count, max };
        if count > max {
            return Err(too_many());
        }
        self.u16(u16::try_from(count).map_err(|_| too_many())?);
        Ok(())
    }
}

struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&[u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                field,
                offset: self.pos,
                needed: n,
                remaining: self.remaining(),
            });
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..start + n])
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    fn flag(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        let offset = self.pos;
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::InvalidValue {
                field,
                offset,
                value,
            }),
        }
    }

    fn node(&mut self, field: &'static str) -> Result<NodeId, DecodeError> {
        Ok(NodeId::from_bytes(self.array(field)?))
    }

    fn message_id(&mut self) -> Result<MessageId, DecodeError> {
        let origin = self.node("message id origin")?;
        let seq = self.u64("message id sequence")?;
        Ok(MessageId { origin, seq })
    }

    fn socket_addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let offset = self.pos;
        let ip = match self.u8("address family")? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>("IPv4 address")?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>("IPv6 address")?)),
            value => {
                return Err(DecodeError::InvalidValue {
                    field: "address family",
                    offset,
                    value,
                });
            }
        };
        Ok(SocketAddr::new(ip, self.u16("port")?))
    }

    fn peer(&mut self) -> Result<PeerAddr, DecodeError> {
        let id = self.node("peer id")?;
        Ok(PeerAddr::new(id, self.socket_addr()?))
    }

    /// Reads a u16 count, bounded by `max` and by the bytes left at `min_item` bytes each,
    /// before the caller allocates for it.
    fn count(
        &mut self,
        field: &'static str,
        max: usize,
        min_item: usize,
    ) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let count = usize::from(self.u16(field)?);
        if count > max {
            return Err(DecodeError::TooMany {
                field,
                offset,
                count,
                max,
            });
        }
        if count * min_item > self.remaining() {
            return Err(DecodeError::Truncated {
                field,
                offset: self.pos,
                needed: count * min_item,
                remaining: self.remaining(),
            });
        }
        Ok(count)
    }

    fn peers(&mut self, field: &'static str) -> Result<Vec<PeerAddr>, DecodeError> {
        let count = self.count(field, MAX_SHUFFLE_NODES, MIN_PEER_ADDR_LEN)?;
        (0..count).map(|_| self.peer()).collect()
    }

    fn ids(&mut self) -> Result<Vec<MessageId>, DecodeError> {
        let count = self.count("IWant.ids", MAX_IWANT_IDS, MESSAGE_ID_LEN)?;
        (0..count).map(|_| self.message_id()).collect()
    }

    fn topic(&mut self) -> Result<Topic, DecodeError> {
        let offset = self.pos;
        let len = usize::from(self.u8("topic length")?);
        if len > MAX_TOPIC_LEN {
            return Err(DecodeError::TooLong {
                field: "topic",
                offset,
                len,
                max: MAX_TOPIC_LEN,
            });
        }
        let bytes = self.take("topic", len)?;
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|name| Topic::new(name).ok())
            .ok_or(DecodeError::InvalidTopic { offset })
    }

    fn payload(&mut self) -> Result<Bytes, DecodeError> {
        let offset = self.pos;
        let len = usize::try_from(self.u32("payload length")?).unwrap_or(usize::MAX);
        if len > MAX_PAYLOAD_LEN {
            return Err(DecodeError::TooLong {
                field: "payload",
                offset,
                len,
                max: MAX_PAYLOAD_LEN,
            });
        }
        self.take("payload", len)?;
        Ok(self.buf.slice(self.pos - len..self.pos))
    }

    fn body(&mut self, kind: u8) -> Result<WireMessage, DecodeError> {
        let membership = |m| Ok(WireMessage::Proto(Message::Membership(m)));
        let gossip = |m| Ok(WireMessage::Proto(Message::Gossip(m)));
        match kind {
            JOIN => membership(MembershipMessage::Join {
                addr: self.socket_addr()?,
            }),
            FORWARD_JOIN => membership(MembershipMessage::ForwardJoin {
                joiner: self.peer()?,
                ttl: self.u8("ttl")?,
            }),
            NEIGHBOR => {
                let addr = self.socket_addr()?;
                let priority = if self.flag("priority")? {
                    Priority::High
                } else {
                    Priority::Low
                };
                membership(MembershipMessage::Neighbor { addr, priority })
            }
            NEIGHBOR_REPLY => membership(MembershipMessage::NeighborReply {
                accepted: self.flag("accepted")?,
            }),
            SHUFFLE => membership(MembershipMessage::Shuffle {
                origin: self.peer()?,
                ttl: self.u8("ttl")?,
                nodes: self.peers("Shuffle.nodes")?,
            }),
            SHUFFLE_REPLY => membership(MembershipMessage::ShuffleReply {
                nodes: self.peers("ShuffleReply.nodes")?,
            }),
            DISCONNECT => membership(MembershipMessage::Disconnect),
            GOSSIP => gossip(GossipMessage::Gossip {
                id: self.message_id()?,
                topic: self.topic()?,
                hops: self.u16("hops")?,
                payload: self.payload()?,
            }),
            IHAVE => {
                let topic = self.topic()?;
                let count = self.count("IHave.entries", MAX_IHAVE_ENTRIES, MESSAGE_ID_LEN + 2)?;
                let entries = (0..count)
                    .map(|_| {
                        Ok(IHaveEntry {
                            id: self.message_id()?,
                            hops: self.u16("hops")?,
                        })
                    })
                    .collect::<Result<_, DecodeError>>()?;
                gossip(GossipMessage::IHave { topic, entries })
            }
            IWANT => gossip(GossipMessage::IWant { ids: self.ids()? }),
            GRAFT => {
                let topic = self.topic()?;
                let origin = self.node("Graft.origin")?;
                let count = self.count("Graft.seqs", MAX_GRAFT_IDS, 8)?;
                let seqs = (0..count)
                    .map(|_| self.u64("Graft.seqs"))
                    .collect::<Result<_, _>>()?;
                gossip(GossipMessage::Graft {
                    topic,
                    origin,
                    seqs,
                })
            }
            PRUNE => {
                let topic = self.topic()?;
                let origin = if self.flag("Prune.has_origin")? {
                    Some(self.node("Prune.origin")?)
                } else {
                    None
                };
                gossip(GossipMessage::Prune { topic, origin })
            }
            DIRECT => Ok(WireMessage::Direct(DirectMessage {
                from: self.node("from")?,
                to: self.node("to")?,
                id: self.u64("id")?,
                hops_left: self.u8("hops_left")?,
                in_reply_to: if self.flag("Direct.has_reply_to")? {
                    Some(self.u64("Direct.in_reply_to")?)
                } else {
                    None
                },
                payload: self.payload()?,
            })),
            RECEIPT => {
                let origin = self.node("Receipt.origin")?;
                let id = self.u64("id")?;
                let offset = self.pos;
                let value = self.u8("status")?;
                let status = ReceiptStatus::ALL
                    .into_iter()
                    .find(|s| s.code() == value)
                    .ok_or(DecodeError::InvalidValue {
                        field: "status",
                        offset,
                        value,
                    })?;
                Ok(WireMessage::Receipt(Receipt { origin, id, status }))
            }
            kind => Err(DecodeError::UnknownKind { kind }),
        }
    }
}

#[cfg(test)]
mod tests;
