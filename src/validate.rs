//! Input rules shared by every RPC: field violations, the protocol's id
//! rule, page sizes, and how much of a bad value an error may echo.
//!
//! A leaf: it imports nothing of this crate, so config, the Redis layer,
//! the stream bridge and every domain can use it.

use std::fmt;

/// Longest id the protocol allows.
pub const MAX_ID_LEN: usize = 128;

/// The protocol's rule for ids, as said to a person.
pub const ID_RULE: &str = "must be 1-128 characters of [A-Za-z0-9._@-]";

/// Most bytes of a caller's (or a peer's) value an error message repeats:
/// a 100 KB cursor must come back as INVALID_ARGUMENT naming the field, not
/// as a grpc-message too large for the client to read.
pub const MAX_ECHO: usize = 64;

/// True if `value` is an id by the protocol's rule: 1-128 characters of
/// `[A-Za-z0-9._@-]`, so no `:` (keys are `:`-joined) and no spaces.
pub fn is_valid_id(value: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// `value` as an error message may repeat it: quoted, and cut to
/// [`MAX_ECHO`] bytes (at a character boundary) with the full length said.
pub fn echo(value: &str) -> String {
    clip(value, MAX_ECHO)
}

/// `value` quoted, cut to about `max` bytes at a character boundary, with
/// a marker saying how long it was.
pub fn clip(value: &str, max: usize) -> String {
    if value.len() <= max {
        return format!("{value:?}");
    }
    format!("{:?}... ({} bytes)", prefix(value, max), value.len())
}

/// `text` as is if it fits `max` bytes, else its first bytes (at a
/// character boundary) and `...`, at most `max` bytes in all.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    format!("{}...", prefix(text, max.saturating_sub(3)))
}

/// The longest prefix of `text` of at most `max` bytes ending at a
/// character boundary.
fn prefix(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// True if `text` holds a character that displays as nothing or reorders
/// what follows (Unicode format characters such as U+200B or U+202E), or a
/// control character: such text can make two addresses look alike.
pub fn has_invisible(text: &str) -> bool {
    text.chars().any(|c| {
        c.is_control()
            || matches!(c,
                '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
                | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E0FFF}')
    })
}

/// `Ok` if `value` is a valid id, else the violation naming `field`.
pub fn require_id(field: &str, value: &str) -> Result<(), FieldViolations> {
    let mut v = FieldViolations::default();
    v.check_id(field, value);
    v.into_result()
}

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field in the request, e.g. `change` or `bins[3].x_amount`.
    pub field: String,
    /// What is wrong, for a person.
    pub description: String,
}

/// The bad fields of one request, collected so the client learns all of
/// them at once rather than one per retry. As an error it is
/// INVALID_ARGUMENT with one `BadRequest` violation each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldViolations(pub Vec<FieldViolation>);

impl FieldViolations {
    /// Records that `field` is bad.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// One violation.
    pub fn one(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut v = Self::default();
        v.add(field, description);
        v
    }

    /// Checks a required id (user_id, asset, request_id, pool_id ...) by
    /// the protocol's rule ([`is_valid_id`]).
    pub fn check_id(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.add(field, "is required");
        } else if !is_valid_id(value) {
            self.add(field, ID_RULE);
        }
    }

    /// Checks an id that may be left empty.
    pub fn check_optional_id(&mut self, field: &str, value: &str) {
        if !value.is_empty() {
            self.check_id(field, value);
        }
    }

    /// Checks free text: at most `max` bytes, nothing invisible
    /// ([`has_invisible`]); `required` refuses empty (or blank) text.
    pub fn check_text(&mut self, field: &str, value: &str, max: usize, required: bool) {
        if value.trim().is_empty() {
            if required {
                self.add(field, "is required");
            }
        } else if value.len() > max {
            self.add(field, format!("must be at most {max} bytes"));
        } else if has_invisible(value) {
            self.add(
                field,
                "must not contain control or invisible formatting characters",
            );
        }
    }

    /// A page size as asked (`0` = `default`), cut to `max`; a negative one
    /// is a violation.
    pub fn page_size(&mut self, requested: i32, default: usize, max: usize) -> usize {
        match requested {
            n if n < 0 => {
                self.add("page_size", "must not be negative");
                default
            }
            0 => default,
            n => (n as usize).min(max),
        }
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` if nothing was recorded, else the violations as the error.
    pub fn into_result(self) -> Result<(), Self> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for FieldViolations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid argument: ")?;
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.field, v.description)?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldViolations {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_cuts_long_values_at_a_character_boundary() {
        assert_eq!(echo("abc"), "\"abc\"");
        let long = "é".repeat(100); // 200 bytes
        let shown = echo(&long);
        assert!(shown.len() < 100, "{shown}");
        assert!(shown.ends_with("(200 bytes)"), "{shown}");
    }

    #[test]
    fn invisible_characters_are_found() {
        assert!(has_invisible("bc1q\u{202E}xyz"));
        assert!(has_invisible("bc1q\u{200B}xyz"));
        assert!(has_invisible("a\u{7}b"));
        assert!(!has_invisible("bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"));
        assert!(!has_invisible("Zürich-7"));
    }

    #[test]
    fn page_sizes_default_cap_and_refuse_negatives() {
        let mut v = FieldViolations::default();
        assert_eq!(v.page_size(0, 100, 1000), 100);
        assert_eq!(v.page_size(5000, 100, 1000), 1000);
        assert!(v.is_empty());
        v.page_size(-1, 100, 1000);
        assert_eq!(v.0[0].field, "page_size");
    }
}
