//! What the hub's tests share: test tokens, a hub on 127.0.0.1, an echo agent, and a TCP
//! proxy that cuts its connections on demand.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use runtime_core::sync::{BearerToken, Role};
use runtime_core::*;
use runtime_hub::{Authenticator, Hub, Identity};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A user's token (`alice`).
pub(crate) const ALICE: &str = "alice-token-0123456789";
/// An agent's token (`agent-1`).
pub(crate) const AGENT: &str = "agent-token-0123456789";
/// A user's token (`bob`) for the notebooks `bob-*` only.
pub(crate) const BOB: &str = "bob-token-0123456789";

/// Knows [`ALICE`], [`AGENT`] and [`BOB`].
pub(crate) struct Tokens;

impl Authenticator for Tokens {
    fn authenticate(&self, token: &BearerToken) -> Option<Identity> {
        Some(match token.expose() {
            ALICE => Identity::new("alice", Role::User),
            AGENT => Identity::new("agent-1", Role::Agent),
            BOB => Identity::new("bob", Role::User)
                .on(runtime_hub::NotebookAccess::Only(vec!["bob-*".into()])),
            _ => return None,
        })
    }
}

/// A hub on 127.0.0.1 over `catalog`; returns its `host:port`.
pub(crate) async fn hub(catalog: Arc<dyn Catalog>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let app = Hub::new(catalog, Arc::new(Tokens)).router();
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// An echo agent for `client_id` on `store`, running; its handle.
pub(crate) fn echo_agent(store: impl Store + 'static, client_id: &str) -> AgentHandle {
    let agent = RuntimeAgent::new(
        store,
        runtime_native::TokioClock,
        Capabilities::code(),
        AgentOptions::new(client_id),
    )
    .unwrap()
    .on_execution(handler::Echo::new(runtime_native::TokioClock));
    let handle = agent.handle();
    tokio::spawn(agent.run());
    handle
}

/// A TCP proxy to `target`.
pub(crate) struct Proxy {
    /// Its `host:port`.
    pub(crate) address: String,
    /// Every change cuts all current connections.
    pub(crate) cut: watch::Sender<u64>,
    /// How many connections it accepted.
    pub(crate) accepted: Arc<AtomicUsize>,
    /// While set, a new connection is closed as soon as it is accepted: the target is
    /// unreachable (cut the current ones too, to take it down).
    pub(crate) offline: Arc<std::sync::atomic::AtomicBool>,
}

/// Forwards TCP to `target` (with TCP_NODELAY on both hops, as the hub and its clients
/// set it).
pub(crate) async fn proxy(target: String) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (cut, cuts) = watch::channel(0u64);
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let offline = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let down = offline.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            if down.load(Ordering::SeqCst) {
                continue; // dropped: closed at once
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let target = target.clone();
            let mut cuts = cuts.clone();
            cuts.mark_unchanged();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = cuts.changed() => {}
                }
            });
        }
    });
    Proxy {
        address,
        cut,
        accepted,
        offline,
    }
}

/// A TLS-terminating proxy on 127.0.0.1 in front of `target` (`host:port`), with a new
/// self-signed certificate for `localhost`; returns its port, the certificate's PEM file
/// and the directory holding it.
pub(crate) async fn tls_proxy(target: String) -> (u16, std::path::PathBuf, tempfile::TempDir) {
    use tokio_rustls::rustls;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, certified.cert.pem()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![certified.cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let (acceptor, target) = (acceptor.clone(), target.clone());
            tokio::spawn(async move {
                let Ok(mut inbound) = acceptor.accept(inbound).await else {
                    return;
                };
                let Ok(mut outbound) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (port, ca_file, dir)
}
