//! [`Http`]: an execution as a POST to a web service, its response streamed into the cell.
//!
//! HTTP/1.1 over TCP (`http://`) or TLS (`https://`, rustls with Mozilla's roots plus any
//! CA file given), by hyper: every read is bounded (a response head of at most 64 KiB, chunk
//! framing checked, an error body cut at 1 KiB), `1xx` responses are skipped, and a body
//! shorter than its `Content-Length` is an error, never a success.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use runtime_core::{ExecutionContext, ExecutionError, ExecutionHandler, Outcome};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::net::{Endpoint, chain};
use crate::process::{Pipe, in_backend_span, stream_text};
use crate::tls::CaFileError;

/// The most of an error response's body shown.
const ERROR_BODY: usize = 1024;
/// What the client offers in TLS's ALPN.
const ALPN: &[&[u8]] = &[b"http/1.1"];
/// The largest response head accepted (and hyper's read buffer).
const MAX_HEAD: usize = 64 * 1024;

/// A configuration [`Http`] refuses. Messages never hold a header's value, and never the
/// URL (its query could hold a key).
#[derive(Debug, thiserror::Error)]
pub enum HttpConfigError {
    /// Not `http://host[:port][/path]` or `https://…`.
    #[error("expected a URL like http://host:port/path or https://host/path")]
    InvalidUrl,
    /// A URL with a user name or password in it.
    #[error("the URL holds credentials (user:password@); send them in a header instead")]
    CredentialsInUrl,
    /// A header name that is not a token.
    #[error("{0:?} is not a valid header name")]
    InvalidHeaderName(String),
    /// A header value with a control character (CR, LF, NUL…) in it.
    #[error(
        "the value of header {0:?} is not valid (it holds a control character such as CR or LF)"
    )]
    InvalidHeaderValue(String),
    /// The CA file could not be read or holds no certificate.
    #[error(transparent)]
    CaFile(#[from] CaFileError),
    /// TLS could not be set up with these certificates.
    #[error("TLS settings: {0}")]
    Tls(String),
}

/// POSTs each execution as JSON to a URL and streams the response body into the cell's
/// stdout as it arrives.
///
/// The request body is
/// `{"queueId", "cellId", "cellType", "source", "executionCount"}`. A status of 400 or
/// more ends the execution as an error carrying the status and the body's first KiB. A
/// connection or TLS handshake that fails is [`ExecutionError::Unavailable`] (nothing was
/// sent, so a [`Fallback`](runtime_core::handler::Fallback) may try another backend).
/// `timeout` bounds the whole exchange and ends it `timed_out`; cancel closes the
/// connection.
///
/// Header values (an `Authorization` token) never appear in `Debug` output, logs or errors.
///
/// ```
/// use std::time::Duration;
/// use runtime_native::http::Http;
///
/// let http = Http::new("https://models.example.test/v1/run")?
///     .timeout(Duration::from_secs(30))
///     .header("Authorization", "Bearer my-token")?;
/// # fn takes(_: impl runtime_core::ExecutionHandler) {}
/// # takes(http);
/// # Ok::<(), runtime_native::http::HttpConfigError>(())
/// ```
#[derive(Clone)]
pub struct Http {
    /// Where it posts, and how it connects (TLS settings for an `https://` URL).
    endpoint: Endpoint,
    /// The URL, kept to rebuild the endpoint when a CA file is added.
    url: String,
    extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    timeout: Option<Duration>,
    headers: Vec<(HeaderName, HeaderValue)>,
    name: String,
}

impl Http {
    /// A backend posting to `url` (`http://host[:port][/path]` or `https://…`).
    pub fn new(url: &str) -> Result<Self, HttpConfigError> {
        Ok(Http {
            endpoint: Endpoint::new(url, &[], ALPN)?,
            url: url.to_owned(),
            extra_roots: Vec::new(),
            timeout: None,
            headers: Vec::new(),
            name: "http".to_owned(),
        })
    }

