//! The connections themselves: an accepted one with its peer's identity,
//! a listener's stream that may or may not be TLS, and the connector of
//! outgoing calls.

use super::*;

/// Who is on the other end of an accepted connection; tonic puts it in
/// every request's extensions.
#[derive(Debug, Clone)]
pub struct MeshPeer {
    /// The peer's address.
    pub remote: SocketAddr,
    /// The identity its certificate names, if it presented one.
    pub identity: Option<Identity>,
}

/// An accepted TLS connection and its peer.
#[derive(Debug)]
pub struct MeshStream {
    pub(super) inner: tokio_rustls::server::TlsStream<TcpStream>,
    pub(super) peer: MeshPeer,
}

impl tonic::transport::server::Connected for MeshStream {
    type ConnectInfo = MeshPeer;

    fn connect_info(&self) -> MeshPeer {
        self.peer.clone()
    }
}

impl AsyncRead for MeshStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for MeshStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A connection that is plaintext or TLS, as one type: the HTTP/2 code
/// that runs over it is then compiled once, not once per kind (which cost
/// the gateway two megabytes of code and of resident memory).
#[derive(Debug)]
pub enum MaybeTls<T> {
    /// Plaintext TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(T),
}

/// An outgoing connection, plaintext or TLS.
pub type ClientStream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_read(cx, buf),
            MaybeTls::Tls(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_write(cx, buf),
            MaybeTls::Tls(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(io) => io.is_write_vectored(),
            MaybeTls::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_flush(cx),
            MaybeTls::Tls(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_shutdown(cx),
            MaybeTls::Tls(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

/// Connects tonic channels: TCP to the URI's host and port with no delay,
/// then, with TLS material, the handshake, verifying the host against the
/// server's certificate.
#[derive(Debug, Clone)]
pub struct Connector {
    tls: Option<Arc<MeshTls>>,
    dial: Option<std::net::SocketAddr>,
}

impl Connector {
    /// Plaintext, or TLS with `tls`.
    pub fn new(tls: Option<Arc<MeshTls>>) -> Connector {
        Connector { tls, dial: None }
    }

    /// As [`Connector::new`], but connecting to `address` (one instance of
    /// the URI's host) while still verifying the URI's host name.
    pub fn dialing(tls: Option<Arc<MeshTls>>, address: std::net::SocketAddr) -> Connector {
        Connector {
            tls,
            dial: Some(address),
        }
    }
}

impl tower::Service<http::Uri> for Connector {
    type Response = hyper_util::rt::TokioIo<ClientStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let (tls, dial) = (self.tls.clone(), self.dial);
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().to_string();
            let port = uri.port_u16().unwrap_or(if tls.is_some() { 443 } else { 80 });
            let tcp = match dial {
                Some(address) => TcpStream::connect(address).await?,
                None => {
                    TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port)).await?
                }
            };
            let _ = tcp.set_nodelay(true);
            let stream = match tls {
                None => MaybeTls::Plain(tcp),
                Some(tls) => MaybeTls::Tls(tls.connect(tcp, &host).await?),
            };
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}
