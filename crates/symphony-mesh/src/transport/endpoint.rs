//! The quinn endpoint and connection lifecycle: bind, accept, dial, register a connection
//! under a new generation, supervise it until it closes, and close gracefully.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use quinn::{RecvStream, VarInt};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout, timeout_at};

use super::events::{self, DownReason, Event, EventSender, Events};
use super::peer::{Closing, ConnectionEntry, PeerTable, Removed};
use super::stats::{Counters, Tally};
use super::stream::{self, Purpose, StreamCtx, StreamSetupError, Streams};
use super::{ConnectError, TransportConfig, TransportError, close_code};
use crate::identity::Identity;
use crate::tls::{self, NodeCertificate, PeerVerifier};
use crate::{NodeId, TrustPolicy};

/// State shared by the transport handle and all its tasks.
pub(super) struct Shared {
    pub(super) config: TransportConfig,
    pub(super) node_id: NodeId,
    pub(super) local_addr: SocketAddr,
    pub(super) endpoint: quinn::Endpoint,
    pub(super) verifier: Arc<PeerVerifier>,
    pub(super) counters: Arc<Counters>,
    pub(super) events: EventSender,
    table: Mutex<PeerTable<quinn::Connection>>,
    next_generation: AtomicU64,
    handshakes: Arc<Semaphore>,
    shut_down: AtomicBool,
}

/// Binds the endpoint and starts accepting. Must run inside a Tokio runtime.
pub(super) fn bind(
    config: TransportConfig,
    identity: &Identity,
) -> Result<(Arc<Shared>, Events), TransportError> {
    config.validate()?;
    if config.trust == TrustPolicy::Open {
        tracing::warn!(
            "mesh trust policy is open: any node holding an Ed25519 key can connect; \
             configure an allowlist of NodeIds for production"
        );
    }
    let verifier = Arc::new(PeerVerifier::new(config.trust.clone()));
    let certificate = NodeCertificate::new(identity)?;
    let transport = Arc::new(quic_transport_config(&config)?);
    let server_crypto = certificate.quic_server_config(verifier.clone())?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
    server.transport_config(transport.clone());
    let client_crypto = certificate.quic_client_config(verifier.clone())?;
    let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
    client.transport_config(transport);
    let addr = config.bind_addr;
    let bind_err = |source| TransportError::Bind { addr, source };
    let mut endpoint = quinn::Endpoint::server(server, addr).map_err(bind_err)?;
    endpoint.set_default_client_config(client);
    let local_addr = endpoint.local_addr().map_err(bind_err)?;
    let counters = Arc::new(Counters::default());
    let (events_tx, events) = events::channel(config.event_queue, counters.clone());
    let shared = Arc::new(Shared {
        node_id: identity.node_id(),
        local_addr,
        endpoint,
        verifier,
        counters,
        events: events_tx,
        table: Mutex::new(PeerTable::default()),
        next_generation: AtomicU64::new(0),
        handshakes: Arc::new(Semaphore::new(config.max_pending_handshakes)),
        shut_down: AtomicBool::new(false),
        config,
    });
    tracing::info!(node = %shared.node_id.short(), addr = %local_addr, "mesh transport listening");
    tokio::spawn(accept_loop(shared.clone()));
    Ok((shared, events))
}

/// The ACK delay this node asks its peers for.
const ACK_DELAY: std::time::Duration = std::time::Duration::from_millis(5);

