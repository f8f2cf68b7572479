//! Push-token issue → verify round trips for fuzzed scopes (`receiver::auth`), both token
//! formats (self-describing `v2` and legacy), against a model of what a scope grants,
//! written from the module docs:
//!
//! - a scope request is valid iff the organization is a literal, `*` appears only in
//!   trailing components (the repository compared without a leading `org/`), and every
//!   literal is what a push may carry (`summary::validate::identity_problem`,
//!   `repository_problem`): a push with the scope's literals validates;
//! - a token verifies for its own identity (any value where it has a wildcard) unless it
//!   has expired (`expiry <= now`), and `read_push_token` gives back its scope and expiry;
//! - for another identity it verifies iff every literal equals the push's (repository
//!   without `org/`), and otherwise fails with `WrongScope` (or `Expired`, for an expired
//!   v2 token, whose expiry is checked before the identity is known);
//! - it does not verify under another HMAC key, with its expiry changed, or with any one
//!   byte of it changed (only the canonical spelling is accepted).
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use receiver::auth::{Keys, PushToken, Scope, ScopeError, TokenError, canonical_repository};
use summary::Execution;
use summary::validate::{identity_problem, repository_problem};

/// Values that collide on purpose: wildcards, an org prefix, separators, blanks.
const POOL: [&str; 14] = [
    "o", "r", "o/r", "w", "j", "*", "", "o/", "/r", "p", "o/*", "o/o/r", " ", "a//b",
];

#[derive(Arbitrary, Debug)]
enum Component {
    Pool(u8),
    Free(String),
}

