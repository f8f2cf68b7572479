//! The push-token scheme and the read-token check: pure functions, no I/O.
//!
//! A push token is `hex(HMAC-SHA256(hmac_key, encode(scope, expiry)))`. Without a TTL the
//! token is exactly that hex string (the seed's format); with a TTL it is
//! `v1.<expiry_unix_seconds>.<hex>`, the expiry being covered by the MAC.
//!
//! **Encoding.** Repository names contain `/`, so components are not joined with a
//! separator: [`encode`] writes a domain-separation prefix, then for each of the four
//! components either `0x00 || u32 big-endian length || bytes` (a literal) or `0x01` (the
//! wildcard), then `0x00` (no expiry) or `0x01 || u64 big-endian expiry`. Distinct
//! (scope, expiry) pairs therefore give distinct MAC inputs.
//!
//! **Wildcards.** `"*"` may stand for trailing components only (`org/*/*/*` or
//! `org/repo/*/*` or `org/repo/workflow/*`); the organization is always literal. A
//! wildcard token accepts any push whose leading components equal its literal ones.
//!
//! **Repository spelling.** `GITHUB_REPOSITORY` is `org/repo`, while the seed's token
//! request says `"repository": "repo"`. Both spellings are the same repository: a leading
//! `org/` equal to the organization is stripped ([`canonical_repository`]) before
//! encoding, storing and querying.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Shortest accepted secret (read token and HMAC key), in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// Prefix of the MAC input, so these MACs can never collide with another use of the key.
const DOMAIN: &[u8] = b"forgejo-resource-collector push-token v1\0";

/// The wildcard component.
pub const WILDCARD: &str = "*";

/// Strips a leading `org/` from `repository` when it names `organization`.
pub fn canonical_repository<'a>(organization: &str, repository: &'a str) -> &'a str {
    match repository.strip_prefix(organization) {
        Some(rest) if !organization.is_empty() => rest.strip_prefix('/').unwrap_or(repository),
        _ => repository,
    }
}

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
    /// A component is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// The organization is a wildcard.
    #[error("organization must not be a wildcard")]
    WildcardOrganization,
    /// A literal follows a wildcard.
    #[error("wildcards (\"*\") are allowed only in trailing components; {0} follows one")]
    WildcardNotTrailing(&'static str),
    /// A component is too long.
    #[error("{0} is longer than 1024 bytes")]
    TooLong(&'static str),
}

const NAMES: [&str; 4] = ["organization", "repository", "workflow", "job"];

impl Scope {
    /// Builds a scope from a token request's four fields; `"*"` is the wildcard.
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
        let mut seen_wildcard = false;
        let mut parts = [Part::Any, Part::Any, Part::Any, Part::Any];
        for (i, value) in raw.iter().enumerate() {
            let name = NAMES[i];
            if value.is_empty() {
                return Err(ScopeError::Empty(name));
            }
            if value.len() > summary::validate::MAX_NAME_BYTES {
                return Err(ScopeError::TooLong(name));
            }
            if *value == WILDCARD {
                if i == 0 {
                    return Err(ScopeError::WildcardOrganization);
                }
                seen_wildcard = true;
                parts[i] = Part::Any;
            } else {
                if seen_wildcard {
                    return Err(ScopeError::WildcardNotTrailing(name));
                }
                parts[i] = Part::Literal((*value).to_string());
            }
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
        self.parts.iter().zip(&push.parts).all(|(a, b)| match a {
            Part::Any => true,
            Part::Literal(_) => a == b,
        })
    }
}

/// The unambiguous MAC input for a scope and an optional expiry (Unix seconds).
pub fn encode(scope: &Scope, expiry: Option<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 64);
    out.extend_from_slice(DOMAIN);
    for part in &scope.parts {
        match part {
            Part::Literal(s) => {
                out.push(0);
                // Components are bounded by MAX_NAME_BYTES, far below u32::MAX.
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Part::Any => out.push(1),
        }
    }
    match expiry {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&t.to_be_bytes());
        }
    }
    out
}

