//! [`Http`]: an execution as a POST to a web service, its response streamed into the cell.
//!
//! A small HTTP/1.1 client for `http://` URLs (a local model server, an internal
//! service, a sidecar). `https://` is refused with a clear error: put a local TLS proxy in
//! front, or use a [`Job`](crate::process::Job) running `curl`.

use std::time::Duration;

use runtime_core::{ExecutionContext, ExecutionError, ExecutionHandler, Outcome};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::process::{Pipe, in_backend_span, stream_text};

/// The most of an error response's body shown.
const ERROR_BODY: usize = 1024;
/// The longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// A URL [`Http`] cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpUrlError {
    /// Not `http://host[:port][/path]`.
    #[error("expected a URL like http://host:port/path, got {0:?}")]
    Invalid(String),
    /// `https://` is not supported by this client.
    #[error("https is not supported ({0:?}); use an http:// URL, e.g. a local TLS proxy")]
    Https(String),
}

/// POSTs each execution as JSON to a URL and streams the response body into the cell's
/// stdout as it arrives.
///
/// The request body is
/// `{"queueId", "cellId", "cellType", "source", "executionCount"}`. A status of 400 or
/// more ends the execution as an error carrying the status and the body's first KiB; a
/// refused connection is [`ExecutionError::Unavailable`] (nothing was sent, so a
/// [`Fallback`](runtime_core::handler::Fallback) may try another backend). `timeout`
/// bounds the whole exchange and ends it `timed_out`; cancel closes the connection.
///
/// Header values (an `Authorization` token) never appear in `Debug` output or logs.
///
/// ```
/// use std::time::Duration;
/// use runtime_native::http::Http;
///
/// let http = Http::new("http://127.0.0.1:9000/run")?
///     .timeout(Duration::from_secs(30))
///     .header("Authorization", "Bearer my-token");
/// # fn takes(_: impl runtime_core::ExecutionHandler) {}
/// # takes(http);
/// # Ok::<(), runtime_native::http::HttpUrlError>(())
/// ```
#[derive(Clone)]
pub struct Http {
    url: String,
    host: String,
    port: u16,
    path: String,
    timeout: Option<Duration>,
    headers: Vec<(String, String)>,
    name: String,
}

impl Http {
    /// A backend posting to `url` (`http://host[:port][/path]`).
    pub fn new(url: &str) -> Result<Self, HttpUrlError> {
        if url.starts_with("https://") {
            return Err(HttpUrlError::Https(url.to_owned()));
        }
        let invalid = || HttpUrlError::Invalid(url.to_owned());
        let rest = url.strip_prefix("http://").ok_or_else(invalid)?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        let port_of = |text: &str| text.parse::<u16>().map_err(|_| invalid());
        let (host, port) = match authority.strip_prefix('[') {
            // An IPv6 address: `[::1]` or `[::1]:8080`.
            Some(bracketed) => match bracketed.split_once(']') {
                Some((host, "")) => (host, 80),
                Some((host, rest)) => (host, port_of(rest.strip_prefix(':').ok_or_else(invalid)?)?),
                None => return Err(invalid()),
            },
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, port_of(port)?),
                None => (authority, 80),
            },
        };
        if host.is_empty() || path.contains(char::is_whitespace) {
            return Err(invalid());
        }
        Ok(Http {
            url: url.to_owned(),
            host: host.to_owned(),
            port,
            path: path.to_owned(),
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

    /// A request header to send (e.g. `Authorization`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The name logs and the completion's `backend` metadata use (default `http`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The request: head and JSON body.
    fn request(&self, ctx: &ExecutionContext) -> Vec<u8> {
        let body = json!({
            "queueId": ctx.queue_id(),
            "cellId": ctx.cell_id(),
            "cellType": ctx.cell_type(),
            "source": ctx.source(),
            "executionCount": ctx.execution_count(),
        })
        .to_string();
        // An IPv6 address goes back in brackets.
        let host = match self.host.contains(':') {
            true => format!("[{}]", self.host),
            false => self.host.clone(),
        };
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n",
            self.path,
            host,
            self.port,
            body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend(body.into_bytes());
        request
    }

    async fn exchange(&self, ctx: &ExecutionContext) -> Result<Outcome, ExecutionError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|error| {
                ExecutionError::Unavailable(format!("could not connect to {}: {error}", self.url))
            })?;
        let mut stream = BufReader::new(stream);
        stream
            .get_mut()
            .write_all(&self.request(ctx))
            .await
            .map_err(|error| failed(format!("sending the request failed: {error}")))?;
        let head = read_head(&mut stream).await?;
        ctx.annotate("httpStatus", head.status);
        if head.status >= 400 {
            let mut body = Vec::new();
            let _ = read_body(&mut stream, &head, &mut body, ERROR_BODY).await;
            body.truncate(ERROR_BODY);
            let body = String::from_utf8_lossy(&body);
            return Err(ExecutionError::new(
                "HttpError",
                format!("HTTP {} {}: {}", head.status, head.reason, body.trim_end()),
            ));
        }
        // The decoded body flows through a pipe, so it is shown line by line as it comes.
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let decode = async {
            let result = read_body(&mut stream, &head, &mut writer, usize::MAX).await;
            drop(writer);
            result
        };
        let show = stream_text(Pipe::new(reader), ctx, |ctx, text| ctx.stdout(text));
        let (decoded, ()) = tokio::join!(decode, show);
        decoded.map(|_| Outcome::default())
    }
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("url", &self.url)
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

