//! The node actor: ONE task owning the protocol [`State`], the [`Transport`] and the direct
//! message router, with one `select!` over transport events, API requests, dial outcomes and
//! a timer queue (the style of Symphony's orchestrator and iroh-gossip's actor).
//!
//! It executes the protocol's commands and honours its contract (`proto` module docs): every
//! `Connect` is answered by exactly one `PeerUp` or `PeerDown` (a dial runs in its own task
//! and reports back; a dial abandoned by `Disconnect` still answers), `PeerDown` follows every
//! `Disconnect`, and `SendSucceeded`/`SendTimedOut` of the control stream feed scores and
//! cooling. It never waits on the network: dials and graceful disconnects run in spawned
//! tasks, sends only enqueue, and every queue it fills is bounded (docs/mesh.md,
//! "Architecture").

mod api;
mod commands;
mod dials;
mod timers;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinSet;

use self::dials::{DialOutcome, PendingBootstrap};
use self::timers::TimerQueue;
use crate::NodeId;
use crate::config::MeshConfig;
use crate::diagnostics::{Diagnostics, NodeCounters};
use crate::direct::{self, Receipt, Router};
use crate::identity::Identity;
use crate::mesh::{Delivery, InboundMessage, MembershipEvent, MeshError, PeerInfo, SyncFrame};
use crate::proto::wire::{self, WireMessage};
use crate::proto::{self, MessageId, PeerAddr, State, Topic};
use crate::transport::{Event, Events, Purpose, Transport};

