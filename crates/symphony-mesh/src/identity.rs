//! The node's Ed25519 key: created on first start, kept on disk with mode 0600, used to prove
//! the node's [`NodeId`] in the TLS handshake and to sign claims (design.md, The mesh).
//!
//! The key file holds the PKCS#8 DER encoding of the key (RFC 8410 §7; v1 and v2 are both
//! accepted when loading, so `openssl genpkey -algorithm ed25519 -outform DER` works).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair};

use crate::NodeId;

/// Length in bytes of an Ed25519 signature (RFC 8032 §5.1.6).
pub const SIGNATURE_LEN: usize = 64;

/// A key file larger than this is not a PKCS#8 Ed25519 key; refusing it bounds the read.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// Permission bits that must be clear on the key file: any access by group or others.
const GROUP_OTHER_BITS: u32 = 0o077;

/// What went wrong creating, loading or using the node key.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file exists but could not be opened or read.
    #[error("{path}: cannot read node key: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The key file (or its temporary sibling) could not be created, written or synced.
    #[error("{path}: cannot create node key: {source}")]
    Create {
        /// The file being created.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The key file is accessible to group or others; the key may have leaked.
    #[error(
        "{path}: node key file has mode {mode:04o}, which lets group or others access it; \
         expected 0600 (fix with `chmod 600 {path}`, or delete it to create a new identity)"
    )]
    Permissive {
        /// The key file.
        path: PathBuf,
        /// The file's permission bits.
        mode: u32,
    },
    /// The path exists but is not a regular file.
    #[error("{path}: node key path is not a regular file")]
    NotAFile {
        /// The offending path.
        path: PathBuf,
    },
    /// The file does not hold a PKCS#8 Ed25519 private key.
    #[error("{path}: not a PKCS#8 DER Ed25519 private key ({reason})")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// Why the key was rejected.
        reason: String,
    },
    /// The operating system's random number generator failed.
    #[error("cannot generate an Ed25519 key: system randomness unavailable")]
    Randomness,
}

/// A signature that does not verify against the claimed [`NodeId`] and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify for node {node_id:?}")]
pub struct BadSignature {
    /// The node whose key was used to check the signature.
    pub node_id: NodeId,
}

/// The node's private key and the [`NodeId`] derived from it.
///
/// `Debug` prints only the NodeId; the private key is never formatted or logged.
pub struct Identity {
    key: Ed25519KeyPair,
    pkcs8: Vec<u8>,
    node_id: NodeId,
}

