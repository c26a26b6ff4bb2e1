//! The upstream's answer body on its way to the client, made safe against an upstream that
//! goes silent or dies, and written in as few pieces as it arrives in.
//!
//! - A non-SSE answer (a JSON-RPC answer is one message, usually one frame) is held until it is
//!   complete, with [`UpstreamTimeouts::body_idle`](crate::upstream::UpstreamTimeouts) between
//!   frames, before the client's head is sent. Held, a silent or broken body can still become a
//!   JSON-RPC error with the caller's id and the right status; once the head and part of a
//!   body were sent, the only thing left would be to cut the client's connection. Answers
//!   larger than [`HELD_ANSWER_BYTES`] stream on after the held part, still under the idle
//!   bound (and are cut off if the upstream goes silent: nothing else is possible then).
//! - An SSE answer is relayed event by event: only complete events go out, so when the
//!   upstream dies (connection reset, or closed without answering and without event ids to
//!   resume from) the stream can end cleanly with one JSON-RPC error event for each request of
//!   the POST still unanswered. Holding a partial event costs the client nothing: an SSE client
//!   acts only on complete events.
//! - Coalescing: after a frame arrives, every further frame that is *already* there is taken
//!   too (up to [`COALESCE_BYTES`]) and handed on as one, the first ones together with the
//!   client's head, so an answer the upstream wrote in three pieces costs one write. "Already
//!   there" includes what the upstream connection's task has read but not yet decoded: the
//!   relay yields one scheduler turn at a time for it while each turn brings more. Nothing
//!   ever waits for the network, so a progress event still leaves the moment it is complete.
//! - Connection reuse: once every request of a POST is answered, the client's stream ends
//!   with the answer. The upstream's end, when it is already there (rmcp writes it with the
//!   answer), is read before that last write, so the upstream connection is back in the pool
//!   when the client's next request comes, even if that request is already waiting; an end
//!   not there within a couple of turns is read in the background instead, never waited for.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, StreamBody};
use serde_json::value::RawValue;

use super::review::{event_data, event_end};
use super::{BoxError, ProxyBody, full, sse_message};
use crate::mcp::error::{ErrorKind, McpError};
use crate::mcp::message::{Message, same_id};
use crate::upstream::TransportError;

/// Largest non-SSE answer held whole before the client's head goes out.
pub(super) const HELD_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Stop gathering ready frames into one write beyond this many bytes.
const COALESCE_BYTES: usize = 64 * 1024;
/// A single SSE event larger than this is passed on in pieces instead of being held whole.
const HELD_EVENT_BYTES: usize = 16 * 1024 * 1024;
/// Scheduler turns an answered stream gives the upstream's end before reading it in the
/// background. An end that arrived with the answer takes the upstream connection's task one
/// turn to decode, or two when the answer had already been waiting for the relay (seen with
/// hyper 1.12's client); an end still missing after that is on the network.
const END_TURNS: u8 = 2;

/// A non-SSE body, read until complete (or [`HELD_ANSWER_BYTES`]) with at most `idle` between
/// frames. `Err` is what the caller should be told instead.
pub(super) async fn hold(
    mut body: ProxyBody,
    idle: Duration,
    url: &str,
) -> Result<ProxyBody, ErrorKind> {
    let mut held = BytesMut::new();
    loop {
        let next = match within_a_turn(&mut body).await {
            Some(next) => next,
            None => tokio::time::timeout(idle, body.frame())
                .await
                .map_err(|_| ErrorKind::Timeout {
                    url: url.to_owned(),
                    source: None,
                })?,
        };
        let frame = match next {
            None => return Ok(full(held.freeze())),
            Some(frame) => frame.map_err(|error| broken(error, url))?,
        };
        if let Ok(data) = frame.into_data() {
            held.extend_from_slice(&data);
        }
        if held.len() > HELD_ANSWER_BYTES {
            return Ok(streamed_on(held.freeze(), body, idle));
        }
    }
}

