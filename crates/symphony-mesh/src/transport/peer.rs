//! The peer table: each peer's live connections keyed by generation, their outbound queues,
//! and its counters. Every change is keyed by (peer, generation), so a task of an old
//! connection can only ever touch its own entry (docs/wire.md, "Connections").

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::stats::{
    Counters, PathStats, PeerStats, PerPurpose, QueueStats, Tally, TrafficCounters,
};
use super::stream::{Purpose, StreamHandle};
use crate::NodeId;

/// Live connections kept per peer. Two covers a simultaneous dial and a restart whose old
/// connection has not timed out yet; a third closes the oldest.
pub(super) const MAX_CONNECTIONS_PER_PEER: usize = 2;

/// One connection of a peer.
pub(super) struct ConnectionEntry<C> {
    pub(super) conn: C,
    pub(super) addr: SocketAddr,
    /// Outbound queues by [`Purpose::index`]; `None` once that stream closed.
    pub(super) streams: [Option<StreamHandle>; 3],
    pub(super) writers: Vec<JoinHandle<()>>,
    /// Set when a graceful close began: no new frames, the writers drain what is queued.
    closing: bool,
}

impl<C> ConnectionEntry<C> {
    pub(super) fn new(
        conn: C,
        addr: SocketAddr,
        streams: [Option<StreamHandle>; 3],
        writers: Vec<JoinHandle<()>>,
    ) -> Self {
        Self {
            conn,
            addr,
            streams,
            writers,
            closing: false,
        }
    }
}

struct PeerState<C> {
    connections: BTreeMap<u64, ConnectionEntry<C>>,
    newest: u64,
    counters: Arc<TrafficCounters>,
}

/// A connection whose queues were closed: await its writers (they drain and finish their
/// streams), then close `conn`.
pub(super) struct Closing<C> {
    pub(super) conn: C,
    pub(super) writers: Vec<JoinHandle<()>>,
}

/// What [`PeerTable::remove`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Removed {
    /// No such (peer, generation): already removed.
    Unknown,
    /// The peer still has other connections.
    Remaining,
    /// That was the peer's last connection; the peer is gone. `newest` is its newest generation.
    Last { newest: u64 },
}

/// Why a frame cannot be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unroutable {
    NotConnected,
    StreamClosed,
}

pub(super) struct PeerTable<C> {
    peers: HashMap<NodeId, PeerState<C>>,
}

impl<C> Default for PeerTable<C> {
    fn default() -> Self {
        Self {
            peers: HashMap::new(),
        }
    }
}

impl<C> PeerTable<C> {
    /// The peer's counters, creating its state; call [`Self::insert`] under the same lock.
    pub(super) fn counters(&mut self, peer: NodeId) -> Arc<TrafficCounters> {
        let state = self.peers.entry(peer).or_insert_with(|| PeerState {
            connections: BTreeMap::new(),
            newest: 0,
            counters: Arc::default(),
        });
        state.counters.clone()
    }

    /// Counts into `peer`'s counters and the transport totals, if the peer is known.
    pub(super) fn tally(&self, peer: &NodeId, total: Arc<Counters>) -> Option<Tally> {
        let peer = self.peers.get(peer)?.counters.clone();
        Some(Tally { peer, total })
    }

    /// Adds connection `generation`; returns the connections it supersedes (oldest first).
    pub(super) fn insert(
        &mut self,
        peer: NodeId,
        generation: u64,
        entry: ConnectionEntry<C>,
    ) -> Vec<Closing<C>>
    where
        C: Clone,
    {
        self.counters(peer);
        let Some(state) = self.peers.get_mut(&peer) else {
            return Vec::new();
        };
        state.newest = state.newest.max(generation);
        state.connections.insert(generation, entry);
        let live: Vec<u64> = state
            .connections
            .iter()
            .filter(|(_, e)| !e.closing)
            .map(|(g, _)| *g)
            .collect();
        let excess = live.len().saturating_sub(MAX_CONNECTIONS_PER_PEER);
        live[..excess]
            .iter()
            .filter_map(|g| state.connections.get_mut(g).map(begin_close))
            .collect()
    }

    /// Removes connection `generation` of `peer`, and the peer itself if it was the last.
    pub(super) fn remove(&mut self, peer: &NodeId, generation: u64) -> Removed {
        let Some(state) = self.peers.get_mut(peer) else {
            return Removed::Unknown;
        };
        if state.connections.remove(&generation).is_none() {
            return Removed::Unknown;
        }
        if !state.connections.is_empty() {
            return Removed::Remaining;
        }
        let newest = state.newest;
        self.peers.remove(peer);
        Removed::Last { newest }
    }

