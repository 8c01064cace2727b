//! The three persistent streams of a connection: purposes, the one-byte stream preamble, the
//! bounded outbound queue, and the writer and reader tasks (docs/wire.md, "Streams").

use std::fmt;
use std::future::pending;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use quinn::{RecvStream, SendStream, VarInt};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::endpoint::Shared;
use super::events::{Event, StreamCloseReason, Undelivered};
use super::stats::{DropReason, Tally};
use crate::NodeId;
use crate::frame::{self, FrameError, FrameHeader, Violation};

/// What a stream carries. Each connection has exactly one bidirectional stream per purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Membership (HyParView) and pubsub (PlumTree) messages.
    Control,
    /// Document sync sessions.
    Sync,
    /// Direct messages.
    Direct,
}

impl Purpose {
    /// All purposes, in wire-byte order.
    pub const ALL: [Purpose; 3] = [Self::Control, Self::Sync, Self::Direct];

    /// The preamble byte that opens a stream of this purpose.
    pub const fn wire(self) -> u8 {
        match self {
            Self::Control => 0,
            Self::Sync => 1,
            Self::Direct => 2,
        }
    }

    /// The purpose a preamble byte names, if any.
    pub const fn from_wire(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Self::Control),
            1 => Some(Self::Sync),
            2 => Some(Self::Direct),
            _ => None,
        }
    }

    /// Stable lower-case name (`control`, `sync`, `direct`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Control => "control",
            Self::Sync => "sync",
            Self::Direct => "direct",
        }
    }

    pub(super) const fn index(self) -> usize {
        self.wire() as usize
    }

    /// quinn send priority: control first so membership and gossip never wait behind a large
    /// sync message on the same connection.
    fn priority(self) -> i32 {
        match self {
            Self::Control => 2,
            Self::Direct => 1,
            Self::Sync => 0,
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Failure while exchanging stream preambles on a new connection.
#[derive(Debug, thiserror::Error)]
pub enum StreamSetupError {
    /// Opening or accepting a stream failed because the connection closed.
    #[error("connection closed during stream setup: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing a preamble failed.
    #[error("writing a stream preamble failed: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading a preamble failed.
    #[error("reading a stream preamble failed: {0}")]
    Read(#[from] quinn::ReadExactError),
    /// The peer's preamble broke the protocol.
    #[error("peer sent an invalid stream preamble: {}", .0.as_str())]
    Violation(Violation),
}

impl StreamSetupError {
    /// The connection error underneath, when the connection itself failed (for example the
    /// peer refused this node's certificate right after the handshake).
    pub(super) fn connection_error(&self) -> Option<&quinn::ConnectionError> {
        match self {
            Self::Connection(err)
            | Self::Write(quinn::WriteError::ConnectionLost(err))
            | Self::Read(quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(err))) => {
                Some(err)
            }
            _ => None,
        }
    }
}

/// A connection's streams after setup, one per purpose, in [`Purpose::ALL`] order.
pub(super) type Streams = Vec<(Purpose, SendStream, RecvStream)>;

/// Dialer side: opens one stream per purpose, sends each preamble byte and waits for the
/// acceptor to echo it, which proves the acceptor admitted this node and took the stream.
pub(super) async fn open_streams(conn: &quinn::Connection) -> Result<Streams, StreamSetupError> {
    let mut streams = Vec::with_capacity(Purpose::ALL.len());
    for purpose in Purpose::ALL {
        let (mut send, recv) = conn.open_bi().await?;
        send.write_all(&[purpose.wire()]).await?;
        streams.push((purpose, send, recv));
    }
    for (purpose, _, recv) in &mut streams {
        let mut echo = [0u8; 1];
        recv.read_exact(&mut echo).await?;
        if echo[0] != purpose.wire() {
            return Err(StreamSetupError::Violation(Violation::BadPurpose));
        }
    }
    Ok(streams)
}

/// Acceptor side: accepts exactly one stream per purpose and echoes each preamble byte.
pub(super) async fn accept_streams(conn: &quinn::Connection) -> Result<Streams, StreamSetupError> {
    let mut slots: [Option<(SendStream, RecvStream)>; 3] = [None, None, None];
    for _ in Purpose::ALL {
        let (mut send, mut recv) = conn.accept_bi().await?;
        let mut preamble = [0u8; 1];
        recv.read_exact(&mut preamble).await?;
        let purpose = Purpose::from_wire(preamble[0])
            .ok_or(StreamSetupError::Violation(Violation::BadPurpose))?;
        let slot = &mut slots[purpose.index()];
        if slot.is_some() {
            return Err(StreamSetupError::Violation(Violation::DuplicatePurpose));
        }
        send.write_all(&preamble).await?;
        *slot = Some((send, recv));
    }
    let mut streams = Vec::with_capacity(Purpose::ALL.len());
    for (purpose, slot) in Purpose::ALL.into_iter().zip(slots) {
        let (send, recv) = slot.ok_or(StreamSetupError::Violation(Violation::BadPurpose))?;
        streams.push((purpose, send, recv));
    }
    Ok(streams)
}

/// A frame waiting in an outbound queue.
pub(super) struct Outgoing {
    payload: Bytes,
    droppable: bool,
    enqueued: Instant,
}

/// The `send` side of one stream's outbound queue, kept in the peer table.
pub(super) struct StreamHandle {
    queue: mpsc::Sender<Outgoing>,
    queued_bytes: Arc<AtomicUsize>,
    budget_bytes: usize,
    abort: Option<oneshot::Sender<VarInt>>,
}

/// Why [`StreamHandle::push`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PushError {
    Full,
    Closed,
}

impl StreamHandle {
    /// Enqueues without waiting; refuses when the frame or byte budget would be exceeded.
    pub(super) fn push(&self, payload: Bytes, droppable: bool) -> Result<(), PushError> {
        let len = payload.len();
        let before = self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before + len > self.budget_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return Err(PushError::Full);
        }
        let item = Outgoing {
            payload,
            droppable,
            enqueued: Instant::now(),
        };
        self.queue.try_send(item).map_err(|err| {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            match err {
                mpsc::error::TrySendError::Full(_) => PushError::Full,
                mpsc::error::TrySendError::Closed(_) => PushError::Closed,
            }
        })
    }

    /// Whether the writer still takes frames.
    pub(super) fn is_open(&self) -> bool {
        !self.queue.is_closed()
    }

    /// (frames, bytes) waiting.
    pub(super) fn depth(&self) -> (usize, usize) {
        let frames = self.queue.max_capacity() - self.queue.capacity();
        (frames, self.queued_bytes.load(Ordering::Acquire))
    }

    /// Tells the writer to reset the stream with `code` at once, discarding its queue.
    pub(super) fn abort(mut self, code: VarInt) {
        if let Some(abort) = self.abort.take() {
            // The writer may already be gone; then there is nothing left to reset.
            let _ = abort.send(code);
        }
    }
}

