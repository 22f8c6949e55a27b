//! The server's Ed25519 key file.
//!
//! One key per file, the file one line: the C2SP signer key
//! `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>`, the form Go's
//! `note` package and the C2SP tools read, so the key can be moved to or
//! from them. One key serves both kinds of signature: checkpoints and other
//! notes as the signer `<name>` (its vkey), Data Integrity proofs as its
//! `did:key`.
//!
//! The file is created with mode 0600 and never overwritten (a second
//! `generate` must not destroy the key that signed yesterday's checkpoints).
//! A file that group or others can access is refused, as ssh refuses such a
//! private key: whoever could read it could sign as us. No error message
//! holds key material: they name the file and what is wrong, never the text.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use thiserror::Error;
use zeroize::Zeroizing;

use crate::crypto::{
    data_integrity,
    ed25519::{Ed25519Error, PublicKey, SigningKey},
    note::{NoteError, NoteSigner},
};

/// The mode of a key file: read and write by the owner only.
pub const KEY_FILE_MODE: u32 = 0o600;

/// The permission bits of group and others, which a key file must not have.
const GROUP_AND_OTHER_BITS: u32 = 0o077;

/// The largest key file read: a key line is about 100 bytes plus the name,
/// so anything near this is not a key file, and is not read into memory.
const MAX_KEY_FILE_BYTES: usize = 4096;

/// Why a key could not be made, written or read.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The key name or key is not valid for a signed note.
    #[error("invalid key: {0}")]
    Invalid(#[from] NoteError),
    /// The operating system's random generator failed.
    #[error("cannot generate a key: {0}")]
    Generate(#[from] Ed25519Error),
    /// The key file exists: it is never overwritten.
    #[error("key file {} already exists; refusing to overwrite it", path.display())]
    AlreadyExists {
        /// The key file.
        path: PathBuf,
    },
    /// Reading or writing the file failed.
    #[error("key file {}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Group or others can access the file.
    #[error(
        "key file {} has mode {mode:04o}: group and others must have no access (chmod 600 {})",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path is a directory or a device, not a file.
    #[error("key file {} is not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The file is far larger than a key line.
    #[error("key file {} is larger than {MAX_KEY_FILE_BYTES} bytes: not a key file", path.display())]
    TooLarge {
        /// The key file.
        path: PathBuf,
    },
    /// The file does not hold a valid signer key (the reason never quotes
    /// the file).
    #[error("key file {} does not hold a valid signer key: {reason}", path.display())]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: NoteError,
    },
}

/// The server's signing key: a named Ed25519 key. `Debug` shows the name,
/// key ID and public key, never the seed.
#[derive(Debug)]
pub struct ServerKey {
    /// The key as a note signer; it holds the name and the Ed25519 key.
    signer: NoteSigner,
}

