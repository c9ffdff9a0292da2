//! The emoji service: a fixed catalogue of emoji, as JSON.
//!
//! - `GET /api/list` → 200, `[{"shortcode":":joy:","unicode":"😂"}, …]`
//! - `GET /api/find?shortcode=:joy:` → 200 with that one object, 404 if unknown, 400 without
//!   a `shortcode`.

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::{json, json_escape, method_not_allowed, not_found, query_value, text, Handler};
use crate::body::Body;

/// One emoji of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emoji {
    /// The `:name:` code votes refer to.
    pub shortcode: &'static str,
    /// The emoji itself.
    pub unicode: &'static str,
}

/// The catalogue: every shortcode voting accepts and the vote-bot picks from.
pub const EMOJI: &[Emoji] = &[
    e(":joy:", "😂"),
    e(":sunglasses:", "😎"),
    e(":doughnut:", "🍩"),
    e(":stuck_out_tongue_winking_eye:", "😜"),
    e(":money_mouth_face:", "🤑"),
    e(":flushed:", "😳"),
    e(":mask:", "😷"),
    e(":nerd_face:", "🤓"),
    e(":ghost:", "👻"),
    e(":heart_eyes_cat:", "😻"),
    e(":see_no_evil:", "🙈"),
    e(":hear_no_evil:", "🙉"),
    e(":speak_no_evil:", "🙊"),
    e(":rocket:", "🚀"),
    e(":tada:", "🎉"),
    e(":pizza:", "🍕"),
    e(":unicorn:", "🦄"),
    e(":100:", "💯"),
    e(":fire:", "🔥"),
    e(":thumbsup:", "👍"),
];

const fn e(shortcode: &'static str, unicode: &'static str) -> Emoji {
    Emoji { shortcode, unicode }
}

/// The catalogue entry for `shortcode`.
pub fn find(shortcode: &str) -> Option<&'static Emoji> {
    EMOJI.iter().find(|e| e.shortcode == shortcode)
}

impl Emoji {
    /// `{"shortcode":"…","unicode":"…"}`.
    pub fn to_json(&self) -> String {
        format!(
            r#"{{"shortcode":"{}","unicode":"{}"}}"#,
            json_escape(self.shortcode),
            json_escape(self.unicode)
        )
    }
}

/// The whole catalogue as a JSON array.
pub fn list_json() -> String {
    let items: Vec<String> = EMOJI.iter().map(Emoji::to_json).collect();
    format!("[{}]", items.join(","))
}

/// The emoji service's routes.
#[derive(Debug, Default)]
pub struct EmojiService;

impl Handler for EmojiService {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        route(req.method(), req.uri().path(), req.uri().query())
    }
}

fn route(method: &Method, path: &str, query: Option<&str>) -> Response<Body> {
    match (path, method) {
        ("/api/list", &Method::GET) => json(StatusCode::OK, list_json()),
        ("/api/find", &Method::GET) => match query_value(query, "shortcode") {
            None => text(
                StatusCode::BAD_REQUEST,
                "missing or badly encoded query parameter shortcode\n",
            ),
            Some(code) => match find(&code) {
                Some(e) => json(StatusCode::OK, e.to_json()),
                None => text(StatusCode::NOT_FOUND, format!("no emoji {code}\n")),
            },
        },
        ("/api/list" | "/api/find", _) => method_not_allowed("GET"),
        _ => not_found(path),
    }
}

/// Serves the emoji service on `listener` until the process ends.
pub async fn serve(listener: TcpListener, name: &str) {
    super::serve(listener, name, EmojiService).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_unique_and_well_formed() {
        assert!(EMOJI.len() >= 20);
        let codes: std::collections::BTreeSet<_> = EMOJI.iter().map(|e| e.shortcode).collect();
        assert_eq!(codes.len(), EMOJI.len(), "duplicate shortcodes");
        for e in EMOJI {
            assert!(e.shortcode.starts_with(':') && e.shortcode.ends_with(':'));
            assert!(e.shortcode[1..e.shortcode.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        }
    }

    #[test]
    fn json_shapes() {
        assert_eq!(
            find(":joy:").map(Emoji::to_json).as_deref(),
            Some(r#"{"shortcode":":joy:","unicode":"😂"}"#)
        );
        let list = list_json();
        assert!(list.starts_with(r#"[{"shortcode":":joy:""#), "{list}");
        assert_eq!(list.matches("shortcode").count(), EMOJI.len());
        assert_eq!(find(":nope:"), None);
    }

    #[test]
    fn routes() {
        assert_eq!(route(&Method::GET, "/api/list", None).status(), 200);
        assert_eq!(
            route(&Method::GET, "/api/find", Some("shortcode=%3Afire%3A")).status(),
            200
        );
        assert_eq!(
            route(&Method::GET, "/api/find", Some("shortcode=:nope:")).status(),
            404
        );
        assert_eq!(route(&Method::GET, "/api/find", None).status(), 400);
        assert_eq!(route(&Method::POST, "/api/list", None).status(), 405);
        assert_eq!(route(&Method::GET, "/", None).status(), 404);
    }
}