/// The writer's side of one stream's outbound queue.
pub(super) struct WriterInput {
    queue: mpsc::Receiver<Outgoing>,
    queued_bytes: Arc<AtomicUsize>,
    abort: Option<oneshot::Receiver<VarInt>>,
}

#[cfg(test)]
impl WriterInput {
    pub(super) fn queue_len(&self) -> usize {
        self.queue.len()
    }
}

/// A bounded outbound queue of `frames` frames and `bytes` payload bytes.
pub(super) fn outbound_queue(frames: usize, bytes: usize) -> (StreamHandle, WriterInput) {
    let (tx, rx) = mpsc::channel(frames);
    let (abort_tx, abort_rx) = oneshot::channel();
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let handle = StreamHandle {
        queue: tx,
        queued_bytes: queued_bytes.clone(),
        budget_bytes: bytes,
        abort: Some(abort_tx),
    };
    (
        handle,
        WriterInput {
            queue: rx,
            queued_bytes,
            abort: Some(abort_rx),
        },
    )
}

/// What a stream task needs to know about where it runs.
#[derive(Clone)]
pub(super) struct StreamCtx {
    pub(super) shared: Arc<Shared>,
    pub(super) peer: NodeId,
    pub(super) generation: u64,
    pub(super) purpose: Purpose,
    pub(super) tally: Tally,
}