/// A response's status line and the headers that frame its body.
struct Head {
    status: u16,
    reason: String,
    chunked: bool,
    length: Option<u64>,
}

async fn read_head<R: AsyncRead + Unpin>(
    stream: &mut BufReader<R>,
) -> Result<Head, ExecutionError> {
    let mut used = 0;
    let mut line = String::new();
    let mut next_line = async |line: &mut String| -> Result<(), ExecutionError> {
        line.clear();
        let read = stream
            .read_line(line)
            .await
            .map_err(|error| failed(format!("reading the response failed: {error}")))?;
        used += read;
        if read == 0 || used > MAX_HEAD {
            return Err(failed(
                "the response ended early or its head is too long".to_owned(),
            ));
        }
        Ok(())
    };
    next_line(&mut line).await?;
    let mut parts = line.trim_end().splitn(3, ' ');
    let (Some(version), Some(status)) = (parts.next(), parts.next()) else {
        return Err(failed(format!(
            "not an HTTP response: {:?}",
            line.trim_end()
        )));
    };
    let status: u16 = match (version.starts_with("HTTP/1."), status.parse()) {
        (true, Ok(status)) => status,
        _ => {
            return Err(failed(format!(
                "not an HTTP response: {:?}",
                line.trim_end()
            )));
        }
    };
    let reason = parts.next().unwrap_or_default().to_owned();
    let mut head = Head {
        status,
        reason,
        chunked: false,
        length: None,
    };
    loop {
        next_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            return Ok(head);
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "transfer-encoding" => head.chunked = value.to_ascii_lowercase().contains("chunked"),
            "content-length" => head.length = value.parse().ok(),
            _ => {}
        }
    }
}

/// Copies the body (chunked, sized, or until close) into `out`, stopping after `limit`
/// bytes.
async fn read_body<R, W>(
    stream: &mut BufReader<R>,
    head: &Head,
    out: &mut W,
    limit: usize,
) -> Result<(), ExecutionError>
where
    R: AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let broken =
        |error: std::io::Error| failed(format!("reading the response body failed: {error}"));
    let mut copied = 0usize;
    if !head.chunked {
        let mut body = stream.take(head.length.unwrap_or(u64::MAX));
        let mut buf = vec![0; 16 * 1024];
        while copied < limit {
            let read = body.read(&mut buf).await.map_err(broken)?;
            if read == 0 {
                break;
            }
            out.write_all(&buf[..read]).await.map_err(broken)?;
            copied += read;
        }
        return Ok(());
    }
    let mut line = String::new();
    while copied < limit {
        line.clear();
        stream.read_line(&mut line).await.map_err(broken)?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| failed(format!("bad chunk size {:?}", line.trim())))?;
        if size == 0 {
            return Ok(());
        }
        let mut chunk = (&mut *stream).take(size as u64);
        let copied_now = tokio::io::copy(&mut chunk, out).await.map_err(broken)?;
        if copied_now < size as u64 {
            return Err(failed("the response ended inside a chunk".to_owned()));
        }
        copied += size;
        line.clear();
        stream.read_line(&mut line).await.map_err(broken)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_are_parsed_or_refused_clearly() {
        let http = Http::new("http://127.0.0.1:9000/run?x=1").unwrap();
        assert_eq!(
            (http.host.as_str(), http.port, http.path.as_str()),
            ("127.0.0.1", 9000, "/run?x=1")
        );
        let http = Http::new("http://localhost").unwrap();
        assert_eq!((http.port, http.path.as_str()), (80, "/"));
        let http = Http::new("http://[::1]:8080/run").unwrap();
        assert_eq!(
            (http.host.as_str(), http.port, http.path.as_str()),
            ("::1", 8080, "/run")
        );
        let http = Http::new("http://[::1]/").unwrap();
        assert_eq!((http.host.as_str(), http.port), ("::1", 80));
        assert!(Http::new("http://[::1/").is_err());
        assert!(Http::new("http://[::1]x/").is_err());
        assert_eq!(
            Http::new("https://example.test/").unwrap_err().to_string(),
            "https is not supported (\"https://example.test/\"); use an http:// URL, e.g. a local TLS proxy"
        );
        assert!(Http::new("ftp://x").is_err());
        assert!(Http::new("http://host:notaport/").is_err());
        let debug = format!(
            "{:?}",
            Http::new("http://h/")
                .unwrap()
                .header("Authorization", "Bearer s3cret")
        );
        assert!(
            debug.contains("Authorization") && !debug.contains("s3cret"),
            "{debug}"
        );
    }
}
