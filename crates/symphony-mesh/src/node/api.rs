//! API requests and direct messages: subscriptions, publishes, direct sends and requests,
//! inbound direct messages (responses matched to waiting requests), peers and diagnostics.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Node, Request, Subscriber, Waiting};
use crate::NodeId;
use crate::diagnostics::{self, Diagnostics, DirectStats, NodeCounters, Queues, SubscriptionStats};
use crate::direct::{self, Action, Arrival, DirectError, Links, Router};
use crate::mesh::{InboundMessage, MeshError, PeerInfo, PeerView};
use crate::proto::wire::{self, WireMessage};
use crate::proto::{self, CooledStats};
use crate::transport::{Purpose, Transport};

/// What the direct router sees of the node's connections.
struct LinksView<'a> {
    transport: &'a Transport,
    neighbours: Vec<NodeId>,
}

impl Links for LinksView<'_> {
    fn is_connected(&self, peer: &NodeId) -> bool {
        self.transport.is_connected(peer)
    }

    fn neighbours(&self) -> Vec<NodeId> {
        self.neighbours.clone()
    }
}

/// The inbox side of the router: a response completes its waiting request; anything else
/// goes to the application's bounded queue (false = full, the sender hears `Overloaded`).
struct Inbox<'a> {
    waiting: &'a mut HashMap<u64, Waiting>,
    queue: &'a mpsc::Sender<InboundMessage>,
    api: &'a mpsc::WeakSender<Request>,
    responses: &'a mut u64,
    counters: &'a mut NodeCounters,
}

impl Inbox<'_> {
    fn accept(&mut self, arrival: Arrival) -> bool {
        if let Some(request) = arrival.in_reply_to {
            match self.waiting.remove(&request) {
                Some(w) if w.to == arrival.from => {
                    // The requester may have given up in the meantime.
                    let _ = w.tx.send(arrival.payload);
                    *self.responses += 1;
                }
                other => {
                    if let Some(w) = other {
                        self.waiting.insert(request, w);
                    }
                    self.counters.late_responses += 1;
                }
            }
            return true;
        }
        let message = InboundMessage {
            from: arrival.from,
            payload: arrival.payload,
            receipt: arrival.receipt,
            id: arrival.id,
            api: self.api.clone(),
        };
        self.queue.try_send(message).is_ok()
    }
}

