//! The voting service: in-memory vote counts, and the demo's source of failures.
//!
//! - `POST /api/vote?choice=:joy:` → 200 and one more vote; 400 for a shortcode not in the
//!   [emoji catalogue](super::emoji::EMOJI) (which also keeps the counts bounded).
//! - `GET /api/leaderboard` → 200, `[{"shortcode":":joy:","votes":3}, …]`, most votes first
//!   (ties by shortcode), only emoji with at least one vote.
//!
//! A share `error_rate` of *all* requests is answered 500 before routing, so a meshed client
//! sees failures its retries can hide. Failures are drawn at random rather than with the test
//! server's exact [`ErrorBudget`](crate::knobs::ErrorBudget): web sends voting two requests per
//! vote-bot round, so an exact "every tenth request" would always hit the same kind of request
//! and `GET /api/list` would never fail.

use std::collections::BTreeMap;
use std::sync::Mutex;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::{
    emoji, json, json_escape, method_not_allowed, not_found, query_value, text, Handler, Rng,
};
use crate::body::Body;

/// The voting service's state.
#[derive(Debug, Default)]
pub struct VotingService {
    error_rate: f64,
    rng: Mutex<Option<Rng>>,
    votes: Mutex<BTreeMap<&'static str, u64>>,
}

impl VotingService {
    /// A service that fails a share `error_rate` (0.0–1.0) of all requests with 500.
    pub fn new(error_rate: f64) -> Self {
        Self {
            error_rate,
            ..Self::default()
        }
    }

    /// Whether to fail the current request.
    fn inject_failure(&self) -> bool {
        if self.error_rate <= 0.0 {
            return false;
        }
        if self.error_rate >= 1.0 {
            return true;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        rng.get_or_insert_with(Rng::from_entropy).unit() < self.error_rate
    }

    /// Counts one vote for `shortcode`; `false` if it is not in the catalogue.
    pub fn vote(&self, shortcode: &str) -> bool {
        let Some(e) = emoji::find(shortcode) else {
            return false;
        };
        // A poisoned lock only means a panic mid-increment of a plain counter map.
        let mut votes = self.votes.lock().unwrap_or_else(|p| p.into_inner());
        *votes.entry(e.shortcode).or_default() += 1;
        true
    }

    /// The counts, most votes first, ties by shortcode.
    pub fn leaderboard(&self) -> Vec<(&'static str, u64)> {
        let votes = self.votes.lock().unwrap_or_else(|p| p.into_inner());
        let mut board: Vec<_> = votes.iter().map(|(k, v)| (*k, *v)).collect();
        board.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        board
    }

    /// [`leaderboard`](Self::leaderboard) as JSON.
    pub fn leaderboard_json(&self) -> String {
        let items: Vec<String> = self
            .leaderboard()
            .into_iter()
            .map(|(code, n)| format!(r#"{{"shortcode":"{}","votes":{n}}}"#, json_escape(code)))
            .collect();
        format!("[{}]", items.join(","))
    }

    fn route(&self, method: &Method, path: &str, query: Option<&str>) -> Response<Body> {
        if self.inject_failure() {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "voting: injected failure (--error-rate)\n",
            );
        }
        match (path, method) {
            ("/api/vote", &Method::POST) => match query_value(query, "choice") {
                None => text(
                    StatusCode::BAD_REQUEST,
                    "missing or badly encoded query parameter choice\n",
                ),
                Some(choice) if self.vote(&choice) => text(StatusCode::OK, "voted\n"),
                Some(choice) => text(StatusCode::BAD_REQUEST, format!("no emoji {choice}\n")),
            },
            ("/api/leaderboard", &Method::GET) => json(StatusCode::OK, self.leaderboard_json()),
            ("/api/vote", _) => method_not_allowed("POST"),
            ("/api/leaderboard", _) => method_not_allowed("GET"),
            _ => not_found(path),
        }
    }
}

impl Handler for VotingService {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        // Vote requests carry their choice in the query; any body is ignored.
        self.route(req.method(), req.uri().path(), req.uri().query())
    }
}

/// Serves the voting service on `listener` until the process ends.
pub async fn serve(listener: TcpListener, name: &str, error_rate: f64) {
    super::serve(listener, name, VotingService::new(error_rate)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_are_counted_and_sorted() {
        let v = VotingService::new(0.0);
        assert_eq!(v.leaderboard_json(), "[]");
        for code in [":fire:", ":joy:", ":fire:", ":100:", ":joy:", ":fire:"] {
            assert!(v.vote(code));
        }
        assert!(!v.vote(":nope:"));
        assert_eq!(
            v.leaderboard(),
            vec![(":fire:", 3), (":joy:", 2), (":100:", 1)]
        );
        assert_eq!(
            v.leaderboard_json(),
            r#"[{"shortcode":":fire:","votes":3},{"shortcode":":joy:","votes":2},{"shortcode":":100:","votes":1}]"#
        );
    }

    #[test]
    fn routes_and_error_rate() {
        let v = VotingService::new(0.0);
        let post = |q: &str| v.route(&Method::POST, "/api/vote", Some(q)).status();
        assert_eq!(post("choice=:joy:"), 200);
        assert_eq!(post("choice=%3Ajoy%3A"), 200);
        assert_eq!(post("choice=:nope:"), 400);
        assert_eq!(post("other=1"), 400);
        assert_eq!(v.route(&Method::GET, "/api/vote", None).status(), 405);
        assert_eq!(
            v.route(&Method::GET, "/api/leaderboard", None).status(),
            200
        );
        assert_eq!(v.route(&Method::GET, "/x", None).status(), 404);
        assert_eq!(v.leaderboard(), vec![(":joy:", 2)]);

        let v = VotingService::new(0.25);
        let failed = (0..2000)
            .filter(|_| v.route(&Method::GET, "/api/leaderboard", None).status() == 500)
            .count();
        // Expected 500, standard deviation ~19: a bound of ±150 never flakes.
        assert!((350..=650).contains(&failed), "{failed}");
        let v = VotingService::new(0.0);
        assert!((0..200).all(|_| v.route(&Method::GET, "/api/leaderboard", None).status() == 200));
        let v = VotingService::new(1.0);
        assert_eq!(
            v.route(&Method::POST, "/api/vote", Some("choice=:joy:"))
                .status(),
            500
        );
        assert!(v.leaderboard().is_empty(), "a failed vote must not count");
    }
}
