//! The push-token scheme and the read-token check: pure functions, no I/O.
//!
//! **Self-describing tokens** (`v2`, what `POST /api/v1/token` issues): the token carries
//! its scope and expiry, so a push is authenticated from its headers alone, before a byte
//! of its body is read:
//!
//! ```text
//! token  = "v2." + b64url(claims) + "." + b64url(HMAC-SHA256(hmac_key, DOMAIN_V2 || claims))
//! claims = component{4} expiry
//! component = 0x00 || u16_be(len) || utf-8 bytes      (a literal)
//!           | 0x01                                    (the wildcard "*")
//! expiry    = 0x00 | 0x01 || u64_be(unix_seconds)
//! ```
//!
//! `b64url` is base64url without padding. The components are organization, canonical
//! repository, workflow and job. Only the canonical form is accepted: the token is
//! re-derived from the claims it carries and compared (in constant time) with the one
//! presented, so another spelling of the same claims (padding, trailing bits, a repository
//! written `org/repo`, a literal `"*"`) is refused like a forged one.
//!
//! **Legacy tokens** (the seed's format, still accepted): `hex(HMAC-SHA256(hmac_key,
//! encode(scope, expiry)))`, or `v1.<expiry_unix_seconds>.<hex>` with a TTL. Their scope
//! is not in the token: it is the body's identity, so the body must be read before the
//! token can be checked (the API bounds how many such bodies are read at once). Only the
//! canonical spelling is accepted: lowercase hex, an expiry without leading zeros.
//!
//! **Encoding of legacy MACs.** Repository names contain `/`, so components are not
//! joined with a separator: [`encode`] writes a domain-separation prefix, then for each
//! of the four components either `0x00 || u32 big-endian length || bytes` (a literal) or
//! `0x01` (the wildcard), then `0x00` (no expiry) or `0x01 || u64 big-endian expiry`.
//! Distinct (scope, expiry) pairs therefore give distinct MAC inputs.
//!
//! **Wildcards.** `"*"` may stand for trailing components only (`org/*/*/*` or
//! `org/repo/*/*` or `org/repo/workflow/*`); the organization is always literal. A
//! wildcard token accepts any push whose leading components equal its literal ones.
//!
//! **Scopes a push can use.** A token is issued only for a scope whose literal components
//! pass the checks a push's identity must pass (`summary::validate::identity_problem`,
//! `repository_problem`): non-empty, at most 256 bytes, no control characters, a
//! repository with a name.
//!
//! **Repository spelling.** `GITHUB_REPOSITORY` is `org/repo`, while the seed's token
//! request says `"repository": "repo"`. Both spellings are the same repository: a leading
//! `org/` equal to the organization is stripped ([`canonical_repository`]) before
//! encoding, storing and querying.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use summary::validate::{identity_problem, repository_problem};

pub use summary::canonical_repository;

type HmacSha256 = Hmac<Sha256>;

/// Shortest accepted secret (read token and HMAC key), in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// Prefix of the legacy MAC input, so these MACs can never collide with another use of
/// the key.
const DOMAIN: &[u8] = b"forgejo-resource-collector push-token v1\0";

/// Prefix of the self-describing tokens' MAC input.
const DOMAIN_V2: &[u8] = b"forgejo-resource-collector push-token v2\0";

/// The start of a self-describing token.
pub const V2_PREFIX: &str = "v2.";

/// Longest token looked at; anything longer is malformed (a v2 token with four 256-byte
/// components is about 1.5 KB).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The wildcard component.
pub const WILDCARD: &str = "*";

/// One component of a scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Part {
    /// Matches exactly this value.
    Literal(String),
    /// Matches anything (`"*"`).
    Any,
}

/// What a push token allows: organization, repository, workflow and job, with trailing
/// wildcards. The repository is stored canonical (see [`canonical_repository`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// `[organization, repository, workflow, job]`.
    parts: [Part; 4],
}

