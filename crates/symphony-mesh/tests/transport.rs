//! The QUIC transport over real UDP sockets on 127.0.0.1: trust in both directions, frames on
//! every purpose, wire-format violations injected over a real quinn connection, restarts,
//! crashes, budgets and the receive overload policy. Every test is bounded in time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use symphony_mesh::frame::{self, Violation};
use symphony_mesh::identity::IdentityError;
use symphony_mesh::tls::{self, NodeCertificate, PeerVerifier};
use symphony_mesh::transport::{
    ConnectError, DownReason, StreamCloseReason, TransportStats, close_code,
};
use symphony_mesh::{
    Event, Events, Identity, NodeId, Purpose, SendError, Transport, TransportConfig, TrustPolicy,
};

const LIMIT: Duration = Duration::from_secs(30);
const IDLE: Duration = Duration::from_millis(1000);
const KEEP_ALIVE: Duration = Duration::from_millis(200);

async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("test exceeded its time bound")
}

fn config(trust: TrustPolicy) -> TransportConfig {
    let mut config = TransportConfig::new("127.0.0.1:0".parse().unwrap());
    config.trust = trust;
    config.keep_alive = KEEP_ALIVE;
    config.idle_timeout = IDLE;
    config.handshake_timeout = Duration::from_secs(3);
    config
}

fn trusting(peers: &[&Identity]) -> TrustPolicy {
    TrustPolicy::allowlist(peers.iter().map(|p| p.node_id()))
}

async fn start(identity: &Identity, config: TransportConfig) -> (Transport, Events) {
    Transport::start(config, identity).await.unwrap()
}

/// Skips events until `pick` accepts one.
async fn wait_for<T>(events: &mut Events, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    loop {
        let event = events.recv().await.expect("event queue closed");
        if let Some(found) = pick(event) {
            return found;
        }
    }
}

async fn peer_up(events: &mut Events, peer: NodeId) -> u64 {
    wait_for(events, |e| match e {
        Event::PeerUp {
            peer: p,
            generation,
            ..
        } if p == peer => Some(generation),
        _ => None,
    })
    .await
}

async fn frame_from(events: &mut Events, peer: NodeId) -> (Purpose, Bytes) {
    wait_for(events, |e| match e {
        Event::Frame {
            peer: p,
            purpose,
            payload,
        } if p == peer => Some((purpose, payload)),
        Event::PeerDown { peer: p, .. } if p == peer => panic!("{p:?} went down while waiting"),
        _ => None,
    })
    .await
}

/// Polls `check` every 10 ms until it holds.
async fn eventually(mut check: impl FnMut() -> bool) {
    while !check() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn peer_traffic(stats: &TransportStats, peer: NodeId) -> symphony_mesh::transport::TrafficStats {
    stats
        .peers
        .iter()
        .find(|p| p.node_id == peer)
        .map(|p| p.traffic)
        .unwrap_or_default()
}

#[tokio::test]
async fn two_nodes_exchange_frames_on_every_purpose_both_ways() {
    bounded(async {
        let (a_id, b_id) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let (a, mut a_events) = start(&a_id, config(trusting(&[&b_id]))).await;
        let (b, mut b_events) = start(&b_id, config(trusting(&[&a_id]))).await;

        assert_eq!(a.connect(b.local_addr()).await.unwrap(), b.node_id());
        let g_at_a = peer_up(&mut a_events, b.node_id()).await;
        let g_at_b = peer_up(&mut b_events, a.node_id()).await;
        assert!(g_at_a >= 1 && g_at_b >= 1);

        for purpose in Purpose::ALL {
            let out = Bytes::from(format!("a->b on {purpose}"));
            a.send(&b.node_id(), purpose, out.clone(), false).unwrap();
            assert_eq!(frame_from(&mut b_events, a.node_id()).await, (purpose, out));
            let back = Bytes::from(format!("b->a on {purpose}"));
            b.send(
                &a.node_id(),
                purpose,
                back.clone(),
                purpose == Purpose::Control,
            )
            .unwrap();
            assert_eq!(
                frame_from(&mut a_events, b.node_id()).await,
                (purpose, back)
            );
        }

        let stats = a.stats();
        let traffic = peer_traffic(&stats, b.node_id());
        for purpose in Purpose::ALL {
            let t = traffic.purposes.get(purpose);
            assert_eq!((t.frames_out, t.frames_in), (1, 1), "{purpose}");
        }
        assert_eq!(stats.connections.dialed, 1);
        assert_eq!(b.stats().connections.accepted, 1);
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["peers"][0]["node_id"], b.node_id().to_string());
        assert!(json["events"]["dwell"]["sync"]["samples"].as_u64().unwrap() >= 1);

        a.shutdown().await;
        let reason = wait_for(&mut b_events, |e| match e {
            Event::PeerDown { reason, .. } => Some(reason),
            _ => None,
        })
        .await;
        assert_eq!(
            reason,
            DownReason::ClosedByPeer {
                code: close_code::SHUTDOWN.into(),
                reason: "shutdown".into()
            }
        );
    })
    .await;
}

