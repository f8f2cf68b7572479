//! Checks of a push's identity ([`Execution`]), shared with push tokens' scopes: the
//! organization, repository, workflow and job a push names and a token may be scoped to.

use super::error::{Result, invalid};
use super::limits::{MAX_IDENTITY_BYTES, MAX_RUN_ID_BYTES};
use super::values::{text, text_problem};
use crate::{Execution, canonical_repository};

/// Why `value` cannot be an organization, workflow or job (of a push or of a push
/// token's scope), if it cannot: empty or blank, longer than [`MAX_IDENTITY_BYTES`], or
/// with control characters.
pub fn identity_problem(value: &str) -> Option<&'static str> {
    text_problem(value, true, MAX_IDENTITY_BYTES)
}

/// Why `repository` cannot be the repository of `organization`, if it cannot: the checks
/// of [`identity_problem`], and its canonical form (without a leading `organization/`,
/// see [`canonical_repository`]) must be a non-empty path without empty segments, so
/// `"o/"`, `"/r"` and `"a//b"` are refused.
pub fn repository_problem(organization: &str, repository: &str) -> Option<&'static str> {
    if let Some(problem) = identity_problem(repository) {
        return Some(problem);
    }
    let canonical = canonical_repository(organization, repository);
    if canonical.trim().is_empty() {
        return Some("must name a repository, not only the organization");
    }
    if canonical
        .split('/')
        .any(|segment| segment.trim().is_empty())
    {
        return Some("must not have an empty path segment");
    }
    None
}

impl Execution {
    /// Checks the identity: organization, repository, workflow and job must be non-empty
    /// (the run id and attempt may be empty), at most [`MAX_IDENTITY_BYTES`] (run id and
    /// attempt [`MAX_RUN_ID_BYTES`]) without control characters, and the repository must
    /// name one ([`repository_problem`]).
    pub fn validate(&self) -> Result {
        let check = |field: &'static str, problem: Option<&'static str>| match problem {
            Some(reason) => Err(invalid(field, reason)),
            None => Ok(()),
        };
        check(
            "execution.organization",
            identity_problem(&self.organization),
        )?;
        check(
            "execution.repository",
            repository_problem(&self.organization, &self.repository),
        )?;
        check("execution.workflow", identity_problem(&self.workflow))?;
        check("execution.job", identity_problem(&self.job))?;
        text(
            || "execution.run_id".into(),
            &self.run_id,
            false,
            MAX_RUN_ID_BYTES,
        )?;
        text(
            || "execution.run_attempt".into(),
            &self.run_attempt,
            false,
            MAX_RUN_ID_BYTES,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_rules_are_shared_with_token_scopes() {
        assert_eq!(identity_problem("build"), None);
        assert_eq!(identity_problem(" "), Some("must not be empty"));
        assert_eq!(
            identity_problem("a\tb"),
            Some("must not contain control characters")
        );
        assert_eq!(
            identity_problem(&"x".repeat(257)),
            Some("is longer than 256 bytes")
        );
        assert_eq!(repository_problem("o", "o/r"), None);
        assert_eq!(repository_problem("o", "r"), None);
        assert_eq!(repository_problem("o", "other/r"), None);
        for bad in ["o/", "/r", "o//r", "r/", "o/ "] {
            assert!(repository_problem("o", bad).is_some(), "{bad}");
        }
    }
}
