//! Push-token reading and verification on arbitrary token strings (`receiver::auth`): a
//! fixed HMAC key and read token, a fixed push identity.
//!
//! - `read_push_token`, `verify_at` and `is_read_token` never panic.
//! - A token that verifies is, byte for byte, one the key issues, checked here against the
//!   token format of the module docs rather than against the code that issues it:
//!   - a self-describing token is `v2.` + b64url(claims) + `.` + b64url(HMAC-SHA256(key,
//!     DOMAIN_V2 || claims)) with claims in the documented grammar, every byte consumed,
//!     and a scope that admits the push;
//!   - a legacy token is the lowercase-hex MAC (after `v1.<expiry>.` without leading
//!     zeros) of the push's identity or one of its trailing-wildcard widenings;
//!   - and it has not expired.
//! - `read_push_token` agrees: a v2 token it accepts carries the claims decoded here.
//! - Only the read token itself is the read token.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use receiver::auth::{Keys, PushToken, Scope, canonical_repository};
use sha2::Sha256;

const HMAC_KEY: &[u8] = b"fuzz-hmac-key-0123456789";
const READ_TOKEN: &str = "fuzz-read-token-0123456789";
/// The MAC domain of self-describing tokens (docs/tokens.md).
const DOMAIN_V2: &[u8] = b"forgejo-resource-collector push-token v2\0";
const NOW: u64 = 1_000_000;
/// The push every token is checked for.
const PUSH: [&str; 4] = ["my-org", "my-org/my-repo", "ci.yml", "build"];

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys::new(HMAC_KEY, READ_TOKEN.as_bytes()))
}

/// The claims grammar of the docs: four components (`0x00 u16_be(len) utf-8` or `0x01` for
/// `*`), then `0x00` or `0x01 u64_be(expiry)`, nothing after.
fn decode_claims(mut b: &[u8]) -> Option<([Option<String>; 4], Option<u64>)> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Some(head)
    }
    let mut parts: [Option<String>; 4] = Default::default();
    for part in &mut parts {
        match take(&mut b, 1)?[0] {
            0 => {
                let len = take(&mut b, 2)?;
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                *part = Some(String::from_utf8(take(&mut b, len)?.to_vec()).ok()?);
            }
            1 => {}
            _ => return None,
        }
    }
    let expiry = match take(&mut b, 1)?[0] {
        0 => None,
        1 => Some(u64::from_be_bytes(take(&mut b, 8)?.try_into().ok()?)),
        _ => return None,
    };
    b.is_empty().then_some((parts, expiry))
}

/// Checks a v2 token that verified; returns its claims.
fn check_v2(token: &str) -> ([Option<String>; 4], Option<u64>) {
    let rest = token.strip_prefix("v2.").unwrap();
    let (claims_b64, _) = rest.split_once('.').expect("v2.<claims>.<mac>");
    let claims = B64URL.decode(claims_b64).expect("claims are base64url");
    let (parts, expiry) = decode_claims(&claims).expect("claims follow the grammar");
    let expected = documented_v2(parts.each_ref().map(Option::as_deref), expiry);
    assert_eq!(
        token, expected,
        "a v2 token verified in a spelling the key does not issue"
    );
    // The claims grant the push: each literal equals the push's (repository canonical).
    let push = [
        PUSH[0],
        canonical_repository(PUSH[0], PUSH[1]),
        PUSH[2],
        PUSH[3],
    ];
    for (claim, value) in parts.iter().zip(push) {
        assert!(
            claim.as_deref().is_none_or(|c| c == value),
            "{parts:?} does not grant {push:?}"
        );
    }
    assert!(parts[0].is_some(), "an organization wildcard verified");
    (parts, expiry)
}

/// Checks a legacy token that verified.
fn check_legacy(token: &str) {
    let expiry = token.strip_prefix("v1.").map(|rest| {
        let t = rest.split_once('.').expect("v1.<expiry>.<hex>").0;
        t.parse::<u64>().expect("a decimal expiry")
    });
    let grants = [
        ["my-repo", "ci.yml", "build"],
        ["my-repo", "ci.yml", "*"],
        ["my-repo", "*", "*"],
        ["*", "*", "*"],
    ];
    let issued = grants.iter().any(|[r, w, j]| {
        let scope = Scope::new("my-org", r, w, j).unwrap();
        keys().issue_legacy(&scope, expiry) == token
    });
    assert!(issued, "{token:?} verified but the key never issues it");
    assert!(
        expiry.is_none_or(|t| t > NOW),
        "an expired token verified: {token:?}"
    );
}

/// The token format as documented, built here: what `Keys::issue` must give.
fn documented_v2(parts: [Option<&str>; 4], expiry: Option<u64>) -> String {
    let mut claims = Vec::new();
    for p in parts {
        match p {
            Some(s) => {
                claims.push(0);
                claims.extend_from_slice(&(s.len() as u16).to_be_bytes());
                claims.extend_from_slice(s.as_bytes());
            }
            None => claims.push(1),
        }
    }
    match expiry {
        None => claims.push(0),
        Some(t) => {
            claims.push(1);
            claims.extend_from_slice(&t.to_be_bytes());
        }
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(HMAC_KEY).unwrap();
    mac.update(DOMAIN_V2);
    mac.update(&claims);
    format!(
        "v2.{}.{}",
        B64URL.encode(&claims),
        B64URL.encode(mac.finalize().into_bytes())
    )
}

fuzz_target!(|data: &[u8]| {
    let keys = keys();
    static FORMAT: std::sync::Once = std::sync::Once::new();
    FORMAT.call_once(|| {
        // The seeds (and the checks below) follow the documented format; so must `issue`.
        let scope = Scope::new("my-org", "my-repo", "ci.yml", "*").unwrap();
        let documented = documented_v2(
            [Some("my-org"), Some("my-repo"), Some("ci.yml"), None],
            Some(2_000_000),
        );
        assert_eq!(keys.issue(&scope, Some(2_000_000)), documented);
        // Legacy: lowercase hex of HMAC(key, DOMAIN_V1 || (0x00 u32_be(len) bytes | 0x01){4}
        // || expiry), after `v1.<expiry>.`.
        let mut input = b"forgejo-resource-collector push-token v1\0".to_vec();
        for p in ["my-org", "my-repo", "ci.yml"] {
            input.push(0);
            input.extend_from_slice(&(p.len() as u32).to_be_bytes());
            input.extend_from_slice(p.as_bytes());
        }
        input.extend_from_slice(&[1, 1]);
        input.extend_from_slice(&2_000_000u64.to_be_bytes());
        let mut mac = Hmac::<Sha256>::new_from_slice(HMAC_KEY).unwrap();
        mac.update(&input);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            keys.issue_legacy(&scope, Some(2_000_000)),
            format!("v1.2000000.{hex}")
        );
    });
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    assert_eq!(keys.is_read_token(token), token == READ_TOKEN);
    let read = keys.read_push_token(token, NOW);
    let push = Scope::exact(PUSH[0], PUSH[1], PUSH[2], PUSH[3]);
    if keys.verify_at(token, &push, NOW).is_err() {
        return;
    }
    if token.starts_with("v2.") {
        let (_, expiry) = check_v2(token);
        assert!(
            expiry.is_none_or(|t| t > NOW),
            "an expired token verified: {token:?}"
        );
        match read {
            Ok(PushToken::Scoped { expiry: e, .. }) => assert_eq!(e, expiry),
            other => panic!("verified, yet read_push_token says {other:?}"),
        }
    } else {
        check_legacy(token);
        assert!(matches!(read, Ok(PushToken::Legacy(_))), "{read:?}");
    }
});
