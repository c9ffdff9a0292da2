//! The report `weft inject` prints on stderr: one line per object, like `linkerd inject`, and a
//! summary.
//!
//! ```text
//! namespace "emojivoto" annotated
//! serviceaccount "web" skipped
//! deployment "web" injected
//! ‼ pod "dns" has UDP ports (53/UDP): UDP is not proxied
//! pod "dns" injected
//! ‼ daemonset "node-exporter" uses hostNetwork: not injected
//! deployment "vote-bot" already injected
//! summary: 2 injected, 1 annotated, 1 already injected or annotated, 1 not injected, 1 skipped (2 warnings)
//! ```
//!
//! Lines starting with `‼` are warnings: the object was left as it was (or, for UDP ports,
//! injected but not everything will go through the proxy).

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The pod template was annotated (default) or given the sidecar (`--manual`), with
    /// warnings about what will not work as the user may expect, each read after the object's
    /// name: "has UDP ports (53/UDP): UDP is not proxied".
    Injected { warnings: Vec<String> },
    /// A Namespace was annotated.
    Annotated,
    /// The pod template already has the proxy (or, by default, the annotation); left as it was.
    AlreadyInjected,
    /// A Namespace already has the annotation; left as it was.
    AlreadyAnnotated,
    /// A workload that cannot or must not be injected; left as it was. The reason reads after
    /// the object: "uses hostNetwork".
    NotInjected(String),
    /// A Namespace that must not be annotated; left as it was.
    NotAnnotated(String),
    /// Not a workload (Service, ConfigMap, ...); passed through.
    Skipped,
}

/// The lines and counts so far.
#[derive(Debug, Default)]
pub struct Report {
    lines: Vec<String>,
    injected: usize,
    annotated: usize,
    already: usize,
    not_injected: usize,
    skipped: usize,
    warnings: usize,
}

impl Report {
    /// Records what happened to `object` (`deployment "web"`).
    pub fn record(&mut self, object: &str, outcome: &Outcome) {
        match outcome {
            Outcome::Injected { warnings } => {
                for warning in warnings {
                    self.warn(format!("{object} {warning}"));
                }
                self.injected += 1;
                self.lines.push(format!("{object} injected"));
            }
            Outcome::Annotated => {
                self.annotated += 1;
                self.lines.push(format!("{object} annotated"));
            }
            Outcome::AlreadyInjected => {
                self.already += 1;
                self.lines.push(format!("{object} already injected"));
            }
            Outcome::AlreadyAnnotated => {
                self.already += 1;
                self.lines.push(format!("{object} already annotated"));
            }
            Outcome::NotInjected(reason) => {
                self.not_injected += 1;
                self.warn(format!("{object} {reason}: not injected"));
            }
            Outcome::NotAnnotated(reason) => {
                self.not_injected += 1;
                self.warn(format!("{object} {reason}: not annotated"));
            }
            Outcome::Skipped => {
                self.skipped += 1;
                self.lines.push(format!("{object} skipped"));
            }
        }
    }

    /// Records a document or list item that is not a Kubernetes object and was passed through:
    /// `at` names it (`app.yaml: document 3`), `problem` says what is wrong with it.
    pub fn pass_through(&mut self, at: &str, problem: &str) {
        self.skipped += 1;
        self.warn(format!("{at} {problem}: passed through unchanged"));
    }

    fn warn(&mut self, line: String) {
        self.warnings += 1;
        self.lines.push(format!("‼ {line}"));
    }

    /// The lines, then the summary, each ending in a newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&format!(
            "summary: {} injected, {} annotated, {} already injected or annotated, {} not injected, {} skipped ({} warning{})\n",
            self.injected,
            self.annotated,
            self.already,
            self.not_injected,
            self.skipped,
            self.warnings,
            if self.warnings == 1 { "" } else { "s" },
        ));
        out
    }
}