/// The body's next frame if it is there now or one scheduler turn later, `None` if not.
///
/// The upstream connection's task decodes the next frame from what it has already read once
/// the body asks for it, so one turn is usually enough, and then no idle timer is armed:
/// registering one costs a wake of tokio's driver (an eventfd `write` and an extra
/// `epoll_wait`) per answer. Nothing waits here for the network.
async fn within_a_turn(body: &mut ProxyBody) -> Option<Option<Result<Frame<Bytes>, BoxError>>> {
    let mut turned = false;
    std::future::poll_fn(|cx| match Pin::new(&mut *body).poll_frame(cx) {
        Poll::Ready(next) => Poll::Ready(Some(next)),
        Poll::Pending if turned => Poll::Ready(None),
        Poll::Pending => {
            turned = true;
            // Woken at once: back of the run queue, behind the connection task.
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// The held start of a large answer, then the rest as it comes, cut off after `idle` silence.
fn streamed_on(start: Bytes, body: ProxyBody, idle: Duration) -> ProxyBody {
    let rest = futures_util::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(idle, body.frame()).await {
            Ok(Some(frame)) => Some((frame, Some(body))),
            Ok(None) => None,
            Err(_) => Some((
                Err(BoxError::from("the upstream went silent mid-answer")),
                None,
            )),
        }
    });
    let start = futures_util::stream::iter([Ok(Frame::data(start))]);
    StreamBody::new(futures_util::StreamExt::chain(start, rest)).boxed_unsync()
}

/// Reads what is left of an answered upstream stream: `Ready` once its end (or an error) is
/// there. Anything after the answer is dropped (an MCP server sends nothing more), but no
/// more than [`COALESCE_BYTES`] at a time: beyond that it is `Pending`, left to [`drain`].
fn poll_end(rest: &mut ProxyBody, cx: &mut Context<'_>) -> Poll<()> {
    let mut dropped = 0;
    while dropped <= COALESCE_BYTES {
        match Pin::new(&mut *rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                dropped += frame.data_ref().map_or(0, Bytes::len);
            }
            Poll::Ready(_) => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
    }
    Poll::Pending
}

/// Reads `rest` to its end in the background, so its connection goes back to the pool, giving
/// up after `idle` without a frame.
fn drain(mut rest: ProxyBody, idle: Duration) {
    tokio::spawn(async move {
        while let Ok(Some(Ok(_))) = tokio::time::timeout(idle, rest.frame()).await {}
    });
}

/// What a body error from the upstream means for the caller.
fn broken(error: BoxError, url: &str) -> ErrorKind {
    match error.downcast::<hyper::Error>() {
        Ok(source) => ErrorKind::Transport {
            url: url.to_owned(),
            source: TransportError::body(*source),
        },
        Err(_) => ErrorKind::NoAnswer,
    }
}

/// An SSE answer relayed event by event (see the module notes). `pending` are the ids of the
/// POST's requests; GET streams have none.
///
/// What the upstream has already sent is gathered before this returns, so it leaves in the
/// same write as the client's head; nothing waits for the network here.
pub(super) async fn sse(
    body: ProxyBody,
    pending: Vec<Box<RawValue>>,
    url: String,
    drain_idle: Duration,
) -> ProxyBody {
    let mut relay = SseRelay {
        upstream: Some(body),
        stash: Gathered::default(),
        buffer: BytesMut::new(),
        torn: false,
        resumable: false,
        awaits_answers: !pending.is_empty(),
        pending,
        tail: None,
        end_turns: 0,
        drain_idle,
        url,
    };
    relay.settle_now().await;
    relay.boxed_unsync()
}

struct SseRelay {
    /// `None` once the upstream's body ended (or broke).
    upstream: Option<ProxyBody>,
    /// Complete events gathered for the next write.
    stash: Gathered,
    /// Bytes of the event not yet complete.
    buffer: BytesMut,
    /// Part of an over-large event was already sent.
    torn: bool,
    /// An event carried an `id:`: a clean end may be resumed by the client with
    /// `Last-Event-ID`, so it is passed on as it is.
    resumable: bool,
    /// Requests of the POST not answered yet.
    pending: Vec<Box<RawValue>>,
    /// The error events to send once the upstream is gone.
    tail: Option<Bytes>,
    /// The POST had requests: once all are answered the client's stream is complete.
    awaits_answers: bool,
    /// Scheduler turns already given to the upstream's end once all are answered.
    end_turns: u8,
    /// How long the rest of a finished upstream stream is read (and dropped) so its
    /// connection can be reused.
    drain_idle: Duration,
    url: String,
}

impl SseRelay {
    /// Takes every frame the upstream has ready into the stash. While frames keep coming it
    /// yields one scheduler turn at a time (`Pending`, woken at once), because the upstream
    /// connection's task decodes the next frame from what it already read only once this one
    /// was taken: so an answer the upstream wrote in three pieces that arrived together
    /// leaves in one write. `Ready` once a turn brought nothing, the upstream ended, or
    /// [`COALESCE_BYTES`] are gathered; it never waits for the network.
    fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut progressed = false;
        while let Some(upstream) = self.upstream.as_mut() {
            if self.awaits_answers && self.pending.is_empty() {
                return self.poll_answered(cx);
            }
            if self.stash.len() + self.buffer.len() >= COALESCE_BYTES {
                return Poll::Ready(());
            }
            match Pin::new(upstream).poll_frame(cx) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(frame))) => {
                    progressed = true;
                    let Ok(chunk) = frame.into_data() else {
                        continue;
                    };
                    if let Some(events) = self.take_in(&chunk) {
                        self.stash.push(events);
                    }
                }
                Poll::Ready(Some(Err(error))) => self.ended(Some(error)),
                Poll::Ready(None) => self.ended(None),
            }
        }
        if progressed && self.upstream.is_some() {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(())
    }

    /// [`Self::poll_settle`] before the client's head goes out, with one more turn when
    /// nothing was there yet: the first frame is decoded only once the body was first asked.
    async fn settle_now(&mut self) {
        let mut turned = false;
        std::future::poll_fn(|cx| {
            if self.poll_settle(cx).is_pending() {
                return Poll::Pending;
            }
            if self.stash.len() == 0 && self.upstream.is_some() && !turned {
                turned = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(())
        })
        .await;
    }

    /// Takes in one chunk; returns the complete events it finished, if any.
    fn take_in(&mut self, chunk: &[u8]) -> Option<Bytes> {
        self.buffer.extend_from_slice(chunk);
        let mut complete = 0;
        while let Some(end) = event_end(&self.buffer[complete..]) {
            let event = &self.buffer[complete..complete + end];
            self.resumable |= event.starts_with(b"id:") || event.windows(4).any(|w| w == b"\nid:");
            note_answers(&mut self.pending, event_data(event).as_bytes());
            complete += end;
        }
        self.torn = if complete > 0 { false } else { self.torn };
        if complete == 0 && self.buffer.len() > HELD_EVENT_BYTES {
            // Too large to hold: pass it on in pieces; its answer (if any) goes unseen.
            self.torn = true;
            return Some(self.buffer.split().freeze());
        }
        (complete > 0).then(|| self.buffer.split_to(complete).freeze())
    }

    /// Every request of the POST has its answer: MCP's server closes the stream after the
    /// answer, so the client's stream ends here, in the same write as the answer, instead of
    /// one write later when the upstream's end has been decoded.
    ///
    /// The upstream's end is read first when it is there now or within [`END_TURNS`] scheduler
    /// turns (its connection task decodes it once asked), and then one more turn passes before the last
    /// write is handed on: the client's pool takes the connection back in a task woken by that
    /// end, and the server reads a next request that is already waiting in the same turn as it
    /// writes the answer, so without that turn the request would find no idle connection and
    /// the pool would open a second one. An end not there by then is read in the background,
    /// so the connection still goes back to the pool; nothing here waits for the network.
    fn poll_answered(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(rest) = self.upstream.as_mut() else {
            // The end was read a turn ago (that turn was the pool's).
            return Poll::Ready(());
        };
        if poll_end(rest, cx).is_ready() {
            // Read in time: the pool gets its turn below, before the answer goes.
            self.upstream = None;
            self.keep_unterminated();
        } else if self.end_turns == END_TURNS {
            // Not there in time: the answer goes now, the end is read in the background.
            if let Some(rest) = self.upstream.take() {
                drain(rest, self.drain_idle);
            }
            self.keep_unterminated();
            return Poll::Ready(());
        }
        self.end_turns += 1;
        // Woken at once: the turn goes to the upstream connection's task and the pool's.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// At a clean end of the upstream: what is left of an unterminated event goes to the
    /// client as it was sent.
    fn keep_unterminated(&mut self) {
        if !self.buffer.is_empty() {
            self.tail = Some(self.buffer.split().freeze());
        }
    }

    /// The upstream's body is over: `error` when it broke. Decides what the client still gets.
    fn ended(&mut self, error: Option<BoxError>) {
        self.upstream = None;
        let broke = match error {
            Some(error) => {
                tracing::warn!(error = %error, "the upstream's answer stream broke off");
                true
            }
            None if self.resumable || self.pending.is_empty() => {
                self.keep_unterminated();
                return;
            }
            None => false,
        };
        // An unfinished event is dropped (never sent), or, if it was torn, ended by a blank line
        // so the client discards it before the errors.
        self.buffer.clear();
        if self.pending.is_empty() {
            return;
        }
        let mut tail = BytesMut::new();
        if self.torn {
            tail.extend_from_slice(b"\n\n");
        }
        for id in self.pending.drain(..) {
            let kind = if broke {
                ErrorKind::StreamBroken {
                    url: self.url.clone(),
                }
            } else {
                ErrorKind::NoAnswer
            };
            tail.extend_from_slice(&sse_message(&McpError::new(Some(&id), kind).to_json()));
        }
        self.tail = Some(tail.freeze());
    }
}

/// Removes from `pending` the ids that `data` (one message or a batch of them) answers.
///
/// Only an object or an array can answer, so anything else (the empty data of rmcp's priming
/// event) costs no parse, and a single message is parsed once: every event of every answer
/// passes here.
fn note_answers(pending: &mut Vec<Box<RawValue>>, data: &[u8]) {
    if pending.is_empty() {
        return;
    }
    match data.iter().find(|byte| !byte.is_ascii_whitespace()) {
        Some(b'{') => note_answer(pending, data),
        Some(b'[') => {
            if let Ok(batch) = serde_json::from_slice::<Vec<&RawValue>>(data) {
                for raw in batch {
                    note_answer(pending, raw.get().as_bytes());
                }
            }
        }
        _ => {}
    }
}

/// Removes from `pending` the id that `message` answers, if it is a response.
fn note_answer(pending: &mut Vec<Box<RawValue>>, message: &[u8]) {
    if let Ok(view) = Message::parse(message)
        && view.is_response()
        && let Some(id) = view.id
    {
        pending.retain(|pending| !same_id(pending, id));
    }
}

impl Body for SseRelay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.poll_settle(cx).is_pending() {
            return Poll::Pending;
        }
        if this.upstream.is_none()
            && let Some(tail) = this.tail.take()
        {
            // The last events and the error events for what stayed unanswered: one write.
            this.stash.push(tail);
        }
        match std::mem::take(&mut this.stash).take() {
            Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            None if this.upstream.is_none() => Poll::Ready(None),
            None => Poll::Pending,
        }
    }

    /// True as soon as the upstream's end was seen and nothing is left to send, so the last
    /// events and the body's end leave in one write instead of two.
    fn is_end_stream(&self) -> bool {
        self.upstream.is_none() && self.tail.is_none() && self.stash.len() == 0
    }
}