/// Why a push token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of either format.
    #[error("malformed push token")]
    Malformed,
    /// The token's expiry has passed.
    #[error("push token expired")]
    Expired,
    /// A well-formed token that does not grant this identity.
    #[error("push token does not grant this organization/repository/workflow/job")]
    WrongScope,
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

    fn mac(&self, scope: &Scope, expiry: Option<u64>) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(&encode(scope, expiry));
        m.finalize().into_bytes().into()
    }

    /// Issues a token for `scope`, expiring at `expiry` (Unix seconds) if given.
    pub fn issue(&self, scope: &Scope, expiry: Option<u64>) -> String {
        let hex = hex::encode(self.mac(scope, expiry));
        match expiry {
            None => hex,
            Some(t) => format!("v1.{t}.{hex}"),
        }
    }

    /// Checks `token` for a push of the exact scope `push`, at time `now` (Unix seconds).
    ///
    /// Tries the exact scope and its three widenings (`job`, `workflow/job`,
    /// `repository/workflow/job` as wildcards), comparing MACs in constant time.
    pub fn verify_at(&self, token: &str, push: &Scope, now: u64) -> Result<(), TokenError> {
        let (expiry, hex_part) = match token.strip_prefix("v1.") {
            Some(rest) => {
                let (t, h) = rest.split_once('.').ok_or(TokenError::Malformed)?;
                if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(TokenError::Malformed);
                }
                (
                    Some(t.parse::<u64>().map_err(|_| TokenError::Malformed)?),
                    h,
                )
            }
            None => (None, token),
        };
        let mut presented = [0u8; 32];
        if hex_part.len() != 64 || hex::decode_to_slice(hex_part, &mut presented).is_err() {
            return Err(TokenError::Malformed);
        }
        let mut ok = subtle::Choice::from(0);
        for widen in 0..4 {
            ok |= self.mac(&push.widened(widen), expiry).ct_eq(&presented);
        }
        if !bool::from(ok) {
            return Err(TokenError::WrongScope);
        }
        match expiry {
            Some(t) if t <= now => Err(TokenError::Expired),
            _ => Ok(()),
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
    fn canonical_repository_strips_own_org_only() {
        assert_eq!(canonical_repository("my-org", "my-org/my-repo"), "my-repo");
        assert_eq!(canonical_repository("my-org", "my-repo"), "my-repo");
        assert_eq!(
            canonical_repository("my-org", "other/my-repo"),
            "other/my-repo"
        );
        assert_eq!(canonical_repository("my", "my-org/x"), "my-org/x");
        assert_eq!(canonical_repository("", "/x"), "/x");
    }

    #[test]
    fn plain_tokens_are_64_hex() {
        let k = keys();
        let scope = Scope::new("my-org", "my-repo", "ci.yml", "build").unwrap();
        let t = k.issue(&scope, None);
        assert_eq!(t.len(), 64);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        let push = Scope::exact("my-org", "my-org/my-repo", "ci.yml", "build");
        assert_eq!(k.verify(&t, &push), Ok(()));
        let other = Scope::exact("my-org", "my-org/my-repo", "ci.yml", "test");
        assert_eq!(k.verify(&t, &other), Err(TokenError::WrongScope));
    }

    #[test]
    fn wildcards_cover_trailing_components() {
        let k = keys();
        let org = k.issue(&Scope::new("o", "*", "*", "*").unwrap(), None);
        let repo = k.issue(&Scope::new("o", "o/r", "*", "*").unwrap(), None);
        let wf = k.issue(&Scope::new("o", "r", "w", "*").unwrap(), None);
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
        assert_eq!(
            Scope::new("*", "*", "*", "*"),
            Err(ScopeError::WildcardOrganization)
        );
        assert_eq!(
            Scope::new("o", "*", "w", "*"),
            Err(ScopeError::WildcardNotTrailing("workflow"))
        );
        assert_eq!(
            Scope::new("o", "", "w", "j"),
            Err(ScopeError::Empty("repository"))
        );
        assert_eq!(
            Scope::new("o", "o/", "w", "j"),
            Err(ScopeError::Empty("repository"))
        );
    }

    #[test]
    fn expiring_tokens() {
        let k = keys();
        let scope = Scope::new("o", "r", "w", "j").unwrap();
        let t = k.issue(&scope, Some(1000));
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
        for bad in ["", "zz", "v1..ab", "v1.x.ab", "v1.1", &"g".repeat(64)] {
            assert_eq!(
                k.verify_at(bad, &scope, 0),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn verify_uses_the_injected_clock() {
        fn at_1000() -> SystemTime {
            UNIX_EPOCH + std::time::Duration::from_secs(1000)
        }
        let k = keys().with_clock(at_1000);
        assert_eq!(k.now(), 1000);
        let scope = Scope::new("o", "r", "w", "j").unwrap();
        assert_eq!(k.verify(&k.issue(&scope, Some(1001)), &scope), Ok(()));
        assert_eq!(
            k.verify(&k.issue(&scope, Some(1000)), &scope),
            Err(TokenError::Expired)
        );
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
        "[a-c/:\\x00*]{1,6}"
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
                prop_assert_ne!(k.issue(&a, ea), k.issue(&b, eb));
            } else {
                prop_assert_eq!(k.issue(&a, ea), k.issue(&b, eb));
            }
        }

        /// A token verifies for exactly the pushes its scope admits.
        #[test]
        fn verify_matches_admits(token_scope in scope(), o in component(), r in component(), w in component(), j in component()) {
            let k = keys();
            let push = Scope::exact(&o, &r, &w, &j);
            let t = k.issue(&token_scope, None);
            let verdict = k.verify_at(&t, &push, 0);
            prop_assert_eq!(verdict.is_ok(), token_scope.admits(&push), "{:?} {:?}", token_scope, push);
        }

        /// Tokens for one scope never verify with another HMAC key.
        #[test]
        fn key_matters(s in scope()) {
            let t = keys().issue(&s, None);
            let other = Keys::new(b"another-key-of-16-bytes", b"0123456789abcdef-read");
            let exact = Scope { parts: s.parts.clone().map(|p| match p { Part::Any => Part::Literal("x".into()), l => l }) };
            prop_assert!(other.verify_at(&t, &exact, 0).is_err());
        }

        /// Arbitrary token strings never panic the verifier.
        #[test]
        fn verify_never_panics(t in "\\PC{0,80}") {
            let _ = keys().verify_at(&t, &Scope::exact("o", "r", "w", "j"), 0);
        }
    }
}
