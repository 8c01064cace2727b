//! TLS 1.3 with self-signed certificates carrying the node key, verified on both ends against
//! the [`TrustPolicy`] (design.md, The mesh; RFC 8446; RFC 9001 for TLS inside QUIC).
//!
//! The certificate is only a carrier for the Ed25519 public key: names, dates and the
//! self-signature are not checked. What authenticates a peer is the TLS 1.3 CertificateVerify
//! signature (RFC 8446 §4.4.3), made with the private key matching the certificate's key, so a
//! peer cannot present someone else's certificate. Session resumption is disabled so every
//! connection runs both verifiers.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quinn::crypto::rustls::{HandshakeData, QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, PeerMisbehaved,
    SignatureScheme,
};

use crate::identity::Identity;
use crate::{NodeId, TrustPolicy};

/// ALPN protocol id of the mesh transport, version 1 (RFC 7301). Both sides require it.
pub const ALPN: &[u8] = b"symphony-mesh/1";

/// Server name the client sends (SNI) and puts in its certificate. Not used for trust.
pub const SERVER_NAME: &str = "symphony-mesh";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 §4); the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// What went wrong building the TLS configuration or reading a connection's peer.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen could not build the self-signed certificate from the node key.
    #[error("cannot build the node certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls rejected the configuration (key, versions).
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The rustls configuration cannot carry QUIC (no TLS 1.3 AES-128-GCM suite).
    #[error("TLS configuration unusable for QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// The peer's certificate does not name a usable key.
    #[error(transparent)]
    PeerCertificate(#[from] PeerCertificateError),
    /// The handshake finished without the `symphony-mesh/1` protocol.
    #[error("peer did not negotiate ALPN {:?}", String::from_utf8_lossy(ALPN))]
    WrongAlpn,
}

/// Why a peer's certificate was refused during the handshake.
///
/// `Debug` prints the message too: rustls formats certificate errors with `Debug`, and this is
/// what reaches `ConnectError` and the logs.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerCertificateError {
    /// No certificate was presented or recorded for the connection.
    #[error("peer presented no certificate")]
    Missing,
    /// The certificate is not valid DER X.509.
    #[error("peer certificate does not parse: {0}")]
    Unparseable(String),
    /// The certificate's key is not Ed25519.
    #[error("peer certificate does not carry an Ed25519 key")]
    NotEd25519,
    /// The peer sent a chain; the mesh uses exactly one self-signed certificate.
    #[error("peer sent {0} intermediate certificates; expected a single self-signed one")]
    Chain(usize),
    /// The peer's NodeId is not allowed by the trust policy.
    #[error("node {0} is not trusted (not in the allowlist)")]
    Untrusted(NodeId),
}

impl fmt::Debug for PeerCertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The NodeId carried by a mesh certificate: its Ed25519 public key.
///
/// Errors: [`PeerCertificateError::Unparseable`], [`PeerCertificateError::NotEd25519`].
pub fn node_id_from_certificate(cert: &CertificateDer<'_>) -> Result<NodeId, PeerCertificateError> {
    let parsed = ParsedCertificate::try_from(cert)
        .map_err(|err| PeerCertificateError::Unparseable(err.to_string()))?;
    let spki = parsed.subject_public_key_info();
    let key = spki
        .as_ref()
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .and_then(|key| <[u8; 32]>::try_from(key).ok())
        .ok_or(PeerCertificateError::NotEd25519)?;
    Ok(NodeId::from_bytes(key))
}

/// The verified NodeId of an established connection's peer, after checking the ALPN.
///
/// Errors: [`TlsError::WrongAlpn`], [`TlsError::PeerCertificate`].
pub fn peer_node_id(connection: &quinn::Connection) -> Result<NodeId, TlsError> {
    let alpn = connection
        .handshake_data()
        .and_then(|data| data.downcast::<HandshakeData>().ok())
        .and_then(|data| data.protocol);
    if alpn.as_deref() != Some(ALPN) {
        return Err(TlsError::WrongAlpn);
    }
    let certs = connection
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or(PeerCertificateError::Missing)?;
    let cert = certs.first().ok_or(PeerCertificateError::Missing)?;
    Ok(node_id_from_certificate(cert)?)
}

/// Verifies peers on both sides of the handshake: server certificates (as client) and client
/// certificates (as server) must carry an Ed25519 key allowed by the trust policy, and the
/// handshake signature must verify with that key.
pub struct PeerVerifier {
    trust: TrustPolicy,
    algorithms: WebPkiSupportedAlgorithms,
    refused: AtomicU64,
}