impl Identity {
    /// Generates a fresh key in memory (tests, ephemeral nodes).
    ///
    /// Errors: [`IdentityError::Randomness`] when the system RNG fails.
    pub fn generate() -> Result<Self, IdentityError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| IdentityError::Randomness)?;
        Self::from_pkcs8(document.as_ref().to_vec()).map_err(|reason| IdentityError::Malformed {
            path: PathBuf::from("<generated>"),
            reason,
        })
    }

    /// Loads the key at `path`, or creates it (mode 0600, atomically) when no file exists.
    ///
    /// Creation writes a temporary sibling opened with mode 0600 from the start, syncs it,
    /// and hard-links it into place, so a crash never leaves a partial key and two processes
    /// starting at once end up with the same key. The parent directory must exist.
    ///
    /// Errors: everything [`Identity::load`] returns, plus [`IdentityError::Create`].
    pub fn load_or_create(path: &Path) -> Result<Self, IdentityError> {
        match Self::load(path) {
            Err(IdentityError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Self::create(path)
            }
            other => other,
        }
    }

    /// Loads an existing key file.
    ///
    /// Errors: [`IdentityError::Permissive`] when group or others have any access (checked on
    /// the opened file, before reading), [`IdentityError::NotAFile`], [`IdentityError::Read`],
    /// [`IdentityError::Malformed`] (also for files over 4 KiB).
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let read_err = |source| IdentityError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(IdentityError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & GROUP_OTHER_BITS != 0 {
            return Err(IdentityError::Permissive {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut pkcs8 = Vec::new();
        file.take(MAX_KEY_FILE_LEN + 1)
            .read_to_end(&mut pkcs8)
            .map_err(read_err)?;
        if pkcs8.len() as u64 > MAX_KEY_FILE_LEN {
            let reason = format!("file is larger than {MAX_KEY_FILE_LEN} bytes");
            return Err(IdentityError::Malformed {
                path: path.to_path_buf(),
                reason,
            });
        }
        Self::from_pkcs8(pkcs8).map_err(|reason| IdentityError::Malformed {
            path: path.to_path_buf(),
            reason,
        })
    }

    fn create(path: &Path) -> Result<Self, IdentityError> {
        let identity = Self::generate()?;
        let tmp = temporary_sibling(path);
        let create_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IdentityError::Create { path, source }
        };
        let result = write_private(&tmp, &identity.pkcs8).map_err(create_err(&tmp));
        let linked = result.and_then(|()| fs::hard_link(&tmp, path).map_err(create_err(path)));
        // The temporary name is only a staging area; a failure to remove it loses nothing.
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                tracing::info!(path = %path.display(), node = %identity.node_id.short(), "created node key");
                Ok(identity)
            }
            // Another process won the race: its key is the node's key.
            Err(IdentityError::Create { source, .. })
                if source.kind() == io::ErrorKind::AlreadyExists =>
            {
                Self::load(path)
            }
            Err(err) => Err(err),
        }
    }

    fn from_pkcs8(pkcs8: Vec<u8>) -> Result<Self, String> {
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).map_err(|e| e.to_string())?;
        let mut public = [0u8; 32];
        public.copy_from_slice(key.public_key().as_ref());
        Ok(Self {
            key,
            pkcs8,
            node_id: NodeId::from_bytes(public),
        })
    }

    /// This node's identity: its Ed25519 public key.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Signs `message` with the node key (Ed25519, RFC 8032); deterministic for a given message.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(self.key.sign(message).as_ref());
        out
    }

    /// The PKCS#8 DER key, for building the TLS certificate and signing key.
    pub(crate) fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// Checks that `signature` is `node_id`'s Ed25519 signature over `message` (RFC 8032 §5.1.7).
///
/// Errors: [`BadSignature`] when it is not (wrong key, altered message or signature).
pub fn verify(
    node_id: &NodeId,
    message: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<(), BadSignature> {
    signature::UnparsedPublicKey::new(&signature::ED25519, node_id.as_bytes())
        .verify(message, signature)
        .map_err(|_| BadSignature { node_id: *node_id })
}

fn temporary_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` to a new file that is created with mode 0600, so the key is never readable
/// by others, not even between creation and a later chmod.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_the_signer_and_message() {
        let a = Identity::generate().unwrap();
        let b = Identity::generate().unwrap();
        let sig = a.sign(b"claim issue-7 until t+60s");
        assert!(verify(&a.node_id(), b"claim issue-7 until t+60s", &sig).is_ok());
        assert!(verify(&a.node_id(), b"claim issue-8 until t+60s", &sig).is_err());
        assert_eq!(
            verify(&b.node_id(), b"claim issue-7 until t+60s", &sig),
            Err(BadSignature {
                node_id: b.node_id()
            })
        );
        let mut tampered = sig;
        tampered[10] ^= 1;
        assert!(verify(&a.node_id(), b"claim issue-7 until t+60s", &tampered).is_err());
    }

    #[test]
    fn debug_never_prints_the_private_key() {
        let id = Identity::generate().unwrap();
        let text = format!("{id:?}");
        assert!(text.contains(&id.node_id().short()));
        assert!(!text.contains(&hex::encode(id.pkcs8_der())));
    }

    #[test]
    fn malformed_and_oversized_key_files_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        write_private(&path, b"not a key").unwrap();
        let err = Identity::load(&path).unwrap_err();
        assert!(matches!(err, IdentityError::Malformed { .. }), "{err}");
        assert!(err.to_string().starts_with(&path.display().to_string()));

        let big = dir.path().join("big.key");
        write_private(&big, &vec![0u8; 5000]).unwrap();
        assert!(matches!(
            Identity::load(&big),
            Err(IdentityError::Malformed { .. })
        ));
    }

    #[test]
    fn a_directory_is_not_a_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("node.key");
        fs::create_dir(&sub).unwrap();
        fs::set_permissions(&sub, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        assert!(matches!(
            Identity::load(&sub),
            Err(IdentityError::NotAFile { .. })
        ));
    }
}
