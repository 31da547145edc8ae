//! Short codes: generated (base62 from the thread-local CSPRNG) or chosen
//! by the client (validated, and never a word the edge routes to the API).

use rand::RngExt;

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Paths the edge sends to the API or that the services serve themselves; a
/// link with such a code could never be reached, so it cannot be chosen.
const RESERVED: &[&str] = &[
    "users", "urls", "events", "keys", "domains", "tags", "health", "ready", "metrics", "apidocs",
    "openapi",
];

/// Longest custom code accepted.
pub const MAX_CUSTOM_LEN: usize = shortline_shared::wire::MAX_SHORT_CODE_LEN;

/// A random code of `len` base62 characters.
pub fn generate(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Why a client-chosen code is unusable, if it is.
pub fn check_custom(code: &str) -> Result<(), String> {
    if code.is_empty() || code.len() > MAX_CUSTOM_LEN {
        return Err(format!("must be 1 to {MAX_CUSTOM_LEN} characters"));
    }
    if !code.bytes().all(shortline_shared::wire::is_short_code_byte) {
        return Err("may only contain letters, digits, '-' and '_'".into());
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(code)) {
        return Err("is reserved".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_base62_of_the_asked_length() {
        for len in [6, 8, 12] {
            let code = generate(len);
            assert_eq!(code.len(), len);
            assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()), "{code}");
        }
        assert_ne!(generate(12), generate(12));
    }

    #[test]
    fn custom_codes() {
        assert!(check_custom("my-link_1").is_ok());
        assert!(check_custom("").is_err());
        assert!(check_custom("has space").is_err());
        assert!(check_custom("a/b").is_err());
        assert!(check_custom("Users").is_err());
        assert!(check_custom("keys").is_err());
        assert!(check_custom("domains").is_err());
        assert!(check_custom(&"x".repeat(65)).is_err());
    }
}