#[tokio::test]
async fn untrusted_client_is_refused_during_the_handshake() {
    bounded(async {
        let (a_id, b_id) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let (a, _a_events) = start(&a_id, config(trusting(&[&b_id]))).await;
        let (b, mut b_events) = start(&b_id, config(TrustPolicy::default())).await;

        let err = a.connect(b.local_addr()).await.unwrap_err();
        assert!(matches!(err, ConnectError::Handshake { .. }), "{err}");
        assert_eq!(b.stats().connections.refused_untrusted, 1);
        eventually(|| b.stats().connections.accept_failures == 1).await;
        assert!(b.stats().peers.is_empty() && a.stats().peers.is_empty());
        let quiet = tokio::time::timeout(Duration::from_millis(300), b_events.recv()).await;
        assert!(
            quiet.is_err(),
            "untrusted client produced an event: {quiet:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn untrusted_server_is_refused_during_the_handshake() {
    bounded(async {
        let (a_id, b_id) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let (a, _a_events) = start(&a_id, config(TrustPolicy::default())).await;
        let (b, mut b_events) = start(&b_id, config(trusting(&[&a_id]))).await;

        let err = a.connect(b.local_addr()).await.unwrap_err();
        assert!(err.to_string().contains("is not trusted"), "{err}");
        assert_eq!(a.stats().connections.refused_untrusted, 1);
        assert_eq!(a.stats().connections.dial_failures, 1);
        let quiet = tokio::time::timeout(Duration::from_millis(300), b_events.recv()).await;
        assert!(
            quiet.is_err(),
            "refused server still reported the client: {quiet:?}"
        );
        assert!(b.stats().peers.is_empty());
    })
    .await;
}

#[tokio::test]
async fn open_policy_accepts_a_peer_it_has_never_heard_of() {
    bounded(async {
        let (a_id, b_id) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let (a, _a_events) = start(&a_id, config(trusting(&[&b_id]))).await;
        let (b, mut b_events) = start(&b_id, config(TrustPolicy::Open)).await;
        a.connect(b.local_addr()).await.unwrap();
        peer_up(&mut b_events, a.node_id()).await;
        a.send(
            &b.node_id(),
            Purpose::Direct,
            Bytes::from_static(b"hi"),
            false,
        )
        .unwrap();
        assert_eq!(
            frame_from(&mut b_events, a.node_id()).await.1,
            Bytes::from_static(b"hi")
        );
    })
    .await;
}

#[tokio::test]
async fn connect_expect_refuses_a_different_node_and_a_node_refuses_itself() {
    bounded(async {
        let (a_id, b_id) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let stranger = Identity::generate().unwrap().node_id();
        let (a, _a_events) = start(&a_id, config(TrustPolicy::Open)).await;
        let (b, _b_events) = start(&b_id, config(TrustPolicy::Open)).await;
        let err = a
            .connect_expect(b.local_addr(), stranger)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ConnectError::UnexpectedPeer { expected, found, .. }
                if expected == stranger && found == b.node_id()),
            "{err}"
        );
        let err = a.connect(a.local_addr()).await.unwrap_err();
        assert!(matches!(err, ConnectError::SelfConnection { .. }), "{err}");
        assert!(a.connected_peers().is_empty());

        assert_eq!(
            a.connect_expect(b.local_addr(), b.node_id()).await.unwrap(),
            b.node_id()
        );
        // Already connected: no second dial.
        assert_eq!(
            a.connect_expect(b.local_addr(), b.node_id()).await.unwrap(),
            b.node_id()
        );
        assert_eq!(a.stats().connections.dialed, 1);
    })
    .await;
}

#[tokio::test]
async fn key_file_is_created_0600_and_an_over_permissive_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let created = Identity::load_or_create(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        Identity::load_or_create(&path).unwrap().node_id(),
        created.node_id()
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "temporary file left behind"
    );

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Identity::load_or_create(&path).unwrap_err();
    assert!(
        matches!(err, IdentityError::Permissive { mode: 0o644, .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string()) && message.contains("0644"),
        "{message}"
    );
    // Refusing loses nothing: the key is still there, unchanged.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(Identity::load(&path).unwrap().node_id(), created.node_id());
}

/// A peer speaking raw bytes over a real, trusted quinn connection.
struct RawPeer {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    streams: Vec<(quinn::SendStream, quinn::RecvStream)>,
}

impl RawPeer {
    /// Connects with `identity`'s certificate and opens one stream per preamble byte.
    async fn connect(identity: &Identity, node: SocketAddr, preambles: &[u8]) -> RawPeer {
        let cert = NodeCertificate::new(identity).unwrap();
        let verifier = Arc::new(PeerVerifier::new(TrustPolicy::Open));
        let crypto = cert.quic_client_config(verifier).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let conn = endpoint
            .connect(node, tls::SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let mut streams = Vec::new();
        for &preamble in preambles {
            let (mut send, recv) = conn.open_bi().await.unwrap();
            send.write_all(&[preamble]).await.unwrap();
            streams.push((send, recv));
        }
        RawPeer {
            _endpoint: endpoint,
            conn,
            streams,
        }
    }

    /// Connects and completes the preamble exchange for all three purposes.
    async fn established(identity: &Identity, node: SocketAddr) -> RawPeer {
        let mut raw = Self::connect(identity, node, &[0, 1, 2]).await;
        for (i, (_, recv)) in raw.streams.iter_mut().enumerate() {
            let mut echo = [0u8];
            recv.read_exact(&mut echo).await.unwrap();
            assert_eq!(echo[0] as usize, i);
        }
        raw
    }

    fn stream(&mut self, purpose: Purpose) -> &mut (quinn::SendStream, quinn::RecvStream) {
        &mut self.streams[purpose.wire() as usize]
    }

    /// Reads until the node resets its half of `purpose`; returns the reset code.
    async fn reset_code(&mut self, purpose: Purpose) -> u64 {
        let (_, recv) = self.stream(purpose);
        let mut buf = [0u8; 64];
        loop {
            match recv.read(&mut buf).await {
                Ok(Some(_)) => continue,
                Err(quinn::ReadError::Reset(code)) => return code.into_inner(),
                other => panic!("expected a reset of {purpose}, got {other:?}"),
            }
        }
    }
}

async fn stream_closed(events: &mut Events, peer: NodeId) -> (Purpose, StreamCloseReason) {
    wait_for(events, |e| match e {
        Event::StreamClosed {
            peer: p,
            purpose,
            reason,
            ..
        } if p == peer => Some((purpose, reason)),
        _ => None,
    })
    .await
}

fn violation(v: Violation) -> StreamCloseReason {
    StreamCloseReason::Violation { violation: v }
}

#[tokio::test]
async fn malformed_truncated_and_oversized_frames_close_only_their_stream() {
    bounded(async {
        let node_id = Identity::generate().unwrap();
        let mut node_config = config(TrustPolicy::Open);
        node_config.max_frame_len = 1024;
        node_config.outbound_bytes = 4096;
        let (node, mut events) = start(&node_id, node_config).await;
        let raw_id = Identity::generate().unwrap();
        let raw_peer = raw_id.node_id();
        let mut raw = RawPeer::established(&raw_id, node.local_addr()).await;
        peer_up(&mut events, raw_peer).await;

        // Control: wrong version byte.
        raw.stream(Purpose::Control)
            .0
            .write_all(&[2, 0, 0, 0, 0, 1, 0xff])
            .await
            .unwrap();
        assert_eq!(
            stream_closed(&mut events, raw_peer).await,
            (Purpose::Control, violation(Violation::BadVersion))
        );
        let stopped = raw.stream(Purpose::Control).0.stopped().await.unwrap();
        assert_eq!(
            stopped.map(|c| c.into_inner()),
            Some(Violation::BadVersion.code().into())
        );
        assert_eq!(
            raw.reset_code(Purpose::Control).await,
            u64::from(Violation::BadVersion.code())
        );
        let err = node
            .send(&raw_peer, Purpose::Control, Bytes::from_static(b"x"), false)
            .unwrap_err();
        assert_eq!(
            err,
            SendError::StreamClosed {
                peer: raw_peer,
                purpose: Purpose::Control
            }
        );

        // Sync still works both ways on the same connection...
        let valid = frame::encode(b"still works", false, 1024).unwrap();
        raw.stream(Purpose::Sync).0.write_all(&valid).await.unwrap();
        assert_eq!(
            frame_from(&mut events, raw_peer).await,
            (Purpose::Sync, Bytes::from_static(b"still works"))
        );
        node.send(
            &raw_peer,
            Purpose::Sync,
            Bytes::from_static(b"reply"),
            false,
        )
        .unwrap();
        let reply = frame::read_frame(&mut raw.stream(Purpose::Sync).1, 1024)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply.payload, Bytes::from_static(b"reply"));

        // ...until it declares a frame over the maximum.
        let oversized = frame::FrameHeader {
            droppable: false,
            len: 1025,
        }
        .encode();
        raw.stream(Purpose::Sync)
            .0
            .write_all(&oversized)
            .await
            .unwrap();
        assert_eq!(
            stream_closed(&mut events, raw_peer).await,
            (Purpose::Sync, violation(Violation::Oversized))
        );
        assert_eq!(
            raw.reset_code(Purpose::Sync).await,
            u64::from(Violation::Oversized.code())
        );

        // Direct: the stream ends ten bytes into a hundred-byte frame.
        let (send, _) = raw.stream(Purpose::Direct);
        send.write_all(
            &frame::FrameHeader {
                droppable: true,
                len: 100,
            }
            .encode(),
        )
        .await
        .unwrap();
        send.write_all(&[7; 10]).await.unwrap();
        send.finish().unwrap();
        assert_eq!(
            stream_closed(&mut events, raw_peer).await,
            (Purpose::Direct, violation(Violation::Truncated))
        );
        assert_eq!(
            raw.reset_code(Purpose::Direct).await,
            u64::from(Violation::Truncated.code())
        );

        let stats = node.stats();
        for v in [
            Violation::BadVersion,
            Violation::Oversized,
            Violation::Truncated,
        ] {
            assert_eq!(stats.totals.violations.get(v), 1, "{}", v.as_str());
            assert_eq!(
                peer_traffic(&stats, raw_peer).violations.get(v),
                1,
                "{}",
                v.as_str()
            );
        }
        assert!(!stats.peers[0].queues.control.open && !stats.peers[0].queues.sync.open);
        assert!(
            raw.conn.close_reason().is_none(),
            "the connection itself stays up"
        );

        // The node keeps serving a well-behaved peer.
        let good_id = Identity::generate().unwrap();
        let (good, mut good_events) = start(&good_id, config(TrustPolicy::Open)).await;
        good.connect(node.local_addr()).await.unwrap();
        peer_up(&mut events, good.node_id()).await;
        good.send(
            &node.node_id(),
            Purpose::Control,
            Bytes::from_static(b"ping"),
            false,
        )
        .unwrap();
        assert_eq!(
            frame_from(&mut events, good.node_id()).await,
            (Purpose::Control, Bytes::from_static(b"ping"))
        );
        node.send(
            &good.node_id(),
            Purpose::Control,
            Bytes::from_static(b"pong"),
            false,
        )
        .unwrap();
        assert_eq!(
            frame_from(&mut good_events, node.node_id()).await,
            (Purpose::Control, Bytes::from_static(b"pong"))
        );
    })
    .await;
}

#[tokio::test]
async fn bad_flags_close_the_stream_and_a_bad_preamble_closes_the_connection() {
    bounded(async {
        let node_id = Identity::generate().unwrap();
        let (node, mut events) = start(&node_id, config(TrustPolicy::Open)).await;

        let raw_id = Identity::generate().unwrap();
        let mut raw = RawPeer::established(&raw_id, node.local_addr()).await;
        peer_up(&mut events, raw_id.node_id()).await;
        raw.stream(Purpose::Direct)
            .0
            .write_all(&[1, 0b100, 0, 0, 0, 0])
            .await
            .unwrap();
        let closed = stream_closed(&mut events, raw_id.node_id()).await;
        assert_eq!(closed, (Purpose::Direct, violation(Violation::BadFlags)));
        assert_eq!(node.stats().totals.violations.bad_flags, 1);

        // A peer that resets its own half: the node closes the other half with the same code.
        raw.stream(Purpose::Control)
            .0
            .reset(quinn::VarInt::from_u32(0x99))
            .unwrap();
        let closed = stream_closed(&mut events, raw_id.node_id()).await;
        assert_eq!(
            closed,
            (
                Purpose::Control,
                StreamCloseReason::ResetByPeer { code: 0x99 }
            )
        );
        assert_eq!(raw.reset_code(Purpose::Control).await, 0x99);
        assert!(raw.conn.close_reason().is_none());

        let liar_id = Identity::generate().unwrap();
        let liar = RawPeer::connect(&liar_id, node.local_addr(), &[9]).await;
        let err = liar.conn.closed().await;
        match err {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(
                    close.error_code.into_inner(),
                    u64::from(close_code::PROTOCOL_VIOLATION)
                );
                assert_eq!(&close.reason[..], b"bad_purpose");
            }
            other => panic!("expected an application close, got {other}"),
        }
        assert_eq!(node.stats().totals.violations.bad_purpose, 1);
        assert!(!node.is_connected(&liar_id.node_id()));
        assert!(
            node.is_connected(&raw_id.node_id()),
            "the first raw peer is unaffected"
        );
    })
    .await;
}

