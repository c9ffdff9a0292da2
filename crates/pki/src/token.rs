//! Minting the local mesh's bootstrap tokens: `lowercase_hex(HMAC-SHA256(key, identity))`,
//! where `key` is the token key file's bytes with surrounding whitespace removed. The identity
//! service checks them (weft-controller's `identity::token`); `weft` mints one per workload.

use aws_lc_rs::hmac;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The token for `identity` under `key` (the key file's contents; surrounding whitespace is
/// removed, as the validator does).
pub fn mint_token(key: &[u8], identity: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key.trim_ascii());
    let tag = hmac::sign(&key, identity.as_bytes());
    let mut out = String::with_capacity(tag.as_ref().len() * 2);
    for b in tag.as_ref() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4231_case_2() {
        assert_eq!(
            mint_token(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            mint_token(b" Jefe\n", "what do ya want for nothing?"),
            mint_token(b"Jefe", "what do ya want for nothing?")
        );
    }
}
