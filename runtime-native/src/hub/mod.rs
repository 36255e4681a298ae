//! A notebook's log on a hub, over WebSocket (`docs/sync-protocol.md`): the core's
//! [`HubStore`], connected through tokio-tungstenite and driven on tokio.
//!
//! The protocol (hello, resuming subscriptions, retrying commits by batch id, backoff with
//! full jitter, heartbeats) is `runtime_core::sync`'s, shared with the browser adapter;
//! this module only opens sockets (plain, or TLS with rustls) and spawns the connection
//! task.

mod transport;

use std::path::PathBuf;

use runtime_core::sync::BearerToken;
pub use runtime_core::sync::{ConnectionState, ConnectionWatch, HubStore};

use transport::Tungstenite;

/// How [`connect`] connects and retries.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// Backoff, heartbeat and the commit buffer.
    pub client: runtime_core::sync::HubOptions,
    /// For `wss://`: a PEM file of certificates to trust beside Mozilla's roots (a
    /// private CA, a self-signed hub).
    pub ca_file: Option<PathBuf>,
}

/// Why [`connect`] refused its arguments.
#[derive(Debug, thiserror::Error)]
pub enum HubUrlError {
    /// A bad URL or notebook id.
    #[error(transparent)]
    Url(#[from] runtime_core::sync::HubUrlError),
    /// The TLS settings for `wss://` could not be made.
    #[error("TLS settings: {0}")]
    Tls(String),
    /// Not inside a tokio runtime.
    #[error("runtime_native::hub::connect must be called inside a tokio runtime")]
    NoRuntime,
}

/// Notebook `notebook` on the hub at `url` (`ws://host:port`; `/sync` is added when the
/// URL has no path). Connects in the background, inside the current tokio runtime; calls
/// made before the connection is up wait for it.
///
/// ```no_run
/// use runtime_core::{Store, sync::BearerToken};
/// use runtime_native::hub::{self, ConnectionState, HubOptions};
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let store = hub::connect(
///     "ws://127.0.0.1:7878",
///     BearerToken::new("a-long-random-secret"),
///     "demo",
///     HubOptions::default(),
/// )?;
/// store
///     .connection_state()
///     .wait_for(|state| matches!(state, ConnectionState::Connected { .. }))
///     .await?;
/// # Ok(()) }
/// ```
pub fn connect(
    url: &str,
    token: BearerToken,
    notebook: &str,
    options: HubOptions,
) -> Result<HubStore, HubUrlError> {
    let tls = match url.starts_with("wss://") {
        true => {
            let roots = match &options.ca_file {
                Some(path) => crate::tls::read_certificates(path)
                    .map_err(|error| HubUrlError::Tls(error.to_string()))?,
                None => Vec::new(),
            };
            Some(crate::tls::client_config(&roots, &[]).map_err(HubUrlError::Tls)?)
        }
        false => None,
    };
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| HubUrlError::NoRuntime)?;
    let (store, task) = HubStore::connect(
        url,
        token,
        notebook,
        options.client,
        Tungstenite { tls },
        crate::TokioClock,
    )?;
    runtime.spawn(task);
    Ok(store)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use runtime_core::sync::HubUrlError as UrlError;

    #[tokio::test]
    async fn hub_urls_are_checked_and_never_carry_credentials() {
        let open = |url: &str| connect(url, BearerToken::new("t"), "nb", HubOptions::default());
        assert!(matches!(
            open("http://h:1"),
            Err(HubUrlError::Url(UrlError::Invalid))
        ));
        assert!(matches!(
            open("ws://"),
            Err(HubUrlError::Url(UrlError::Invalid))
        ));
        let refused = open("ws://agent:hunter2@hub:7878").unwrap_err();
        assert!(matches!(
            refused,
            HubUrlError::Url(UrlError::CredentialsInUrl)
        ));
        assert!(!refused.to_string().contains("hunter2"), "{refused}");
        let store = open("ws://127.0.0.1:9").unwrap();
        assert_eq!(store.url(), "ws://127.0.0.1:9/sync");
        assert!(!format!("{store:?}").contains("BearerToken"));
    }
}