/// A node on its own runtime thread. `crash` stops driving that runtime: from then on the
/// node sends nothing at all, not even a CONNECTION_CLOSE, like a killed process.
struct Crashable {
    node_id: NodeId,
    addr: SocketAddr,
    crash: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Crashable {
    fn start(key: PathBuf, config: TransportConfig) -> Crashable {
        let (info_tx, info_rx) = std::sync::mpsc::channel();
        let (crash_tx, crash_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let transport = runtime.block_on(async move {
                let identity = Identity::load_or_create(&key).unwrap();
                let (transport, mut events) = Transport::start(config, &identity).await.unwrap();
                info_tx
                    .send((transport.node_id(), transport.local_addr()))
                    .unwrap();
                tokio::spawn(async move { while events.recv().await.is_some() {} });
                let _ = crash_rx.await;
                transport
            });
            drop(runtime);
            drop(transport);
        });
        let (node_id, addr) = info_rx.recv().unwrap();
        Crashable {
            node_id,
            addr,
            crash: Some(crash_tx),
            thread: Some(thread),
        }
    }

    fn crash(&mut self) {
        if let Some(crash) = self.crash.take() {
            crash.send(()).unwrap();
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

#[tokio::test]
async fn a_killed_peer_is_reported_down_after_the_idle_timeout() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let a_id = Identity::generate().unwrap();
        let (a, mut a_events) = start(&a_id, config(TrustPolicy::Open)).await;
        let mut b = Crashable::start(dir.path().join("b.key"), config(TrustPolicy::Open));
        a.connect(b.addr).await.unwrap();
        let generation = peer_up(&mut a_events, b.node_id).await;

        let crashed_at = Instant::now();
        b.crash();
        let (down_generation, reason) = wait_for(&mut a_events, |e| match e {
            Event::PeerDown {
                peer,
                generation,
                reason,
            } if peer == b.node_id => Some((generation, reason)),
            _ => None,
        })
        .await;
        let after = crashed_at.elapsed();
        assert_eq!(
            (down_generation, reason),
            (generation, DownReason::IdleTimeout)
        );
        // The last packet from b arrived at most one keep-alive before the crash.
        assert!(
            after >= IDLE - KEEP_ALIVE,
            "down after {after:?}, before the idle timeout"
        );
        assert!(a.stats().peers.is_empty());
    })
    .await;
}