    /// The outbound queue a frame for (`peer`, `purpose`) goes to: the newest connection that
    /// is not closing and still has that stream open.
    pub(super) fn route(
        &self,
        peer: &NodeId,
        purpose: Purpose,
    ) -> Result<&StreamHandle, Unroutable> {
        let state = self.peers.get(peer).ok_or(Unroutable::NotConnected)?;
        let mut live = state
            .connections
            .values()
            .rev()
            .filter(|e| !e.closing)
            .peekable();
        if live.peek().is_none() {
            return Err(Unroutable::NotConnected);
        }
        live.filter_map(|e| e.streams[purpose.index()].as_ref())
            .find(|h| h.is_open())
            .ok_or(Unroutable::StreamClosed)
    }

    /// Takes the outbound queue of one stream out of service.
    pub(super) fn take_stream(
        &mut self,
        peer: &NodeId,
        generation: u64,
        purpose: Purpose,
    ) -> Option<StreamHandle> {
        let entry = self.peers.get_mut(peer)?.connections.get_mut(&generation)?;
        entry.streams[purpose.index()].take()
    }

    /// Begins a graceful close of every live connection of `peer` (all peers when `None`).
    pub(super) fn close(&mut self, peer: Option<&NodeId>) -> Vec<Closing<C>>
    where
        C: Clone,
    {
        self.peers
            .iter_mut()
            .filter(|(id, _)| peer.is_none_or(|p| p == *id))
            .flat_map(|(_, state)| state.connections.values_mut())
            .filter(|e| !e.closing)
            .map(begin_close)
            .collect()
    }

    /// Whether `peer` has a connection that is not closing.
    pub(super) fn is_connected(&self, peer: &NodeId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|s| s.connections.values().any(|e| !e.closing))
    }

    /// Peers with a connection that is not closing, ordered by NodeId.
    pub(super) fn connected(&self) -> Vec<NodeId> {
        let mut peers: Vec<NodeId> = self
            .peers
            .keys()
            .filter(|p| self.is_connected(p))
            .copied()
            .collect();
        peers.sort();
        peers
    }

    /// Registered connections, all peers.
    pub(super) fn connection_count(&self) -> usize {
        self.peers.values().map(|s| s.connections.len()).sum()
    }

    /// `f` of the newest open connection of every connected peer, ordered by NodeId.
    pub(super) fn newest<T>(&self, f: impl Fn(&C) -> T) -> Vec<(NodeId, T)> {
        let mut out: Vec<(NodeId, T)> = self
            .peers
            .iter()
            .filter_map(|(id, state)| {
                let (_, newest) = state.connections.iter().rev().find(|(_, e)| !e.closing)?;
                Some((*id, f(&newest.conn)))
            })
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }

    /// Per-peer stats, ordered by NodeId; `path` reads a connection's QUIC path figures.
    pub(super) fn snapshot(&self, path: impl Fn(&C) -> PathStats) -> Vec<PeerStats> {
        let mut peers: Vec<PeerStats> = self
            .peers
            .iter()
            .filter_map(|(id, state)| {
                let (_, newest) = state.connections.last_key_value()?;
                let queue = |p: Purpose| {
                    newest.streams[p.index()]
                        .as_ref()
                        .map_or(QueueStats::default(), |h| {
                            let (frames, bytes) = h.depth();
                            QueueStats {
                                frames,
                                bytes,
                                open: h.is_open() && !newest.closing,
                            }
                        })
                };
                Some(PeerStats {
                    node_id: *id,
                    addr: newest.addr,
                    generations: state.connections.keys().copied().collect(),
                    queues: PerPurpose {
                        control: queue(Purpose::Control),
                        sync: queue(Purpose::Sync),
                        direct: queue(Purpose::Direct),
                    },
                    traffic: state.counters.snapshot(),
                    path: path(&newest.conn),
                })
            })
            .collect();
        peers.sort_by_key(|p| p.node_id);
        peers
    }
}

fn begin_close<C: Clone>(entry: &mut ConnectionEntry<C>) -> Closing<C> {
    entry.closing = true;
    // Dropping the handles closes the queues: each writer drains what is queued, then
    // finishes its stream.
    entry.streams = [None, None, None];
    Closing {
        conn: entry.conn.clone(),
        writers: std::mem::take(&mut entry.writers),
    }
}

