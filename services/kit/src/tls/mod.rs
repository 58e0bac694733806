//! Mutual TLS inside the mesh (rustls on ring): the certificate, key and CA
//! bundle a service is given, reloaded from disk when they change; the
//! accepting side, which learns each caller's SPIFFE identity from its
//! certificate; and the connecting side of outgoing calls.
//!
//! A service given `--tls-cert`, `--tls-key` and `--tls-ca` serves only TLS
//! and calls its `https://` upstreams over TLS, presenting its own certificate. A
//! caller's certificate is optional at the handshake, so health probes and
//! reflection still work without one, but one that is presented must be
//! signed by the CA; every other method is refused to a caller without an
//! identity (see [`crate::authz`]).

use std::convert::Infallible;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

mod stream;

pub use stream::{ClientStream, Connector, MaybeTls, MeshPeer, MeshStream};

/// Longest a peer may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the files are read again for a rotation.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The flags of mutual TLS, part of every service's flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// This service's certificate (PEM), as `ferrymesh certs init` makes it;
    /// with --tls-key and --tls-ca the service serves only mutual TLS (the
    /// gateway: to the mesh, not its clients) and calls https:// upstreams
    /// over it. The files are read again every second, so a rotated
    /// certificate is used without a restart.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,
    /// The mesh's CA bundle (PEM): peers must present certificates one of these signed.
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The files of `DIR/SERVICE.pem`, `DIR/SERVICE.key` and `DIR/ca.pem`, as `ferrymesh certs init` writes them.
    pub fn from_dir(dir: &Path, service: &str) -> TlsArgs {
        TlsArgs {
            tls_cert: Some(dir.join(format!("{service}.pem"))),
            tls_key: Some(dir.join(format!("{service}.key"))),
            tls_ca: Some(dir.join("ca.pem")),
        }
    }
}

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind wanted.
    #[error("{path} holds no {what} in PEM")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
    },
    /// The certificate names no SPIFFE identity.
    #[error(
        "{path} names no identity: it needs a URI SAN spiffe://DOMAIN/ns/NAMESPACE/sa/NAME, as `ferrymesh certs` writes"
    )]
    NoIdentity {
        /// The certificate file.
        path: PathBuf,
    },
    /// rustls refused the certificate, the key or the pair.
    #[error("the certificate and key cannot be used: {0}")]
    Rustls(#[from] rustls::Error),
    /// The CA bundle cannot verify callers.
    #[error("the CA bundle cannot be used: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// A workload identity: `spiffe://DOMAIN/ns/NAMESPACE/sa/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity(Arc<str>);

impl Identity {
    /// Parses a SPIFFE ID with an `/sa/NAME` path; anything else is `None`.
    pub fn parse(uri: &str) -> Option<Identity> {
        let rest = uri.strip_prefix("spiffe://")?;
        let (domain, path) = rest.split_once('/')?;
        let (_, name) = path.rsplit_once("sa/")?;
        let fine = |s: &str| {
            !s.is_empty()
                && s.len() <= 255
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        };
        (fine(domain) && fine(name) && uri.len() <= 2048).then(|| Identity(uri.into()))
    }

    /// The identity named in a DER certificate's URI SANs.
    pub fn of_certificate(der: &CertificateDer<'_>) -> Option<Identity> {
        let cert = webpki::EndEntityCert::try_from(der).ok()?;
        cert.valid_uri_names().find_map(Identity::parse)
    }

    /// An identity no certificate can carry (its trust domain is empty).
    pub fn nobody() -> Identity {
        Identity("spiffe:///sa/".into())
    }

    /// The trust domain, e.g. `ferrymesh.local`.
    pub fn trust_domain(&self) -> &str {
        let rest = self.0.strip_prefix("spiffe://").unwrap_or(&self.0);
        rest.split_once('/').map_or(rest, |(domain, _)| domain)
    }

    /// The workload's name, the last segment: `orders`.
    pub fn name(&self) -> &str {
        self.0.rsplit_once("sa/").map_or(&self.0, |(_, name)| name)
    }

    /// The whole URI.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one load of the files gives.
struct Loaded {
    server: Arc<ServerConfig>,
    /// None for a public certificate (no CA given): nothing to call with.
    client: Option<Arc<ClientConfig>>,
    identity: Option<Identity>,
}

/// A service's TLS material, current as of the last read of its files.
pub struct MeshTls {
    args: TlsArgs,
    current: arc_swap::ArcSwap<Loaded>,
    /// A fingerprint of the files' bytes at the last attempt, loaded or not.
    seen: Mutex<u64>,
}

impl std::fmt::Debug for MeshTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshTls")
            .field("identity", &self.identity())
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn fingerprint(files: &[Vec<u8>; 3]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    files.hash(&mut hasher);
    hasher.finish()
}

impl MeshTls {
    /// The material named by `args`, shared by everything in the process
    /// that names the same files and reloaded every second while in use;
    /// `None` when `args` name none.
    pub fn from_args(args: &TlsArgs) -> Result<Option<Arc<MeshTls>>, TlsError> {
        if args.tls_cert.is_none() {
            return Ok(None);
        }
        MeshTls::shared(args).map(Some)
    }

    /// The one instance for `args`' files, made (and watched) when none is in use.
    fn shared(args: &TlsArgs) -> Result<Arc<MeshTls>, TlsError> {
        static SHARED: Mutex<Vec<Weak<MeshTls>>> = Mutex::new(Vec::new());
        let mut shared = SHARED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        shared.retain(|w| w.strong_count() > 0);
        let same = |t: &MeshTls| {
            t.args.tls_cert == args.tls_cert && t.args.tls_key == args.tls_key && t.args.tls_ca == args.tls_ca
        };
        if let Some(found) = shared.iter().filter_map(Weak::upgrade).find(|t| same(t)) {
            return Ok(found);
        }
        let tls = Arc::new(MeshTls::load(args.clone())?);
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(watch(Arc::downgrade(&tls)));
        }
        shared.push(Arc::downgrade(&tls));
        Ok(tls)
    }

    /// Reads the files once; [`MeshTls::reload`] reads them again.
    pub fn load(args: TlsArgs) -> Result<MeshTls, TlsError> {
        let (loaded, seen) = build(&args)?;
        Ok(MeshTls {
            args,
            current: arc_swap::ArcSwap::from_pointee(loaded),
            seen: Mutex::new(seen),
        })
    }

    /// Reads the files again; when they changed and make a usable whole,
    /// new connections use them (those open keep theirs). `Ok(true)` when
    /// they were replaced.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let files = self.files()?;
        let print = fingerprint(&files);
        {
            let mut seen = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *seen == print {
                return Ok(false);
            }
            // Not tried again until the files change once more.
            *seen = print;
        }
        let loaded = assemble(&self.args, &files)?;
        self.current.store(Arc::new(loaded));
        Ok(true)
    }

    fn files(&self) -> Result<[Vec<u8>; 3], TlsError> {
        files(&self.args)
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.current.load_full()
    }

    /// A certificate and key for clients outside the mesh (the gateway's
    /// public side): no client certificate is asked for, and the files are
    /// reloaded as the mesh's are.
    pub fn public(cert: PathBuf, key: PathBuf) -> Result<Arc<MeshTls>, TlsError> {
        let args = TlsArgs {
            tls_cert: Some(cert),
            tls_key: Some(key),
            tls_ca: None,
        };
        MeshTls::shared(&args)
    }

    /// This service's own identity, from its certificate (always there
    /// for the mesh's; a public certificate may name none).
    pub fn identity(&self) -> Option<Identity> {
        self.loaded().identity.clone()
    }

    /// The server side of a new connection: the handshake, and the peer's identity.
    pub async fn accept(&self, tcp: TcpStream, remote: SocketAddr) -> std::io::Result<MeshStream> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.loaded().server.clone());
        let stream = acceptor.accept(tcp).await?;
        let identity = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|leaf| Identity::of_certificate(leaf));
        Ok(MeshStream {
            inner: stream,
            peer: MeshPeer { remote, identity },
        })
    }

    /// The client side: the handshake with `host` (a DNS name or IP address
    /// its certificate names), presenting this service's certificate.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        host: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host:?} is not a host name or address"),
            )
        })?;
        let Some(client) = self.loaded().client.clone() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "a public certificate has no client side; give the mesh's CA",
            ));
        };
        let connector = tokio_rustls::TlsConnector::from(client);
        connector.connect(name, tcp).await
    }

    /// Accepts connections on `listener` and yields those whose handshake
    /// succeeds, each handshake on its own task so a slow one holds up no other.
    pub fn incoming(
        self: Arc<Self>,
        listener: TcpListener,
    ) -> tokio_stream::wrappers::ReceiverStream<Result<MeshStream, Infallible>> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, remote) = tokio::select! {
                    // The server stopped accepting: close the socket.
                    () = tx.closed() => break,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::warn!(%error, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let _ = tcp.set_nodelay(true);
                let (tls, tx) = (self.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp, remote)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(Ok(stream)).await;
                        }
                        Ok(Err(error)) => {
                            crate::metrics::record_handshake_refused();
                            tracing::warn!(%remote, %error, "TLS handshake refused");
                        }
                        Err(_) => {
                            crate::metrics::record_handshake_refused();
                            tracing::warn!(%remote, "TLS handshake not finished within {HANDSHAKE_TIMEOUT:?}; closed");
                        }
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }

    /// A connector for tonic channels that speaks TLS with this material.
    pub fn connector(self: &Arc<Self>) -> Connector {
        Connector::new(Some(self.clone()))
    }
}