/// Resolves with the abort code; never resolves once the handle is dropped without aborting
/// (a graceful close, where the queue is drained instead).
async fn aborted(abort: &mut Option<oneshot::Receiver<VarInt>>) -> VarInt {
    if let Some(rx) = abort.as_mut() {
        if let Ok(code) = rx.await {
            return code;
        }
        *abort = None;
    }
    pending().await
}

/// Writes queued frames in order until the queue closes (then finishes the stream and waits,
/// bounded by `shutdown_grace`, for the peer to acknowledge), the stream is aborted, or a
/// write fails. Each write runs under the send timeout: on expiry it reports `SendTimedOut`
/// and keeps waiting, because abandoning a half-written frame would corrupt the stream.
pub(super) async fn run_writer(ctx: StreamCtx, mut send: SendStream, mut input: WriterInput) {
    // Priority only fails on a stream that is already closed, which the first write reports.
    let _ = send.set_priority(ctx.purpose.priority());
    let config = &ctx.shared.config;
    let mut written: u32 = 0;
    loop {
        let item = tokio::select! {
            biased;
            code = aborted(&mut input.abort) => return abort_writer(&ctx, send, input, code),
            item = input.queue.recv() => item,
        };
        let Some(item) = item else {
            let _ = send.finish();
            let _ = tokio::time::timeout(config.shutdown_grace, send.stopped()).await;
            return;
        };
        input
            .queued_bytes
            .fetch_sub(item.payload.len(), Ordering::AcqRel);
        let len = item.payload.len();
        let header = FrameHeader {
            droppable: item.droppable,
            len: len as u32,
        };
        let mut chunks = [Bytes::copy_from_slice(&header.encode()), item.payload];
        let result = tokio::select! {
            biased;
            code = aborted(&mut input.abort) => {
                ctx.tally.dropped(ctx.purpose, DropReason::OnClose, 1);
                return abort_writer(&ctx, send, input, code);
            }
            result = write_timed(&ctx, &mut send, &mut chunks) => result,
        };
        if let Err(err) = result {
            let lost = 1 + discard(&mut input);
            ctx.tally.dropped(ctx.purpose, DropReason::OnClose, lost);
            tracing::debug!(peer = %ctx.peer.short(), purpose = %ctx.purpose, generation = ctx.generation,
                error = %err, lost, "stream writer stopped");
            if let quinn::WriteError::Stopped(_) = err {
                ctx.shared
                    .stream_ended(&ctx.peer, ctx.generation, ctx.purpose);
            }
            return;
        }
        ctx.tally.frame_out(ctx.purpose, len);
        written = written.wrapping_add(1);
        let every = config.latency_sample_every;
        if every > 0 && written.is_multiple_of(every) {
            let latency = item.enqueued.elapsed();
            let event = Event::SendSucceeded {
                peer: ctx.peer,
                latency,
            };
            if ctx.shared.events.try_deliver(event) == Err(Undelivered::Full) {
                super::stats::Counters::bump(&ctx.shared.counters.dropped_latency_samples);
            }
        }
    }
}

