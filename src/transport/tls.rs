//! The trust roots: the web PKI plus the certificates of `--ca-file`, and why the
//! transport could not be built.

use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use rustls::RootCertStore;

/// Why the transport could not be built. Each message names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TransportBuildError {
    /// The CA file could not be opened or read, or holds a malformed PEM section.
    #[error("cannot read CA file {}: {source}", path.display())]
    CaFileRead {
        /// The `--ca-file` path.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The CA file holds no `CERTIFICATE` PEM section.
    #[error("CA file {} contains no PEM certificates", path.display())]
    CaFileEmpty {
        /// The `--ca-file` path.
        path: PathBuf,
    },
    /// A certificate in the CA file is not usable as a trust anchor.
    #[error("CA file {}: unusable certificate: {reason}", path.display())]
    CaFileInvalid {
        /// The `--ca-file` path.
        path: PathBuf,
        /// rustls' reason.
        reason: String,
    },
    /// rustls refused the TLS configuration.
    #[error("tls configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Builds the trust roots: the web PKI plus every certificate of the optional CA file.
pub(crate) fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, TransportBuildError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let Some(path) = ca_file else {
        return Ok(roots);
    };
    let read_error = |source| TransportBuildError::CaFileRead {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut reader = BufReader::new(file);
    let mut added = 0usize;
    for cert in rustls_pemfile::certs(&mut reader) {
        roots.add(cert.map_err(read_error)?).map_err(|error| {
            TransportBuildError::CaFileInvalid {
                path: path.to_owned(),
                reason: error.to_string(),
            }
        })?;
        added += 1;
    }
    if added == 0 {
        return Err(TransportBuildError::CaFileEmpty {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}
