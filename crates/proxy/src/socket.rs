//! The TCP sockets of both HTTP connections a forwarded request crosses: the client's, which
//! hyper's server reads and writes while the connection's watchdog peeks at it (to notice a
//! client gone away while hyper is not reading; see [`crate::limits::Watchdog::closed`]), and
//! the upstream's, under hyper's client (plain, or beneath TLS).
//!
//! Each is registered with the runtime for reading only. tokio's `TcpStream` registers every
//! socket for reading and writing, edge-triggered, and Linux then reports a socket writable
//! again when the peer's ACK frees room in its send buffer: an `epoll_wait` that wakes for
//! nothing anybody waits for, 0.4 to 0.8 per request at one connection
//! (`bench/syscall_floor.sh`: 7.1 to 8.1 system calls per request with tokio's sockets, 6.3 to
//! 6.6 with these). A write goes straight to the socket. Only one that finds the send buffer
//! full (a large answer to a slow reader) registers a duplicate descriptor of the socket for
//! writing, and waits for room on it until a write goes out whole; the duplicate is then
//! closed. The connection cap counts that descriptor
//! ([`crate::limits::ServerLimits::connections_for_fd_limit`]).

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// The most one read takes from a socket.
const READ_BYTES: usize = 64 << 10;

thread_local! {
    /// Where reads land, zeroed once per thread. hyper hands each read a buffer that is not
    /// initialized, and safe code may only read into initialized bytes: zeroing hyper's whole
    /// buffer before every read cost 21 k instructions per request (callgrind), copying what
    /// arrived from here costs a few hundred.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BYTES].into_boxed_slice());
}

/// A TCP stream that hyper drives through `AsyncRead`/`AsyncWrite`; clones share it (the
/// watchdog's, for peeking).
#[derive(Clone, Debug)]
pub(crate) struct Socket(Arc<Registered>);

#[derive(Debug)]
struct Registered {
    /// The socket, registered for reading only.
    reader: AsyncFd<TcpStream>,
    /// A duplicate of it registered for writing, while a write waits for room.
    writer: Mutex<Option<AsyncFd<TcpStream>>>,
}

impl Socket {
    /// `stream`, moved from tokio's registration to a read-only one.
    pub(crate) fn new(stream: tokio::net::TcpStream) -> io::Result<Self> {
        let stream = stream.into_std()?;
        let reader = register(stream, Interest::READABLE)?;
        Ok(Self(Arc::new(Registered {
            reader,
            writer: Mutex::new(None),
        })))
    }

    /// Reads what the client sent without taking it, waiting until there is something (or an
    /// EOF, as `Ok(0)`).
    pub(crate) async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .reader
            .async_io(Interest::READABLE, |stream| stream.peek(buf))
            .await
    }

    /// The write registration's slot. Only the connection's own task writes, so the lock is
    /// never contended, and a panic while it was held left nothing half done.
    fn writer(&self) -> MutexGuard<'_, Option<AsyncFd<TcpStream>>> {
        self.0.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `wanted` bytes (or fewer) with `write`: at once while the socket has room; when
    /// it has none, through a write registration made for the wait and dropped once a write
    /// went out whole, so a descriptor is duplicated only while a write waits.
    fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        wanted: usize,
        mut write: impl FnMut(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let mut slot = self.writer();
        let writer = match slot.take() {
            Some(writer) => writer,
            None => match write(self.0.reader.get_ref()) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    register(self.0.reader.get_ref().try_clone()?, Interest::WRITABLE)?
                }
                written => return Poll::Ready(written),
            },
        };
        let outcome = poll_written(&writer, cx, wanted, &mut write);
        // Kept while the socket is full: a wait, or a write that filled it again.
        if !matches!(outcome, Poll::Ready(Ok(written)) if written == wanted) {
            *slot = Some(writer);
        }
        outcome
    }
}

/// One write through `writer`, the write registration: waits until there is room.
fn poll_written(
    writer: &AsyncFd<TcpStream>,
    cx: &mut Context<'_>,
    wanted: usize,
    write: &mut impl FnMut(&TcpStream) -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        let mut ready = ready!(writer.poll_write_ready(cx))?;
        match ready.try_io(|stream| write(stream.get_ref())) {
            Ok(Ok(written)) => {
                // A short write filled the socket: wait for room rather than learn it from
                // an EAGAIN.
                if written < wanted {
                    ready.clear_ready();
                }
                return Poll::Ready(Ok(written));
            }
            Ok(Err(error)) => return Poll::Ready(Err(error)),
            // The readiness is cleared: the next poll waits for room.
            Err(_would_block) => {}
        }
    }
}

