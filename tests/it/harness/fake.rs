//! A test double of a registry that serves one chosen manifest for every
//! manifest request. It exists only for behaviour that a real registry
//! refuses to show: Distribution will not store a schema 1 manifest from a
//! current client, nor accept a manifest above its own size limit.

use super::TestResult;
use super::http::{Answer, Server};

/// Starts a fake registry serving `body` with `content_type` for every
/// manifest GET; with `declare_length` false, the body runs until the
/// connection closes, so only the bytes received can tell its size.
pub fn serving(content_type: &str, body: Vec<u8>, declare_length: bool) -> TestResult<Server> {
    let content_type = content_type.to_string();
    Server::start(move |request| {
        if request.path.contains("/manifests/") {
            let mut answer = Answer::with_status(200, &content_type, body.clone());
            answer.declare_length = declare_length;
            answer
        } else {
            Answer::json(&serde_json::json!({}))
        }
    })
}
