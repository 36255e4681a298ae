//! TLS client settings shared by the HTTP backend and the hub client: rustls with ring,
//! Mozilla's roots, and the certificates of a PEM file the configuration names.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::files::{SmallFileError, read_small_file};

/// The largest CA file read.
const MAX_CA_FILE: u64 = 1024 * 1024;

/// Why a CA file gave no certificate.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// The file could not be read.
    #[error(transparent)]
    File(#[from] SmallFileError),
    /// It holds no usable PEM certificate.
    #[error("{path}: no PEM certificate could be used ({reason})")]
    NoCertificate {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}

/// The certificates of the PEM file at `path`.
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    use rustls_pki_types::pem::PemObject;
    let pem = read_small_file(path, MAX_CA_FILE)?;
    let no_certificate = |reason: String| CaFileError::NoCertificate {
        path: path.to_path_buf(),
        reason,
    };
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| no_certificate(error.to_string()))?;
    if certificates.is_empty() {
        return Err(no_certificate("the file holds no certificate".to_owned()));
    }
    Ok(certificates)
}

/// A client configuration trusting Mozilla's roots and `extra_roots`, offering `alpn`.
pub(crate) fn client_config(
    extra_roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for certificate in extra_roots {
        roots
            .add(certificate.clone())
            .map_err(|error| error.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}
