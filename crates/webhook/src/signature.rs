//! WhatsApp's webhook signature: `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of
//! the raw body keyed with the app secret, checked in constant time before the body is
//! parsed.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

/// The header WhatsApp signs its webhooks in.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Why a WhatsApp webhook's signature was refused. None of these carries the signature,
/// the secret or the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header.
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    /// The header is not `sha256=` followed by 64 hex digits.
    #[error("the X-Hub-Signature-256 header is not sha256= and 64 hex digits")]
    Malformed,
    /// The signature is not the body's HMAC-SHA256 under the app secret.
    #[error("the X-Hub-Signature-256 signature does not match the body")]
    Mismatch,
}

impl SignatureError {
    /// A short name for metrics and logs: `missing`, `malformed`, `mismatch`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Mismatch => "mismatch",
        }
    }
}

/// Checks `header` (the value of `X-Hub-Signature-256`, if any) against `body` under
/// `app_secret`. The comparison is constant-time (hmac's `verify_slice`).
pub fn verify_signature(
    app_secret: &Secret,
    header: Option<&[u8]>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let presented = PresentedSignature::from_header(header)?;
    presented.verify(app_secret, body)
}

/// The signature a request's `X-Hub-Signature-256` header presents, read from the request
/// head before its body: a header that is missing or not `sha256=` and 64 hex digits is
/// refused without reading the body.
#[derive(Clone, Copy)]
pub(crate) struct PresentedSignature([u8; 32]);

impl PresentedSignature {
    /// The signature in `header` (the header's value, if any).
    pub(crate) fn from_header(header: Option<&[u8]>) -> Result<Self, SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let hex = header
            .trim_ascii()
            .strip_prefix(b"sha256=")
            .ok_or(SignatureError::Malformed)?;
        decode_hex_32(hex)
            .map(Self)
            .ok_or(SignatureError::Malformed)
    }

    /// Whether this is `body`'s HMAC-SHA256 under `app_secret`, compared in constant
    /// time (hmac's `verify_slice`).
    pub(crate) fn verify(&self, app_secret: &Secret, body: &[u8]) -> Result<(), SignatureError> {
        mac(app_secret, body)
            .verify_slice(&self.0)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// The header value WhatsApp would send for `body`: `sha256=` and the lowercase hex
/// HMAC-SHA256 under `app_secret` (for tests, and for a client that forwards webhooks).
pub fn sign(app_secret: &Secret, body: &[u8]) -> String {
    let digest = mac(app_secret, body).finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn mac(app_secret: &Secret, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length (a longer one is hashed first), so
    // `new_from_slice` never refuses one and the fallback is never taken.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(app_secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
    mac.update(body);
    mac
}

/// 64 hex digits (either case) as 32 bytes.
fn decode_hex_32(hex: &[u8]) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(value: &str) -> Secret {
        Secret::new("app secret", value).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_known_hmac_sha256() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        let signed = sign(&secret("Jefe"), b"what do ya want for nothing?");
        assert_eq!(
            signed,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let body = b"what do ya want for nothing?";
        assert_eq!(
            verify_signature(&secret("Jefe"), Some(signed.as_bytes()), body),
            Ok(())
        );
        let upper = signed.replace("5bdcc", "5BDCC");
        assert_eq!(
            verify_signature(&secret("Jefe"), Some(upper.as_bytes()), body),
            Ok(())
        );
    }

    #[test]
    fn refusals() {
        let key = secret("app-secret");
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let good = sign(&key, body);
        assert_eq!(
            verify_signature(&key, None, body),
            Err(SignatureError::Missing)
        );
        for malformed in [
            "",
            "sha1=abc",
            "sha256=",
            "sha256=zz",
            &good[..good.len() - 1],
            &format!("{good}0"),
            &good.replace("sha256=", "sha256:"),
        ] {
            assert_eq!(
                verify_signature(&key, Some(malformed.as_bytes()), body),
                Err(SignatureError::Malformed),
                "{malformed:?}"
            );
        }
        let mut flipped = good.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            verify_signature(&key, Some(&flipped), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&secret("another"), Some(good.as_bytes()), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&key, Some(good.as_bytes()), b"{}"),
            Err(SignatureError::Mismatch)
        );
    }
}
