//! Reading the PEM files named by options (TLS certificates, keys and CAs), with errors that
//! name the path but never the content, which may be a private key.

use std::path::Path;

/// Why a PEM file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PemFileError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file named.
        path: String,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no block of the expected kind.
    #[error("{path} holds no PEM {label} block")]
    NoBlock {
        /// The file named.
        path: String,
        /// The kind of block expected (`CERTIFICATE`, `PRIVATE KEY`).
        label: String,
    },
}

/// The content of the PEM file at `path`, which must hold a block whose label contains `label`.
pub fn read_pem(path: &Path, label: &str) -> Result<Vec<u8>, PemFileError> {
    let content = std::fs::read(path).map_err(|source| PemFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let has_block = String::from_utf8_lossy(&content)
        .lines()
        .any(|line| line.starts_with("-----BEGIN ") && line.contains(label));
    if !has_block {
        return Err(PemFileError::NoBlock {
            path: path.display().to_string(),
            label: label.to_owned(),
        });
    }
    Ok(content)
}
