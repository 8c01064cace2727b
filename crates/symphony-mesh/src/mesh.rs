//! The API a program embeds: [`Mesh::start`] runs one node (an actor task owning the protocol
//! state and the transport, `node` module) and returns a cheap-to-clone handle
//! (docs/mesh.md, "API").
//!
//! Every call is a message to the actor answered over a oneshot; none touches the network
//! itself, and every queue between the actor and the program is bounded: subscriptions drop
//! and count when full, membership listeners lag and are told, the direct inbox refuses with
//! an `Overloaded` receipt.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{Mutex, broadcast, mpsc, oneshot};

use crate::NodeId;
use crate::config::{ConfigError, MeshConfig};
use crate::diagnostics::Diagnostics;
use crate::direct::{DirectError, Receipt};
use crate::identity::{Identity, IdentityError};
use crate::node::{self, Request};
use crate::proto::{self, CooledStats, MessageId, Topic, TopicError, wire};
use crate::transport::TransportError;

/// Why the node could not start or a call failed.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// A mesh setting is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A protocol setting is out of range.
    #[error(transparent)]
    Proto(#[from] proto::ConfigError),
    /// The node key could not be loaded or created.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The key file's directory could not be created.
    #[error("cannot create the directory of the node key {path}: {source}")]
    KeyDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The QUIC endpoint could not start.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A topic name is empty or too long.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// A payload exceeds [`wire::MAX_PAYLOAD_LEN`].
    #[error("payload of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Payload length in bytes.
        len: usize,
        /// The maximum in bytes.
        max: usize,
    },
    /// The node already tracks `pubsub.max_topics` topics (256 by default).
    #[error("topic {topic} refused: the node's topic limit is reached")]
    TopicLimit {
        /// The refused topic.
        topic: Topic,
    },
    /// A sync frame could not be queued for its peer (not connected, stream closed, queue
    /// full: the peer is slow), or is larger than a frame.
    #[error("sync frame not sent: {0}")]
    Sync(#[from] crate::transport::SendError),
    /// The node is shutting down or has shut down.
    #[error("the mesh node is shut down")]
    ShutDown,
}

/// Frames held for the application's [`SyncFrames`] at most.
pub const SYNC_INBOX: usize = 256;

/// A message delivered on a subscribed topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic.
    pub topic: Topic,
    /// Origin and sequence: unique per message.
    pub message_id: MessageId,
    /// The node that published it (`message_id.origin`).
    pub from: NodeId,
    /// The neighbour it arrived from.
    pub neighbour: NodeId,
    /// The application payload.
    pub payload: Bytes,
    /// Links travelled from the origin (1 = straight from the publisher).
    pub hops: u16,
}

/// A roster event: the active view changed (HyParView §3). A `Lagged` event says the listener
/// fell more than `membership_queue` events behind and lost that many: call [`Mesh::peers`]
/// to resynchronise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MembershipEvent {
    /// The peer joined the active view.
    NeighborUp {
        /// The peer.
        peer: NodeId,
    },
    /// The peer left the active view.
    NeighborDown {
        /// The peer.
        peer: NodeId,
    },
    /// This listener missed `missed` events.
    Lagged {
        /// Events lost.
        missed: u64,
    },
}

/// Where a peer stands with this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerView {
    /// In the active view: connected, gossip flows over it.
    Active,
    /// In the passive view: a known address, used to repair the active view.
    Passive,
    /// Connected but in neither view (a dial in progress, a probe, a closing link, or a
    /// node that connected to us).
    Connected,
}

/// One peer as [`Mesh::peers`] reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerInfo {
    /// The peer.
    pub node_id: NodeId,
    /// Its advertised address, when known from membership.
    pub addr: Option<SocketAddr>,
    /// Active, passive or only connected.
    pub view: PeerView,
    /// Whether a QUIC connection is live.
    pub connected: bool,
    /// Its decayed score (`proto::score`).
    pub score: f64,
    /// Its cooling state, when cooled.
    pub cooled: Option<CooledStats>,
}

/// A direct message that reached this node; answer it with [`InboundMessage::reply`].
#[derive(Debug)]
pub struct InboundMessage {
    /// The sender as it asserts itself (proven by TLS only when `receipt` is `Direct`).
    pub from: NodeId,
    /// The payload.
    pub payload: Bytes,
    /// How it arrived: `Loopback`, `Direct`, or `Relayed { via }` (the last relay).
    pub receipt: Receipt,
    pub(crate) id: u64,
    pub(crate) api: mpsc::WeakSender<Request>,
}

