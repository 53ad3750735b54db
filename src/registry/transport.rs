//! One exchange with a registry: the URL (HTTP for loopback and insecure
//! registries, HTTPS otherwise), authorization for the repository's scope,
//! one answer to an authentication challenge, and the mapping of failure
//! statuses to errors that carry the registry's own code and message.

use std::io::Read;

use ureq::SendBody;
use ureq::http::{self, Response, StatusCode};

use crate::reference::Reference;

use super::{Client, RegistryError};

/// A request method of the Distribution API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
}

impl Method {
    fn as_http(self) -> http::Method {
        match self {
            Method::Get => http::Method::GET,
            Method::Head => http::Method::HEAD,
            Method::Post => http::Method::POST,
            Method::Put => http::Method::PUT,
            Method::Patch => http::Method::PATCH,
        }
    }
}

/// What a request carries.
pub(super) enum Payload<'a> {
    /// Nothing.
    Empty,
    /// Bytes in memory, which can be sent again after a challenge.
    Bytes(&'a [u8]),
    /// A stream of a known length, which can be sent only once: the
    /// repository's scope must be authorised by an earlier request.
    Stream(&'a mut dyn Read, u64),
}

/// One request to a repository of a registry.
pub(super) struct Exchange<'a> {
    /// The repository, and the registry that serves it.
    pub reference: &'a Reference,
    pub method: Method,
    /// An API path (`/v2/...`) or an absolute URL the registry handed out
    /// (an upload's `Location`).
    pub target: &'a str,
    pub headers: Vec<(&'static str, String)>,
    pub payload: Payload<'a>,
    /// Whether the request needs push access, not only pull.
    pub is_push: bool,
    /// Another repository of the same registry that the request reads
    /// from: the source of a cross-repository mount.
    pub also_reads: Option<&'a str>,
    /// The request in words, for errors: `manifest docker.io/library/a:1`.
    pub what: String,
}

impl<'a> Exchange<'a> {
    /// Describes a request without payload and extra headers.
    pub(super) fn new(
        reference: &'a Reference,
        method: Method,
        target: &'a str,
        what: String,
    ) -> Exchange<'a> {
        Exchange {
            reference,
            method,
            target,
            headers: Vec::new(),
            payload: Payload::Empty,
            is_push: false,
            also_reads: None,
            what,
        }
    }
}

impl Client {
    /// Sends a request and returns only a successful answer; a failure
    /// status becomes an error with the registry's own words.
    pub(super) fn exchange(
        &self,
        exchange: Exchange,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let reference = exchange.reference;
        let what = exchange.what.clone();
        let response = self.exchange_any(exchange)?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.status_error(reference, &what, response))
        }
    }

    /// Sends a request, answering one authentication challenge, and
    /// returns the answer whatever its status.
    pub(super) fn exchange_any(
        &self,
        mut exchange: Exchange,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let reference = exchange.reference;
        let domain = reference.domain();
        let actions = if exchange.is_push {
            "pull,push"
        } else {
            "pull"
        };
        let mut scope = format!("repository:{}:{actions}", reference.repository());
        if let Some(source) = exchange.also_reads {
            scope.push_str(&format!(" repository:{source}:pull"));
        }
        let url = self.url(reference, exchange.target);
        let mut has_answered_challenge = false;
        loop {
            let authorization = self.auth.authorization(&self.agent, domain, &scope)?;
            let builder = request_builder(&exchange, &url, authorization);
            tracing::trace!("{:?} {url}", exchange.method);
            let sent = match &mut exchange.payload {
                Payload::Empty => builder.body(()).map(|r| self.agent.run(r)),
                Payload::Bytes(bytes) => builder.body(*bytes).map(|r| self.agent.run(r)),
                Payload::Stream(reader, length) => builder
                    .header("Content-Length", *length)
                    .body(SendBody::from_reader(*reader))
                    .map(|r| self.agent.run(r)),
            };
            let response = sent
                .map_err(|e| RegistryError::Request {
                    url: url.clone(),
                    detail: e.to_string(),
                })?
                .map_err(|source| RegistryError::Unreachable {
                    registry: domain.to_string(),
                    url: url.clone(),
                    source: Box::new(source),
                })?;
            let can_resend = !matches!(exchange.payload, Payload::Stream(..));
            if response.status() == StatusCode::UNAUTHORIZED
                && !has_answered_challenge
                && can_resend
            {
                has_answered_challenge = true;
                let challenge = header(&response, "www-authenticate");
                if self
                    .auth
                    .on_unauthorized(domain, &scope, challenge.as_deref())
                {
                    continue;
                }
            }
            return Ok(response);
        }
    }

    /// Turns a failure status into an error with the registry's own words.
    pub(super) fn status_error(
        &self,
        reference: &Reference,
        what: &str,
        mut response: Response<ureq::Body>,
    ) -> RegistryError {
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .unwrap_or_default();
        let detail = registry_error_detail(&body).unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_lowercase()
        });
        let registry = reference.domain().to_string();
        match status {
            StatusCode::NOT_FOUND => RegistryError::NotFound {
                reference: reference.to_string(),
                detail,
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
                has_credentials: self.auth.has_credentials(&registry),
                registry,
                reference: reference.to_string(),
                detail,
            },
            _ => RegistryError::Status {
                registry,
                what: what.to_string(),
                status: status.as_u16(),
                detail,
            },
        }
    }

    /// Returns the absolute URL of `target` at `reference`'s registry.
    pub(super) fn url(&self, reference: &Reference, target: &str) -> String {
        if target.starts_with("http://") || target.starts_with("https://") {
            return target.to_string();
        }
        format!("{}{target}", self.base_url(reference))
    }

    pub(super) fn base_url(&self, reference: &Reference) -> String {
        let is_insecure = reference.is_loopback()
            || self
                .insecure_registries
                .iter()
                .any(|r| r == reference.domain());
        let scheme = if is_insecure { "http" } else { "https" };
        format!("{scheme}://{}", reference.registry_host())
    }
}

/// Starts the HTTP request for one attempt of an exchange.
fn request_builder(
    exchange: &Exchange,
    url: &str,
    authorization: Option<String>,
) -> http::request::Builder {
    let mut builder = http::Request::builder()
        .method(exchange.method.as_http())
        .uri(url);
    for (name, value) in &exchange.headers {
        builder = builder.header(*name, value);
    }
    if let Some(authorization) = authorization {
        builder = builder.header("Authorization", authorization);
    }
    builder
}

/// Returns a response header as text.
pub(super) fn header(response: &Response<ureq::Body>, name: &str) -> Option<String> {
    let value = response.headers().get(name)?;
    value.to_str().ok().map(str::to_string)
}

/// Extracts `CODE: message` from a Distribution error body.
fn registry_error_detail(body: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let errors: Errors = serde_json::from_str(body).ok()?;
    let parts: Vec<String> = errors
        .errors
        .iter()
        .map(|e| format!("{}: {}", e.code, e.message))
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_registry_error_messages() {
        let body =
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(
            registry_error_detail(body).as_deref(),
            Some("MANIFEST_UNKNOWN: manifest unknown")
        );
        assert_eq!(registry_error_detail("<html>"), None);
    }
}
