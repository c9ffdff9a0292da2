//! The local mesh's bootstrap tokens: `lowercase_hex(HMAC-SHA256(key, identity))`, where `key`
//! is the token key file's bytes with surrounding whitespace removed. `weft` mints one per
//! workload; the identity service (weft-controller's `identity::token`) verifies them.

use aws_lc_rs::hmac;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A token key: mints and verifies tokens.
#[derive(Clone)]
pub struct TokenKey(hmac::Key);

impl TokenKey {
    /// The key from a key file's contents (surrounding whitespace is removed).
    pub fn new(contents: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, contents.trim_ascii()))
    }

    /// The token for `identity`, as lowercase hex.
    pub fn mint(&self, identity: &str) -> String {
        let tag = hmac::sign(&self.0, identity.as_bytes());
        let mut out = String::with_capacity(tag.as_ref().len() * 2);
        for b in tag.as_ref() {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out
    }

    /// Whether `tag` (the decoded token) is `identity`'s, compared in constant time.
    pub fn verify(&self, identity: &str, tag: &[u8]) -> bool {
        hmac::verify(&self.0, identity.as_bytes(), tag).is_ok()
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

/// The token for `identity` under `key` (the key file's contents).
pub fn mint_token(key: &[u8], identity: &str) -> String {
    TokenKey::new(key).mint(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4231_case_2() {
        let tag = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(mint_token(b"Jefe", "what do ya want for nothing?"), tag);
        assert_eq!(
            mint_token(b" Jefe\n", "what do ya want for nothing?"),
            tag,
            "surrounding whitespace is not part of the key"
        );
    }

    #[test]
    fn verification_is_per_identity_and_key() {
        let key = TokenKey::new(b"0123456789abcdef0123456789abcdef");
        let raw = |hex: &str| -> Vec<u8> {
            (0..hex.len())
                .step_by(2)
                .filter_map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect()
        };
        let tag = raw(&key.mint("web"));
        assert!(key.verify("web", &tag));
        assert!(!key.verify("voting", &tag));
        assert!(!TokenKey::new(b"another key, long enough to be used").verify("web", &tag));
        assert!(!key.verify("web", &tag[..31]));
    }
}