impl PeerVerifier {
    /// A verifier applying `trust`, using the ring provider's signature algorithms.
    pub fn new(trust: TrustPolicy) -> Self {
        let algorithms = provider().signature_verification_algorithms;
        Self {
            trust,
            algorithms,
            refused: AtomicU64::new(0),
        }
    }

    /// Handshakes refused because the peer's certificate was untrusted or unusable.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The policy this verifier applies.
    pub fn trust(&self) -> &TrustPolicy {
        &self.trust
    }

    fn admit(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<NodeId, rustls::Error> {
        let checked = if intermediates.is_empty() {
            node_id_from_certificate(end_entity).and_then(|peer| {
                if self.trust.allows(&peer) {
                    Ok(peer)
                } else {
                    Err(PeerCertificateError::Untrusted(peer))
                }
            })
        } else {
            Err(PeerCertificateError::Chain(intermediates.len()))
        };
        checked.map_err(|err| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %err, "refused peer during TLS handshake");
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(err))))
        })
    }

    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
        }
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("trust", &self.trust)
            .field("refused", &self.refused())
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.admit(end_entity, intermediates)
            .map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.admit(end_entity, intermediates)
            .map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The node's self-signed certificate and its private key, both built from the node key.
pub struct NodeCertificate {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl NodeCertificate {
    /// Builds the certificate: Ed25519, subject CN = NodeId hex, SAN = [`SERVER_NAME`].
    ///
    /// Errors: [`TlsError::Certificate`] when rcgen rejects the key.
    pub fn new(identity: &Identity) -> Result<Self, TlsError> {
        let key = PrivatePkcs8KeyDer::from(identity.pkcs8_der().to_vec());
        let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&key, &rcgen::PKCS_ED25519)?;
        let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, identity.node_id().to_string());
        let cert = params.self_signed(&key_pair)?.der().clone();
        Ok(Self { cert, key })
    }

    /// The DER certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// The rustls client configuration: TLS 1.3 only, ALPN [`ALPN`], this certificate as the
    /// client certificate, `verifier` checking the server, no resumption.
    ///
    /// Errors: [`TlsError::Config`].
    pub fn rustls_client_config(
        &self,
        verifier: Arc<PeerVerifier>,
    ) -> Result<rustls::ClientConfig, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(vec![self.cert.clone()], self.private_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }

    /// The rustls server configuration: TLS 1.3 only, ALPN [`ALPN`], client certificates
    /// mandatory and checked by `verifier`, no session tickets or session cache.
    ///
    /// Errors: [`TlsError::Config`].
    pub fn rustls_server_config(
        &self,
        verifier: Arc<PeerVerifier>,
    ) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert.clone()], self.private_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(config)
    }

    /// [`Self::rustls_client_config`] wrapped for quinn.
    ///
    /// Errors: [`TlsError::Config`], [`TlsError::Quic`].
    pub fn quic_client_config(
        &self,
        verifier: Arc<PeerVerifier>,
    ) -> Result<QuicClientConfig, TlsError> {
        Ok(QuicClientConfig::try_from(Arc::new(
            self.rustls_client_config(verifier)?,
        ))?)
    }

    /// [`Self::rustls_server_config`] wrapped for quinn.
    ///
    /// Errors: [`TlsError::Config`], [`TlsError::Quic`].
    pub fn quic_server_config(
        &self,
        verifier: Arc<PeerVerifier>,
    ) -> Result<QuicServerConfig, TlsError> {
        Ok(QuicServerConfig::try_from(Arc::new(
            self.rustls_server_config(verifier)?,
        ))?)
    }
}