/// Why a scope request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A component no push could carry (empty, too long, control characters, a
    /// repository without a name).
    #[error("{field} {reason}")]
    Invalid {
        /// `organization`, `repository`, `workflow` or `job`.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The organization is a wildcard.
    #[error("organization must not be a wildcard")]
    WildcardOrganization,
    /// A literal follows a wildcard.
    #[error("wildcards (\"*\") are allowed only in trailing components; {0} follows one")]
    WildcardNotTrailing(&'static str),
}

/// Names of a scope's components, in order.
pub const NAMES: [&str; 4] = ["organization", "repository", "workflow", "job"];

impl Scope {
    /// Builds a scope from a token request's four fields; `"*"` is the wildcard. Literal
    /// components must be what a push may carry.
    pub fn new(
        organization: &str,
        repository: &str,
        workflow: &str,
        job: &str,
    ) -> Result<Self, ScopeError> {
        let raw = [
            organization,
            canonical_repository(organization, repository),
            workflow,
            job,
        ];
        Self::checked(raw, repository_problem(organization, repository))
    }

    /// The scope a self-describing token's claims carry: checked like [`Scope::new`],
    /// the repository already canonical (so not stripped again: `o/o/r` was stored `o/r`).
    fn from_claims(raw: [&str; 4]) -> Result<Self, ScopeError> {
        Self::checked(raw, repository_problem(raw[0], raw[1]))
    }

    /// `raw` (repository canonical) as a scope; `repository` is what is wrong with the
    /// repository as requested, if anything.
    fn checked(raw: [&str; 4], repository: Option<&'static str>) -> Result<Self, ScopeError> {
        let mut seen_wildcard = false;
        let mut parts = [Part::Any, Part::Any, Part::Any, Part::Any];
        for (i, value) in raw.iter().enumerate() {
            let field = NAMES[i];
            if *value == WILDCARD {
                if i == 0 {
                    return Err(ScopeError::WildcardOrganization);
                }
                seen_wildcard = true;
                parts[i] = Part::Any;
                continue;
            }
            let problem = if i == 1 {
                repository
            } else {
                identity_problem(value)
            };
            if let Some(reason) = problem {
                return Err(ScopeError::Invalid { field, reason });
            }
            if seen_wildcard {
                return Err(ScopeError::WildcardNotTrailing(field));
            }
            parts[i] = Part::Literal((*value).to_string());
        }
        Ok(Self { parts })
    }

    /// The exact scope of a push's identity (no wildcards; `"*"` is taken literally).
    pub fn exact(organization: &str, repository: &str, workflow: &str, job: &str) -> Self {
        let raw = [
            organization,
            canonical_repository(organization, repository),
            workflow,
            job,
        ];
        Self {
            parts: raw.map(|v| Part::Literal(v.to_string())),
        }
    }

    /// This scope with its last `n` components made wildcards.
    fn widened(&self, n: usize) -> Self {
        let mut parts = self.parts.clone();
        for p in parts.iter_mut().skip(4 - n) {
            *p = Part::Any;
        }
        Self { parts }
    }

    /// The components (`[organization, repository, workflow, job]`).
    pub fn parts(&self) -> &[Part; 4] {
        &self.parts
    }

    /// Whether this scope admits the exact scope `push`.
    pub fn admits(&self, push: &Scope) -> bool {
        self.mismatch(push).is_none()
    }

    /// The first component of `push` this scope does not admit: its name, this scope's
    /// value and the push's value.
    pub fn mismatch<'a>(&'a self, push: &'a Scope) -> Option<(&'static str, &'a str, &'a str)> {
        self.parts
            .iter()
            .zip(&push.parts)
            .enumerate()
            .find_map(|(i, (mine, theirs))| match (mine, theirs) {
                (Part::Any, _) => None,
                (Part::Literal(a), Part::Literal(b)) if a == b => None,
                (Part::Literal(a), Part::Literal(b)) => Some((NAMES[i], a.as_str(), b.as_str())),
                (Part::Literal(a), Part::Any) => Some((NAMES[i], a.as_str(), WILDCARD)),
            })
    }
}