#[cfg(test)]
mod tests {
    use super::super::stream::outbound_queue;
    use super::*;
    use bytes::Bytes;

    fn entry(tag: u64) -> (ConnectionEntry<u64>, Vec<super::super::stream::WriterInput>) {
        let mut inputs = Vec::new();
        let streams = [0, 1, 2].map(|_| {
            let (handle, input) = outbound_queue(4, 1024);
            inputs.push(input);
            Some(handle)
        });
        (
            ConnectionEntry::new(tag, "127.0.0.1:1".parse().unwrap(), streams, Vec::new()),
            inputs,
        )
    }

    const PEER: NodeId = NodeId::from_bytes([1; 32]);

    #[test]
    fn removing_a_stale_generation_keeps_the_newer_connection() {
        let mut table = PeerTable::default();
        let (e1, _i1) = entry(1);
        let (e2, _i2) = entry(2);
        assert!(table.insert(PEER, 1, e1).is_empty());
        assert!(table.insert(PEER, 2, e2).is_empty());
        assert_eq!(table.remove(&PEER, 1), Removed::Remaining);
        assert_eq!(table.remove(&PEER, 1), Removed::Unknown);
        assert!(table.is_connected(&PEER));
        assert_eq!(table.remove(&PEER, 2), Removed::Last { newest: 2 });
        assert!(!table.is_connected(&PEER));
    }

    #[test]
    fn the_last_close_reports_the_newest_generation_even_if_it_closed_first() {
        let mut table = PeerTable::default();
        let (e1, _i1) = entry(1);
        let (e2, _i2) = entry(2);
        table.insert(PEER, 1, e1);
        table.insert(PEER, 2, e2);
        assert_eq!(table.remove(&PEER, 2), Removed::Remaining);
        assert_eq!(table.remove(&PEER, 1), Removed::Last { newest: 2 });
    }

    #[test]
    fn sends_go_to_the_newest_connection_with_the_stream_open() {
        let mut table = PeerTable::default();
        let (e1, i1) = entry(1);
        let (e2, i2) = entry(2);
        table.insert(PEER, 1, e1);
        table.insert(PEER, 2, e2);
        table
            .route(&PEER, Purpose::Sync)
            .unwrap()
            .push(Bytes::from_static(b"a"), false)
            .unwrap();
        assert_eq!(i2[1].queue_len(), 1);
        assert_eq!(i1[1].queue_len(), 0);

        drop(table.take_stream(&PEER, 2, Purpose::Sync));
        table
            .route(&PEER, Purpose::Sync)
            .unwrap()
            .push(Bytes::from_static(b"b"), false)
            .unwrap();
        assert_eq!(i1[1].queue_len(), 1);

        drop(table.take_stream(&PEER, 1, Purpose::Sync));
        assert_eq!(
            table.route(&PEER, Purpose::Sync).err(),
            Some(Unroutable::StreamClosed)
        );
        assert_eq!(
            table
                .route(&NodeId::from_bytes([9; 32]), Purpose::Sync)
                .err(),
            Some(Unroutable::NotConnected)
        );
    }

    #[test]
    fn a_third_connection_supersedes_the_oldest() {
        let mut table = PeerTable::default();
        for g in 1..=2 {
            let (e, _) = entry(g);
            assert!(table.insert(PEER, g, e).is_empty());
        }
        let (e3, _) = entry(3);
        let closing = table.insert(PEER, 3, e3);
        assert_eq!(closing.iter().map(|c| c.conn).collect::<Vec<_>>(), vec![1]);
        assert_eq!(
            table.snapshot(|_| PathStats::default())[0].generations,
            vec![1, 2, 3]
        );
        assert_eq!(table.remove(&PEER, 1), Removed::Remaining);
    }

    #[test]
    fn closing_a_peer_stops_routing_but_keeps_entries_until_removed() {
        let mut table = PeerTable::default();
        let (e1, _) = entry(1);
        table.insert(PEER, 1, e1);
        assert_eq!(table.close(Some(&PEER)).len(), 1);
        assert!(table.close(Some(&PEER)).is_empty());
        assert_eq!(
            table.route(&PEER, Purpose::Control).err(),
            Some(Unroutable::NotConnected)
        );
        assert_eq!(table.connection_count(), 1);
        assert_eq!(table.remove(&PEER, 1), Removed::Last { newest: 1 });
    }
}