/// Complete events gathered for one write: the first kept as it is (no copy when it is the
/// only one), later ones appended after it.
#[derive(Default)]
struct Gathered {
    first: Option<Bytes>,
    more: BytesMut,
}

impl Gathered {
    fn push(&mut self, events: Bytes) {
        match &self.first {
            None => self.first = Some(events),
            Some(first) => {
                if self.more.is_empty() {
                    self.more.extend_from_slice(first);
                }
                self.more.extend_from_slice(&events);
            }
        }
    }

    fn len(&self) -> usize {
        if self.more.is_empty() {
            self.first.as_ref().map_or(0, Bytes::len)
        } else {
            self.more.len()
        }
    }

    fn take(self) -> Option<Bytes> {
        if self.more.is_empty() {
            self.first
        } else {
            Some(self.more.freeze())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::sync::mpsc;

    const PRIMING: &[u8] = b"data: \nid: 0/1\nretry: 3000\n\n";
    const ANSWER: &[u8] = b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";

    /// An upstream body fed by the test, one frame per chunk sent.
    fn fed() -> (mpsc::UnboundedSender<Bytes>, ProxyBody) {
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let frames = tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
            .map(|chunk| Ok::<_, BoxError>(Frame::data(chunk)));
        (tx, StreamBody::new(frames).boxed_unsync())
    }

    fn pending_one() -> Vec<Box<RawValue>> {
        vec![RawValue::from_string("1".to_owned()).expect("an id")]
    }

    /// The relay of `body` for a POST awaiting id 1 (drained for at most 1 s), which must be
    /// ready within `bound`: `sse` never waits for the network.
    async fn relay_within(body: ProxyBody, bound: Duration) -> ProxyBody {
        let relay = sse(body, pending_one(), "u".to_owned(), Duration::from_secs(1));
        tokio::time::timeout(bound, relay).await.expect("no wait")
    }

    /// An upstream body like hyper's: each frame is there only one scheduler turn after
    /// the previous one was taken (the connection task decodes it then).
    struct OneTurnApart {
        frames: std::collections::VecDeque<Bytes>,
        turned: bool,
    }

    impl Body for OneTurnApart {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.turned = !self.turned;
            if self.turned {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(self.frames.pop_front().map(|chunk| Ok(Frame::data(chunk))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pieces_already_there_leave_in_one_frame_with_the_end() {
        let body = OneTurnApart {
            frames: [PRIMING, &ANSWER[..10], &ANSWER[10..]]
                .map(Bytes::from_static)
                .into(),
            turned: false,
        };
        let mut relay = relay_within(body.boxed_unsync(), Duration::from_secs(1)).await;
        let first = relay.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().expect("data"), [PRIMING, ANSWER].concat());
        assert!(
            relay.is_end_stream(),
            "the answer ends the stream in the same write"
        );
        assert!(relay.frame().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_woken_by_the_upstreams_end_runs_before_the_last_frame_leaves() {
        // The upstream's end is there with the answer; reading it wakes a task, as it wakes the
        // client pool's task that takes the connection back.
        let returned = Arc::new(AtomicBool::new(false));
        let pool = returned.clone();
        let mut woke = false;
        let end = futures_util::stream::poll_fn(move |_| {
            if !std::mem::replace(&mut woke, true) {
                let pool = pool.clone();
                tokio::spawn(async move { pool.store(true, Ordering::SeqCst) });
            }
            Poll::Ready(None)
        });
        let frames = futures_util::stream::iter([PRIMING, ANSWER])
            .map(|chunk| Ok::<_, BoxError>(Frame::data(Bytes::from_static(chunk))))
            .chain(end);
        let body = StreamBody::new(frames).boxed_unsync();
        let mut relay = relay_within(body, Duration::from_secs(1)).await;
        let first = relay.frame().await.expect("a frame").expect("data");
        assert!(
            returned.load(Ordering::SeqCst),
            "the connection is back in the pool before the client's last write"
        );
        assert_eq!(first.into_data().expect("data"), [PRIMING, ANSWER].concat());
        assert!(relay.is_end_stream());
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_end_that_is_not_there_is_not_waited_for() {
        let (tx, body) = fed();
        tx.send(Bytes::from_static(PRIMING)).expect("open");
        tx.send(Bytes::from_static(ANSWER)).expect("open");
        let mut relay = relay_within(body, Duration::from_millis(1)).await;
        let first = relay.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().expect("data"), [PRIMING, ANSWER].concat());
        assert!(
            relay.is_end_stream(),
            "the client's stream ends with the answer"
        );
        // The rest is read in the background, which gives up after the idle bound.
        tokio::time::timeout(Duration::from_secs(2), tx.closed())
            .await
            .expect("the background read gives the upstream body up");
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_leaves_without_waiting_for_the_next() {
        let (tx, body) = fed();
        tx.send(Bytes::from_static(PRIMING)).expect("open");
        // Nothing more comes: `sse` must still return, with the first event ready at once.
        let mut relay = relay_within(body, Duration::from_secs(1)).await;
        let first = tokio::time::timeout(Duration::from_secs(1), relay.frame()).await;
        let first = first.expect("no wait").expect("a frame").expect("data");
        assert_eq!(first.into_data().expect("data"), PRIMING);
        // A later event (a progress notification, say) leaves alone as soon as it is complete.
        tx.send(Bytes::from_static(
            b"data: {\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n\n",
        ))
        .expect("open");
        let next = relay.frame().await.expect("a frame").expect("data");
        assert!(next.into_data().expect("data").starts_with(b"data: {"));
        assert!(!relay.is_end_stream());
    }

    #[tokio::test(start_paused = true)]
    async fn only_responses_answer_pending_ids_single_or_batched() {
        let ids =
            ["1", "2", "\"three\""].map(|id| RawValue::from_string(id.to_owned()).expect("an id"));
        let mut relay = SseRelay {
            upstream: Some(fed().1),
            stash: Gathered::default(),
            buffer: BytesMut::new(),
            torn: false,
            resumable: false,
            awaits_answers: true,
            pending: ids.into(),
            tail: None,
            end_turns: 0,
            drain_idle: Duration::from_secs(1),
            url: "u".to_owned(),
        };
        let left = |relay: &SseRelay| {
            relay
                .pending
                .iter()
                .map(|id| id.get().to_owned())
                .collect::<Vec<_>>()
        };
        for data in [
            &b""[..],
            b"   ",
            b"not json",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
            b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}",
            b"[1, 2]",
        ] {
            note_answers(&mut relay.pending, data);
            assert_eq!(
                left(&relay),
                ["1", "2", "\"three\""],
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
        note_answers(
            &mut relay.pending,
            b" {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}",
        );
        assert_eq!(left(&relay), ["2", "\"three\""]);
        note_answers(&mut relay.pending, b"[{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}},{\"jsonrpc\":\"2.0\",\"id\":\"three\",\"error\":{\"code\":-1,\"message\":\"x\"}}]");
        assert!(left(&relay).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_answer_in_pieces_is_whole() {
        let (tx, body) = fed();
        tx.send(Bytes::from_static(b"{\"jsonrpc\":")).expect("open");
        tx.send(Bytes::from_static(b"\"2.0\"}")).expect("open");
        drop(tx);
        let held = hold(body, Duration::from_secs(1), "u").await.expect("held");
        let bytes = held.collect().await.expect("whole").to_bytes();
        assert_eq!(bytes, &b"{\"jsonrpc\":\"2.0\"}"[..]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_answer_that_goes_silent_times_out() {
        let (tx, body) = fed();
        tx.send(Bytes::from_static(b"{\"jsonrpc\":")).expect("open");
        let error = hold(body, Duration::from_secs(1), "u").await.err();
        assert!(
            matches!(error, Some(ErrorKind::Timeout { .. })),
            "{error:?}"
        );
        drop(tx);
    }
}