/// The unambiguous legacy MAC input for a scope and an optional expiry (Unix seconds).
pub fn encode(scope: &Scope, expiry: Option<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 64);
    out.extend_from_slice(DOMAIN);
    for part in &scope.parts {
        match part {
            Part::Literal(s) => {
                out.push(0);
                // Components are bounded by MAX_IDENTITY_BYTES, far below u32::MAX.
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Part::Any => out.push(1),
        }
    }
    push_expiry(&mut out, expiry);
    out
}

fn push_expiry(out: &mut Vec<u8>, expiry: Option<u64>) {
    match expiry {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&t.to_be_bytes());
        }
    }
}

/// The claims of a self-describing token: components as `0x00 || u16_be(len) || bytes`
/// or `0x01`, then the expiry as in [`encode`].
pub fn encode_claims(scope: &Scope, expiry: Option<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    for part in &scope.parts {
        match part {
            Part::Literal(s) => {
                out.push(0);
                // Scope::new bounds components by MAX_IDENTITY_BYTES (256).
                out.extend_from_slice(&(s.len() as u16).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Part::Any => out.push(1),
        }
    }
    push_expiry(&mut out, expiry);
    out
}

/// Parses [`encode_claims`]' output back into the scope request it came from (`"*"` for
/// a wildcard) and the expiry; `None` unless every byte is consumed.
fn decode_claims(mut b: &[u8]) -> Option<([String; 4], Option<u64>)> {
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, rest) = (b.get(..n)?, b.get(n..)?);
        b = rest;
        Some(head)
    };
    let mut parts: [String; 4] = Default::default();
    for part in &mut parts {
        match take(1)?[0] {
            0 => {
                let len = take(2)?;
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                *part = std::str::from_utf8(take(len)?).ok()?.to_owned();
            }
            1 => *part = WILDCARD.to_owned(),
            _ => return None,
        }
    }
    let expiry = match take(1)?[0] {
        0 => None,
        1 => {
            let mut t = [0u8; 8];
            t.copy_from_slice(take(8)?);
            Some(u64::from_be_bytes(t))
        }
        _ => return None,
    };
    b.is_empty().then_some((parts, expiry))
}

/// Why a push token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of any format, or not in its canonical spelling.
    #[error("malformed push token")]
    Malformed,
    /// A self-describing token this receiver's key did not issue.
    #[error("invalid push token")]
    Invalid,
    /// The token's expiry has passed.
    #[error("push token expired")]
    Expired,
    /// A well-formed token that does not grant this identity.
    #[error("push token does not grant this organization/repository/workflow/job")]
    WrongScope,
}

/// What a token is, once read from the `Authorization` header alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushToken {
    /// A self-describing token, checked: its MAC is this receiver's and it has not
    /// expired. The body's identity must be within `scope`.
    Scoped {
        /// What it grants.
        scope: Scope,
        /// When it expires (Unix seconds), if ever.
        expiry: Option<u64>,
    },
    /// A well-formed legacy token: nothing is known until the body names the scope
    /// ([`Keys::verify_legacy`]).
    Legacy(LegacyToken),
}

/// A legacy token taken apart (plain hex, or `v1.<expiry>.<hex>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyToken {
    /// The expiry of a `v1.` token.
    expiry: Option<u64>,
    /// The MAC it carries.
    mac: [u8; 32],
}

/// Holds the HMAC key and the read token; issues and checks tokens.
#[derive(Clone)]
pub struct Keys {
    /// HMAC state keyed with `--hmac-key`, cloned per MAC so the key schedule runs once.
    mac: HmacSha256,
    /// SHA-256 of the read token: compared in constant time against the digest of the
    /// presented token, so neither content nor length leaks through timing.
    read_token_digest: [u8; 32],
    /// The wall clock that TTLs start from and expiries are checked against
    /// ([`SystemTime::now`] unless a test injects another, see `Config::clock`).
    clock: fn() -> SystemTime,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys { <redacted> }")
    }
}

