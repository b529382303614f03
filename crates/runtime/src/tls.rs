//! TLS on every listener and mutual TLS between the services, from the
//! certificate files the settings name (rustls through tonic; no OpenSSL).
//!
//! One certificate per process serves both ends: the listeners present it
//! to callers, and the services present it as their client certificate
//! when they call each other. A caller must present a client certificate
//! the configured CA signed (or, with `CAIRN_TLS_CLIENT_AUTH=optional`, may
//! present none, but never a wrong one), and the services check each
//! other's server certificates against the same CA.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::{ClientAuth, Settings};
use crate::error::{Error, Result};

/// The certificate material of a process, read once from the settings' files.
#[derive(Clone)]
pub struct TlsMaterial {
    identity: Identity,
    authority: Certificate,
    client_auth: ClientAuth,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|error| {
        Error::FailedPrecondition(format!(
            "cannot read the {what} {}: {error}",
            path.display()
        ))
    })?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
        return Err(Error::FailedPrecondition(format!(
            "the {what} {} is not PEM",
            path.display()
        )));
    }
    Ok(bytes)
}

impl TlsMaterial {
    /// The material the settings name; `None` when TLS is off.
    pub fn from_settings(settings: &Settings) -> Result<Option<Self>> {
        let (Some(cert), Some(key)) = (&settings.tls_cert_file, &settings.tls_key_file) else {
            return Ok(None);
        };
        let identity = Identity::from_pem(
            read(cert, "certificate (CAIRN_TLS_CERT_FILE)")?,
            read(key, "private key (CAIRN_TLS_KEY_FILE)")?,
        );
        let Some(authority) = &settings.tls_ca_file else {
            return Err(Error::FailedPrecondition(
                "TLS is on (CAIRN_TLS_CERT_FILE) but CAIRN_TLS_CA_FILE is not set: the services \
                 check each other's certificates against it"
                    .into(),
            ));
        };
        let authority = Certificate::from_pem(read(
            authority,
            "certificate authority (CAIRN_TLS_CA_FILE)",
        )?);
        Ok(Some(Self {
            identity,
            authority,
            client_auth: settings.tls_client_auth,
        }))
    }

    /// What the listeners serve: the process's certificate, and the client
    /// certificates the CA signed, required (or checked when presented).
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.authority.clone())
            .client_auth_optional(self.client_auth == ClientAuth::Optional)
    }

    /// What a service presents when it calls another: its certificate as
    /// the client certificate, checking the peer's against the CA.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .identity(self.identity.clone())
            .ca_certificate(self.authority.clone())
    }
}
