//! What `weft check` found, and how it is printed: the [`Report`] of categories and checks, the
//! text layout (`√`, `‼`, `×`, `-`) and the JSON document of `-o json`.

use std::fmt::Write as _;

use serde::Serialize;

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// All is well (`√`).
    Success,
    /// Works now, but needs attention (`‼`); the exit status stays 0.
    Warning,
    /// Broken (`×`); the exit status is 1.
    Error,
    /// Not run because a check it depends on failed (`-`); the failure that caused it is
    /// already an error, so a skip itself does not change the exit status.
    Skipped,
}

impl Outcome {
    /// The symbol printed before the check's description.
    pub fn symbol(self) -> &'static str {
        match self {
            Outcome::Success => "√",
            Outcome::Warning => "‼",
            Outcome::Error => "×",
            Outcome::Skipped => "-",
        }
    }
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable identifier, `<category>/<check>` (docs/check.md lists them all).
    pub id: &'static str,
    /// What the check asserts, as a sentence that is true on success.
    pub description: String,
    /// The outcome.
    pub result: Outcome,
    /// What is wrong (warnings and errors), or why the check was skipped. May hold several
    /// lines, one per object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    /// A passed check.
    pub fn success(id: &'static str, description: impl Into<String>) -> Self {
        Self {
            id,
            description: description.into(),
            result: Outcome::Success,
            error: None,
            hint: None,
        }
    }

    /// A warning: `error` says what needs attention.
    pub fn warning(
        id: &'static str,
        description: impl Into<String>,
        error: impl Into<String>,
    ) -> Self {
        Self {
            result: Outcome::Warning,
            error: Some(error.into()),
            ..Self::success(id, description)
        }
    }

    /// A failed check.
    pub fn error(
        id: &'static str,
        description: impl Into<String>,
        error: impl Into<String>,
    ) -> Self {
        Self {
            result: Outcome::Error,
            error: Some(error.into()),
            ..Self::success(id, description)
        }
    }

    /// A check not run because the check `because` (an id) did not pass.
    pub fn skipped(id: &'static str, description: impl Into<String>, because: &str) -> Self {
        Self {
            result: Outcome::Skipped,
            error: Some(format!("skipped: {because} did not pass")),
            ..Self::success(id, description)
        }
    }

    /// Adds a hint (kept only on warnings and errors, where it is printed).
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        if matches!(self.result, Outcome::Warning | Outcome::Error) {
            self.hint = Some(hint.into());
        }
        self
    }

    /// Whether the check passed (a warning passes).
    pub fn passed(&self) -> bool {
        matches!(self.result, Outcome::Success | Outcome::Warning)
    }
}

/// A named group of checks, printed under its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Category {
    /// `weft-existence`, `weft-identity`, ...
    pub name: &'static str,
    /// Its checks, in the order they ran.
    pub checks: Vec<Check>,
}

impl Category {
    /// An empty category.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            checks: Vec::new(),
        }
    }

    /// Adds a check's result and returns whether it passed, so that dependent checks can be
    /// skipped.
    pub fn push(&mut self, check: Check) -> bool {
        let passed = check.passed();
        self.checks.push(check);
        passed
    }
}

/// Everything `weft check` found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// No check is an error.
    pub success: bool,
    /// The categories, in the order they ran; every category that ran is here, even when all
    /// of its checks were skipped.
    pub categories: Vec<Category>,
}

impl Report {
    /// A report over `categories`; `success` is computed from them.
    pub fn new(categories: Vec<Category>) -> Self {
        let success = categories
            .iter()
            .flat_map(|c| &c.checks)
            .all(|c| c.result != Outcome::Error);
        Self {
            success,
            categories,
        }
    }