/// `clock()` in Unix seconds (0 before the epoch).
fn unix_secs(clock: fn() -> SystemTime) -> u64 {
    clock()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `0` or a decimal without leading zeros that fits a `u64`.
fn canonical_decimal(s: &str) -> Option<u64> {
    let ok = !s.is_empty()
        && s.len() <= 20
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse().ok()).flatten()
}

/// 64 lowercase hex digits.
fn canonical_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

impl Keys {
    /// Builds the key holder on the system clock. The caller has checked the secrets'
    /// lengths.
    pub fn new(hmac_key: &[u8], read_token: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = HmacSha256::new_from_slice(hmac_key).unwrap_or_else(|_| unreachable!());
        Self {
            mac,
            read_token_digest: Sha256::digest(read_token).into(),
            clock: SystemTime::now,
        }
    }

    /// The same keys on another wall clock (for TTLs and expiry checks).
    pub fn with_clock(self, clock: fn() -> SystemTime) -> Self {
        Self { clock, ..self }
    }

    /// The current time of this holder's clock, in Unix seconds: where TTLs start.
    pub fn now(&self) -> u64 {
        unix_secs(self.clock)
    }

    /// The current time of this holder's clock.
    pub fn clock_now(&self) -> SystemTime {
        (self.clock)()
    }

    fn mac_of(&self, domain: &[u8], input: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(domain);
        m.update(input);
        m.finalize().into_bytes().into()
    }