    /// The longest the whole exchange may take before it ends `timed_out`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A request header to send (e.g. `Authorization`). A name that is not a token or a
    /// value holding a control character is refused, so no header can be injected.
    pub fn header(
        mut self,
        name: impl AsRef<str>,
        value: impl AsRef<str>,
    ) -> Result<Self, HttpConfigError> {
        let name = name.as_ref();
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpConfigError::InvalidHeaderName(name.to_owned()))?;
        let mut value = HeaderValue::from_str(value.as_ref())
            .map_err(|_| HttpConfigError::InvalidHeaderValue(name.to_owned()))?;
        value.set_sensitive(true);
        self.headers.push((header, value));
        Ok(self)
    }

    /// Also trusts the certificates of a PEM file (a private CA, a self-signed local
    /// server) for `https://` URLs, beside Mozilla's roots.
    pub fn ca_file(mut self, path: &Path) -> Result<Self, HttpConfigError> {
        let certificates = crate::tls::read_certificates(path)?;
        self.extra_roots.extend(certificates);
        self.endpoint = Endpoint::new(&self.url, &self.extra_roots, ALPN)?;
        Ok(self)
    }

    /// The name logs and the completion's `backend` metadata use (default `http`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The request: the JSON body and the configured headers.
    fn request(&self, ctx: &ExecutionContext) -> Result<Request<Full<Bytes>>, ExecutionError> {
        let body = json!({
            "queueId": ctx.queue_id(),
            "cellId": ctx.cell_id(),
            "cellType": ctx.cell_type(),
            "source": ctx.source(),
            "executionCount": ctx.execution_count(),
        })
        .to_string();
        let uri = self.endpoint.uri();
        let target = uri.path_and_query().map_or("/", |path| path.as_str());
        let mut request = Request::post(target)
            .header(
                HOST,
                uri.authority().map_or("", |authority| authority.as_str()),
            )
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| failed(format!("could not build the request: {error}")))?;
        request.headers_mut().extend(self.headers.iter().cloned());
        Ok(request)
    }

    async fn exchange(&self, ctx: &ExecutionContext) -> Result<Outcome, ExecutionError> {
        let stream = self
            .endpoint
            .connect()
            .await
            .map_err(ExecutionError::Unavailable)?;
        self.exchange_over(stream, ctx).await
    }

    async fn exchange_over<S>(
        &self,
        stream: S,
        ctx: &ExecutionContext,
    ) -> Result<Outcome, ExecutionError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_HEAD)
            .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|error| failed(format!("the connection failed: {}", chain(&error))))?;
        // The connection is driven beside the exchange; its errors reach the exchange
        // through the response or its body.
        let drive = async {
            if let Err(error) = connection.await {
                tracing::debug!(error = %chain(&error), "the HTTP connection ended");
            }
            // Once done, it leaves the exchange to read what it delivered.
            std::future::pending::<std::convert::Infallible>().await
        };
        let exchange = async {
            let response = sender
                .send_request(self.request(ctx)?)
                .await
                .map_err(|error| failed(format!("the exchange failed: {}", chain(&error))))?;
            self.show(response, ctx).await
        };
        tokio::select! {
            result = exchange => result,
            never = drive => match never {},
        }
    }

    /// Shows the response: its body into the cell, or an error with its first KiB.
    async fn show(
        &self,
        response: Response<Incoming>,
        ctx: &ExecutionContext,
    ) -> Result<Outcome, ExecutionError> {
        let status = response.status();
        ctx.annotate("httpStatus", status.as_u16());
        let mut body = response.into_body();
        if status.as_u16() >= 400 {
            let mut shown = Vec::new();
            while shown.len() < ERROR_BODY {
                match body.frame().await {
                    Some(Ok(frame)) => shown.extend(frame.into_data().unwrap_or_default()),
                    Some(Err(_)) | None => break,
                }
            }
            shown.truncate(ERROR_BODY);
            return Err(ExecutionError::new(
                "HttpError",
                format!(
                    "HTTP {}: {}",
                    status,
                    String::from_utf8_lossy(&shown).trim_end()
                ),
            ));
        }
        // The body flows through a pipe, so it is shown line by line as it comes.
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let copy = async {
            let result = loop {
                match body.frame().await {
                    None => break Ok(()),
                    Some(Err(error)) => {
                        break Err(failed(format!(
                            "the response body broke off: {}",
                            chain(&error)
                        )));
                    }
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        if writer.write_all(&data).await.is_err() {
                            break Ok(());
                        }
                    }
                }
            };
            drop(writer);
            result
        };
        let show = stream_text(Pipe::new(reader), ctx, |ctx, text| ctx.stdout(text));
        let (copied, ()) = tokio::join!(copy, show);
        copied.map(|()| Outcome::default())
    }
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("host", &self.endpoint.host())
            .field("port", &self.endpoint.port())
            .field("https", &self.endpoint.is_tls())
            .field("timeout", &self.timeout)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .field("name", &self.name)
            .finish()
    }
}

#[async_trait::async_trait]
impl ExecutionHandler for Http {
    async fn execute(&self, ctx: ExecutionContext) -> Result<Outcome, ExecutionError> {
        in_backend_span(&ctx, "http", &self.name, async {
            let deadline = async {
                match self.timeout {
                    Some(timeout) => tokio::time::sleep(timeout).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                result = self.exchange(&ctx) => result,
                _ = ctx.cancelled() => Err(ExecutionError::Cancelled),
                () = deadline => Err(ExecutionError::TimedOut(self.timeout.unwrap_or_default())),
            }
        })
        .await
    }
}

fn failed(message: String) -> ExecutionError {
    ExecutionError::new("HttpError", message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_are_parsed_or_refused_clearly() {
        let http = Http::new("http://127.0.0.1:9000/run?x=1").unwrap();
        assert_eq!(
            (http.endpoint.host(), http.endpoint.port()),
            ("127.0.0.1", 9000)
        );
        assert_eq!(
            http.endpoint.uri().path_and_query().unwrap().as_str(),
            "/run?x=1"
        );
        let http = Http::new("http://localhost").unwrap();
        assert_eq!(http.endpoint.port(), 80);
        let http = Http::new("http://[::1]:8080/run").unwrap();
        assert_eq!((http.endpoint.host(), http.endpoint.port()), ("::1", 8080));
        let http = Http::new("https://example.test/").unwrap();
        assert_eq!(http.endpoint.port(), 443);
        assert!(http.endpoint.is_tls());
        assert!(Http::new("http://[::1/").is_err());
        assert!(Http::new("ftp://x").is_err());
        assert!(Http::new("http://host:notaport/").is_err());
        assert!(Http::new("/just/a/path").is_err());
        let error = Http::new("http://user:hunter2@host/").unwrap_err();
        assert!(matches!(error, HttpConfigError::CredentialsInUrl));
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn header_values_are_checked_and_never_shown() {
        let http = Http::new("http://h/")
            .unwrap()
            .header("Authorization", "Bearer s3cret")
            .unwrap();
        let debug = format!("{http:?}");
        assert!(
            debug.contains("authorization") && !debug.contains("s3cret"),
            "{debug}"
        );
        let error = Http::new("http://h/")
            .unwrap()
            .header("X-Token", "s3cret\r\nX-Injected: yes")
            .unwrap_err();
        assert!(matches!(error, HttpConfigError::InvalidHeaderValue(_)));
        assert!(!error.to_string().contains("s3cret"), "{error}");
        assert!(
            Http::new("http://h/")
                .unwrap()
                .header("Bad Name", "x")
                .is_err()
        );
    }
}
