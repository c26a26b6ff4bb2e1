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
//! - Coalescing: after a frame arrives, every further frame that is *already* ready is taken
//!   too (up to [`COALESCE_BYTES`]) and handed on as one, so an answer the upstream wrote in
//!   three pieces costs one write; nothing ever waits for more, so a progress event still
//!   leaves the moment it is complete.

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

/// Largest non-SSE answer held whole before the client's head goes out.
pub(super) const HELD_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Stop gathering ready frames into one write beyond this many bytes.
const COALESCE_BYTES: usize = 64 * 1024;
/// A single SSE event larger than this is passed on in pieces instead of being held whole.
const HELD_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// A non-SSE body, read until complete (or [`HELD_ANSWER_BYTES`]) with at most `idle` between
/// frames. `Err` is what the caller should be told instead.
pub(super) async fn hold(
    mut body: ProxyBody,
    idle: Duration,
    url: &str,
) -> Result<ProxyBody, ErrorKind> {
    let mut held = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(ErrorKind::Timeout {
                    url: url.to_owned(),
                    source: None,
                });
            }
            Ok(None) => return Ok(full(held.freeze())),
            Ok(Some(frame)) => frame.map_err(|error| broken(error, url))?,
        };
        if let Ok(data) = frame.into_data() {
            held.extend_from_slice(&data);
        }
        if held.len() > HELD_ANSWER_BYTES {
            return Ok(streamed_on(held.freeze(), body, idle));
        }
    }
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

/// What a body error from the upstream means for the caller.
fn broken(error: BoxError, url: &str) -> ErrorKind {
    match error.downcast::<reqwest::Error>() {
        Ok(source) => ErrorKind::Transport {
            url: url.to_owned(),
            source: *source,
        },
        Err(_) => ErrorKind::NoAnswer,
    }
}

/// An SSE answer relayed event by event (see the module notes). `pending` are the ids of the
/// POST's requests; GET streams have none.
pub(super) fn sse(
    body: ProxyBody,
    pending: Vec<Box<RawValue>>,
    url: String,
    drain_idle: Duration,
) -> ProxyBody {
    SseRelay {
        upstream: Some(body),
        buffer: BytesMut::new(),
        torn: false,
        resumable: false,
        awaits_answers: !pending.is_empty(),
        pending,
        tail: None,
        drain_idle,
        url,
    }
    .boxed_unsync()
}

struct SseRelay {
    /// `None` once the upstream's body ended (or broke).
    upstream: Option<ProxyBody>,
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
    /// How long the rest of a finished upstream stream is read (and dropped) so its
    /// connection can be reused.
    drain_idle: Duration,
    url: String,
}

impl SseRelay {
    /// Takes in one chunk; returns the complete events it finished, if any.
    fn take_in(&mut self, chunk: &[u8]) -> Option<Bytes> {
        self.buffer.extend_from_slice(chunk);
        let mut complete = 0;
        while let Some(end) = event_end(&self.buffer[complete..]) {
            let event = &self.buffer[complete..complete + end];
            self.resumable |= event.starts_with(b"id:") || event.windows(4).any(|w| w == b"\nid:");
            let data = event_data(event);
            self.note_answers(data.as_bytes());
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

    /// Removes the ids that `data` (one message or a batch of them) answers.
    fn note_answers(&mut self, data: &[u8]) {
        if self.pending.is_empty() {
            return;
        }
        let messages: Vec<&RawValue> = match serde_json::from_slice::<Vec<&RawValue>>(data) {
            Ok(batch) => batch,
            Err(_) => serde_json::from_slice::<&RawValue>(data)
                .into_iter()
                .collect(),
        };
        for raw in messages {
            if let Ok(view) = Message::parse(raw.get().as_bytes())
                && view.is_response()
                && let Some(id) = view.id
            {
                self.pending.retain(|pending| !same_id(pending, id));
            }
        }
    }

    /// Every request of the POST has its answer: MCP's server closes the stream after the
    /// answer, so the client's stream ends here, in the same write as the answer, instead of
    /// one write later when the upstream's end has been decoded. The upstream's rest is read
    /// to its end in the background, so its connection goes back to the pool.
    fn answered(&mut self) {
        let Some(mut rest) = self.upstream.take() else {
            return;
        };
        let idle = self.drain_idle;
        tokio::spawn(async move {
            while let Ok(Some(Ok(_))) = tokio::time::timeout(idle, rest.frame()).await {}
        });
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
                // A clean end: what is left of an unterminated event goes as sent.
                if !self.buffer.is_empty() {
                    self.tail = Some(self.buffer.split().freeze());
                }
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

impl Body for SseRelay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut out = Gathered::default();

        // Take what is ready, never wait for more (see the module notes).
        while let Some(upstream) = this.upstream.as_mut() {
            match Pin::new(upstream).poll_frame(cx) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(chunk) = frame.into_data() else {
                        continue;
                    };
                    if let Some(events) = this.take_in(&chunk) {
                        out.push(events);
                    }
                    if this.awaits_answers && this.pending.is_empty() {
                        this.answered();
                    }
                    if out.len() + this.buffer.len() >= COALESCE_BYTES {
                        break;
                    }
                }
                Poll::Ready(Some(Err(error))) => this.ended(Some(error)),
                Poll::Ready(None) => this.ended(None),
            }
        }
        let ready = out.take().or_else(|| this.tail.take());
        match ready {
            Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            None if this.upstream.is_none() => Poll::Ready(None),
            None => Poll::Pending,
        }
    }

    /// True as soon as the upstream's end was seen and nothing is left to send, so the last
    /// events and the body's end leave in one write instead of two.
    fn is_end_stream(&self) -> bool {
        self.upstream.is_none() && self.tail.is_none()
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
