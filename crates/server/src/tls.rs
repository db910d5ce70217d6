//! TLS on the client fronts (the RESP port and the gRPC API) and, optionally, between
//! nodes.
//!
//! As MemoryDB's in-transit encryption does, a node given a certificate speaks only TLS
//! on its client ports: there is no plaintext port beside it to forget about. With a CA
//! file, clients must also present a certificate signed by it (Redis's
//! `tls-auth-clients yes`, its default), unless told `optional` or `no`.
//!
//! Between nodes, `--tls-peer-ca-cert-file` turns on mutual TLS on the node-to-node port
//! (Raft traffic and routed commands): every node presents its certificate (the same
//! one) and checks the other's against that CA. The peer CA is its own setting, never
//! the clients' CA by default: the node-to-node port runs commands without the ACL
//! check, so a client certificate must not open it. Peers are addressed by IP, so their
//! certificates need IP subject alternative names, or `--tls-peer-server-name` for a
//! name every node's certificate carries, and both the serverAuth and clientAuth key
//! usages.
//!
//! rustls with the ring provider throughout (the same provider tonic's `tls-ring`
//! builds with), chosen explicitly so that no process-wide default provider is needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

/// A client has this long to finish its handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate in it ({reason})")]
    NoCertificate { path: PathBuf, reason: String },
    #[error("{path}: no PEM private key in it ({reason})")]
    NoKey { path: PathBuf, reason: String },
    #[error("tls_auth_clients {0:?}: expected yes, optional or no")]
    AuthClients(String),
    #[error("the TLS settings are not usable: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the CA certificates are not usable: {0}")]
    Verifier(String),
}

/// Whether clients must present a certificate (signed by the CA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthClients {
    Yes,
    Optional,
    No,
}

impl std::str::FromStr for AuthClients {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, TlsError> {
        match s.to_ascii_lowercase().as_str() {
            "yes" => Ok(AuthClients::Yes),
            "optional" => Ok(AuthClients::Optional),
            "no" => Ok(AuthClients::No),
            _ => Err(TlsError::AuthClients(s.to_owned())),
        }
    }
}

/// Where the PEM files are, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
    pub auth_clients: AuthClients,
    /// The CA of the nodes' certificates: mutual TLS between nodes when set.
    pub peer_ca: Option<PathBuf>,
    /// The name peers' certificates are checked against, instead of their IP.
    pub peer_server_name: Option<String>,
}

/// The loaded material, ready for each front.
#[derive(Clone)]
pub struct Tls {
    /// The RESP port's handshakes.
    pub acceptor: TlsAcceptor,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    ca_pem: Option<Vec<u8>>,
    auth_clients: AuthClients,
    peer_ca_pem: Option<Vec<u8>>,
    peer_server_name: Option<String>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Tls")
            .field("auth_clients", &self.auth_clients)
            .field("ca", &self.ca_pem.is_some())
            .field("peers", &self.peer_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NoCertificate {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
            reason: "the file holds none".into(),
        });
    }
    Ok(certs)
}

impl Tls {
    /// Reads and checks the files: a node with unusable TLS settings refuses to start
    /// rather than serve without them.
    pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
        let cert_pem = read(&files.cert)?;
        let key_pem = read(&files.key)?;
        let chain = certificates(&files.cert, &cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
            path: files.key.clone(),
            reason: e.to_string(),
        })?;
        let read_ca = |path: &Option<PathBuf>| -> Result<Option<Vec<u8>>, TlsError> {
            match path {
                Some(path) => {
                    let pem = read(path)?;
                    certificates(path, &pem)?;
                    Ok(Some(pem))
                }
                None => Ok(None),
            }
        };
        let ca_pem = read_ca(&files.ca)?;
        let peer_ca_pem = read_ca(&files.peer_ca)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match (&files.ca, files.auth_clients) {
            (Some(path), AuthClients::Yes | AuthClients::Optional) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in certificates(path, ca_pem.as_deref().unwrap_or_default())? {
                    roots.add(cert)?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if files.auth_clients == AuthClients::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| TlsError::Verifier(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            (None, AuthClients::Yes | AuthClients::Optional) | (_, AuthClients::No) => {
                builder.with_no_client_auth()
            }
        };
        let config = builder.with_single_cert(chain, key)?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cert_pem,
            key_pem,
            ca_pem,
            auth_clients: files.auth_clients,
            peer_ca_pem,
            peer_server_name: files.peer_server_name.clone(),
        })
    }

    fn identity(&self) -> tonic::transport::Identity {
        tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem)
    }

    /// The gRPC client API's settings: the same certificate and client rule as RESP.
    pub fn api_server(&self) -> tonic::transport::ServerTlsConfig {
        let config = tonic::transport::ServerTlsConfig::new()
            .identity(self.identity())
            .timeout(HANDSHAKE_TIMEOUT);
        match (&self.ca_pem, self.auth_clients) {
            (Some(ca), AuthClients::Yes) => {
                config.client_ca_root(tonic::transport::Certificate::from_pem(ca))
            }
            (Some(ca), AuthClients::Optional) => config
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(true),
            (None, AuthClients::Yes | AuthClients::Optional) | (_, AuthClients::No) => config,
        }
    }

    /// Mutual TLS for the Raft transport, when asked for.
    pub fn peer(&self) -> Option<shoal_raft::PeerTls> {
        let ca = tonic::transport::Certificate::from_pem(self.peer_ca_pem.as_ref()?);
        let server = tonic::transport::ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(ca.clone())
            .timeout(HANDSHAKE_TIMEOUT);
        let mut client = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(ca)
            .identity(self.identity());
        if let Some(name) = &self.peer_server_name {
            client = client.domain_name(name.clone());
        }
        Some(shoal_raft::PeerTls { server, client })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn files(dir: &Path, cert: &[u8], key: &[u8]) -> TlsFiles {
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            ca: None,
            auth_clients: AuthClients::Yes,
            peer_ca: None,
            peer_server_name: None,
        }
    }

    #[test]
    fn unusable_files_are_errors_that_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsFiles {
            cert: dir.path().join("nope.pem"),
            ..files(dir.path(), b"", b"")
        };
        let e = Tls::load(&missing).unwrap_err();
        assert!(matches!(e, TlsError::Read { .. }), "{e}");
        assert!(e.to_string().contains("nope.pem"), "{e}");

        let empty = files(dir.path(), b"", b"");
        assert!(matches!(
            Tls::load(&empty).unwrap_err(),
            TlsError::NoCertificate { .. }
        ));

        let garbage = files(
            dir.path(),
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            b"",
        );
        assert!(matches!(
            Tls::load(&garbage).unwrap_err(),
            TlsError::NoCertificate { .. }
        ));
    }

    #[test]
    fn auth_clients_parses_redis_words() {
        assert_eq!("yes".parse::<AuthClients>().unwrap(), AuthClients::Yes);
        assert_eq!(
            "OPTIONAL".parse::<AuthClients>().unwrap(),
            AuthClients::Optional
        );
        assert_eq!("no".parse::<AuthClients>().unwrap(), AuthClients::No);
        assert!("maybe".parse::<AuthClients>().is_err());
    }
}