fn files(args: &TlsArgs) -> Result<[Vec<u8>; 3], TlsError> {
    let path = |p: &Option<PathBuf>| p.clone().unwrap_or_default();
    Ok([
        read(&path(&args.tls_cert))?,
        read(&path(&args.tls_key))?,
        match &args.tls_ca {
            Some(ca) => read(ca)?,
            None => Vec::new(),
        },
    ])
}

fn build(args: &TlsArgs) -> Result<(Loaded, u64), TlsError> {
    let files = files(args)?;
    Ok((assemble(args, &files)?, fingerprint(&files)))
}

fn assemble(args: &TlsArgs, [cert, key, ca]: &[Vec<u8>; 3]) -> Result<Loaded, TlsError> {
    let path = |p: &Option<PathBuf>| p.clone().unwrap_or_default();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .filter_map(Result::ok)
        .collect();
    let leaf = chain.first().ok_or_else(|| TlsError::Pem {
        path: path(&args.tls_cert),
        what: "certificate",
    })?;
    let identity = Identity::of_certificate(leaf);
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| TlsError::Pem {
        path: path(&args.tls_key),
        what: "private key",
    })?;
    let provider = provider();
    if args.tls_ca.is_none() {
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        // A public listener (the gateway's) also serves its web console
        // to HTTP/1.1 clients.
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        return Ok(Loaded {
            server: Arc::new(server),
            client: None,
            identity,
        });
    }
    if identity.is_none() {
        return Err(TlsError::NoIdentity {
            path: path(&args.tls_cert),
        });
    }
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca).filter_map(Result::ok) {
        roots.add(ca)?;
    }
    if roots.is_empty() {
        return Err(TlsError::Pem {
            path: path(&args.tls_ca),
            what: "CA certificate",
        });
    }
    let roots = Arc::new(roots);
    // A caller's certificate is optional here so probes reach health; the
    // authorization layer refuses every other method to a caller without one.
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())?;
    server.alpn_protocols = vec![b"h2".to_vec()];
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    client.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Loaded {
        server: Arc::new(server),
        client: Some(Arc::new(client)),
        identity,
    })
}

