//! One HTTP endpoint: a URL's host and port, reached over TCP (`http://`) or TLS
//! (`https://`, rustls with Mozilla's roots plus any extra ones). The HTTP backend and the
//! runtime manager's downloads both connect through it.

use std::sync::Arc;

use hyper::Uri;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;

use crate::http::HttpConfigError;

/// A connection, plain or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where requests go: a checked URL, and TLS settings for `https://`.
#[derive(Clone)]
pub(crate) struct Endpoint {
    uri: Uri,
    host: String,
    port: u16,
    tls: Option<Arc<ClientConfig>>,
}

impl Endpoint {
    /// `url` (`http://host[:port][/path]` or `https://…`), trusting `extra_roots` beside
    /// Mozilla's for TLS and offering `alpn`. A URL with credentials in it is refused.
    pub(crate) fn new(
        url: &str,
        extra_roots: &[CertificateDer<'static>],
        alpn: &[&[u8]],
    ) -> Result<Self, HttpConfigError> {
        let uri: Uri = url.parse().map_err(|_| HttpConfigError::InvalidUrl)?;
        let authority = uri.authority().ok_or(HttpConfigError::InvalidUrl)?;
        if authority.as_str().contains('@') {
            return Err(HttpConfigError::CredentialsInUrl);
        }
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(HttpConfigError::InvalidUrl),
        };
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        // Whatever follows the host must be a port number.
        let after_host = &authority.as_str()[authority.host().len()..];
        let port_is_valid = after_host.is_empty()
            || after_host
                .strip_prefix(':')
                .is_some_and(|port| port.parse::<u16>().is_ok());
        if host.is_empty() || !port_is_valid {
            return Err(HttpConfigError::InvalidUrl);
        }
        let tls = if https {
            Some(crate::tls::client_config(extra_roots, alpn).map_err(HttpConfigError::Tls)?)
        } else {
            None
        };
        Ok(Endpoint {
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            host: host.to_owned(),
            uri,
            tls,
        })
    }

    /// The URL.
    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The host, without brackets around an IPv6 address.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `true` for `https://`.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens a connection: TCP, then the TLS handshake for `https://`. The error says
    /// which step failed, and where.
    pub(crate) async fn connect(&self) -> Result<Box<dyn Io>, String> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|error| {
                format!("could not connect to {}:{}: {error}", self.host, self.port)
            })?;
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Box::new(stream));
        };
        let server_name = rustls_pki_types::ServerName::try_from(self.host.clone())
            .map_err(|error| format!("bad TLS server name: {error}"))?;
        let stream = TlsConnector::from(tls.clone())
            .connect(server_name, stream)
            .await
            .map_err(|error| {
                format!(
                    "the TLS handshake with {}:{} failed: {error}",
                    self.host, self.port
                )
            })?;
        Ok(Box::new(stream))
    }
}

/// An error with its causes, `outer: inner: innermost` (hyper's errors say little alone).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
