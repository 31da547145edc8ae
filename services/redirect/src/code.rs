//! What a short code can be: the one check both the fast path and the
//! router's handler apply before any lookup.
//!
//! The write side only stores codes of 1 to 64 letters, digits, `-` and `_`
//! (generated ones are base62; custom and imported ones are checked against
//! the same rule), so anything else is a 404 without asking a cache. Such a
//! code also never needs percent-decoding, which lets the fast path take it
//! straight from the request path.

/// Longest short code looked up; longer paths are 404 without a lookup.
pub const MAX_CODE_LEN: usize = 64;

/// Whether `code` could name a stored link.
pub fn is_valid(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= MAX_CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

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