#[tokio::test]
async fn restart_bumps_the_generation_and_the_stale_connection_does_not_clobber_the_new_one() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("b.key");
        let a_id = Identity::generate().unwrap();
        let (a, mut a_events) = start(&a_id, config(TrustPolicy::Open)).await;

        let mut old_b = Crashable::start(key.clone(), config(TrustPolicy::Open));
        a.connect(old_b.addr).await.unwrap();
        let first = peer_up(&mut a_events, old_b.node_id).await;
        old_b.crash();

        // Same key, new process, new port; a has not noticed the crash yet.
        let b_id = Identity::load(&key).unwrap();
        assert_eq!(b_id.node_id(), old_b.node_id);
        let (b, mut b_events) = start(&b_id, config(TrustPolicy::Open)).await;
        b.connect(a.local_addr()).await.unwrap();
        let second = peer_up(&mut a_events, b.node_id()).await;
        assert!(second > first, "generation {second} after {first}");
        assert_eq!(a.stats().peers[0].generations, vec![first, second]);

        // Sends go to the new connection while the old one is still registered.
        for purpose in Purpose::ALL {
            a.send(
                &b.node_id(),
                purpose,
                Bytes::from_static(b"to new b"),
                false,
            )
            .unwrap();
            assert_eq!(
                frame_from(&mut b_events, a.node_id()).await,
                (purpose, Bytes::from_static(b"to new b"))
            );
        }

        // The stale connection times out; its tasks must leave the new one alone.
        eventually(|| {
            let stats = a.stats();
            let peer = stats
                .peers
                .first()
                .expect("closing the stale connection removed the peer");
            peer.generations == vec![second]
        })
        .await;
        tokio::time::sleep(KEEP_ALIVE * 2).await;
        let stats = a.stats();
        assert_eq!(stats.peers.len(), 1);
        assert_eq!(stats.peers[0].generations, vec![second]);
        assert!(stats.peers[0].queues.control.open && stats.peers[0].queues.sync.open);
        for purpose in Purpose::ALL {
            a.send(
                &b.node_id(),
                purpose,
                Bytes::from_static(b"still new b"),
                false,
            )
            .unwrap();
            assert_eq!(
                frame_from(&mut b_events, a.node_id()).await.1,
                Bytes::from_static(b"still new b")
            );
            b.send(
                &a.node_id(),
                purpose,
                Bytes::from_static(b"from new b"),
                false,
            )
            .unwrap();
        }
        let mut back = 0;
        while back < Purpose::ALL.len() {
            match a_events.recv().await.unwrap() {
                Event::PeerDown { .. } => panic!("stale connection reported the peer down"),
                Event::Frame { payload, .. } => {
                    assert_eq!(payload, Bytes::from_static(b"from new b"));
                    back += 1;
                }
                _ => {}
            }
        }
    })
    .await;
}

