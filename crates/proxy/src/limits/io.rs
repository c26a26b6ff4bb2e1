//! The client socket, shared between hyper (which reads and writes it) and the connection's
//! watchdog task (which only peeks at it, to notice a client gone away while hyper is not
//! reading; see [`super::Watchdog::closed`]).

use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream that hyper drives through `AsyncRead`/`AsyncWrite` while others hold a
/// reference for peeking.
#[derive(Clone, Debug)]
pub(crate) struct SharedStream(Arc<TcpStream>);

impl SharedStream {
    /// Shares `stream`.
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self(Arc::new(stream))
    }

    /// The stream, for peeking.
    pub(crate) fn get(&self) -> &TcpStream {
        &self.0
    }

    /// After a short transfer (`done` of `wanted` bytes, neither none nor all) the socket has
    /// no more to read or no more room to write: forget its readiness now, as tokio's own
    /// `TcpStream` does, so the next read or write waits for the kernel's next event instead
    /// of first making a system call that can only say EAGAIN.
    ///
    /// `try_io` clears the readiness when its closure says `WouldBlock`, with no system call,
    /// and never clears an event that came later (a later tick).
    fn after_transfer(&self, done: usize, wanted: usize, interest: Interest) {
        if done > 0 && done < wanted {
            let _ = self
                .0
                .try_io(interest, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
        }
    }
}

impl AsyncRead for SharedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            let wanted = buf.remaining();
            match self.0.try_read_buf(buf) {
                Ok(read) => {
                    self.after_transfer(read, wanted, Interest::READABLE);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale: it is cleared now, so the next poll waits for more.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                written => {
                    if let Ok(n) = written {
                        self.after_transfer(n, buf.len(), Interest::WRITABLE);
                    }
                    return Poll::Ready(written);
                }
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                written => {
                    if let Ok(n) = written {
                        let wanted = bufs.iter().map(|slice| slice.len()).sum();
                        self.after_transfer(n, wanted, Interest::WRITABLE);
                    }
                    return Poll::Ready(written);
                }
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Writes go straight to the socket.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = socket2::SockRef::from(&*self.0).shutdown(Shutdown::Write);
        Poll::Ready(match result {
            // Already reset or closed by the client: nothing left to shut.
            Err(error) if error.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}
