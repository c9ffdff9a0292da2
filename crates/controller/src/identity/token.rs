//! Bootstrap tokens: how a workload proves which identity it may ask a certificate for.
//!
//! The check is a trait, [`TokenValidator`], so that the Kubernetes check (a projected
//! ServiceAccount token sent to the API server's TokenReview) plugs in beside the local one.
//!
//! # The local mesh's scheme
//!
//! The control plane of a local cluster holds one secret, the *token key* (`--token-key-file`,
//! in the cluster's state directory, readable by its owner only). A workload's token is
//!
//! ```text
//! token = lowercase_hex(HMAC-SHA256(key, identity))
//! ```
//!
//! where `identity` is the full identity name in UTF-8
//! (`web.emojivoto.serviceaccount.identity.weft.cluster.local`) and `key` is the key file's bytes
//! with surrounding whitespace removed (at least [`MIN_KEY_LEN`] bytes; the CLI writes 32 random
//! bytes as 64 hex characters, and the hex text itself is the key). The CLI mints one token per
//! workload with [`mint_token`] and writes it into the state directory, where only that
//! workload's proxy reads it; the identity service recomputes the MAC and compares in constant
//! time ([`TokenKey::verify`](weft_pki::token::TokenKey::verify), aws-lc's HMAC).
//!
//! Why HMAC: the identity service needs no per-workload state (no token database to keep in
//! sync), a token for one identity says nothing about another, and anyone without the key cannot
//! make one. A token does not expire; rotating the key (and re-minting tokens) revokes them all.

use std::fmt;

use weft_pki::token::TokenKey;

/// The shortest token key accepted, in bytes (the HMAC-SHA256 output size).
pub const MIN_KEY_LEN: usize = 32;

/// Proves that a token was issued to a workload identity.
pub trait TokenValidator: Send + Sync {
    /// `Ok` when `token` proves `identity` (a full, already validated identity name).
    fn validate(&self, identity: &str, token: &[u8]) -> Result<(), TokenError>;
}

/// Why a token was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was sent.
    #[error("no token was sent")]
    Missing,
    /// The token is not of the expected form.
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    /// A well-formed token that does not prove this identity.
    #[error("token does not prove identity {identity}")]
    Rejected {
        /// The identity asked for.
        identity: String,
    },
    /// The token could not be checked (for example, the TokenReview API is unreachable).
    #[error("token could not be checked: {0}")]
    Unavailable(String),
}

/// Why a token key cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenKeyError {
    /// The key is too short to be a secret.
    #[error("token key is {len} bytes; at least {MIN_KEY_LEN} are needed (e.g. 64 hex characters from `openssl rand -hex 32`)")]
    TooShort {
        /// Its length after trimming whitespace.
        len: usize,
    },
}

/// The local mesh's [`TokenValidator`]: HMAC-SHA256 tokens (see the module docs).
#[derive(Clone)]
pub struct HmacTokens {
    key: TokenKey,
}

impl fmt::Debug for HmacTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacTokens { key: <redacted> }")
    }
}

impl HmacTokens {
    /// A validator for the key read from a key file (surrounding whitespace is removed).
    pub fn from_key_file_contents(contents: &[u8]) -> Result<Self, TokenKeyError> {
        let key = contents.trim_ascii();
        if key.len() < MIN_KEY_LEN {
            return Err(TokenKeyError::TooShort { len: key.len() });
        }
        Ok(Self {
            key: TokenKey::new(key),
        })
    }
}

impl TokenValidator for HmacTokens {
    fn validate(&self, identity: &str, token: &[u8]) -> Result<(), TokenError> {
        let token = token.trim_ascii();
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let tag = decode_hex(token).ok_or(TokenError::Malformed(
            "expected 64 hexadecimal characters (HMAC-SHA256)",
        ))?;
        if self.key.verify(identity, &tag) {
            Ok(())
        } else {
            Err(TokenError::Rejected {
                identity: identity.to_owned(),
            })
        }
    }
}

/// The token for `identity` under `key` (minted by the PKI crate, so `weft` can mint without
/// the control plane).
pub use weft_pki::token::mint_token;

/// Decodes exactly 64 hex digits (either case) into 32 bytes.
fn decode_hex(s: &[u8]) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *o = (nibble(*hi)? << 4) | nibble(*lo)?;
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HEX: &[u8; 16] = b"0123456789abcdef";

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";
    const WEB: &str = "web.emojivoto.serviceaccount.identity.weft.cluster.local";
    const VOTING: &str = "voting.emojivoto.serviceaccount.identity.weft.cluster.local";

    #[test]
    fn minted_tokens_validate_for_their_identity_only() {
        let v = HmacTokens::from_key_file_contents(KEY).unwrap();
        let token = mint_token(KEY, WEB);
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| HEX.contains(&b)));
        v.validate(WEB, token.as_bytes()).unwrap();
        // Trailing newline (a token file written with echo) and uppercase are fine.
        v.validate(WEB, format!("{token}\n").as_bytes()).unwrap();
        v.validate(WEB, token.to_uppercase().as_bytes()).unwrap();
        assert_eq!(
            v.validate(VOTING, token.as_bytes()),
            Err(TokenError::Rejected {
                identity: VOTING.to_owned()
            })
        );
    }

    #[test]
    fn another_key_rejects() {
        let other = HmacTokens::from_key_file_contents(&[b'x'; 40]).unwrap();
        let token = mint_token(KEY, WEB);
        assert!(matches!(
            other.validate(WEB, token.as_bytes()),
            Err(TokenError::Rejected { .. })
        ));
    }

    #[test]
    fn malformed_and_missing_tokens() {
        let v = HmacTokens::from_key_file_contents(KEY).unwrap();
        assert_eq!(v.validate(WEB, b""), Err(TokenError::Missing));
        assert_eq!(v.validate(WEB, b" \n"), Err(TokenError::Missing));
        for bad in [
            "abc",
            &"g".repeat(64),
            &"a".repeat(66),
            "é".repeat(32).as_str(),
        ] {
            assert!(
                matches!(
                    v.validate(WEB, bad.as_bytes()),
                    Err(TokenError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn short_keys_are_refused() {
        let err = HmacTokens::from_key_file_contents(b"  short  \n").unwrap_err();
        assert_eq!(err, TokenKeyError::TooShort { len: 5 });
        assert!(err.to_string().contains("at least 32"), "{err}");
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let v = HmacTokens::from_key_file_contents(KEY).unwrap();
        assert!(!format!("{v:?}").contains("0123"));
    }
}
