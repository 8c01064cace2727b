//! A node's tracker synced with its peers over the mesh (docs/sync.md, "Sync over the
//! mesh"). One task owns the [`LocalTracker`] and every per-peer [`Session`] (style.md, "One
//! owner of mutable state"); [`SyncNode`] is its handle.
//!
//! - **Heads** are announced on the tracker's pubsub topic after every change. A node that
//!   hears heads it lacks runs a sync round with its active-view neighbours.
//! - **Sync messages** travel on each neighbour's persistent sync stream
//!   ([`Mesh::send_sync`]), chunked into frames of at most [`CHUNK_BYTES`] and reassembled
//!   up to [`MAX_MESSAGE_BYTES`]. A change received is persisted and projected before this
//!   node passes it on.
//! - **New neighbours** get a sync round as soon as they join the active view.
//! - **Anti-entropy**: every `anti_entropy` interval each neighbour gets a sync round; a
//!   session that has waited longer than that for an answer restarts from its persisted
//!   state, so a lost frame costs one interval.
//! - **Hostile input**: a peer whose frame or message does not decode, is over the limits, or
//!   whose changes the document rejects is dropped from sync for this run and counted.
//! - Per-peer sync state is written under `.symphony/sync/peers/<node id>` after each
//!   message received, so a restart sends only what is missing.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use automerge::{ChangeHash, ReadDoc};
use bytes::Bytes;
use serde::Serialize;
use symphony_mesh::{MembershipEvent, Mesh, NodeId, PeerView, Subscription, SyncFrames};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, SyncError};
use crate::local::LocalTracker;
use crate::persist::{self, SYNC_DIR};
use crate::replica::FileSync;
use crate::session::{MAX_MESSAGE_BYTES, Session, SessionError};

/// Payload bytes of one sync-stream frame: under the mesh's frame limit with room for the
/// chunk header.
pub const CHUNK_BYTES: usize = 1 << 19;
/// Most heads accepted in one announcement.
pub const MAX_ANNOUNCED_HEADS: usize = 64;
const CHUNK_HEADER: usize = 1 + 4 + 4 + 4;
const KIND_CHUNK: u8 = 1;

/// Settings of a [`SyncNode`].
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// The pubsub topic heads are announced on (`symphony-sync/<tracker>` by default).
    pub topic: String,
    /// Interval of anti-entropy rounds with every neighbour.
    pub anti_entropy: Duration,
}

impl SyncConfig {
    /// The defaults for tracker `tracker`: topic `symphony-sync/<tracker>`, a round every 2 s.
    pub fn for_tracker(tracker: &str) -> SyncConfig {
        SyncConfig {
            topic: format!("symphony-sync/{tracker}"),
            anti_entropy: Duration::from_secs(2),
        }
    }
}

/// What [`SyncNode::status`] reports (the figures of `symphony sync status`).
#[derive(Debug, Clone, Serialize)]
pub struct SyncStatus {
    /// This node's heads, hex.
    pub heads: Vec<String>,
    /// Changes in the document.
    pub changes: usize,
    /// Issues in the document.
    pub issues: usize,
    /// Sync messages received and sent, and their bytes.
    pub messages_in: u64,
    /// Sync messages sent.
    pub messages_out: u64,
    /// Bytes of sync messages received.
    pub bytes_in: u64,
    /// Bytes of sync messages sent.
    pub bytes_out: u64,
    /// Peers dropped from sync for bad input, by short node id, with the reason.
    pub bad_peers: BTreeMap<String, String>,
    /// The last error of a sync round, if any.
    pub last_error: Option<String>,
}

enum Command {
    SyncFile(oneshot::Sender<Result<FileSync>>),
    Issue(
        String,
        oneshot::Sender<Option<serde_json::Map<String, serde_json::Value>>>,
    ),
    Status(oneshot::Sender<SyncStatus>),
}

/// The handle of a node's sync task. Dropping every handle stops the task.
#[derive(Clone)]
pub struct SyncNode {
    commands: mpsc::Sender<Command>,
}