#[tokio::test]
async fn simultaneous_dials_keep_both_connections_and_frames_flow_both_ways() {
    bounded(async {
        let (a_id, b_id) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let (a, mut a_events) = start(&a_id, config(TrustPolicy::Open)).await;
        let (b, mut b_events) = start(&b_id, config(TrustPolicy::Open)).await;
        let (ab, ba) = tokio::join!(a.connect(b.local_addr()), b.connect(a.local_addr()));
        assert_eq!((ab.unwrap(), ba.unwrap()), (b.node_id(), a.node_id()));
        eventually(|| {
            a.stats()
                .peers
                .first()
                .is_some_and(|p| p.generations.len() == 2)
        })
        .await;
        eventually(|| {
            b.stats()
                .peers
                .first()
                .is_some_and(|p| p.generations.len() == 2)
        })
        .await;

        for i in 0..10u8 {
            a.send(&b.node_id(), Purpose::Control, Bytes::from(vec![i]), false)
                .unwrap();
            b.send(&a.node_id(), Purpose::Control, Bytes::from(vec![i]), false)
                .unwrap();
        }
        for _ in 0..10 {
            frame_from(&mut b_events, a.node_id()).await;
            frame_from(&mut a_events, b.node_id()).await;
        }

        a.disconnect(&b.node_id()).await;
        let downs_at_a = wait_for(&mut a_events, |e| match e {
            Event::PeerDown { reason, .. } => Some(reason),
            _ => None,
        })
        .await;
        assert_eq!(downs_at_a, DownReason::ClosedLocally);
        wait_for(&mut b_events, |e| {
            matches!(e, Event::PeerDown { .. }).then_some(())
        })
        .await;
        assert!(a.stats().peers.is_empty() && b.stats().peers.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_slow_peer_fills_its_outbound_budget_without_hurting_other_peers() {
    bounded(async {
        let (a_id, slow_id, fast_id) = (
            Identity::generate().unwrap(),
            Identity::generate().unwrap(),
            Identity::generate().unwrap(),
        );
        let mut a_config = config(TrustPolicy::Open);
        a_config.outbound_frames = 8;
        a_config.send_timeout = Duration::from_millis(200);
        let (a, mut a_events) = start(&a_id, a_config).await;
        // The slow peer never reads its events: its readers stop, then QUIC flow control stops a.
        let mut slow_config = config(TrustPolicy::Open);
        slow_config.event_queue = 4;
        let (slow, _slow_events_never_read) = start(&slow_id, slow_config).await;
        let (fast, mut fast_events) = start(&fast_id, config(TrustPolicy::Open)).await;
        a.connect(slow.local_addr()).await.unwrap();
        a.connect(fast.local_addr()).await.unwrap();

        let chunk = Bytes::from(vec![0x5a; 64 * 1024]);
        let mut accepted = 0u64;
        let mut refused = 0u64;
        while refused < 3 {
            match a.send(&slow.node_id(), Purpose::Sync, chunk.clone(), false) {
                Ok(()) => accepted += 1,
                Err(SendError::QueueFull { peer, purpose }) => {
                    assert_eq!((peer, purpose), (slow.node_id(), Purpose::Sync));
                    refused += 1;
                }
                Err(other) => panic!("unexpected {other}"),
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(
            accepted > 8,
            "only {accepted} frames before the budget ran out"
        );
        let timed_out = wait_for(&mut a_events, |e| match e {
            Event::SendTimedOut { peer, purpose } => Some((peer, purpose)),
            _ => None,
        })
        .await;
        assert_eq!(timed_out, (slow.node_id(), Purpose::Sync));

        let stats = a.stats();
        let slow_stats = stats
            .peers
            .iter()
            .find(|p| p.node_id == slow.node_id())
            .unwrap();
        assert_eq!(slow_stats.traffic.purposes.sync.dropped_queue_full, refused);
        assert!(slow_stats.traffic.purposes.sync.send_timeouts >= 1);
        assert_eq!(slow_stats.queues.sync.frames, 8);
        assert_eq!(slow_stats.queues.sync.bytes, 8 * chunk.len());

        // Other peers, and other purposes to the slow peer, are unaffected.
        a.send(
            &slow.node_id(),
            Purpose::Control,
            Bytes::from_static(b"ctl"),
            false,
        )
        .unwrap();
        a.send(&fast.node_id(), Purpose::Sync, chunk.clone(), false)
            .unwrap();
        assert_eq!(
            frame_from(&mut fast_events, a.node_id()).await.1.len(),
            chunk.len()
        );
    })
    .await;
}

#[tokio::test]
async fn byte_budget_refuses_before_the_frame_budget_is_reached() {
    bounded(async {
        let (a_id, b_id) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let mut a_config = config(TrustPolicy::Open);
        a_config.max_frame_len = 1000;
        a_config.outbound_bytes = 2500;
        let (a, _a_events) = start(&a_id, a_config).await;
        let (b, _b_events) = start(&b_id, config(TrustPolicy::Open)).await;
        a.connect(b.local_addr()).await.unwrap();
        // No await between sends: the writer cannot drain, so only the budget decides.
        let results: Vec<_> = (0..3)
            .map(|_| {
                a.send(
                    &b.node_id(),
                    Purpose::Direct,
                    Bytes::from(vec![1; 1000]),
                    false,
                )
            })
            .collect();
        assert!(results[0].is_ok() && results[1].is_ok());
        assert!(matches!(results[2], Err(SendError::QueueFull { .. })));
        let too_big = a.send(
            &b.node_id(),
            Purpose::Direct,
            Bytes::from(vec![1; 1001]),
            false,
        );
        assert_eq!(
            too_big,
            Err(SendError::TooLarge {
                len: 1001,
                max: 1000
            })
        );
        let traffic = peer_traffic(&a.stats(), b.node_id());
        assert_eq!(traffic.purposes.direct.dropped_queue_full, 1);
    })
    .await;
}

#[tokio::test]
async fn droppable_frames_are_dropped_and_counted_under_overload_while_control_frames_wait() {
    bounded(async {
        let (a_id, b_id) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let (a, _a_events) = start(&a_id, config(TrustPolicy::Open)).await;
        let mut b_config = config(TrustPolicy::Open);
        b_config.event_queue = 8;
        let (b, mut b_events) = start(&b_id, b_config).await;
        a.connect(b.local_addr()).await.unwrap();

        const GOSSIP: u64 = 200;
        const MEMBERSHIP: u64 = 20;
        for i in 0..GOSSIP {
            a.send(
                &b.node_id(),
                Purpose::Control,
                Bytes::from(format!("gossip {i}")),
                true,
            )
            .unwrap();
        }
        for i in 0..MEMBERSHIP {
            a.send(
                &b.node_id(),
                Purpose::Control,
                Bytes::from(format!("member {i}")),
                false,
            )
            .unwrap();
        }
        // b reads every gossip frame and the first membership frame, then waits for space.
        let control_in = |b: &Transport| b.stats().totals.purposes.control.frames_in;
        eventually(|| control_in(&b) > GOSSIP).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            control_in(&b) < GOSSIP + MEMBERSHIP,
            "reader kept reading into a full queue"
        );
        let dropped = b.stats().totals.purposes.control.dropped_overload;
        assert!(dropped > 0);

        let mut gossip = 0;
        let mut members = Vec::new();
        while members.len() < MEMBERSHIP as usize {
            let (purpose, payload) = frame_from(&mut b_events, a.node_id()).await;
            assert_eq!(purpose, Purpose::Control);
            let text = String::from_utf8(payload.to_vec()).unwrap();
            if text.starts_with("gossip") {
                gossip += 1;
            } else {
                members.push(text);
            }
        }
        let expected: Vec<String> = (0..MEMBERSHIP).map(|i| format!("member {i}")).collect();
        assert_eq!(members, expected, "membership frames lost or reordered");
        let stats = b.stats();
        assert_eq!(
            gossip + stats.totals.purposes.control.dropped_overload,
            GOSSIP
        );
        assert_eq!(stats.totals.purposes.control.frames_in, GOSSIP + MEMBERSHIP);
        assert!(stats.events.dwell.control.samples >= GOSSIP + MEMBERSHIP - dropped);
        assert!(
            stats.events.dwell.control.max_us >= 100_000,
            "frames waited ~200 ms in the queue"
        );
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_delivers_queued_frames_before_closing() {
    bounded(async {
        let (a_id, b_id) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let (a, _a_events) = start(&a_id, config(TrustPolicy::Open)).await;
        let (b, mut b_events) = start(&b_id, config(TrustPolicy::Open)).await;
        a.connect(b.local_addr()).await.unwrap();
        for i in 0..100u32 {
            a.send(
                &b.node_id(),
                Purpose::Sync,
                Bytes::from(i.to_be_bytes().to_vec()),
                false,
            )
            .unwrap();
        }
        a.shutdown().await;
        for i in 0..100u32 {
            let (_, payload) = frame_from(&mut b_events, a.node_id()).await;
            assert_eq!(payload, Bytes::from(i.to_be_bytes().to_vec()));
        }
        let reason = wait_for(&mut b_events, |e| match e {
            Event::PeerDown { reason, .. } => Some(reason),
            _ => None,
        })
        .await;
        assert!(
            matches!(reason, DownReason::ClosedByPeer { code: 0, .. }),
            "{reason:?}"
        );
        assert!(matches!(
            a.connect(b.local_addr()).await,
            Err(ConnectError::ShutDown)
        ));
    })
    .await;
}

#[tokio::test]
async fn a_peer_that_never_opens_its_streams_is_closed_after_the_handshake_timeout() {
    bounded(async {
        let node_id = Identity::generate().unwrap();
        let mut node_config = config(TrustPolicy::Open);
        node_config.handshake_timeout = Duration::from_millis(300);
        let (node, mut events) = start(&node_id, node_config).await;
        let mute_id = Identity::generate().unwrap();
        let mute = RawPeer::connect(&mute_id, node.local_addr(), &[]).await;
        match mute.conn.closed().await {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(
                    close.error_code.into_inner(),
                    u64::from(close_code::SETUP_TIMEOUT)
                );
            }
            other => panic!("expected an application close, got {other}"),
        }
        eventually(|| node.stats().connections.accept_failures == 1).await;
        let quiet = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
        assert!(
            quiet.is_err(),
            "a peer without streams was reported: {quiet:?}"
        );
    })
    .await;
}
