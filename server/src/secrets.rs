//! Secrets at rest: provider API keys and hook secret headers are stored
//! sealed with XChaCha20-Poly1305 under the server's secret key.
//!
//! A sealed value reads `taskloom-sealed:v1:<key id>:<base64url(nonce ‖
//! ciphertext)>`: the version allows another format later, and the key id
//! (a digest prefix, not the key) tells which key sealed it, so keys can be
//! rotated and a wrong key is named as such. Each value is bound to where it
//! is stored (e.g. `backends.api_key/<id>`), so a sealed value copied to
//! another row does not open.
//!
//! The key is 32 random bytes in a file, written as 64 hex digits (base64
//! is accepted too).

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "taskloom-sealed:v1:";
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

/// The server's secret key; cheap to clone.
#[derive(Clone)]
pub struct SecretBox {
    inner: Arc<Inner>,
}

struct Inner {
    cipher: XChaCha20Poly1305,
    key_id: String,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBox(key {})", self.inner.key_id)
    }
}

/// A stored value that does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error(
        "it was encrypted with secret key {sealed_with}, not with the key in use ({in_use}); \
         start the server with the --secret-key-file it was written with"
    )]
    WrongKey { sealed_with: String, in_use: String },
    #[error("it does not authenticate with the secret key in use (altered or moved)")]
    Unauthentic,
    #[error("it is not a sealed value of a known format")]
    Malformed,
}

impl SecretBox {
    pub fn from_key(key: [u8; KEY_BYTES]) -> SecretBox {
        let digest = Sha256::new()
            .chain_update(b"taskloom secret key id\0")
            .chain_update(key)
            .finalize();
        SecretBox {
            inner: Arc::new(Inner {
                cipher: XChaCha20Poly1305::new(&key.into()),
                key_id: hex(&digest[..4]),
            }),
        }
    }

    /// A fresh random key that is never written anywhere (for processes that
    /// store no secret, such as `taskloom migrate`).
    pub fn ephemeral() -> SecretBox {
        SecretBox::from_key(random_key())
    }

    /// Which key this is, safe to print.
    pub fn key_id(&self) -> &str {
        &self.inner.key_id
    }

    /// Whether a stored value is sealed (rather than plain text written by
    /// a version before encryption at rest).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }

    /// Seals `plaintext` for the place named by `context`.
    pub fn seal(&self, plaintext: &str, context: &str) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .inner
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            // Encryption fails only for messages of about 256 GiB.
            .unwrap_or_default();
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!(
            "{PREFIX}{}:{}",
            self.inner.key_id,
            URL_SAFE_NO_PAD.encode(blob)
        )
    }

    /// Opens a value sealed for `context`.
    pub fn open(&self, stored: &str, context: &str) -> Result<String, OpenError> {
        let (key_id, encoded) = stored
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .ok_or(OpenError::Malformed)?;
        if key_id != self.inner.key_id {
            return Err(OpenError::WrongKey {
                sealed_with: key_id.to_string(),
                in_use: self.inner.key_id.clone(),
            });
        }
        let blob = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| OpenError::Malformed)?;
        if blob.len() < NONCE_BYTES {
            return Err(OpenError::Malformed);
        }
        let (nonce, sealed) = blob.split_at(NONCE_BYTES);
        let plaintext = self
            .inner
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| OpenError::Unauthentic)?;
        String::from_utf8(plaintext).map_err(|_| OpenError::Malformed)
    }

    /// Reads a key file (64 hex digits or base64 of 32 bytes; surrounding
    /// whitespace ignored).
    pub fn load_key_file(path: &Path) -> anyhow::Result<SecretBox> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the secret key file {}", path.display()))?;
        let text = text.trim();
        let bytes = if text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..KEY_BYTES)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .ok()
        } else {
            STANDARD.decode(text).ok()
        };
        match bytes.and_then(|bytes| <[u8; KEY_BYTES]>::try_from(bytes).ok()) {
            Some(key) => Ok(SecretBox::from_key(key)),
            None => bail!(
                "the secret key file {} does not hold a key: expected 32 random bytes as 64 hex \
                 digits (e.g. `openssl rand -hex 32`) or in base64",
                path.display()
            ),
        }
    }

    /// Creates a key file with a new random key, readable by its owner only;
    /// fails if the file exists.
    pub fn create_key_file(path: &Path) -> anyhow::Result<SecretBox> {
        let key = random_key();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(path)
            .with_context(|| format!("cannot create the secret key file {}", path.display()))?;
        file.write_all(format!("{}\n", hex(&key)).as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write the secret key file {}", path.display()))?;
        Ok(SecretBox::from_key(key))
    }
}

fn random_key() -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    rand::rng().fill_bytes(&mut key);
    key
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let secrets = SecretBox::from_key([7; 32]);
        let sealed = secrets.seal("sk-123", "backends.api_key/b1");
        assert!(SecretBox::is_sealed(&sealed));
        assert!(!sealed.contains("sk-123"));
        assert_ne!(sealed, secrets.seal("sk-123", "backends.api_key/b1"));
        assert_eq!(
            secrets.open(&sealed, "backends.api_key/b1").unwrap(),
            "sk-123"
        );
        assert_eq!(
            secrets.open(&sealed, "backends.api_key/b2"),
            Err(OpenError::Unauthentic)
        );
        let other = SecretBox::from_key([8; 32]);
        assert!(matches!(
            other.open(&sealed, "backends.api_key/b1"),
            Err(OpenError::WrongKey { .. })
        ));
        let mut altered = sealed.clone();
        altered.pop();
        altered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(secrets.open(&altered, "backends.api_key/b1").is_err());
        for junk in ["plain", "taskloom-sealed:v1:", "taskloom-sealed:v1:x:!!"] {
            assert!(secrets.open(junk, "c").is_err(), "{junk}");
        }
    }

    #[test]
    fn key_files_round_trip_and_bad_ones_are_named() {
        let dir = std::env::temp_dir().join(format!("taskloom-key-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k");
        let _ = std::fs::remove_file(&path);
        let created = SecretBox::create_key_file(&path).unwrap();
        assert!(
            SecretBox::create_key_file(&path).is_err(),
            "never overwrites"
        );
        let loaded = SecretBox::load_key_file(&path).unwrap();
        assert_eq!(created.key_id(), loaded.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, STANDARD.encode([1u8; 32])).unwrap();
        assert_eq!(
            SecretBox::load_key_file(&path).unwrap().key_id(),
            SecretBox::from_key([1; 32]).key_id()
        );
        std::fs::write(&path, "too short").unwrap();
        let error = SecretBox::load_key_file(&path).unwrap_err().to_string();
        assert!(error.contains("does not hold a key"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