impl SyncNode {
    /// Starts the sync task over `local` and `mesh`: takes the mesh's sync frames and
    /// subscribes to `config.topic`. Errors: [`SyncError::Layout`] when the mesh's sync
    /// frames were already taken or the topic is refused.
    pub async fn start(local: LocalTracker, mesh: Mesh, config: SyncConfig) -> Result<SyncNode> {
        let frames = mesh
            .sync_frames()
            .await
            .ok_or_else(|| SyncError::Layout("the mesh's sync frames are already taken".into()))?;
        let heads = mesh
            .subscribe(&config.topic)
            .await
            .map_err(|e| SyncError::Layout(format!("topic {}: {e}", config.topic)))?;
        let (commands, inbox) = mpsc::channel(64);
        let peers_dir = local.state_dir().join(SYNC_DIR).join("peers");
        let task = Task {
            local,
            mesh,
            config,
            peers_dir,
            sessions: HashMap::new(),
            partial: HashMap::new(),
            bad: BTreeMap::new(),
            status: SyncStatus {
                heads: Vec::new(),
                changes: 0,
                issues: 0,
                messages_in: 0,
                messages_out: 0,
                bytes_in: 0,
                bytes_out: 0,
                bad_peers: BTreeMap::new(),
                last_error: None,
            },
            next_message: 0,
        };
        tokio::spawn(task.run(inbox, frames, heads));
        Ok(SyncNode { commands })
    }

    /// Imports the issues file, persists, projects, and tells the peers (the path of every
    /// local write: a human edit, a CLI command, the orchestrator).
    pub async fn sync_file(&self) -> Result<FileSync> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::SyncFile(tx)).await?;
        rx.await.map_err(|_| stopped())?
    }

    /// The document's record of issue `id`.
    pub async fn issue(
        &self,
        id: &str,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Issue(id.to_string(), tx)).await?;
        rx.await.map_err(|_| stopped())
    }

    /// Heads, sizes, message and byte counts, bad peers, last error.
    pub async fn status(&self) -> Result<SyncStatus> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Status(tx)).await?;
        rx.await.map_err(|_| stopped())
    }

    async fn send(&self, command: Command) -> Result<()> {
        self.commands.send(command).await.map_err(|_| stopped())
    }
}

fn stopped() -> SyncError {
    SyncError::Layout("the sync task has stopped".into())
}

struct Partial {
    id: u32,
    count: u32,
    bytes: Vec<u8>,
    next: u32,
}

struct PeerSession {
    session: Session,
    last_sent: Option<Instant>,
    last_heard: Option<Instant>,
}

struct Task {
    local: LocalTracker,
    mesh: Mesh,
    config: SyncConfig,
    peers_dir: PathBuf,
    sessions: HashMap<NodeId, PeerSession>,
    partial: HashMap<NodeId, Partial>,
    bad: BTreeMap<NodeId, String>,
    status: SyncStatus,
    next_message: u32,
}