/// `stream` registered with the runtime for `interest` only.
///
/// tokio deprecated the safe constructor because for some types the descriptor behind
/// `as_raw_fd` may change or close while registered (its replacement is `unsafe`, which this
/// workspace forbids). A `TcpStream` owns its descriptor, and the `AsyncFd` owns the stream
/// until it is dropped, which deregisters it before closing: the descriptor cannot change.
#[allow(deprecated)]
fn register(stream: TcpStream, interest: Interest) -> io::Result<AsyncFd<TcpStream>> {
    AsyncFd::with_interest(stream, interest)
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut ready = ready!(self.0.reader.poll_read_ready(cx))?;
            let wanted = buf.remaining().min(READ_BYTES);
            let read = ready.try_io(|stream| {
                SCRATCH.with_borrow_mut(|scratch| {
                    let read = stream.get_ref().read(&mut scratch[..wanted])?;
                    buf.put_slice(&scratch[..read]);
                    Ok(read)
                })
            });
            match read {
                Ok(Ok(read)) => {
                    // A read that got less than it asked for emptied the socket: the next read
                    // waits for the kernel's next event instead of first making a system call
                    // that can only say EAGAIN, as tokio's own `TcpStream` does.
                    if read > 0 && read < wanted {
                        ready.clear_ready();
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(error)) => return Poll::Ready(Err(error)),
                // Readiness was stale: it is cleared now, so the next poll waits for more.
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, buf.len(), |mut stream| stream.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let wanted = bufs.iter().map(|slice| slice.len()).sum();
        self.poll_write_with(cx, wanted, |mut stream| stream.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Writes go straight to the socket.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = self.0.reader.get_ref().shutdown(Shutdown::Write);
        Poll::Ready(match result {
            // Already reset or closed by the client: nothing left to shut.
            Err(error) if error.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair: a [`Socket`] (the accepted side) and tokio's stream at the other end.
    async fn pair() -> (Socket, tokio::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("an address");
        let (peer, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(address), listener.accept());
        let (accepted, _) = accepted.expect("accept");
        (
            Socket::new(accepted).expect("register"),
            peer.expect("connect"),
        )
    }

    #[tokio::test]
    async fn a_write_that_finds_the_socket_full_waits_for_room_and_loses_nothing() {
        let (mut socket, mut peer) = pair().await;
        // Fill the socket while the peer reads nothing, until a write must wait.
        let chunk = vec![7_u8; 64 << 10];
        let mut filled = 0;
        loop {
            let polled = std::future::poll_fn(|cx| {
                Poll::Ready(Pin::new(&mut socket).poll_write(cx, &chunk))
            })
            .await;
            match polled {
                Poll::Ready(written) => filled += written.expect("write"),
                Poll::Pending => break,
            }
        }
        assert!(
            socket.writer().is_some(),
            "the full socket got a write registration"
        );
        // One more chunk waits for room; the peer's reading makes it, and the end follows.
        let writer = {
            let mut socket = socket.clone();
            let last: Vec<u8> = (0..chunk.len()).map(|i| (i % 251) as u8).collect();
            tokio::spawn(async move {
                socket.write_all(&last).await.expect("write");
                socket.shutdown().await.expect("shutdown");
                last
            })
        };
        let mut received = Vec::new();
        // A guard against a lost wake-up, which would hang here, not a measure of speed.
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            peer.read_to_end(&mut received),
        )
        .await
        .expect("the waiting write was woken")
        .expect("read");
        let last = writer.await.expect("the writer");
        assert_eq!(received.len(), filled + last.len(), "no byte lost");
        assert!(
            received[filled..] == last[..],
            "the waiting write arrives after the rest"
        );
        assert!(
            socket.writer().is_none(),
            "the duplicate is closed once a write went out whole"
        );
    }

    #[tokio::test]
    async fn vectored_writes_and_reads_carry_every_byte_both_ways() {
        let (mut socket, mut peer) = pair().await;
        let slices = [
            io::IoSlice::new(b"HTTP/1.1 200 OK\r\n"),
            io::IoSlice::new(b"\r\nbody"),
        ];
        let written = socket.write_vectored(&slices).await.expect("writev");
        assert_eq!(written, 23, "a small vectored write goes out whole");
        let mut head = [0_u8; 23];
        peer.read_exact(&mut head).await.expect("read");
        assert_eq!(&head, b"HTTP/1.1 200 OK\r\n\r\nbody");
        // A read into a small buffer leaves the rest for the next one.
        peer.write_all(b"POST /mcp").await.expect("write");
        let mut first = [0_u8; 4];
        socket.read_exact(&mut first).await.expect("read");
        let mut rest = [0_u8; 5];
        socket.read_exact(&mut rest).await.expect("read the rest");
        assert_eq!((&first, &rest), (b"POST", b" /mcp"));
        assert!(socket.writer().is_none(), "no write found the socket full");
    }

    #[tokio::test]
    async fn what_is_left_after_a_full_read_is_read_without_waiting_for_more() {
        let (mut socket, mut peer) = pair().await;
        // More than one read takes, all in the socket before the first read; nothing follows
        // (the peer stays open), so a read that wrongly waited for the kernel's next event
        // would wait forever.
        let sent = vec![3_u8; 3 * READ_BYTES + 100];
        peer.write_all(&sent).await.expect("write");
        let mut received = vec![0_u8; 0];
        let mut buffer = vec![0_u8; 4 * READ_BYTES];
        while received.len() < sent.len() {
            // A guard against that wait, not a measure of speed.
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(30), socket.read(&mut buffer))
                    .await
                    .expect("the rest was read without a new event")
                    .expect("read");
            assert!(read <= READ_BYTES, "one read takes at most READ_BYTES");
            received.extend_from_slice(&buffer[..read]);
        }
        assert!(received == sent);
    }

    #[tokio::test]
    async fn a_peek_takes_nothing_and_sees_the_end_as_zero() {
        let (mut socket, mut peer) = pair().await;
        peer.write_all(b"GET").await.expect("write");
        let mut probe = [0_u8; 8];
        assert_eq!(socket.peek(&mut probe).await.expect("peek"), 3);
        let mut read = [0_u8; 3];
        socket.read_exact(&mut read).await.expect("read");
        assert_eq!(&read, b"GET", "the peeked bytes are still there");
        peer.shutdown().await.expect("shutdown");
        assert_eq!(socket.peek(&mut probe).await.expect("peek at the end"), 0);
        assert_eq!(socket.read(&mut read).await.expect("read at the end"), 0);
    }
}
