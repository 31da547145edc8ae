//! What a short code can be: the one check both the fast path and the
//! router's handler apply before any lookup.
//!
//! The write side only stores codes of 1 to 64 letters, digits, `-` and `_`
//! (generated ones are base62; custom and imported ones are checked against
//! the same rule), so anything else is a 404 without asking a cache. Such a
//! code also never needs percent-decoding, which lets the fast path take it
//! straight from the request path.
//!
//! Also here: [`CodeKey`], a code as the in-process cache's key (and in a
//! buffered click, where it saves an allocation per request).

use std::sync::Arc;

/// Longest short code looked up; longer paths are 404 without a lookup.
pub const MAX_CODE_LEN: usize = shortline_shared::wire::MAX_SHORT_CODE_LEN;

/// Whether `code` could name a stored link (the write side's rule,
/// [`shortline_shared::wire::is_short_code`]).
pub fn is_valid(code: &str) -> bool {
    shortline_shared::wire::is_short_code(code)
}

/// Codes up to this many bytes are held inside the key itself.
const INLINE: usize = 22;

/// A short code as the L1 cache's key. The cache compares keys while
/// probing its table; with the bytes inside the key (every generated code,
/// and most custom ones, fit) that reads no second allocation, which showed
/// as cache misses in profiles. Longer codes are shared strings. A code has
/// one form only (chosen by its length), so the derived equality and hash
/// are those of the code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CodeKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<str>),
}

impl CodeKey {
    pub fn new(code: &str) -> Self {
        match u8::try_from(code.len()) {
            Ok(len) if code.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..code.len()].copy_from_slice(code.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Shared(Arc::from(code)),
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        match self {
            // Copied from a `&str` whole, so always UTF-8.
            Self::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Self::Shared(code) => code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_equal_exactly_when_codes_are() {
        let long = "x".repeat(INLINE + 5);
        let codes = [
            "a",
            "ab",
            "abc123",
            "abc124",
            &"y".repeat(INLINE),
            &long,
            &long[1..],
        ];
        for a in codes {
            for b in codes {
                assert_eq!(CodeKey::new(a) == CodeKey::new(b), a == b, "{a} {b}");
            }
            assert_eq!(CodeKey::new(a).as_str(), a);
        }
        assert!(matches!(
            CodeKey::new(&"y".repeat(INLINE)),
            CodeKey::Inline { .. }
        ));
        assert!(matches!(CodeKey::new(&long), CodeKey::Shared(_)));
    }

    #[test]
    fn accepts_what_the_write_side_stores_and_nothing_else() {
        for ok in ["a", "abc123", "My-Code_9", &"x".repeat(MAX_CODE_LEN)] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            &"x".repeat(MAX_CODE_LEN + 1),
            "a b",
            "a%20b",
            "a/b",
            "ünï",
            "a.b",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
    }
}
