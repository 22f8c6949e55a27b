//! C2SP transparency log checkpoints (<https://c2sp.org/tlog-checkpoint>).
//!
//! A checkpoint is a signed note whose text is a tree head, one item a line:
//!
//! ```text
//! <origin>
//! <tree size, decimal, no leading zeros>
//! <base64 RFC 6962 root hash>
//! [<extension line>...]
//! ```
//!
//! It is what a log signs to commit to its contents, and what witnesses
//! cosign. The format is strict so that one tree head has exactly one text
//! (anything else could be two different signed statements for one head).

use base64::{Engine as _, engine::general_purpose::STANDARD};
use thiserror::Error;

use crate::crypto::{
    merkle::Hash,
    note::{self, NoteError, NoteSigner, NoteVerifier},
};

/// Why a checkpoint was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CheckpointError {
    /// The text is not a checkpoint.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// The checkpoint is from another log than the one expected.
    #[error("checkpoint origin {got:?} is not the expected {want:?}")]
    OriginMismatch {
        /// The origin line of the checkpoint.
        got: String,
        /// The origin the caller trusts.
        want: String,
    },
    /// The note around it was refused (bad signature, no trusted key, ...).
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// A tree head: the body of a checkpoint note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `example.com/log42`; the log's key name
    /// should be the same.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 9162 root of the tree of `size` leaves.
    pub root_hash: Hash,
    /// Opaque extension lines, each non-empty (the spec discourages them).
    pub extensions: Vec<String>,
}

/// Whether `line` can be one line of a checkpoint: non-empty, no newline,
/// no other control character (the note rules).
fn is_valid_line(line: &str) -> bool {
    !line.is_empty() && !line.chars().any(|c| c < ' ')
}

impl Checkpoint {
    /// The note text of this checkpoint (ending in a newline), to be signed.
    pub fn to_note_text(&self) -> Result<String, CheckpointError> {
        if !is_valid_line(&self.origin) {
            return Err(CheckpointError::Malformed(
                "the origin must be one non-empty line",
            ));
        }
        if !self.extensions.iter().all(|e| is_valid_line(e)) {
            return Err(CheckpointError::Malformed(
                "an extension must be one non-empty line",
            ));
        }
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root_hash)
        );
        for extension in &self.extensions {
            text.push_str(extension);
            text.push('\n');
        }
        Ok(text)
    }

    /// Parses a checkpoint note text (the note's text, not the signed note).
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text.strip_suffix('\n').ok_or(CheckpointError::Malformed(
            "the text must end with a newline",
        ))?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::Malformed(
                "a checkpoint has an origin, a size and a root hash line",
            ));
        };
        if !is_valid_line(origin) {
            return Err(CheckpointError::Malformed("the origin line is empty"));
        }
        let size = parse_decimal(size).ok_or(CheckpointError::Malformed(
            "the tree size must be a decimal number with no leading zeros",
        ))?;
        let root_hash: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or(CheckpointError::Malformed(
                "the root hash must be the base64 of 32 bytes",
            ))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if !extensions.iter().all(|e| is_valid_line(e)) {
            return Err(CheckpointError::Malformed(
                "extension lines must not be empty",
            ));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root_hash,
            extensions,
        })
    }

    /// Signs the checkpoint: the signed note, ready to publish or cosign.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, CheckpointError> {
        Ok(note::sign_note(&self.to_note_text()?, signer)?)
    }

    /// Opens a signed checkpoint note of the log `origin`, trusting
    /// `verifiers` (see [`note::open_note`] for which signatures count).
    pub fn open(
        signed_note: &str,
        origin: &str,
        verifiers: &[NoteVerifier],
    ) -> Result<Self, CheckpointError> {
        let opened = note::open_note(signed_note, verifiers)?;
        let checkpoint = Self::parse(&opened.text)?;
        if checkpoint.origin != origin {
            return Err(CheckpointError::OriginMismatch {
                got: checkpoint.origin,
                want: origin.to_owned(),
            });
        }
        Ok(checkpoint)
    }
}