impl fmt::Debug for NodeCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCertificate").finish_non_exhaustive()
    }
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::ResolvesClientCert;
    use rustls::sign::CertifiedKey;
    use rustls::{ClientConnection, ServerConnection};

    fn pair(trust: TrustPolicy) -> (Identity, NodeCertificate, Arc<PeerVerifier>) {
        let id = Identity::generate().unwrap();
        let cert = NodeCertificate::new(&id).unwrap();
        (id, cert, Arc::new(PeerVerifier::new(trust)))
    }

    /// Runs a TLS 1.3 handshake in memory; returns the first error from either side.
    fn handshake(
        client: rustls::ClientConfig,
        server: rustls::ServerConfig,
    ) -> Result<(ClientConnection, ServerConnection), rustls::Error> {
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        let mut c = ClientConnection::new(Arc::new(client), name)?;
        let mut s = ServerConnection::new(Arc::new(server))?;
        for _ in 0..10 {
            let mut wire = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut wire).unwrap();
            }
            let mut input = &wire[..];
            while !input.is_empty() {
                s.read_tls(&mut input).unwrap();
                s.process_new_packets()?;
            }
            wire.clear();
            while s.wants_write() {
                s.write_tls(&mut wire).unwrap();
            }
            let mut input = &wire[..];
            while !input.is_empty() {
                c.read_tls(&mut input).unwrap();
                c.process_new_packets()?;
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok((c, s));
            }
        }
        panic!("handshake did not finish in 10 flights");
    }

    fn peer_of(certs: Option<&[CertificateDer<'_>]>) -> NodeId {
        node_id_from_certificate(&certs.unwrap()[0]).unwrap()
    }

    #[test]
    fn mutually_trusted_nodes_learn_each_others_node_id() {
        let a = Identity::generate().unwrap();
        let b = Identity::generate().unwrap();
        let a_cert = NodeCertificate::new(&a).unwrap();
        let b_cert = NodeCertificate::new(&b).unwrap();
        let a_verifier = Arc::new(PeerVerifier::new(TrustPolicy::allowlist([b.node_id()])));
        let b_verifier = Arc::new(PeerVerifier::new(TrustPolicy::allowlist([a.node_id()])));
        let (c, s) = handshake(
            a_cert.rustls_client_config(a_verifier).unwrap(),
            b_cert.rustls_server_config(b_verifier).unwrap(),
        )
        .unwrap();
        assert_eq!(peer_of(c.peer_certificates()), b.node_id());
        assert_eq!(peer_of(s.peer_certificates()), a.node_id());
        assert_eq!(c.alpn_protocol(), Some(ALPN));
        assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    }

    #[test]
    fn server_refuses_untrusted_client_and_counts_it() {
        let (_, client_cert, client_verifier) = pair(TrustPolicy::Open);
        let (_, server_cert, server_verifier) = pair(TrustPolicy::default());
        let err = handshake(
            client_cert.rustls_client_config(client_verifier).unwrap(),
            server_cert
                .rustls_server_config(server_verifier.clone())
                .unwrap(),
        )
        .map(|_| ())
        .unwrap_err();
        assert!(err.to_string().contains("is not trusted"), "{err}");
        assert_eq!(server_verifier.refused(), 1);
    }

    #[test]
    fn client_refuses_untrusted_server() {
        let (_, client_cert, client_verifier) = pair(TrustPolicy::default());
        let (_, server_cert, server_verifier) = pair(TrustPolicy::Open);
        let err = handshake(
            client_cert
                .rustls_client_config(client_verifier.clone())
                .unwrap(),
            server_cert.rustls_server_config(server_verifier).unwrap(),
        )
        .map(|_| ())
        .unwrap_err();
        assert!(err.to_string().contains("is not trusted"), "{err}");
        assert_eq!(client_verifier.refused(), 1);
    }

    #[derive(Debug)]
    struct PresentsStolenCertificate(Arc<CertifiedKey>);

    impl ResolvesClientCert for PresentsStolenCertificate {
        fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }

        fn has_certs(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_replayed_certificate_without_its_key_is_refused() {
        let victim = Identity::generate().unwrap();
        let victim_cert = NodeCertificate::new(&victim).unwrap();
        let attacker = Identity::generate().unwrap();
        let attacker_key = rustls::crypto::ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(
            attacker.pkcs8_der().to_vec(),
        ))
        .unwrap();
        let stolen = CertifiedKey::new(vec![victim_cert.certificate().clone()], attacker_key);
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PeerVerifier::new(TrustPolicy::Open)))
            .with_client_cert_resolver(Arc::new(PresentsStolenCertificate(Arc::new(stolen))));
        // The server trusts the victim, so only the handshake signature can stop the attacker.
        let (_, server_cert, server_verifier) = pair(TrustPolicy::allowlist([victim.node_id()]));
        let mut client = client;
        client.alpn_protocols = vec![ALPN.to_vec()];
        let err = handshake(
            client,
            server_cert.rustls_server_config(server_verifier).unwrap(),
        )
        .map(|_| ())
        .unwrap_err();
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::BadSignature)
        );
    }

    #[test]
    fn certificate_carries_the_node_id() {
        let id = Identity::generate().unwrap();
        let cert = NodeCertificate::new(&id).unwrap();
        assert_eq!(
            node_id_from_certificate(cert.certificate()).unwrap(),
            id.node_id()
        );
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(matches!(
            node_id_from_certificate(&garbage),
            Err(PeerCertificateError::Unparseable(_))
        ));
    }
}