impl Component {
    fn get(&self) -> &str {
        match self {
            Component::Pool(i) => POOL[usize::from(*i) % POOL.len()],
            Component::Free(s) => s,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    token: [Component; 4],
    /// Values a push has where the token has wildcards.
    fill: [Component; 3],
    push: [Component; 4],
    expiry: Option<u64>,
    now: u64,
    legacy: bool,
    /// A byte of the token to change, and what to add to it.
    tamper: Option<(u16, u8)>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys::new(b"fuzz-hmac-key-0123456789", b"fuzz-read-token-0123456789"))
}

const NAMES: [&str; 4] = ["organization", "repository", "workflow", "job"];

/// The model of `Scope::new`: `[org, canonical repo, workflow, job]`, `None` for `*`.
fn model_scope(raw: [&str; 4]) -> Result<[Option<String>; 4], ScopeError> {
    let canon = [raw[0], canonical_repository(raw[0], raw[1]), raw[2], raw[3]];
    let mut out = [None, None, None, None];
    let mut wildcard = false;
    for (i, v) in canon.iter().enumerate() {
        if *v == "*" {
            if i == 0 {
                return Err(ScopeError::WildcardOrganization);
            }
            wildcard = true;
            continue;
        }
        let problem = if i == 1 {
            repository_problem(raw[0], raw[1])
        } else {
            identity_problem(v)
        };
        if let Some(reason) = problem {
            return Err(ScopeError::Invalid {
                field: NAMES[i],
                reason,
            });
        }
        if wildcard {
            return Err(ScopeError::WildcardNotTrailing(NAMES[i]));
        }
        out[i] = Some(v.to_string());
    }
    Ok(out)
}

fn admits(model: &[Option<String>; 4], push: [&str; 4]) -> bool {
    let canon = [
        push[0],
        canonical_repository(push[0], push[1]),
        push[2],
        push[3],
    ];
    model
        .iter()
        .zip(canon)
        .all(|(m, p)| m.as_deref().is_none_or(|m| m == p))
}

fn exact(p: [&str; 4]) -> Scope {
    Scope::exact(p[0], p[1], p[2], p[3])
}

fuzz_target!(|input: Input| {
    let raw = input.token.each_ref().map(Component::get);
    let (scope, model) = match (Scope::new(raw[0], raw[1], raw[2], raw[3]), model_scope(raw)) {
        (Ok(s), Ok(m)) => (s, m),
        (Err(e), Err(m)) => {
            assert_eq!(e, m, "{raw:?}");
            return;
        }
        (s, m) => panic!("Scope::new{raw:?} = {s:?}, the model says {m:?}"),
    };
    let keys = keys();
    let now = input.now;
    let token = if input.legacy {
        keys.issue_legacy(&scope, input.expiry)
    } else {
        keys.issue(&scope, input.expiry)
    };
    let expired = input.expiry.is_some_and(|t| t <= now);
    let live = |verdict: Result<(), TokenError>| {
        if expired {
            assert_eq!(verdict, Err(TokenError::Expired), "{token}");
        } else {
            assert_eq!(verdict, Ok(()), "{token}");
        }
    };

    // Its own identity: the literals as requested, anything where it has a wildcard. A push
    // with the scope's literals (and valid fills) is one the receiver accepts.
    let mut own = raw;
    for i in 1..4 {
        if model[i].is_none() {
            own[i] = input.fill[i - 1].get();
        }
    }
    let execution = Execution {
        organization: own[0].into(),
        repository: own[1].into(),
        workflow: own[2].into(),
        job: own[3].into(),
        ..Default::default()
    };
    let fills_valid = (1..4).all(|i| model[i].is_some() || identity_problem(own[i]).is_none())
        && (model[1].is_some() || repository_problem(own[0], own[1]).is_none());
    if fills_valid {
        assert_eq!(
            execution.validate(),
            Ok(()),
            "a token can be issued for {raw:?}"
        );
    }
    assert!(admits(&model, own), "{raw:?} does not admit {own:?}");
    live(keys.verify_at(&token, &exact(own), now));
    match keys.read_push_token(&token, now) {
        Ok(PushToken::Scoped { scope: s, expiry }) => {
            assert!(!input.legacy && !expired);
            assert_eq!((&s, expiry), (&scope, input.expiry));
        }
        Ok(PushToken::Legacy(_)) => assert!(input.legacy),
        Err(e) => assert!(
            !input.legacy && expired && e == TokenError::Expired,
            "{e:?}"
        ),
    }

    // Another identity.
    let other = input.push.each_ref().map(Component::get);
    let verdict = keys.verify_at(&token, &exact(other), now);
    if admits(&model, other) {
        live(verdict);
    } else if expired && !input.legacy {
        // A v2 token's expiry is checked from the header alone, before the body's
        // identity is known; a legacy token's MAC (its scope) is checked first.
        assert_eq!(verdict, Err(TokenError::Expired), "{raw:?} vs {other:?}");
    } else {
        assert_eq!(verdict, Err(TokenError::WrongScope), "{raw:?} vs {other:?}");
    }
    assert_eq!(scope.admits(&exact(other)), admits(&model, other));

    // Another key, another expiry, one byte changed: refused.
    let other_keys = Keys::new(
        b"another-hmac-key-0123456789",
        b"fuzz-read-token-0123456789",
    );
    assert!(other_keys.verify_at(&token, &exact(own), 0).is_err());
    let moved = if input.legacy {
        let mac = token.rsplit('.').next().unwrap();
        match input.expiry {
            Some(t) => format!("v1.{}.{mac}", t ^ 1),
            None => format!("v1.0.{mac}"),
        }
    } else {
        keys.issue(&scope, input.expiry.map(|t| t ^ 1).or(Some(0)))
            .rsplit('.')
            .next()
            .map(|mac| format!("{}.{mac}", token.rsplit_once('.').unwrap().0))
            .unwrap()
    };
    assert!(keys.verify_at(&moved, &exact(own), 0).is_err(), "{moved}");
    if let Some((at, delta)) = input.tamper
        && delta != 0
    {
        let mut bytes = token.clone().into_bytes();
        let at = usize::from(at) % bytes.len();
        bytes[at] = bytes[at].wrapping_add(delta);
        if let Ok(tampered) = String::from_utf8(bytes) {
            assert!(
                keys.verify_at(&tampered, &exact(own), 0).is_err(),
                "{tampered:?} verifies like {token:?}"
            );
        }
    }
});