/// Parses an ASCII decimal with no sign and no leading zeros (`0` alone is
/// fine), as checkpoints and tlog proofs write numbers. `u64::from_str`
/// would take `+1` and `007`, which would give one number two texts.
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{
        ed25519::SigningKey,
        merkle,
        note::{SignedNote, open_note},
        test_support::read_testdata,
    };

    #[test]
    fn spec_example_round_trips() {
        // c2sp.org/tlog-checkpoint: the example (its signer's key is not
        // published, so only the structure can be checked).
        let signed = read_testdata("c2sp/tlog-checkpoint-example.txt");
        let note = SignedNote::parse(&signed).expect("note");
        assert_eq!(note.signatures.len(), 1);
        assert_eq!(note.signatures[0].name, "example.com/behind-the-sofa");
        assert_eq!(note.encode().expect("encode"), signed);

        let checkpoint = Checkpoint::parse(&note.text).expect("checkpoint");
        assert_eq!(checkpoint.origin, "example.com/behind-the-sofa");
        assert_eq!(checkpoint.size, 20_852_163);
        assert_eq!(
            STANDARD.encode(checkpoint.root_hash),
            "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
        );
        assert!(checkpoint.extensions.is_empty());
        assert_eq!(checkpoint.to_note_text().expect("text"), note.text);
    }

    #[test]
    fn extensions_round_trip() {
        let checkpoint = Checkpoint {
            origin: "openoes.example/settlement".into(),
            size: 0,
            root_hash: merkle::empty_root(),
            extensions: vec!["first extension".into(), "second".into()],
        };
        let text = checkpoint.to_note_text().expect("text");
        assert_eq!(
            text,
            "openoes.example/settlement\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\
             first extension\nsecond\n"
        );
        assert_eq!(Checkpoint::parse(&text), Ok(checkpoint));
    }

    #[test]
    fn sign_and_open() {
        let signer = NoteSigner::new(
            "openoes.example/settlement",
            SigningKey::from_seed(&[3u8; 32]).expect("key"),
        )
        .expect("signer");
        let leaves: Vec<_> = (0u8..5).map(|i| merkle::leaf_hash(&[i])).collect();
        let checkpoint = Checkpoint {
            origin: "openoes.example/settlement".into(),
            size: 5,
            root_hash: merkle::root(&leaves),
            extensions: vec![],
        };
        let signed = checkpoint.sign(&signer).expect("sign");
        let verifiers = [signer.verifier()];
        assert_eq!(
            Checkpoint::open(&signed, "openoes.example/settlement", &verifiers),
            Ok(checkpoint)
        );
        assert!(matches!(
            Checkpoint::open(&signed, "openoes.example/other", &verifiers),
            Err(CheckpointError::OriginMismatch { .. })
        ));
        let bigger = signed.replacen("\n5\n", "\n6\n", 1);
        assert!(matches!(
            Checkpoint::open(&bigger, "openoes.example/settlement", &verifiers),
            Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
        ));
        // A note that verifies but is no checkpoint.
        let prose = note::sign_note("hello\n", &signer).expect("sign");
        assert!(open_note(&prose, &verifiers).is_ok());
        assert!(matches!(
            Checkpoint::open(&prose, "openoes.example/settlement", &verifiers),
            Err(CheckpointError::Malformed(_))
        ));
    }

    #[test]
    fn non_canonical_texts_are_refused() {
        let root = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        for bad in [
            format!("log\n0\n{root}"),                      // no final newline
            "log\n0\n".to_string(),                         // no root
            format!("\n0\n{root}\n"),                       // empty origin
            format!("log\n00\n{root}\n"),                   // leading zero
            format!("log\n+1\n{root}\n"),                   // sign
            format!("log\n-1\n{root}\n"),                   // negative
            format!("log\n 1\n{root}\n"),                   // space
            format!("log\n18446744073709551616\n{root}\n"), // > u64
            "log\n1\nAAAA\n".to_string(),                   // 3-byte root
            format!("log\n1\n{root}\n\n"),                  // empty extension line
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("18446744073709551615"), Some(u64::MAX));
        let bad_origin = Checkpoint {
            origin: "two\nlines".into(),
            size: 1,
            root_hash: [0; 32],
            extensions: vec![],
        };
        assert!(bad_origin.to_note_text().is_err());
    }
}