fn quic_transport_config(
    config: &TransportConfig,
) -> Result<quinn::TransportConfig, TransportError> {
    let idle =
        quinn::IdleTimeout::try_from(config.idle_timeout).map_err(|_| TransportError::Config {
            field: "idle_timeout",
            reason: "must be below 2^62 ms".into(),
        })?;
    let mut transport = quinn::TransportConfig::default();
    let streams = VarInt::from_u32(Purpose::ALL.len() as u32);
    let window = u64::from(config.stream_window);
    let connection_window = window * Purpose::ALL.len() as u64;
    // Ask peers to acknowledge within 5 ms (QUIC ACK frequency extension): the probe
    // timeout that recovers a lost packet is RTT plus the peer's ACK delay (25 ms by
    // default), which on a LAN dominates the latency of every loss.
    let mut acks = quinn::AckFrequencyConfig::default();
    acks.max_ack_delay(Some(ACK_DELAY));
    transport.ack_frequency_config(Some(acks));
    transport
        .stream_receive_window(VarInt::from_u32(config.stream_window))
        .receive_window(VarInt::from_u64(connection_window).unwrap_or(VarInt::MAX))
        .send_window(connection_window);
    transport
        .keep_alive_interval(Some(config.keep_alive))
        .max_idle_timeout(Some(idle))
        .max_concurrent_bidi_streams(streams)
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .datagram_receive_buffer_size(None);
    Ok(transport)
}

async fn accept_loop(shared: Arc<Shared>) {
    while let Some(incoming) = shared.endpoint.accept().await {
        let Ok(permit) = shared.handshakes.clone().try_acquire_owned() else {
            Counters::bump(&shared.counters.refused_busy);
            incoming.refuse();
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let addr = incoming.remote_address();
            let result = accept(&shared, incoming).await;
            drop(permit);
            if let Err(err) = result {
                Counters::bump(&shared.counters.accept_failures);
                tracing::info!(%addr, error = %err, "inbound connection failed");
            }
        });
    }
}

async fn accept(shared: &Arc<Shared>, incoming: quinn::Incoming) -> Result<(), ConnectError> {
    let addr = incoming.remote_address();
    let deadline = Instant::now() + shared.config.handshake_timeout;
    let connecting = incoming
        .accept()
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    let conn = timeout_at(deadline, connecting)
        .await
        .map_err(|_| shared.timed_out(addr))?
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    let peer = shared.identify(&conn, addr, None)?;
    let streams = shared
        .setup_streams(&conn, addr, deadline, stream::accept_streams(&conn))
        .await?;
    Counters::bump(&shared.counters.accepted);
    shared.register(peer, conn, addr, streams);
    Ok(())
}

impl Shared {
    pub(super) fn table(&self) -> MutexGuard<'_, PeerTable<quinn::Connection>> {
        // The table stays consistent under panics (no multi-step invariants), so a poisoned
        // lock is still usable.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// Dials `addr`; with `expected`, returns at once if that peer is already connected.
    pub(super) async fn dial(
        self: &Arc<Self>,
        addr: SocketAddr,
        expected: Option<NodeId>,
    ) -> Result<NodeId, ConnectError> {
        if self.is_shut_down() {
            return Err(ConnectError::ShutDown);
        }
        if let Some(peer) = expected
            && self.table().is_connected(&peer)
        {
            return Ok(peer);
        }
        let result = self.dial_once(addr, expected).await;
        let counter = if result.is_ok() {
            &self.counters.dialed
        } else {
            &self.counters.dial_failures
        };
        Counters::bump(counter);
        if let Err(err) = &result {
            tracing::info!(%addr, error = %err, "dial failed");
        }
        result
    }

    async fn dial_once(
        self: &Arc<Self>,
        addr: SocketAddr,
        expected: Option<NodeId>,
    ) -> Result<NodeId, ConnectError> {
        let deadline = Instant::now() + self.config.handshake_timeout;
        let connecting = self
            .endpoint
            .connect(addr, tls::SERVER_NAME)
            .map_err(|source| ConnectError::Start { addr, source })?;
        let conn = timeout_at(deadline, connecting)
            .await
            .map_err(|_| self.timed_out(addr))?
            .map_err(|source| ConnectError::Handshake { addr, source })?;
        let peer = self.identify(&conn, addr, expected)?;
        let streams = self
            .setup_streams(&conn, addr, deadline, stream::open_streams(&conn))
            .await?;
        self.register(peer, conn, addr, streams);
        Ok(peer)
    }