impl InboundMessage {
    /// Sends `payload` back to the sender as the response to this message (completing the
    /// sender's [`Mesh::request`]). Returns how the response got there.
    ///
    /// # Errors
    /// [`DirectError`] as for [`Mesh::send_direct`].
    pub async fn reply(&self, payload: impl Into<Bytes>) -> Result<Receipt, DirectError> {
        let api = self.api.upgrade().ok_or(DirectError::ShuttingDown)?;
        send_direct(&api, self.from, payload.into(), Some(self.id), None).await
    }
}

/// The stream of direct messages addressed to this node ([`Mesh::direct_messages`]).
#[derive(Debug)]
pub struct DirectMessages {
    rx: mpsc::Receiver<InboundMessage>,
}

impl DirectMessages {
    /// The next message; `None` once the node has shut down.
    pub async fn recv(&mut self) -> Option<InboundMessage> {
        self.rx.recv().await
    }
}

impl futures::Stream for DirectMessages {
    type Item = InboundMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// A frame from a peer's persistent sync stream ([`Mesh::sync_frames`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFrame {
    /// The peer, as proven by its TLS certificate.
    pub from: NodeId,
    /// The payload (at most a frame, [`wire::MAX_MESSAGE_LEN`] bytes).
    pub payload: Bytes,
}

/// The frames of every peer's sync stream, in arrival order ([`Mesh::sync_frames`]).
#[derive(Debug)]
pub struct SyncFrames {
    rx: mpsc::Receiver<SyncFrame>,
}

impl SyncFrames {
    /// The next frame; `None` once the node has shut down.
    pub async fn recv(&mut self) -> Option<SyncFrame> {
        self.rx.recv().await
    }
}

/// Deliveries of one topic. Dropping it unsubscribes (the node keeps relaying the topic).
#[derive(Debug)]
pub struct Subscription {
    topic: Topic,
    id: u64,
    rx: mpsc::Receiver<Delivery>,
    api: mpsc::WeakSender<Request>,
}

impl Subscription {
    /// The topic.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// The next delivery; `None` once the node has shut down.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }
}

impl futures::Stream for Subscription {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(api) = self.api.upgrade() {
            // When the queue is full the actor notices the closed channel on the next delivery.
            let _ = api.try_send(Request::Unsubscribe {
                topic: self.topic.clone(),
                id: self.id,
            });
        }
    }
}

/// Roster events of this node ([`Mesh::membership_events`]).
#[derive(Debug)]
pub struct MembershipEvents {
    /// `None` when the node had already shut down.
    rx: Option<broadcast::Receiver<MembershipEvent>>,
    lagged: Arc<AtomicU64>,
}

