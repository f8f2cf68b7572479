//! Sessions of the web page: the read token, presented once at sign-in, is exchanged for a
//! cookie the receiver signs and nobody else can make. Stateless (any receiver with the
//! same keys accepts it), so it survives a restart; it expires after [`SESSION_TTL`], and
//! changing the read token or the HMAC key ends every session.
//!
//! Cookie value: `v1.{expires_unix}.{nonce_hex}.{mac_hex}`, where the MAC is HMAC-SHA256
//! under a key derived from the HMAC key and the read token's digest, over
//! `v1.{expires_unix}.{nonce_hex}`. The token itself is never in a cookie, a URL or a log.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The cookie's name.
pub const COOKIE: &str = "collector_session";

type HmacSha256 = Hmac<Sha256>;

/// The key sessions are signed with.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

impl SessionKey {
    /// Derived from the receiver's HMAC key and read token (a new token ends old sessions).
    pub fn new(hmac_key: &[u8], read_token: &[u8]) -> Self {
        let mut mac = HmacSha256::new_from_slice(hmac_key).expect("HMAC takes any key length");
        mac.update(b"collector-web-session\0");
        mac.update(&Sha256::digest(read_token));
        Self(mac.finalize().into_bytes().into())
    }

    fn mac(&self, body: &str) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(body.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A new session's cookie value, valid until `now + SESSION_TTL` (Unix seconds).
    pub fn issue(&self, now: u64, nonce: [u8; 16]) -> String {
        let body = format!(
            "v1.{}.{}",
            now.saturating_add(SESSION_TTL.as_secs()),
            hex::encode(nonce)
        );
        let mac = hex::encode(self.mac(&body));
        format!("{body}.{mac}")
    }

    /// Whether `value` is a cookie this key issued that has not expired at `now`.
    pub fn verify(&self, value: &str, now: u64) -> bool {
        let Some((body, mac)) = value.rsplit_once('.') else {
            return false;
        };
        let mut parts = body.split('.');
        let (Some("v1"), Some(expires), Some(nonce), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(expires) = expires.parse::<u64>() else {
            return false;
        };
        let mut given = [0u8; 32];
        if nonce.len() != 32 || hex::decode_to_slice(mac, &mut given).is_err() {
            return false;
        }
        bool::from(self.mac(body).ct_eq(&given)) && now < expires
    }
}

/// 16 random bytes from the kernel (a session's nonce: it only makes cookies distinct; the
/// MAC is what makes them unforgeable).
pub fn nonce() -> [u8; 16] {
    let mut buf = [0u8; 16];
    // SAFETY: `buf` is valid for 16 bytes of writes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != 16 {
        // Distinct enough without randomness: the time in nanoseconds.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        buf = t.to_le_bytes();
    }
    buf
}

/// The session cookie's value in a `Cookie` header, if there is one.
pub fn from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').find_map(|c| {
        let (name, value) = c.trim().split_once('=')?;
        (name == COOKIE).then_some(value)
    })
}

/// `Set-Cookie` for a new session (HttpOnly, SameSite=Strict, the whole site).
pub fn set_cookie(value: &str) -> String {
    format!(
        "{COOKIE}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict",
        SESSION_TTL.as_secs()
    )
}

/// `Set-Cookie` that ends the session in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_verify_expire_and_resist_forgery() {
        let key = SessionKey::new(b"hmac-key", b"read-token");
        let v = key.issue(1000, [7; 16]);
        assert!(key.verify(&v, 1000));
        assert!(key.verify(&v, 1000 + SESSION_TTL.as_secs() - 1));
        assert!(!key.verify(&v, 1000 + SESSION_TTL.as_secs()));
        // Another read token or HMAC key: every session ends.
        assert!(!SessionKey::new(b"hmac-key", b"new-token").verify(&v, 1000));
        assert!(!SessionKey::new(b"other-key", b"read-token").verify(&v, 1000));
        // A longer expiry under the old MAC is refused.
        let (body, mac) = v.rsplit_once('.').unwrap();
        let longer = body.replace(&format!("{}", 1000 + SESSION_TTL.as_secs()), "99999999999");
        assert!(!key.verify(&format!("{longer}.{mac}"), 1000));
        for bad in [
            "",
            "v1",
            "v1.1.2.3",
            "v2.1.00.00",
            &format!("{v}.x"),
            "read-token",
        ] {
            assert!(!key.verify(bad, 1000), "{bad}");
        }
        assert_eq!(
            from_cookie_header(&format!("a=b; {COOKIE}={v}; c=d")),
            Some(v.as_str())
        );
        assert_eq!(from_cookie_header("a=b"), None);
        assert!(set_cookie(&v).contains("HttpOnly; SameSite=Strict"));
        assert_ne!(nonce(), nonce());
    }
}
