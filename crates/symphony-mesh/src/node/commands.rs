//! Executing the protocol's commands: sends with the overload policy of design.md (gossip
//! dropped and counted on a full outbound queue; control frames held in a bounded backlog
//! and retried, the peer disconnected if the backlog overflows), deliveries to subscribers
//! (bounded queues, drops counted, never waiting), roster events.

use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;

use super::{BACKLOG_RETRY, MAX_BACKLOG, Node};
use crate::NodeId;
use crate::mesh::{Delivery, MembershipEvent};
use crate::proto::wire::{self, WireMessage};
use crate::proto::{self, Command, MessageId, SendClass, Topic};
use crate::transport::{Purpose, SendError};

impl Node {
    pub(super) fn execute(&mut self, command: Command, now: Instant) {
        match command {
            Command::Send { to, message, class } => self.send_control(to, message, class),
            Command::Connect(addr) => self.connect(addr),
            Command::Disconnect(peer) => {
                if self.abandon_dial(peer) {
                    return;
                }
                if self.up.contains(&peer) || self.transport.is_connected(&peer) {
                    self.disconnect(peer);
                } else {
                    self.queue.push_back(proto::Event::PeerDown(peer));
                }
            }
            Command::SetTimer { after, timer } => self.timers.arm(now + after, timer),
            Command::Deliver {
                topic,
                message_id,
                payload,
                hops,
                from,
            } => self.deliver(topic, message_id, payload, hops, from),
            Command::NeighborUp(peer) => {
                // No listener is not an error: rosters subscribe when they want.
                let _ = self.membership.send(MembershipEvent::NeighborUp { peer });
            }
            Command::NeighborDown(peer) => {
                let _ = self.membership.send(MembershipEvent::NeighborDown { peer });
            }
        }
    }

    fn send_control(&mut self, to: NodeId, message: proto::Message, class: SendClass) {
        let bytes = match wire::encode(&WireMessage::Proto(message)) {
            Ok(bytes) => Bytes::from(bytes),
            Err(err) => {
                // The protocol bounds what it emits; this is a bug, not a peer's fault.
                tracing::error!(peer = %to.short(), error = %err, "cannot encode a protocol message");
                return;
            }
        };
        let droppable = class == SendClass::Gossip;
        if !droppable && let Some(held) = self.backlog.get_mut(&to) {
            // Behind earlier held control frames, to keep their order.
            if held.len() >= MAX_BACKLOG {
                self.backlog_overflow(to);
            } else {
                held.push_back(bytes);
                self.counters.control_backlogged += 1;
            }
            return;
        }
        match self
            .transport
            .send(&to, Purpose::Control, bytes.clone(), droppable)
        {
            Ok(()) => {}
            Err(SendError::QueueFull { .. }) if !droppable => {
                self.backlog.entry(to).or_default().push_back(bytes);
                self.counters.control_backlogged += 1;
                self.backlog_retry
                    .get_or_insert_with(|| Instant::now() + BACKLOG_RETRY);
            }
            Err(SendError::QueueFull { .. }) => self.counters.gossip_queue_full += 1,
            Err(SendError::NotConnected { .. } | SendError::StreamClosed { .. }) => {
                self.counters.sends_not_connected += 1;
            }
            Err(err @ SendError::TooLarge { .. }) => {
                tracing::error!(peer = %to.short(), error = %err, "protocol message exceeds the frame limit");
            }
        }
    }

    fn backlog_overflow(&mut self, peer: NodeId) {
        self.counters.control_backlog_overflow += 1;
        tracing::warn!(peer = %peer.short(), max = MAX_BACKLOG,
            "control backlog overflowed: disconnecting the peer");
        self.disconnect(peer);
    }

    /// Moves held control frames into outbound queues that have room again.
    pub(super) fn retry_backlog(&mut self) {
        self.backlog_retry = None;
        let peers: Vec<NodeId> = self.backlog.keys().copied().collect();
        for peer in peers {
            let Some(held) = self.backlog.get_mut(&peer) else {
                continue;
            };
            while let Some(bytes) = held.front() {
                match self
                    .transport
                    .send(&peer, Purpose::Control, bytes.clone(), false)
                {
                    Ok(()) => {
                        held.pop_front();
                    }
                    Err(SendError::QueueFull { .. }) => break,
                    Err(_) => {
                        // The connection is gone; its PeerDown resets the state these frames
                        // were about.
                        self.counters.sends_not_connected += held.len() as u64;
                        held.clear();
                    }
                }
            }
            if held.is_empty() {
                self.backlog.remove(&peer);
            }
        }
        if !self.backlog.is_empty() {
            self.backlog_retry = Some(Instant::now() + BACKLOG_RETRY);
        }
    }

    fn deliver(
        &mut self,
        topic: Topic,
        message_id: MessageId,
        payload: Bytes,
        hops: u16,
        neighbour: NodeId,
    ) {
        let Some(entry) = self.topics.get_mut(&topic) else {
            return;
        };
        let delivery = Delivery {
            topic: topic.clone(),
            message_id,
            from: message_id.origin,
            neighbour,
            payload,
            hops,
        };
        let (mut delivered, mut dropped) = (0, 0);
        entry
            .subscribers
            .retain(|s| match s.tx.try_send(delivery.clone()) {
                Ok(()) => {
                    delivered += 1;
                    true
                }
                Err(TrySendError::Full(_)) => {
                    dropped += 1;
                    true
                }
                Err(TrySendError::Closed(_)) => false,
            });
        entry.delivered += delivered;
        entry.dropped_full += dropped;
        self.counters.subscriber_queue_full += dropped;
        if dropped > 0 {
            tracing::debug!(topic = %topic, id = %message_id, dropped, "subscriber queue full: delivery dropped");
        }
        if entry.subscribers.is_empty() {
            self.topics.remove(&topic);
            self.queue.push_back(proto::Event::Unsubscribe(topic));
        }
    }
}