/// A call from the API to the actor, answered over its oneshot.
#[derive(Debug)]
pub(crate) enum Request {
    Subscribe {
        topic: Topic,
        reply: oneshot::Sender<Result<(u64, mpsc::Receiver<Delivery>), MeshError>>,
    },
    Unsubscribe {
        topic: Topic,
        id: u64,
    },
    Publish {
        topic: Topic,
        payload: Bytes,
        reply: oneshot::Sender<Result<MessageId, MeshError>>,
    },
    Direct {
        to: NodeId,
        payload: Bytes,
        in_reply_to: Option<u64>,
        /// For a request: where the response goes, and how long to wait for it.
        answer: Option<(oneshot::Sender<Bytes>, Duration)>,
        reply: oneshot::Sender<Result<Receipt, direct::DirectError>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    Diagnostics {
        reply: oneshot::Sender<Diagnostics>,
    },
    SyncSend {
        to: NodeId,
        payload: Bytes,
        reply: oneshot::Sender<Result<(), MeshError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// What [`start`] needs from the API layer.
pub(crate) struct Setup<'a> {
    pub config: &'a MeshConfig,
    pub identity: &'a Identity,
    pub api: mpsc::Receiver<Request>,
    pub weak_api: mpsc::WeakSender<Request>,
    pub membership: broadcast::Sender<MembershipEvent>,
    pub lagged: Arc<AtomicU64>,
    pub inbox: mpsc::Sender<InboundMessage>,
    pub sync_inbox: mpsc::Sender<SyncFrame>,
}

/// Where the started node listens.
pub(crate) struct Started {
    pub local_addr: SocketAddr,
    pub advertised: SocketAddr,
}

/// Control frames held for one peer at most; one more disconnects the peer.
const MAX_BACKLOG: usize = 1024;
/// How often held control frames are retried.
const BACKLOG_RETRY: Duration = Duration::from_millis(10);

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Delivery>,
}

#[derive(Default)]
struct TopicSubscribers {
    subscribers: Vec<Subscriber>,
    delivered: u64,
    dropped_full: u64,
}

/// A request waiting for its response.
struct Waiting {
    to: NodeId,
    tx: oneshot::Sender<Bytes>,
    deadline: Instant,
}

struct Node {
    me: PeerAddr,
    local_addr: SocketAddr,
    started: Instant,
    state: State,
    transport: Transport,
    events: Events,
    api: mpsc::Receiver<Request>,
    weak_api: mpsc::WeakSender<Request>,
    timers: TimerQueue,
    /// Peers the protocol has been told are up (deduplicates the transport's per-connection
    /// `PeerUp`s and answers `Connect` for peers already connected).
    up: HashSet<NodeId>,
    dials: JoinSet<DialOutcome>,
    dialing: HashMap<NodeId, oneshot::Sender<()>>,
    abandoned: HashSet<NodeId>,
    bootstrap: Vec<PendingBootstrap>,
    backlog: BTreeMap<NodeId, VecDeque<Bytes>>,
    backlog_retry: Option<Instant>,
    /// Protocol events produced while executing commands, processed in order.
    queue: VecDeque<proto::Event>,
    topics: BTreeMap<Topic, TopicSubscribers>,
    next_subscriber: u64,
    subscriber_queue: usize,
    membership: broadcast::Sender<MembershipEvent>,
    lagged: Arc<AtomicU64>,
    router: Router,
    inbox: mpsc::Sender<InboundMessage>,
    sync_inbox: mpsc::Sender<SyncFrame>,
    receipts: HashMap<u64, oneshot::Sender<Result<Receipt, direct::DirectError>>>,
    waiting: HashMap<u64, Waiting>,
    max_waiting: usize,
    responses: u64,
    counters: NodeCounters,
}

/// Binds the transport and spawns the actor.
pub(crate) async fn start(setup: Setup<'_>) -> Result<Started, MeshError> {
    let Setup {
        config,
        identity,
        api,
        weak_api,
        membership,
        lagged,
        inbox,
        sync_inbox,
    } = setup;
    let proto_config = config.proto_config();
    proto_config.validate()?;
    let (transport, events) = Transport::start(config.transport_config(), identity).await?;
    let local_addr = transport.local_addr();
    let advertised = config.advertise.unwrap_or(local_addr);
    let me = PeerAddr::new(identity.node_id(), advertised);
    let state = State::new(me, proto_config, rand::random())?;
    let now = Instant::now();
    let mut node = Node {
        me,
        local_addr,
        started: now,
        state,
        transport,
        events,
        api,
        weak_api,
        timers: TimerQueue::default(),
        up: HashSet::new(),
        dials: JoinSet::new(),
        dialing: HashMap::new(),
        abandoned: HashSet::new(),
        bootstrap: Vec::new(),
        backlog: BTreeMap::new(),
        backlog_retry: None,
        queue: VecDeque::new(),
        topics: BTreeMap::new(),
        next_subscriber: 0,
        subscriber_queue: config.subscriber_queue,
        membership,
        lagged,
        router: Router::new(identity.node_id(), config.direct_config(), rand::random()),
        inbox,
        sync_inbox,
        receipts: HashMap::new(),
        waiting: HashMap::new(),
        max_waiting: config.direct.max_pending,
        responses: 0,
        counters: NodeCounters::default(),
    };
    node.join(&config.bootstrap, now);
    tracing::info!(node = %me.id.short(), %local_addr, %advertised, "mesh node started");
    tokio::spawn(node.run());
    Ok(Started {
        local_addr,
        advertised,
    })
}

impl Node {
    async fn run(mut self) {
        let shutdown_reply = loop {
            let wake = self.next_wake();
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(event) => self.on_transport(event),
                    None => break None,
                },
                Some(outcome) = self.dials.join_next(), if !self.dials.is_empty() => {
                    if let Ok(outcome) = outcome {
                        self.on_dial(outcome);
                    }
                }
                request = self.api.recv() => match request {
                    Some(Request::Shutdown { reply }) => break Some(reply),
                    Some(request) => self.on_request(request),
                    None => break None,
                },
                () = sleep_until(wake), if wake.is_some() => self.on_wake(),
            }
        };
        self.shut_down().await;
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        [
            self.timers.next(),
            self.router.next_deadline(),
            self.backlog_retry,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn on_wake(&mut self) {
        let now = Instant::now();
        for timer in self.timers.due(now) {
            if timer == proto::Timer::Tick {
                self.housekeeping(now);
            }
            self.feed(proto::Event::TimerFired(timer));
        }
        let actions = self.router.on_tick(now);
        self.apply_direct(actions);
        if self.backlog_retry.is_some_and(|at| at <= now) {
            self.retry_backlog();
        }
    }

    /// Once per protocol tick: report paths (graft timers and lossy-link pushes follow
    /// them), retry bootstrap addresses, expire waiting requests.
    fn housekeeping(&mut self, now: Instant) {
        for (peer, path) in self.transport.paths() {
            let (rtt, loss) = (path.rtt(), path.loss());
            self.feed(proto::Event::Path { peer, rtt, loss });
        }
        self.retry_bootstrap(now);
        self.waiting
            .retain(|_, w| w.deadline > now && !w.tx.is_closed());
    }

    /// Processes a protocol event and everything it causes, in order.
    fn feed(&mut self, event: proto::Event) {
        self.queue.push_back(event);
        while let Some(event) = self.queue.pop_front() {
            let now = Instant::now();
            let commands: Vec<proto::Command> = self.state.handle(event, now).collect();
            for command in commands {
                self.execute(command, now);
            }
        }
    }

    fn on_transport(&mut self, event: Event) {
        match event {
            Event::PeerUp { peer, .. } => {
                if self.up.insert(peer) {
                    self.feed(proto::Event::PeerUp(peer));
                }
            }
            Event::PeerDown { peer, reason, .. } => {
                tracing::debug!(peer = %peer.short(), ?reason, "peer down");
                self.backlog.remove(&peer);
                let actions = self.router.on_peer_down(peer);
                self.apply_direct(actions);
                if self.up.remove(&peer) {
                    self.feed(proto::Event::PeerDown(peer));
                }
            }
            Event::Frame {
                peer,
                purpose,
                payload,
            } => self.on_frame(peer, purpose, payload),
            Event::StreamClosed {
                peer,
                purpose,
                reason,
                ..
            } => {
                tracing::warn!(peer = %peer.short(), %purpose, ?reason, "stream closed");
                if purpose == Purpose::Control {
                    self.counters.control_stream_closed += 1;
                    self.disconnect(peer);
                }
            }
            Event::SendTimedOut { peer, purpose } => {
                if purpose == Purpose::Control {
                    self.feed(proto::Event::SendTimedOut(peer));
                }
            }
            Event::SendSucceeded { peer, latency } => {
                self.feed(proto::Event::SendSucceeded { peer, latency });
            }
        }
    }

    fn on_frame(&mut self, peer: NodeId, purpose: Purpose, payload: Bytes) {
        if purpose == Purpose::Sync {
            let frame = SyncFrame {
                from: peer,
                payload,
            };
            if self.sync_inbox.try_send(frame).is_err() {
                // Full or not taken: the sync protocol's next round resends what is missing.
                self.counters.sync_unhandled += 1;
            }
            return;
        }
        let message = match wire::decode(payload) {
            Ok(message) => message,
            Err(err) => {
                self.counters.undecodable += 1;
                tracing::warn!(peer = %peer.short(), %purpose, error = %err, "undecodable message");
                if purpose == Purpose::Control {
                    // Membership and tree state with this peer can no longer be trusted.
                    self.disconnect(peer);
                }
                return;
            }
        };
        match (purpose, message) {
            (Purpose::Control, WireMessage::Proto(message)) => {
                self.feed(proto::Event::Message {
                    from: peer,
                    message,
                });
            }
            (Purpose::Direct, WireMessage::Direct(message)) => self.on_direct(peer, message),
            (Purpose::Direct, WireMessage::Receipt(receipt)) => {
                let actions = self.router.on_receipt(peer, receipt);
                self.apply_direct(actions);
            }
            (purpose, message) => {
                self.counters.undecodable += 1;
                tracing::warn!(peer = %peer.short(), %purpose, ?message, "message on the wrong stream");
            }
        }
    }

    /// The peer's connections close gracefully (in a spawned task); `PeerDown` follows from
    /// the transport.
    fn disconnect(&mut self, peer: NodeId) {
        self.backlog.remove(&peer);
        let transport = self.transport.clone();
        tokio::spawn(async move { transport.disconnect(&peer).await });
    }

    async fn shut_down(mut self) {
        let actions = self.router.shut_down();
        self.apply_direct(actions);
        self.waiting.clear();
        self.topics.clear();
        self.dials.abort_all();
        self.transport.shutdown().await;
        tracing::info!(node = %self.me.id.short(), "mesh node shut down");
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}