    fn timed_out(&self, addr: SocketAddr) -> ConnectError {
        let timeout_ms =
            u64::try_from(self.config.handshake_timeout.as_millis()).unwrap_or(u64::MAX);
        ConnectError::Timeout { addr, timeout_ms }
    }

    /// The peer's verified NodeId; refuses self-connections and unexpected peers.
    fn identify(
        &self,
        conn: &quinn::Connection,
        addr: SocketAddr,
        expected: Option<NodeId>,
    ) -> Result<NodeId, ConnectError> {
        let close = |code: u32, reason: &[u8]| conn.close(VarInt::from_u32(code), reason);
        let peer = tls::peer_node_id(conn).map_err(|source| {
            close(close_code::PROTOCOL_VIOLATION, b"identity");
            ConnectError::Tls { addr, source }
        })?;
        if peer == self.node_id {
            close(close_code::SELF_CONNECTION, b"self connection");
            return Err(ConnectError::SelfConnection { addr });
        }
        if let Some(expected) = expected
            && expected != peer
        {
            close(close_code::UNEXPECTED_PEER, b"unexpected peer");
            return Err(ConnectError::UnexpectedPeer {
                addr,
                expected,
                found: peer,
            });
        }
        Ok(peer)
    }

    /// Runs the stream preamble exchange by `deadline`, closing the connection on failure.
    async fn setup_streams(
        &self,
        conn: &quinn::Connection,
        addr: SocketAddr,
        deadline: Instant,
        setup: impl Future<Output = Result<Streams, StreamSetupError>>,
    ) -> Result<Streams, ConnectError> {
        let failure = match timeout_at(deadline, setup).await {
            Ok(Ok(streams)) => return Ok(streams),
            Ok(Err(failure)) => failure,
            Err(_) => {
                conn.close(
                    VarInt::from_u32(close_code::SETUP_TIMEOUT),
                    b"stream setup timed out",
                );
                return Err(self.timed_out(addr));
            }
        };
        if let Some(source) = failure.connection_error() {
            return Err(ConnectError::Handshake {
                addr,
                source: source.clone(),
            });
        }
        if let StreamSetupError::Violation(violation) = failure {
            self.counters.traffic.violation(violation);
            conn.close(
                VarInt::from_u32(close_code::PROTOCOL_VIOLATION),
                violation.as_str().as_bytes(),
            );
        } else {
            conn.close(
                VarInt::from_u32(close_code::PROTOCOL_VIOLATION),
                b"stream setup",
            );
        }
        Err(ConnectError::Streams {
            addr,
            source: failure,
        })
    }

    /// Registers an established connection under a fresh generation: starts its writers at
    /// once (so `send` works when `connect` returns), then a supervisor that reports `PeerUp`,
    /// starts the readers, and on close removes exactly this generation.
    fn register(
        self: &Arc<Self>,
        peer: NodeId,
        conn: quinn::Connection,
        addr: SocketAddr,
        streams: Streams,
    ) {
        if self.is_shut_down() {
            conn.close(VarInt::from_u32(close_code::SHUTDOWN), b"shutdown");
            return;
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) + 1;
        let mut readers = Vec::with_capacity(streams.len());
        let superseded = {
            let mut table = self.table();
            let tally = Tally {
                peer: table.counters(peer),
                total: self.counters.clone(),
            };
            let mut handles = [None, None, None];
            let mut writers = Vec::with_capacity(streams.len());
            for (purpose, send, recv) in streams {
                let (handle, input) =
                    stream::outbound_queue(self.config.outbound_frames, self.config.outbound_bytes);
                let ctx = StreamCtx {
                    shared: self.clone(),
                    peer,
                    generation,
                    purpose,
                    tally: tally.clone(),
                };
                writers.push(tokio::spawn(stream::run_writer(ctx.clone(), send, input)));
                handles[purpose.index()] = Some(handle);
                readers.push((ctx, recv));
            }
            table.insert(
                peer,
                generation,
                ConnectionEntry::new(conn.clone(), addr, handles, writers),
            )
        };
        tracing::info!(peer = %peer.short(), generation, %addr, "peer connection up");
        if !superseded.is_empty() {
            let shared = self.clone();
            tokio::spawn(async move {
                for _ in &superseded {
                    Counters::bump(&shared.counters.superseded);
                }
                shared
                    .close_gracefully(superseded, close_code::SUPERSEDED, b"superseded")
                    .await;
            });
        }
        tokio::spawn(
            self.clone()
                .supervise(peer, generation, addr, conn, readers),
        );
    }