    fn legacy_mac(&self, scope: &Scope, expiry: Option<u64>) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(&encode(scope, expiry));
        m.finalize().into_bytes().into()
    }

    /// Issues a self-describing token for `scope`, expiring at `expiry` (Unix seconds) if
    /// given: what `POST /api/v1/token` answers.
    pub fn issue(&self, scope: &Scope, expiry: Option<u64>) -> String {
        let claims = encode_claims(scope, expiry);
        let mac = self.mac_of(DOMAIN_V2, &claims);
        format!(
            "{V2_PREFIX}{}.{}",
            B64URL.encode(&claims),
            B64URL.encode(mac)
        )
    }

    /// Issues a token in the seed's format (hex, or `v1.<expiry>.<hex>`), whose scope is
    /// not in the token. No endpoint issues these any more; they are still accepted.
    pub fn issue_legacy(&self, scope: &Scope, expiry: Option<u64>) -> String {
        let hex = hex::encode(self.legacy_mac(scope, expiry));
        match expiry {
            None => hex,
            Some(t) => format!("v1.{t}.{hex}"),
        }
    }

    /// Reads a push token from the header alone, at time `now` (Unix seconds).
    ///
    /// A self-describing token is fully checked here (MAC, canonical spelling, expiry); a
    /// legacy one only for its shape.
    pub fn read_push_token(&self, token: &str, now: u64) -> Result<PushToken, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        if let Some(rest) = token.strip_prefix(V2_PREFIX) {
            let (claims_b64, _mac) = rest.split_once('.').ok_or(TokenError::Malformed)?;
            let claims = B64URL
                .decode(claims_b64)
                .map_err(|_| TokenError::Malformed)?;
            let ([o, r, w, j], expiry) = decode_claims(&claims).ok_or(TokenError::Malformed)?;
            let scope = Scope::from_claims([&o, &r, &w, &j]).map_err(|_| TokenError::Malformed)?;
            // Re-derived from its claims: a forged MAC and a non-canonical spelling of
            // genuine claims fail alike.
            let expected = self.issue(&scope, expiry);
            if !bool::from(expected.as_bytes().ct_eq(token.as_bytes())) {
                return Err(TokenError::Invalid);
            }
            if expiry.is_some_and(|t| t <= now) {
                return Err(TokenError::Expired);
            }
            return Ok(PushToken::Scoped { scope, expiry });
        }
        let (expiry, hex_part) = match token.strip_prefix("v1.") {
            Some(rest) => {
                let (t, h) = rest.split_once('.').ok_or(TokenError::Malformed)?;
                (Some(canonical_decimal(t).ok_or(TokenError::Malformed)?), h)
            }
            None => (None, token),
        };
        let mac = canonical_hex(hex_part).ok_or(TokenError::Malformed)?;
        Ok(PushToken::Legacy(LegacyToken { expiry, mac }))
    }

    /// Checks a legacy token for a push of the exact scope `push`, at time `now`.
    ///
    /// Tries the exact scope and its three widenings (`job`, `workflow/job`,
    /// `repository/workflow/job` as wildcards), comparing MACs in constant time.
    pub fn verify_legacy(
        &self,
        token: &LegacyToken,
        push: &Scope,
        now: u64,
    ) -> Result<(), TokenError> {
        let mut ok = subtle::Choice::from(0);
        for widen in 0..4 {
            ok |= self
                .legacy_mac(&push.widened(widen), token.expiry)
                .ct_eq(&token.mac);
        }
        if !bool::from(ok) {
            return Err(TokenError::WrongScope);
        }
        match token.expiry {
            Some(t) if t <= now => Err(TokenError::Expired),
            _ => Ok(()),
        }
    }

    /// Checks `token` (either format) for a push of the exact scope `push`, at time `now`.
    pub fn verify_at(&self, token: &str, push: &Scope, now: u64) -> Result<(), TokenError> {
        match self.read_push_token(token, now)? {
            PushToken::Scoped { scope, .. } if scope.admits(push) => Ok(()),
            PushToken::Scoped { .. } => Err(TokenError::WrongScope),
            PushToken::Legacy(legacy) => self.verify_legacy(&legacy, push, now),
        }
    }

    /// [`Keys::verify_at`] at the current time of this holder's clock.
    pub fn verify(&self, token: &str, push: &Scope) -> Result<(), TokenError> {
        self.verify_at(token, push, self.now())
    }

    /// Whether `presented` is the read token (constant time).
    pub fn is_read_token(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(digest.ct_eq(&self.read_token_digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> Keys {
        Keys::new(b"0123456789abcdef-hmac", b"0123456789abcdef-read")
    }

    #[test]
    fn issued_tokens_are_self_describing() {
        let k = keys();
        let scope = Scope::new("my-org", "my-org/my-repo", "ci.yml", "build").unwrap();
        let t = k.issue(&scope, None);
        assert!(t.starts_with("v2."), "{t}");
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{t}"
        );
        // The scope is read from the token alone.
        assert_eq!(
            k.read_push_token(&t, 0),
            Ok(PushToken::Scoped {
                scope: scope.clone(),
                expiry: None
            })
        );
        let push = Scope::exact("my-org", "my-org/my-repo", "ci.yml", "build");
        assert_eq!(k.verify(&t, &push), Ok(()));
        let other = Scope::exact("my-org", "my-org/my-repo", "ci.yml", "test");
        assert_eq!(k.verify(&t, &other), Err(TokenError::WrongScope));
        assert_eq!(scope.mismatch(&other), Some(("job", "build", "test")));
        // Another key's token of the same claims is invalid, before any body is seen.
        let theirs = Keys::new(b"another-key-of-16-bytes", b"0123456789abcdef-read");
        assert_eq!(
            theirs.read_push_token(&t, 0),
            Err(TokenError::Invalid),
            "{t}"
        );
    }

    #[test]
    fn legacy_tokens_are_64_hex_and_still_accepted() {
        let k = keys();
        let scope = Scope::new("my-org", "my-repo", "ci.yml", "build").unwrap();
        let t = k.issue_legacy(&scope, None);
        assert_eq!(t.len(), 64);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(matches!(k.read_push_token(&t, 0), Ok(PushToken::Legacy(_))));
        let push = Scope::exact("my-org", "my-org/my-repo", "ci.yml", "build");
        assert_eq!(k.verify(&t, &push), Ok(()));
        let other = Scope::exact("my-org", "my-org/my-repo", "ci.yml", "test");
        assert_eq!(k.verify(&t, &other), Err(TokenError::WrongScope));
    }

    #[test]
    fn only_canonical_spellings_are_accepted() {
        let k = keys();
        let scope = Scope::new("o", "r", "w", "j").unwrap();
        let push = Scope::exact("o", "r", "w", "j");
        // Legacy: uppercase hex, leading zeros in the expiry.
        let plain = k.issue_legacy(&scope, None);
        assert_eq!(k.verify_at(&plain, &push, 0), Ok(()));
        assert_eq!(
            k.verify_at(&plain.to_uppercase(), &push, 0),
            Err(TokenError::Malformed)
        );
        let ttl = k.issue_legacy(&scope, Some(1000));
        assert_eq!(k.verify_at(&ttl, &push, 999), Ok(()));
        let zeros = ttl.replace("v1.1000.", "v1.01000.");
        assert_eq!(k.verify_at(&zeros, &push, 999), Err(TokenError::Malformed));
        let upper = format!("v1.1000.{}", ttl["v1.1000.".len()..].to_uppercase());
        assert_eq!(k.verify_at(&upper, &push, 999), Err(TokenError::Malformed));
        // v2: padding, non-canonical base64 trailing bits, a repository spelled org/repo.
        let t = k.issue(&scope, Some(1000));
        assert_eq!(k.verify_at(&t, &push, 999), Ok(()));
        let (claims, mac) = t["v2.".len()..].split_once('.').unwrap();
        let padded = format!("v2.{claims}=.{mac}");
        assert_eq!(k.verify_at(&padded, &push, 999), Err(TokenError::Malformed));
        let padded_mac = format!("v2.{claims}.{mac}=");
        assert_eq!(
            k.verify_at(&padded_mac, &push, 999),
            Err(TokenError::Invalid)
        );
        // Flip the unused low bits of the MAC's last base64 digit: same bytes, other text.
        let last = mac.as_bytes()[mac.len() - 1];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let pos = alphabet.iter().position(|&c| c == last).unwrap();
        let twin = alphabet[pos ^ 1] as char;
        let bent = format!("v2.{claims}.{}{twin}", &mac[..mac.len() - 1]);
        assert_ne!(bent, t);
        assert_eq!(k.verify_at(&bent, &push, 999), Err(TokenError::Invalid));
        // Claims with the repository "o/r" grant the repository o/o/r, not o/r.
        let long = Scope {
            parts: [
                Part::Literal("o".into()),
                Part::Literal("o/r".into()),
                Part::Literal("w".into()),
                Part::Literal("j".into()),
            ],
        };
        let spelled = format!(
            "v2.{}.{}",
            B64URL.encode(encode_claims(&long, None)),
            B64URL.encode(k.mac_of(DOMAIN_V2, &encode_claims(&long, None)))
        );
        assert_eq!(k.verify_at(&spelled, &push, 0), Err(TokenError::WrongScope));
        assert_eq!(
            k.verify_at(&spelled, &Scope::exact("o", "o/o/r", "w", "j"), 0),
            Ok(())
        );
    }

    #[test]
    fn wildcards_cover_trailing_components() {
        let k = keys();
        for issue in [Keys::issue, Keys::issue_legacy] {
            let org = issue(&k, &Scope::new("o", "*", "*", "*").unwrap(), None);
            let repo = issue(&k, &Scope::new("o", "o/r", "*", "*").unwrap(), None);
            let wf = issue(&k, &Scope::new("o", "r", "w", "*").unwrap(), None);
            let push = Scope::exact("o", "r", "w", "j");
            for t in [&org, &repo, &wf] {
                assert_eq!(k.verify(t, &push), Ok(()));
            }
            let elsewhere = Scope::exact("o2", "r", "w", "j");
            for t in [&org, &repo, &wf] {
                assert_eq!(k.verify(t, &elsewhere), Err(TokenError::WrongScope));
            }
            assert_eq!(
                k.verify(&repo, &Scope::exact("o", "r2", "w", "j")),
                Err(TokenError::WrongScope)
            );
        }
        assert_eq!(
            Scope::new("*", "*", "*", "*"),
            Err(ScopeError::WildcardOrganization)
        );
        assert_eq!(
            Scope::new("o", "*", "w", "*"),
            Err(ScopeError::WildcardNotTrailing("workflow"))
        );
    }

    #[test]
    fn scopes_no_push_could_use_are_refused() {
        let invalid = |field, reason| Err(ScopeError::Invalid { field, reason });
        assert_eq!(
            Scope::new("o", "", "w", "j"),
            invalid("repository", "must not be empty")
        );
        assert_eq!(
            Scope::new("o", "o/", "w", "j"),
            invalid(
                "repository",
                "must name a repository, not only the organization"
            )
        );
        assert_eq!(
            Scope::new("o", "r", " ", "j"),
            invalid("workflow", "must not be empty")
        );
        assert_eq!(
            Scope::new("o", "r", "w", "a\nb"),
            invalid("job", "must not contain control characters")
        );
        assert_eq!(
            Scope::new(&"o".repeat(257), "*", "*", "*"),
            invalid("organization", "is longer than 256 bytes")
        );
        assert_eq!(
            Scope::new("o", "a//b", "*", "*"),
            invalid("repository", "must not have an empty path segment")
        );
        assert_eq!(
            Scope::new("o", "r", "w", "j").unwrap().to_string_lossy(),
            "o/r/w/j"
        );
        assert_eq!(
            ScopeError::Invalid {
                field: "job",
                reason: "must not be empty"
            }
            .to_string(),
            "job must not be empty"
        );
    }

    impl Scope {
        fn to_string_lossy(&self) -> String {
            self.parts
                .iter()
                .map(|p| match p {
                    Part::Literal(s) => s.as_str(),
                    Part::Any => "*",
                })
                .collect::<Vec<_>>()
                .join("/")
        }
    }

    #[test]
    fn expiring_tokens() {
        let k = keys();
        let scope = Scope::new("o", "r", "w", "j").unwrap();
        // Legacy.
        let t = k.issue_legacy(&scope, Some(1000));
        assert!(t.starts_with("v1.1000."));
        assert_eq!(k.verify_at(&t, &scope, 999), Ok(()));
        assert_eq!(k.verify_at(&t, &scope, 1000), Err(TokenError::Expired));
        // Changing the expiry breaks the MAC.
        let forged = t.replace("v1.1000.", "v1.9999.");
        assert_eq!(
            k.verify_at(&forged, &scope, 999),
            Err(TokenError::WrongScope)
        );
        // The hex part alone is not a non-expiring token.
        let bare = t.trim_start_matches("v1.1000.");
        assert_eq!(k.verify_at(bare, &scope, 999), Err(TokenError::WrongScope));
        for bad in [
            "",
            "zz",
            "x",
            "v1..ab",
            "v1.x.ab",
            "v1.1",
            &"g".repeat(64),
            "v2.",
            "v2.AAAA",
            "v2.AAAA.AAAA",
            "v2.!!.AAAA",
            &format!("v2.{}", "A".repeat(5000)),
        ] {
            assert_eq!(
                k.verify_at(bad, &scope, 0),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
        // v2: the expiry is read from the token, before the body.
        let t = k.issue(&scope, Some(1000));
        assert_eq!(
            k.read_push_token(&t, 999),
            Ok(PushToken::Scoped {
                scope: scope.clone(),
                expiry: Some(1000)
            })
        );
        assert_eq!(k.read_push_token(&t, 1000), Err(TokenError::Expired));
        // Another expiry in the claims breaks the MAC.
        let (_, mac) = t["v2.".len()..].split_once('.').unwrap();
        let later = format!(
            "v2.{}.{mac}",
            B64URL.encode(encode_claims(&scope, Some(9999)))
        );
        assert_eq!(k.read_push_token(&later, 0), Err(TokenError::Invalid));
    }

    #[test]
    fn verify_uses_the_injected_clock() {
        fn at_1000() -> SystemTime {
            UNIX_EPOCH + std::time::Duration::from_secs(1000)
        }
        let k = keys().with_clock(at_1000);
        assert_eq!(k.now(), 1000);
        let scope = Scope::new("o", "r", "w", "j").unwrap();
        for issue in [Keys::issue, Keys::issue_legacy] {
            assert_eq!(k.verify(&issue(&k, &scope, Some(1001)), &scope), Ok(()));
            assert_eq!(
                k.verify(&issue(&k, &scope, Some(1000)), &scope),
                Err(TokenError::Expired)
            );
        }
    }

    #[test]
    fn read_token_check() {
        let k = keys();
        assert!(k.is_read_token("0123456789abcdef-read"));
        assert!(!k.is_read_token("0123456789abcdef-rea"));
        assert!(!k.is_read_token(""));
        assert_eq!(format!("{k:?}"), "Keys { <redacted> }");
    }

    fn component() -> impl Strategy<Value = String> {
        // Small alphabet with the separators that break naive encodings.
        "[a-c/:*]{1,6}"
    }

    fn scope() -> impl Strategy<Value = Scope> {
        (
            component(),
            component(),
            component(),
            component(),
            0usize..4,
        )
            .prop_filter_map("valid scope", |(o, r, w, j, widen)| {
                let o = if o == "*" { "o".to_string() } else { o };
                Scope::new(&o, &r, &w, &j).ok().map(|s| s.widened(widen))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Different (scope, expiry) pairs never share a MAC input, hence never a token.
        #[test]
        fn different_scopes_never_share_a_token(
            a in scope(), b in scope(),
            ea in proptest::option::of(0u64..4), eb in proptest::option::of(0u64..4),
        ) {
            let k = keys();
            if (&a, ea) != (&b, eb) {
                prop_assert_ne!(encode(&a, ea), encode(&b, eb));
                prop_assert_ne!(encode_claims(&a, ea), encode_claims(&b, eb));
                prop_assert_ne!(k.issue(&a, ea), k.issue(&b, eb));
                prop_assert_ne!(k.issue_legacy(&a, ea), k.issue_legacy(&b, eb));
            } else {
                prop_assert_eq!(k.issue(&a, ea), k.issue(&b, eb));
            }
        }

        /// A token verifies for exactly the pushes its scope admits, in both formats.
        #[test]
        fn verify_matches_admits(token_scope in scope(), o in component(), r in component(), w in component(), j in component()) {
            let k = keys();
            let push = Scope::exact(&o, &r, &w, &j);
            for t in [k.issue(&token_scope, None), k.issue_legacy(&token_scope, None)] {
                let verdict = k.verify_at(&t, &push, 0);
                prop_assert_eq!(verdict.is_ok(), token_scope.admits(&push), "{:?} {:?}", token_scope, push);
            }
        }

        /// The claims of an issued token read back as its scope and expiry.
        #[test]
        fn claims_round_trip(s in scope(), e in proptest::option::of(0u64..u64::MAX)) {
            let k = keys();
            let t = k.issue(&s, e);
            let now = 0;
            let read = k.read_push_token(&t, now);
            match e {
                Some(0) => prop_assert_eq!(read, Err(TokenError::Expired)),
                _ => prop_assert_eq!(read, Ok(PushToken::Scoped { scope: s, expiry: e })),
            }
        }

        /// Tokens for one scope never verify with another HMAC key.
        #[test]
        fn key_matters(s in scope()) {
            let other = Keys::new(b"another-key-of-16-bytes", b"0123456789abcdef-read");
            let exact = Scope { parts: s.parts.clone().map(|p| match p { Part::Any => Part::Literal("x".into()), l => l }) };
            for t in [keys().issue(&s, None), keys().issue_legacy(&s, None)] {
                prop_assert!(other.verify_at(&t, &exact, 0).is_err());
            }
        }

        /// Arbitrary token strings never panic the verifier.
        #[test]
        fn verify_never_panics(t in "\\PC{0,80}") {
            let _ = keys().verify_at(&t, &Scope::exact("o", "r", "w", "j"), 0);
        }

        /// Arbitrary claims never panic the reader.
        #[test]
        fn claims_never_panic(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            let t = format!("v2.{}.{}", B64URL.encode(&b), B64URL.encode([0u8; 32]));
            prop_assert!(keys().read_push_token(&t, 0).is_err());
        }
    }
}