impl ServerKey {
    /// A new key named `name` (a signed-note key name, e.g.
    /// `openoes.example/settlement`), from the operating system's random
    /// generator.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        let signer = NoteSigner::new(name, SigningKey::generate()?)?;
        Ok(Self { signer })
    }

    /// The key of an existing note signer.
    pub const fn from_signer(signer: NoteSigner) -> Self {
        Self { signer }
    }

    /// Writes the key to a new file at `path`, mode 0600. Refuses to
    /// overwrite an existing file; removes its own partial file if writing
    /// fails half way.
    pub fn write(&self, path: &Path) -> Result<(), KeyError> {
        let io_error = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(KEY_FILE_MODE)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => KeyError::AlreadyExists {
                    path: path.to_owned(),
                },
                _ => io_error(e),
            })?;
        let line = self.signer.expose_signer_key();
        let written = file
            .write_all(line.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            // Best effort: the file is ours (create_new), and a truncated
            // key file would only fail later with a worse message.
            let _ = fs::remove_file(path);
            return Err(io_error(e));
        }
        Ok(())
    }

    /// Reads the key file at `path`, refusing one that group or others can
    /// access.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let io_error = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io_error)?;
        // The open file's metadata, not the path's: no window for a swap
        // between the check and the read.
        let metadata = file.metadata().map_err(io_error)?;
        if !metadata.is_file() {
            return Err(KeyError::NotAFile {
                path: path.to_owned(),
            });
        }
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & GROUP_AND_OTHER_BITS != 0 {
            return Err(KeyError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        // Room for the bound and one byte more, allocated once so that the
        // secret is never copied into a buffer that is freed unwiped.
        let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_BYTES + 1));
        file.take(MAX_KEY_FILE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io_error)?;
        if bytes.len() > MAX_KEY_FILE_BYTES {
            return Err(KeyError::TooLarge {
                path: path.to_owned(),
            });
        }
        let malformed = |reason| KeyError::Malformed {
            path: path.to_owned(),
            reason,
        };
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| malformed(NoteError::MalformedSignerKey("the file is not UTF-8 text")))?;
        let line = text.strip_suffix('\n').unwrap_or(text);
        let signer = NoteSigner::parse(line).map_err(malformed)?;
        Ok(Self { signer })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        self.signer.name()
    }

    /// The Ed25519 public key.
    pub const fn public_key(&self) -> PublicKey {
        self.signer.public_key()
    }

    /// The verifier key (vkey) line, `<name>+<hex key ID>+<base64>`, to give
    /// to whoever checks our notes.
    pub fn vkey(&self) -> String {
        self.signer.verifier().to_string()
    }

    /// The key's `did:key`, `did:key:z6Mk...`, the issuer of our credentials.
    pub fn did_key(&self) -> String {
        data_integrity::did_key(&self.public_key())
    }

    /// The verification method of the `did:key`, for Data Integrity proofs.
    pub fn verification_method(&self) -> String {
        data_integrity::did_key_verification_method(&self.public_key())
    }

    /// The key as a note signer (checkpoints, cosignatures).
    pub const fn note_signer(&self) -> &NoteSigner {
        &self.signer
    }

    /// The raw Ed25519 key (Data Integrity proofs).
    pub const fn signing_key(&self) -> &SigningKey {
        self.signer.signing_key()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::crypto::{
        data_integrity::{ProofOptions, add_proof, verify_proof_with_key},
        note::{NoteVerifier, open_note, sign_note},
    };

    // golang.org/x/mod sumdb/note: the reference signer key and its vkey.
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    /// Pieces of the secret part of `PETER_SKEY`, none of which may appear
    /// in an error or a `Debug`.
    const PETER_SECRET_PIECES: [&str; 3] = ["AYEKFALV", "MzD1QIDr", "hfZx09iU"];

    fn write_file(path: &Path, text: &str, mode: u32) {
        fs::write(path, text).expect("write");
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn assert_no_secret(text: &str) {
        for piece in PETER_SECRET_PIECES {
            assert!(!text.contains(piece), "{text}");
        }
    }

    #[test]
    fn generate_write_read_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("settlement.key");
        let key = ServerKey::generate("openoes.example/settlement").expect("generate");
        key.write(&path).expect("write");

        let metadata = fs::metadata(&path).expect("metadata");
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            format!("{}\n", *key.note_signer().expose_signer_key())
        );
        assert!(text.starts_with("PRIVATE+KEY+openoes.example/settlement+"));

        let read = ServerKey::read(&path).expect("read back");
        assert_eq!(read.public_key(), key.public_key());
        assert_eq!(read.vkey(), key.vkey());
        assert_eq!(read.did_key(), key.did_key());
        assert!(read.did_key().starts_with("did:key:z6Mk"));
        assert_eq!(
            read.verification_method(),
            format!("{}#{}", key.did_key(), &key.did_key()[8..])
        );

        // Never overwritten, and left as it was.
        let other = ServerKey::generate("openoes.example/settlement").expect("generate");
        assert!(matches!(
            other.write(&path),
            Err(KeyError::AlreadyExists { .. })
        ));
        assert_eq!(fs::read_to_string(&path).expect("read"), text);
    }

    #[test]
    fn reads_the_reference_signer_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("peter.key");
        write_file(&path, &format!("{PETER_SKEY}\n"), 0o600);
        let key = ServerKey::read(&path).expect("read");
        assert_eq!(key.name(), "PeterNeumann");
        assert_eq!(key.vkey(), PETER_VKEY);
        // Without the final newline too.
        write_file(&path, PETER_SKEY, 0o600);
        assert_eq!(ServerKey::read(&path).expect("read").vkey(), PETER_VKEY);
    }

    #[test]
    fn refuses_files_others_can_access() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("open.key");
        for mode in [0o640, 0o604, 0o660, 0o644, 0o610, 0o601] {
            write_file(&path, PETER_SKEY, mode);
            let error = ServerKey::read(&path).expect_err("refused");
            assert!(
                matches!(error, KeyError::Permissions { mode: m, .. } if m == mode),
                "{mode:o}"
            );
            let message = error.to_string();
            assert!(message.contains("chmod 600"), "{message}");
            assert!(message.contains(&format!("{mode:04o}")), "{message}");
            assert_no_secret(&message);
        }
        write_file(&path, PETER_SKEY, 0o400);
        assert!(ServerKey::read(&path).is_ok(), "owner read-only is fine");
    }

    #[test]
    fn malformed_files_are_refused_without_quoting_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.key");
        for text in [
            PETER_SKEY.replace("c74f20a3", "c74f20a4"),
            PETER_SKEY.replace("PRIVATE+KEY+", "PRIVATE+KEY"),
            format!("{PETER_SKEY}\n\n"),
            format!(" {PETER_SKEY}"),
            PETER_SKEY.replacen('A', "*", 2),
            String::new(),
        ] {
            write_file(&path, &text, 0o600);
            let error = ServerKey::read(&path).expect_err("refused");
            assert!(matches!(error, KeyError::Malformed { .. }), "{error}");
            assert_no_secret(&error.to_string());
            assert_no_secret(&format!("{error:?}"));
        }
        fs::write(&path, [0xffu8, 0xfe, b'\n']).expect("write");
        assert!(matches!(
            ServerKey::read(&path),
            Err(KeyError::Malformed { .. })
        ));
        write_file(&path, &"A".repeat(MAX_KEY_FILE_BYTES + 1), 0o600);
        assert!(matches!(
            ServerKey::read(&path),
            Err(KeyError::TooLarge { .. })
        ));
        assert!(matches!(
            ServerKey::read(dir.path()),
            Err(KeyError::NotAFile { .. })
        ));
        assert!(matches!(
            ServerKey::read(&dir.path().join("missing.key")),
            Err(KeyError::Io { .. })
        ));
        assert!(matches!(
            ServerKey::generate("two words"),
            Err(KeyError::Invalid(NoteError::InvalidKeyName))
        ));
    }

    #[test]
    fn debug_never_prints_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("peter.key");
        write_file(&path, PETER_SKEY, 0o600);
        let key = ServerKey::read(&path).expect("read");
        let debug = format!("{key:?}");
        assert_no_secret(&debug);
        assert!(debug.contains("PeterNeumann"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn one_key_signs_notes_and_data_integrity_proofs() {
        let key = ServerKey::generate("openoes.example/attestation").expect("generate");
        let note = sign_note("attested\n", key.note_signer()).expect("sign");
        let verifier: NoteVerifier = key.vkey().parse().expect("vkey");
        assert!(open_note(&note, &[verifier]).is_ok());

        let credential = json!({
            "@context": ["https://www.w3.org/ns/credentials/v2"],
            "type": ["VerifiableCredential"],
            "issuer": key.did_key(),
            "credentialSubject": { "id": "did:example:wsp" }
        });
        let options = ProofOptions {
            verification_method: key.verification_method(),
            proof_purpose: "assertionMethod".into(),
            created: Some("2026-01-01T00:00:00Z".into()),
        };
        let signed = add_proof(&credential, key.signing_key(), &options).expect("proof");
        assert!(verify_proof_with_key(&signed, &key.public_key()).is_ok());
    }
}