impl Task {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut frames: SyncFrames,
        mut heads: Subscription,
    ) {
        let mut roster = self.mesh.membership_events();
        let mut tick = tokio::time::interval(self.config.anti_entropy);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command).await,
                    None => break,
                },
                frame = frames.recv() => match frame {
                    Some(frame) => self.on_frame(frame.from, frame.payload).await,
                    None => break,
                },
                delivery = heads.recv() => match delivery {
                    Some(delivery) => self.on_heads(delivery.from, &delivery.payload).await,
                    None => break,
                },
                event = roster.recv() => match event {
                    // A new neighbour learns at once what it lacks, not at the next round.
                    Some(MembershipEvent::NeighborUp { peer }) => self.offer(peer).await,
                    Some(_) => {}
                    None => break,
                },
                _ = tick.tick() => self.anti_entropy().await,
            }
        }
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::SyncFile(reply) => {
                let before = self.local.replica().doc().get_heads();
                let result = self.local.sync_file();
                if result.is_ok() && self.local.replica().doc().get_heads() != before {
                    self.changed().await;
                }
                let _ = reply.send(result);
            }
            Command::Issue(id, reply) => {
                let _ = reply.send(self.local.replica().issue(&id));
            }
            Command::Status(reply) => {
                let doc = self.local.replica().doc();
                self.status.heads = doc.get_heads().iter().map(ToString::to_string).collect();
                // `stats` reads the change graph; `get_changes` would rebuild every change.
                self.status.changes = doc.stats().num_changes as usize;
                self.status.issues = self.local.replica().ids().len();
                self.status.bad_peers = self
                    .bad
                    .iter()
                    .map(|(peer, why)| (peer.short(), why.clone()))
                    .collect();
                let _ = reply.send(self.status.clone());
            }
        }
    }

    /// The document changed (and is persisted): announce the heads, offer it to neighbours.
    async fn changed(&mut self) {
        let heads = self.local.replica().doc().get_heads();
        let mut payload = Vec::with_capacity(heads.len() * 32);
        for head in heads.iter().take(MAX_ANNOUNCED_HEADS) {
            payload.extend_from_slice(head.as_ref());
        }
        if let Err(error) = self.mesh.publish(&self.config.topic, payload).await {
            tracing::warn!(%error, "announcing heads failed");
        }
        self.round().await;
    }

    async fn on_heads(&mut self, from: NodeId, payload: &[u8]) {
        if self.bad.contains_key(&from) || payload.len() > MAX_ANNOUNCED_HEADS * 32 {
            return;
        }
        let doc = self.local.replica().doc();
        let unknown = payload.chunks_exact(32).any(|raw| {
            ChangeHash::try_from(raw).is_ok_and(|hash| doc.get_change_by_hash(&hash).is_none())
        });
        if unknown {
            self.round().await;
        }
    }

    async fn neighbours(&self) -> Vec<NodeId> {
        match self.mesh.peers().await {
            Ok(peers) => peers
                .into_iter()
                .filter(|p| {
                    p.view == PeerView::Active && p.connected && !self.bad.contains_key(&p.node_id)
                })
                .map(|p| p.node_id)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Offers every neighbour what its session says it lacks.
    async fn round(&mut self) {
        for peer in self.neighbours().await {
            self.offer(peer).await;
        }
    }

    async fn anti_entropy(&mut self) {
        let now = Instant::now();
        let stale = self.config.anti_entropy;
        for peer in self.neighbours().await {
            let waited_out = self.sessions.get(&peer).is_some_and(|s| {
                s.last_sent.is_some_and(|sent| now - sent > stale)
                    && s.last_heard
                        .is_none_or(|heard| heard < s.last_sent.unwrap_or(heard))
            });
            if waited_out {
                // An answer was lost: start over from what the peer is known to share.
                let saved = self.load_state(&peer);
                if let Some(entry) = self.sessions.get_mut(&peer) {
                    entry.session = saved;
                    entry.last_sent = None;
                }
            }
            self.offer(peer).await;
        }
    }

    fn session(&mut self, peer: NodeId) -> &mut PeerSession {
        if !self.sessions.contains_key(&peer) {
            let session = self.load_state(&peer);
            self.sessions.insert(
                peer,
                PeerSession {
                    session,
                    last_sent: None,
                    last_heard: None,
                },
            );
        }
        // Inserted just above when absent.
        self.sessions
            .get_mut(&peer)
            .unwrap_or_else(|| unreachable!())
    }

    fn load_state(&self, peer: &NodeId) -> Session {
        match std::fs::read(self.peers_dir.join(peer.to_string())) {
            Ok(bytes) => Session::resume(&bytes),
            Err(_) => Session::new(),
        }
    }

    fn save_state(&mut self, peer: &NodeId) {
        let Some(entry) = self.sessions.get(peer) else {
            return;
        };
        let bytes = entry.session.encode();
        let path = self.peers_dir.join(peer.to_string());
        let written = std::fs::create_dir_all(&self.peers_dir)
            .map_err(|e| SyncError::io(&self.peers_dir, e))
            .and_then(|()| persist::replace(&path, &bytes));
        if let Err(error) = written {
            tracing::warn!(peer = %peer.short(), %error, "saving the sync state failed");
        }
    }

    async fn offer(&mut self, peer: NodeId) {
        if self.bad.contains_key(&peer) {
            return;
        }
        // The session lives in `self.sessions`, the document in `self.local`: take it out.
        let mut session = std::mem::take(&mut self.session(peer).session);
        let message = session.generate(self.local.replica());
        self.session(peer).session = session;
        let Some(message) = message else {
            return;
        };
        self.next_message = self.next_message.wrapping_add(1);
        let id = self.next_message;
        let chunks: Vec<&[u8]> = message.chunks(CHUNK_BYTES).collect();
        let count = chunks.len() as u32;
        for (index, chunk) in chunks.into_iter().enumerate() {
            let mut frame = Vec::with_capacity(CHUNK_HEADER + chunk.len());
            frame.push(KIND_CHUNK);
            frame.extend_from_slice(&id.to_le_bytes());
            frame.extend_from_slice(&(index as u32).to_le_bytes());
            frame.extend_from_slice(&count.to_le_bytes());
            frame.extend_from_slice(chunk);
            if let Err(error) = self.mesh.send_sync(peer, Bytes::from(frame)).await {
                self.status.last_error = Some(format!("{}: {error}", peer.short()));
                tracing::debug!(peer = %peer.short(), %error, "sync frame not sent");
                return;
            }
        }
        self.status.messages_out += 1;
        self.status.bytes_out += message.len() as u64;
        self.session(peer).last_sent = Some(Instant::now());
    }

    async fn on_frame(&mut self, peer: NodeId, payload: Bytes) {
        if self.bad.contains_key(&peer) {
            return;
        }
        let message = match self.reassemble(peer, &payload) {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(why) => return self.drop_peer(peer, why),
        };
        let before = self.local.replica().doc().get_heads();
        let received = {
            let mut session = std::mem::take(&mut self.session(peer).session);
            let received = session.receive(self.local.replica_mut(), &message);
            self.session(peer).session = session;
            received
        };
        if let Err(error) = received {
            return self.drop_peer(peer, error.to_string());
        }
        self.status.messages_in += 1;
        self.status.bytes_in += message.len() as u64;
        self.session(peer).last_heard = Some(Instant::now());
        self.save_state(&peer);
        if self.local.replica().doc().get_heads() != before {
            match self.local.sync_file() {
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(peer = %peer.short(), %error, "projecting received changes failed");
                    self.status.last_error = Some(error.to_string());
                }
            }
            self.changed().await;
        } else {
            self.offer(peer).await;
        }
    }

    /// The whole message once its last chunk is in; `Err` names what the peer broke.
    fn reassemble(&mut self, peer: NodeId, payload: &[u8]) -> Result<Option<Vec<u8>>, String> {
        if payload.len() < CHUNK_HEADER || payload[0] != KIND_CHUNK {
            return Err("undecodable sync frame".into());
        }
        let word = |at: usize| {
            u32::from_le_bytes([
                payload[at],
                payload[at + 1],
                payload[at + 2],
                payload[at + 3],
            ])
        };
        let (id, index, count) = (word(1), word(5), word(9));
        let body = &payload[CHUNK_HEADER..];
        let max_chunks = MAX_MESSAGE_BYTES.div_ceil(CHUNK_BYTES) as u32;
        if count == 0 || count > max_chunks || index >= count || body.len() > CHUNK_BYTES {
            return Err(format!("sync frame {index}/{count} out of bounds"));
        }
        if count == 1 {
            self.partial.remove(&peer);
            return Ok(Some(body.to_vec()));
        }
        let partial = self.partial.entry(peer).or_insert_with(|| Partial {
            id,
            count,
            bytes: Vec::new(),
            next: 0,
        });
        if partial.id != id || partial.count != count || partial.next != index {
            // A new message while one was half in: the old one is lost, start on this one.
            *partial = Partial {
                id,
                count,
                bytes: Vec::new(),
                next: 0,
            };
            if index != 0 {
                return Ok(None);
            }
        }
        partial.bytes.extend_from_slice(body);
        partial.next += 1;
        if partial.bytes.len() > MAX_MESSAGE_BYTES {
            self.partial.remove(&peer);
            return Err(SessionError::TooLarge {
                len: MAX_MESSAGE_BYTES + 1,
                max: MAX_MESSAGE_BYTES,
            }
            .to_string());
        }
        if partial.next == partial.count {
            return Ok(self.partial.remove(&peer).map(|p| p.bytes));
        }
        Ok(None)
    }

    fn drop_peer(&mut self, peer: NodeId, why: String) {
        tracing::warn!(peer = %peer.short(), reason = %why, "peer dropped from sync");
        self.partial.remove(&peer);
        self.sessions.remove(&peer);
        self.bad.insert(peer, why);
    }
}