/// Reads the files every second while `tls` is in use.
async fn watch(tls: Weak<MeshTls>) {
    loop {
        tokio::time::sleep(RELOAD_EVERY).await;
        let Some(tls) = tls.upgrade() else { return };
        match tls.reload() {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(
                    identity = tls.identity().as_ref().map_or("-", Identity::as_str),
                    "certificates reloaded; new connections use them"
                )
            }
            // A rotation writes the certificate and the key one after the
            // other; the pair is tried again when the second lands.
            Err(error) => tracing::warn!(%error, "certificates not reloaded; the last good ones stay in use"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Identity;

    #[test]
    fn identities_are_spiffe_ids_with_a_service_account() {
        let id = Identity::parse("spiffe://ferrymesh.local/ns/ferrymesh/sa/orders").unwrap();
        assert_eq!((id.trust_domain(), id.name()), ("ferrymesh.local", "orders"));
        for bad in [
            "https://ferrymesh.local/ns/x/sa/orders",
            "spiffe://ferrymesh.local/ns/x/sa/",
            "spiffe:///ns/x/sa/orders",
            "spiffe://ferrymesh.local",
            "spiffe://ferrymesh.local/ns/x",
            "spiffe://ferrymesh.local/ns/x/sa/or ders",
        ] {
            assert!(Identity::parse(bad).is_none(), "{bad}");
        }
    }
}