impl Node {
    pub(super) fn on_request(&mut self, request: Request) {
        match request {
            Request::Subscribe { topic, reply } => {
                let first = !self.topics.contains_key(&topic);
                if first {
                    self.feed(proto::Event::Subscribe(topic.clone()));
                    if !self.state.is_subscribed(&topic) {
                        let _ = reply.send(Err(MeshError::TopicLimit { topic }));
                        return;
                    }
                }
                let (tx, rx) = mpsc::channel(self.subscriber_queue);
                let id = self.next_subscriber;
                self.next_subscriber += 1;
                let entry = self.topics.entry(topic).or_default();
                entry.subscribers.push(Subscriber { id, tx });
                let _ = reply.send(Ok((id, rx)));
            }
            Request::Unsubscribe { topic, id } => {
                if let Some(entry) = self.topics.get_mut(&topic) {
                    entry.subscribers.retain(|s| s.id != id);
                    if entry.subscribers.is_empty() {
                        self.topics.remove(&topic);
                        self.feed(proto::Event::Unsubscribe(topic));
                    }
                }
            }
            Request::Publish {
                topic,
                payload,
                reply,
            } => {
                let before = self.state.last_published();
                self.feed(proto::Event::Publish {
                    topic: topic.clone(),
                    payload,
                });
                let after = self.state.last_published();
                let result = match after {
                    Some(id) if after != before => Ok(id),
                    _ => Err(MeshError::TopicLimit { topic }),
                };
                let _ = reply.send(result);
            }
            Request::Direct {
                to,
                payload,
                in_reply_to,
                answer,
                reply,
            } => self.send_direct(to, payload, in_reply_to, answer, reply),
            Request::SyncSend { to, payload, reply } => {
                let sent = self
                    .transport
                    .send(&to, Purpose::Sync, payload, false)
                    .map_err(MeshError::from);
                let _ = reply.send(sent);
            }
            Request::Peers { reply } => {
                let _ = reply.send(self.peers(Instant::now()));
            }
            Request::Diagnostics { reply } => {
                let _ = reply.send(self.diagnostics());
            }
            // The run loop handles it before dispatching here.
            Request::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }

    fn send_direct(
        &mut self,
        to: NodeId,
        payload: Bytes,
        in_reply_to: Option<u64>,
        answer: Option<(tokio::sync::oneshot::Sender<Bytes>, std::time::Duration)>,
        reply: tokio::sync::oneshot::Sender<Result<direct::Receipt, DirectError>>,
    ) {
        if answer.is_some() && self.waiting.len() >= self.max_waiting {
            let _ = reply.send(Err(DirectError::TooManyPending {
                max: self.max_waiting,
            }));
            return;
        }
        let now = Instant::now();
        let (id, actions) = self.with_router(|router, links, inbox| {
            router.send(to, payload, in_reply_to, now, links, &mut |a| {
                inbox.accept(a)
            })
        });
        self.receipts.insert(id, reply);
        if let Some((tx, timeout)) = answer {
            let deadline = now + timeout;
            self.waiting.insert(id, Waiting { to, tx, deadline });
        }
        self.apply_direct(actions);
    }

    pub(super) fn on_direct(&mut self, peer: NodeId, message: wire::DirectMessage) {
        let actions = self.with_router(|router, links, inbox| {
            router.on_direct(peer, message, Instant::now(), links, &mut |a| {
                inbox.accept(a)
            })
        });
        self.apply_direct(actions);
    }

    /// Runs `route` with the router, the links it sees and the inbox it delivers to, each a
    /// disjoint borrow of the node.
    fn with_router<R>(
        &mut self,
        route: impl FnOnce(&mut Router, &LinksView<'_>, &mut Inbox<'_>) -> R,
    ) -> R {
        let links = LinksView {
            transport: &self.transport,
            neighbours: self.state.active_view().collect(),
        };
        let mut inbox = Inbox {
            waiting: &mut self.waiting,
            queue: &self.inbox,
            api: &self.weak_api,
            responses: &mut self.responses,
            counters: &mut self.counters,
        };
        route(&mut self.router, &links, &mut inbox)
    }

    /// Executes router actions; a branch the transport refuses is reported back as failed.
    pub(super) fn apply_direct(&mut self, actions: Vec<Action>) {
        let mut work: VecDeque<Action> = actions.into();
        while let Some(action) = work.pop_front() {
            match action {
                Action::Send { to, message } => {
                    let bytes = match wire::encode(&message) {
                        Ok(bytes) => Bytes::from(bytes),
                        Err(err) => {
                            tracing::error!(peer = %to.short(), error = %err, "cannot encode a direct message");
                            continue;
                        }
                    };
                    let sent = self.transport.send(&to, Purpose::Direct, bytes, false);
                    if let (Err(err), WireMessage::Direct(d)) = (sent, &message) {
                        tracing::debug!(peer = %to.short(), error = %err, "direct branch refused");
                        work.extend(self.router.branch_failed(to, d));
                    }
                }
                Action::Complete { id, result } => {
                    if result.is_err() {
                        self.waiting.remove(&id);
                    }
                    if let Some(tx) = self.receipts.remove(&id) {
                        // The caller may have stopped waiting.
                        let _ = tx.send(result);
                    }
                }
            }
        }
    }

    pub(super) fn peers(&self, now: Instant) -> Vec<PeerInfo> {
        let connected: HashSet<NodeId> = self.transport.connected_peers().into_iter().collect();
        let cooled: BTreeMap<NodeId, CooledStats> = self
            .state
            .cooled_peers()
            .map(|c| {
                let millis =
                    |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                let stats = CooledStats {
                    peer: c.peer,
                    until_in_ms: millis(c.until.saturating_duration_since(now)),
                    backoff_ms: millis(c.backoff),
                    probe_in_flight: c.probe_in_flight,
                };
                (c.peer, stats)
            })
            .collect();
        let info = |id: NodeId, addr, view| PeerInfo {
            node_id: id,
            addr,
            view,
            connected: connected.contains(&id),
            score: self.state.score(&id),
            cooled: cooled.get(&id).copied(),
        };
        let mut peers: Vec<PeerInfo> = self
            .state
            .active_peers()
            .iter()
            .map(|a| info(a.id, Some(a.addr), PeerView::Active))
            .chain(
                self.state
                    .passive_peers()
                    .iter()
                    .map(|a| info(a.id, Some(a.addr), PeerView::Passive)),
            )
            .collect();
        let known: HashSet<NodeId> = peers.iter().map(|p| p.node_id).collect();
        peers.extend(
            connected
                .iter()
                .filter(|id| !known.contains(id))
                .map(|id| info(*id, None, PeerView::Connected)),
        );
        peers.sort_by_key(|p| (p.view, p.node_id));
        peers
    }

    pub(super) fn diagnostics(&self) -> Diagnostics {
        let now = Instant::now();
        let (pending, relay_entries, dedupe_entries) = self.router.depths();
        let subscriptions = self
            .topics
            .iter()
            .map(|(topic, t)| SubscriptionStats {
                topic: topic.clone(),
                subscribers: t.subscribers.len(),
                delivered: t.delivered,
                dropped_full: t.dropped_full,
                queue_depth: t
                    .subscribers
                    .iter()
                    .map(|s| s.tx.max_capacity() - s.tx.capacity())
                    .max()
                    .unwrap_or(0),
            })
            .collect();
        let transport = self.transport.stats();
        let queues = Queues {
            events: transport.events,
            api: self.api.len(),
            direct_inbox: self.inbox.max_capacity() - self.inbox.capacity(),
            timers: self.timers.len(),
            control_backlog: self.backlog.values().map(VecDeque::len).sum(),
        };
        diagnostics::build(diagnostics::Parts {
            local_addr: self.local_addr,
            advertised_addr: self.me.addr,
            uptime_ms: u64::try_from(now.duration_since(self.started).as_millis())
                .unwrap_or(u64::MAX),
            proto: self.state.stats(now),
            transport,
            peers: self.peers(now),
            backlog: self.backlog.iter().map(|(p, q)| (*p, q.len())).collect(),
            subscriptions,
            direct: DirectStats {
                counters: self.router.counters(),
                pending,
                relay_entries,
                dedupe_entries,
                requests_waiting: self.waiting.len(),
                responses: self.responses,
            },
            node: self.counters,
            membership_lagged: self.lagged.load(std::sync::atomic::Ordering::Relaxed),
            queues,
        })
    }
}