    /// The ids of the checks that are errors, in order.
    pub fn failed_ids(&self) -> Vec<&'static str> {
        self.categories
            .iter()
            .flat_map(|c| &c.checks)
            .filter(|c| c.result == Outcome::Error)
            .map(|c| c.id)
            .collect()
    }

    /// The text layout: each category's name, underlined, then one line per check with its
    /// symbol (and, with `verbose`, its id in brackets), the error and hint of warnings,
    /// errors and skips indented beneath, and the status line at the end.
    pub fn to_text(&self, verbose: bool) -> String {
        let mut out = String::new();
        for category in &self.categories {
            let _ = writeln!(out, "{}", category.name);
            let _ = writeln!(out, "{}", "-".repeat(category.name.chars().count()));
            for check in &category.checks {
                let _ = write!(out, "{} {}", check.result.symbol(), check.description);
                if verbose {
                    let _ = write!(out, " [{}]", check.id);
                }
                out.push('\n');
                if check.result == Outcome::Success {
                    continue;
                }
                for line in check.error.iter().flat_map(|e| e.lines()) {
                    let _ = writeln!(out, "    {line}");
                }
                if let Some(hint) = &check.hint {
                    let mut lines = hint.lines();
                    if let Some(first) = lines.next() {
                        let _ = writeln!(out, "    see: {first}");
                    }
                    for line in lines {
                        let _ = writeln!(out, "         {line}");
                    }
                }
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "Status check results are {}",
            if self.success { "√" } else { "×" }
        );
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut existence = Category::new("weft-existence");
        existence.push(Check::success(
            "weft-existence/cluster-exists",
            "cluster directory exists",
        ));
        existence.push(
            Check::error(
                "weft-existence/control-plane-running",
                "control plane is running",
                "the control plane of \"west\" is not running (pid 1234 is gone)",
            )
            .hint("weft install --context west"),
        );
        existence.push(Check::skipped(
            "weft-existence/control-plane-ready",
            "control plane is ready",
            "weft-existence/control-plane-running",
        ));
        let mut identity = Category::new("weft-identity");
        identity.push(
            Check::warning(
                "weft-identity/issuer-not-expiring-soon",
                "issuer is not expiring within 60 days",
                "issuer certificate pki/issuer.crt expires in 30 days\n(2026-01-01T00:00:00Z)",
            )
            .hint("rotate it with `weft upgrade`\nsecond line"),
        );
        Report::new(vec![existence, identity])
    }

    #[test]
    fn text_layout() {
        let text = sample().to_text(false);
        assert_eq!(
            text,
            "weft-existence\n\
             --------------\n\
             √ cluster directory exists\n\
             × control plane is running\n    \
             the control plane of \"west\" is not running (pid 1234 is gone)\n    \
             see: weft install --context west\n\
             - control plane is ready\n    \
             skipped: weft-existence/control-plane-running did not pass\n\
             \n\
             weft-identity\n\
             -------------\n\
             ‼ issuer is not expiring within 60 days\n    \
             issuer certificate pki/issuer.crt expires in 30 days\n    \
             (2026-01-01T00:00:00Z)\n    \
             see: rotate it with `weft upgrade`\n         \
             second line\n\
             \n\
             Status check results are ×\n"
        );
    }

    #[test]
    fn verbose_shows_ids() {
        let text = sample().to_text(true);
        assert!(
            text.contains("√ cluster directory exists [weft-existence/cluster-exists]\n"),
            "{text}"
        );
    }

    #[test]
    fn warnings_and_skips_do_not_fail_but_errors_do() {
        let mut c = Category::new("a");
        assert!(c.push(Check::warning("a/w", "w", "careful")));
        assert!(!c.push(Check::skipped("a/s", "s", "a/x")));
        let report = Report::new(vec![c.clone()]);
        assert!(report.success);
        assert!(report
            .to_text(false)
            .ends_with("Status check results are √\n"));
        c.push(Check::error("a/e", "e", "broken"));
        let report = Report::new(vec![c]);
        assert!(!report.success);
        assert_eq!(report.failed_ids(), vec!["a/e"]);
    }

    #[test]
    fn hints_are_kept_only_where_they_are_printed() {
        assert_eq!(Check::success("a/b", "b").hint("h").hint, None);
        assert_eq!(
            Check::error("a/b", "b", "e").hint("h").hint.as_deref(),
            Some("h")
        );
    }

    #[test]
    fn json_shape() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["success"], false);
        let checks = &json["categories"][0]["checks"];
        assert_eq!(json["categories"][0]["name"], "weft-existence");
        assert_eq!(checks[0]["id"], "weft-existence/cluster-exists");
        assert_eq!(checks[0]["result"], "success");
        assert!(checks[0].get("error").is_none());
        assert!(checks[0].get("hint").is_none());
        assert_eq!(checks[1]["result"], "error");
        assert_eq!(checks[1]["hint"], "weft install --context west");
        assert_eq!(checks[2]["result"], "skipped");
        assert_eq!(json["categories"][1]["checks"][0]["result"], "warning");
    }
}