async fn write_timed(
    ctx: &StreamCtx,
    send: &mut SendStream,
    chunks: &mut [Bytes],
) -> Result<(), quinn::WriteError> {
    let mut write = pin!(send.write_all_chunks(chunks));
    match tokio::time::timeout(ctx.shared.config.send_timeout, write.as_mut()).await {
        Ok(result) => result,
        Err(_elapsed) => {
            ctx.tally.send_timeout(ctx.purpose);
            tracing::debug!(peer = %ctx.peer.short(), purpose = %ctx.purpose, "send timed out");
            let event = Event::SendTimedOut {
                peer: ctx.peer,
                purpose: ctx.purpose,
            };
            // Must-deliver: the layer above cools the peer on this. If the receiver is gone the
            // transport is shutting down and the write result is all that matters.
            let _ = ctx.shared.events.deliver(event).await;
            write.await
        }
    }
}

fn abort_writer(ctx: &StreamCtx, mut send: SendStream, mut input: WriterInput, code: VarInt) {
    let _ = send.reset(code);
    let lost = discard(&mut input);
    ctx.tally.dropped(ctx.purpose, DropReason::OnClose, lost);
}

/// Closes the queue to new frames and counts what was still in it.
fn discard(input: &mut WriterInput) -> u64 {
    input.queue.close();
    let mut lost = 0;
    while let Ok(item) = input.queue.try_recv() {
        input
            .queued_bytes
            .fetch_sub(item.payload.len(), Ordering::AcqRel);
        lost += 1;
    }
    lost
}

/// Reads frames until the stream or connection ends, applying the receive overload policy.
/// A wire-format violation closes this stream (both halves) with the violation's code.
pub(super) async fn run_reader(ctx: StreamCtx, mut recv: RecvStream) {
    let max = ctx.shared.config.max_frame_len;
    loop {
        let frame = match frame::read_frame(&mut recv, max).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(err) => return reader_failed(&ctx, &mut recv, &err).await,
        };
        ctx.tally.frame_in(ctx.purpose, frame.payload.len());
        let event = Event::Frame {
            peer: ctx.peer,
            purpose: ctx.purpose,
            payload: frame.payload,
        };
        let delivered = if frame.droppable {
            ctx.shared.events.try_deliver(event)
        } else {
            ctx.shared.events.deliver(event).await
        };
        match delivered {
            Ok(()) => {}
            Err(Undelivered::Full) => ctx.tally.dropped(ctx.purpose, DropReason::Overload, 1),
            Err(Undelivered::Closed) => return,
        }
    }
}

async fn reader_failed(ctx: &StreamCtx, recv: &mut RecvStream, err: &FrameError) {
    let reason = if let Some(violation) = err.violation() {
        ctx.tally.violation(violation);
        tracing::warn!(peer = %ctx.peer.short(), purpose = %ctx.purpose, generation = ctx.generation,
            reason = violation.as_str(), error = %err, "closing stream: peer broke the frame format");
        let _ = recv.stop(VarInt::from_u32(violation.code()));
        let code = VarInt::from_u32(violation.code());
        ctx.shared
            .abort_stream(&ctx.peer, ctx.generation, ctx.purpose, code);
        StreamCloseReason::Violation { violation }
    } else if let Some(code) = reset_code(err) {
        tracing::warn!(peer = %ctx.peer.short(), purpose = %ctx.purpose, generation = ctx.generation,
            code = code.into_inner(), "peer reset its stream");
        // Close our half too, with the peer's code, so the stream is gone in both directions.
        ctx.shared
            .abort_stream(&ctx.peer, ctx.generation, ctx.purpose, code);
        StreamCloseReason::ResetByPeer {
            code: code.into_inner(),
        }
    } else {
        // The connection is gone; its supervisor reports that.
        return;
    };
    let event = Event::StreamClosed {
        peer: ctx.peer,
        generation: ctx.generation,
        purpose: ctx.purpose,
        reason,
    };
    let _ = ctx.shared.events.deliver(event).await;
}

fn reset_code(err: &FrameError) -> Option<VarInt> {
    let FrameError::Io(io) = err else { return None };
    match io.get_ref()?.downcast_ref::<quinn::ReadError>()? {
        quinn::ReadError::Reset(code) => Some(*code),
        _ => None,
    }
}