impl MembershipEvents {
    /// The next event; `None` once the node has shut down.
    pub async fn recv(&mut self) -> Option<MembershipEvent> {
        match self.rx.as_mut()?.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                self.lagged.fetch_add(missed, Ordering::Relaxed);
                Some(MembershipEvent::Lagged { missed })
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// A running mesh node. Cloning is cheap; the node shuts down on [`Mesh::shutdown`] or when
/// the last handle is dropped.
#[derive(Clone, Debug)]
pub struct Mesh {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    node_id: NodeId,
    local_addr: SocketAddr,
    advertised: SocketAddr,
    api: mpsc::Sender<Request>,
    /// Weak, so listeners see the end of the stream when the actor (the only strong sender)
    /// stops.
    membership: broadcast::WeakSender<MembershipEvent>,
    lagged: Arc<AtomicU64>,
    inbox: Mutex<Option<DirectMessages>>,
    sync_inbox: Mutex<Option<SyncFrames>>,
    request_timeout: Duration,
}

impl Mesh {
    /// Loads (or creates, mode 0600, with its directory) the key at `config.key_path` and
    /// starts the node; see [`Mesh::start_with_identity`].
    ///
    /// # Errors
    /// [`MeshError::Identity`], [`MeshError::KeyDir`], and everything
    /// [`Mesh::start_with_identity`] returns.
    pub async fn start(config: MeshConfig) -> Result<Mesh, MeshError> {
        config.validate()?;
        let dir = config
            .key_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).map_err(|source| MeshError::KeyDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let identity = Identity::load_or_create(Path::new(&config.key_path))?;
        Self::start_with_identity(config, identity).await
    }

    /// Starts the node with an identity the caller holds (`config.key_path` is ignored):
    /// binds the endpoint, joins through `config.bootstrap`, and returns once listening.
    /// Must run inside a Tokio runtime; the node's tasks run on it.
    ///
    /// # Errors
    /// [`MeshError::Config`], [`MeshError::Proto`] for settings out of range,
    /// [`MeshError::Transport`] when the socket cannot be bound.
    pub async fn start_with_identity(
        config: MeshConfig,
        identity: Identity,
    ) -> Result<Mesh, MeshError> {
        config.validate()?;
        let (membership, _) = broadcast::channel(config.membership_queue);
        let (api_tx, api_rx) = mpsc::channel(config.api_queue);
        let (inbox_tx, inbox_rx) = mpsc::channel(config.direct.inbound_queue);
        let (sync_tx, sync_rx) = mpsc::channel(SYNC_INBOX);
        let lagged = Arc::new(AtomicU64::new(0));
        let started = node::start(node::Setup {
            config: &config,
            identity: &identity,
            api: api_rx,
            weak_api: api_tx.downgrade(),
            membership: membership.clone(),
            lagged: lagged.clone(),
            inbox: inbox_tx,
            sync_inbox: sync_tx,
        })
        .await?;
        Ok(Mesh {
            inner: Arc::new(Inner {
                node_id: identity.node_id(),
                local_addr: started.local_addr,
                advertised: started.advertised,
                api: api_tx,
                membership: membership.downgrade(),
                lagged,
                inbox: Mutex::new(Some(DirectMessages { rx: inbox_rx })),
                sync_inbox: Mutex::new(Some(SyncFrames { rx: sync_rx })),
                request_timeout: Duration::from_millis(config.direct.timeout_ms),
            }),
        })
    }

    /// This node's identity.
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// The bound UDP address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The address advertised to other nodes (`advertise`, else the bound address).
    pub fn advertised_addr(&self) -> SocketAddr {
        self.inner.advertised
    }

    async fn call<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, MeshError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .api
            .send(request(tx))
            .await
            .map_err(|_| MeshError::ShutDown)?;
        rx.await.map_err(|_| MeshError::ShutDown)
    }

    /// Delivers messages of `topic` from now on (PlumTree; every node relays every topic
    /// whether subscribed or not). Several subscriptions to one topic each get every message.
    ///
    /// # Errors
    /// [`MeshError::Topic`] for an empty or over-long name, [`MeshError::TopicLimit`],
    /// [`MeshError::ShutDown`].
    pub async fn subscribe(&self, topic: &str) -> Result<Subscription, MeshError> {
        let topic = Topic::new(topic)?;
        let (id, rx) = self
            .call(|reply| Request::Subscribe {
                topic: topic.clone(),
                reply,
            })
            .await??;
        Ok(Subscription {
            topic,
            id,
            rx,
            api: self.inner.api.downgrade(),
        })
    }

    /// Publishes `payload` (at most [`wire::MAX_PAYLOAD_LEN`] bytes) to every node's
    /// subscribers of `topic`; the publisher gets no copy. Returns the message id.
    ///
    /// # Errors
    /// [`MeshError::Topic`], [`MeshError::TooLarge`], [`MeshError::TopicLimit`],
    /// [`MeshError::ShutDown`].
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<MessageId, MeshError> {
        let topic = Topic::new(topic)?;
        let payload = payload.into();
        if payload.len() > wire::MAX_PAYLOAD_LEN {
            return Err(MeshError::TooLarge {
                len: payload.len(),
                max: wire::MAX_PAYLOAD_LEN,
            });
        }
        self.call(|reply| Request::Publish {
            topic,
            payload,
            reply,
        })
        .await?
    }

    /// Sends `payload` to `node` and waits for its receipt (`direct` module docs give the
    /// routing): `Loopback` for this node, `Direct` over a connection, `Relayed { via }`
    /// through neighbours.
    ///
    /// # Errors
    /// [`DirectError::TooLarge`], [`DirectError::Unreachable`], [`DirectError::Overloaded`],
    /// [`DirectError::Timeout`] (after `direct.timeout_ms`), [`DirectError::TooManyPending`],
    /// [`DirectError::ShuttingDown`].
    pub async fn send_direct(
        &self,
        node: NodeId,
        payload: impl Into<Bytes>,
    ) -> Result<Receipt, DirectError> {
        send_direct(&self.inner.api, node, payload.into(), None, None).await
    }

    /// Sends `payload` to `node` and waits up to `timeout` in total for the answer it gives
    /// with [`InboundMessage::reply`].
    ///
    /// # Errors
    /// As [`Mesh::send_direct`]; [`DirectError::Timeout`] when no answer came in time.
    pub async fn request(
        &self,
        node: NodeId,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes, DirectError> {
        let (answer_tx, answer_rx) = oneshot::channel();
        let waited = tokio::time::timeout(timeout, async {
            send_direct(
                &self.inner.api,
                node,
                payload.into(),
                None,
                Some((answer_tx, timeout)),
            )
            .await?;
            answer_rx.await.map_err(|_| DirectError::ShuttingDown)
        })
        .await;
        waited.unwrap_or(Err(DirectError::Timeout {
            node,
            after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }))
    }

    /// [`Mesh::request`] with the configured `direct.timeout_ms`.
    ///
    /// # Errors
    /// As [`Mesh::request`].
    pub async fn request_default(
        &self,
        node: NodeId,
        payload: impl Into<Bytes>,
    ) -> Result<Bytes, DirectError> {
        self.request(node, payload, self.inner.request_timeout)
            .await
    }

    /// The inbound direct messages. There is one stream per node: the first call takes it,
    /// later calls get `None`. Until it is taken, messages wait in its queue
    /// (`direct.inbound_queue`); when that is full senders get `Overloaded`.
    pub async fn direct_messages(&self) -> Option<DirectMessages> {
        self.inner.inbox.lock().await.take()
    }

    /// The frames peers send on their persistent sync stream. There is one stream per node:
    /// the first call takes it, later calls get `None`. It holds at most [`SYNC_INBOX`]
    /// frames; past that, frames are dropped and counted (`sync_inbox_full`), which the
    /// sync protocol repairs on its next round.
    pub async fn sync_frames(&self) -> Option<SyncFrames> {
        self.inner.sync_inbox.lock().await.take()
    }

    /// Queues `payload` on the persistent sync stream to `peer` (a direct connection; sync is
    /// never relayed). Returns once queued, not delivered.
    ///
    /// # Errors
    /// [`MeshError::Sync`] when the peer is not connected, its stream is closed, its
    /// outbound queue is full, or the payload is over a frame; [`MeshError::ShutDown`].
    pub async fn send_sync(
        &self,
        peer: NodeId,
        payload: impl Into<Bytes>,
    ) -> Result<(), MeshError> {
        let payload = payload.into();
        self.call(|reply| Request::SyncSend {
            to: peer,
            payload,
            reply,
        })
        .await?
    }

    /// Active and passive views and connected peers, with addresses, scores and cooling.
    ///
    /// # Errors
    /// [`MeshError::ShutDown`].
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, MeshError> {
        self.call(|reply| Request::Peers { reply }).await
    }

    /// A new listener for active-view changes (rosters).
    pub fn membership_events(&self) -> MembershipEvents {
        MembershipEvents {
            rx: self.inner.membership.upgrade().map(|tx| tx.subscribe()),
            lagged: self.inner.lagged.clone(),
        }
    }

    /// A snapshot of every counter (`diagnostics` module; docs/mesh.md explains each).
    ///
    /// # Errors
    /// [`MeshError::ShutDown`].
    pub async fn diagnostics(&self) -> Result<Diagnostics, MeshError> {
        self.call(|reply| Request::Diagnostics { reply }).await
    }

    /// Graceful shutdown: fails pending direct messages with `ShuttingDown`, ends every
    /// subscription and stream, drains queued frames (bounded by
    /// `transport.shutdown_grace_ms`) and closes every connection. Later calls return at once.
    pub async fn shutdown(&self) {
        // An error means the actor is already gone, which is what was asked for.
        let _ = self.call(|reply| Request::Shutdown { reply }).await;
    }
}

async fn send_direct(
    api: &mpsc::Sender<Request>,
    to: NodeId,
    payload: Bytes,
    in_reply_to: Option<u64>,
    answer: Option<(oneshot::Sender<Bytes>, Duration)>,
) -> Result<Receipt, DirectError> {
    if payload.len() > wire::MAX_PAYLOAD_LEN {
        return Err(DirectError::TooLarge {
            len: payload.len(),
            max: wire::MAX_PAYLOAD_LEN,
        });
    }
    let (reply, receipt) = oneshot::channel();
    let request = Request::Direct {
        to,
        payload,
        in_reply_to,
        answer,
        reply,
    };
    api.send(request)
        .await
        .map_err(|_| DirectError::ShuttingDown)?;
    receipt.await.unwrap_or(Err(DirectError::ShuttingDown))
}