    async fn supervise(
        self: Arc<Self>,
        peer: NodeId,
        generation: u64,
        addr: SocketAddr,
        conn: quinn::Connection,
        readers: Vec<(StreamCtx, RecvStream)>,
    ) {
        // Receiver gone means the transport is being dropped; the close below still cleans up.
        let _ = self
            .events
            .deliver(Event::PeerUp {
                peer,
                addr,
                generation,
            })
            .await;
        let readers: Vec<_> = readers
            .into_iter()
            .map(|(ctx, recv)| tokio::spawn(stream::run_reader(ctx, recv)))
            .collect();
        let error = conn.closed().await;
        // Every frame of this connection is queued before its PeerDown.
        for reader in readers {
            let _ = reader.await;
        }
        let reason = DownReason::from(&error);
        let removed = self.table().remove(&peer, generation);
        match removed {
            Removed::Last { newest } => {
                tracing::info!(peer = %peer.short(), generation = newest, ?reason, "peer down");
                let down = Event::PeerDown {
                    peer,
                    generation: newest,
                    reason,
                };
                let _ = self.events.deliver(down).await;
            }
            Removed::Remaining | Removed::Unknown => {
                tracing::debug!(peer = %peer.short(), generation, ?reason, "connection closed; peer still up");
            }
        }
    }

    /// Lets the writers of `closing` drain and finish their streams (bounded by the shutdown
    /// grace period), then closes the connections with `code`.
    pub(super) async fn close_gracefully(
        &self,
        mut closing: Vec<Closing<quinn::Connection>>,
        code: u32,
        reason: &'static [u8],
    ) {
        let writers: Vec<_> = closing
            .iter_mut()
            .flat_map(|c| c.writers.drain(..))
            .collect();
        let _ = timeout(
            self.config.shutdown_grace,
            futures::future::join_all(writers),
        )
        .await;
        for c in closing {
            c.conn.close(VarInt::from_u32(code), reason);
        }
    }

    /// Graceful shutdown: drain and close every connection, then the endpoint.
    pub(super) async fn shutdown(&self) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let closing = self.table().close(None);
        self.close_gracefully(closing, close_code::SHUTDOWN, b"shutdown")
            .await;
        self.endpoint
            .close(VarInt::from_u32(close_code::SHUTDOWN), b"shutdown");
        let _ = timeout(self.config.shutdown_grace, self.endpoint.wait_idle()).await;
        tracing::info!(node = %self.node_id.short(), "mesh transport shut down");
    }

    /// The writer of a stream stopped by the peer: take its queue out of service.
    pub(super) fn stream_ended(&self, peer: &NodeId, generation: u64, purpose: Purpose) {
        drop(self.table().take_stream(peer, generation, purpose));
    }

    /// Closes our sending half of a stream at once with `code`.
    pub(super) fn abort_stream(
        &self,
        peer: &NodeId,
        generation: u64,
        purpose: Purpose,
        code: VarInt,
    ) {
        if let Some(handle) = self.table().take_stream(peer, generation, purpose) {
            handle.abort(code);
        }
    }
}
