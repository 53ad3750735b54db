//! One exchange with a registry: the host to ask (a mirror, falling back
//! to the upstream, or the upstream alone; see [`super::hosts`]), the URL
//! on that host, authorization for the repository's scope at that host,
//! one answer to an authentication challenge, and the mapping of failure
//! statuses to errors that carry the registry's own code and message.

use std::io::Read;
use std::sync::Arc;
use std::time::SystemTime;

use ureq::SendBody;
use ureq::http::{self, Response, StatusCode};

use crate::reference::Reference;

use super::hosts::{Capability, Endpoint, HostsError, Route, typed_tls_error};
use super::retry::{self, Attempts};
use super::{Client, RegistryError, RetryPolicy};

/// Attempts at most for one request to a mirror.
const MIRROR_ATTEMPTS: u32 = 2;

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
    /// Sends a request to the registry itself (never a mirror) and returns
    /// only a successful answer; a failure status becomes an error with
    /// the registry's own words.
    pub(super) fn exchange(
        &self,
        exchange: Exchange,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let route = self.route(exchange.reference)?;
        self.exchange_at(&route.upstream, exchange)
    }

    /// Sends a request to the registry itself and returns the answer
    /// whatever its status.
    pub(super) fn exchange_any(
        &self,
        exchange: Exchange,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let route = self.route(exchange.reference)?;
        self.exchange_counted(&route.upstream, exchange)
            .map(|(response, _)| response)
    }

    /// Sends a request to one host and returns only a successful answer.
    pub(super) fn exchange_at(
        &self,
        endpoint: &Endpoint,
        exchange: Exchange,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let reference = exchange.reference;
        let what = exchange.what.clone();
        let (response, attempts) = self.exchange_counted(endpoint, exchange)?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.status_error_at(&endpoint.name, reference, &what, response, attempts))
        }
    }

    /// Returns the hosts to ask for `reference`'s registry.
    pub(super) fn route(&self, reference: &Reference) -> Result<Arc<Route>, RegistryError> {
        self.connector
            .route(reference)
            .map_err(|error| hosts_error(reference.domain(), &error))
    }

    /// Makes a request of the mirrors that may serve it, in order, and
    /// then of the upstream: a mirror that fails in any way (unreachable,
    /// failing, refusing access, lacking the content, serving something
    /// wrong) is passed over with a warning; one unreachable or failing is
    /// left alone for a while.
    pub(super) fn with_mirrors<T>(
        &self,
        reference: &Reference,
        capability: Capability,
        what: &str,
        mut request: impl FnMut(&Endpoint) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let route = self.route(reference)?;
        let mut mirrors = route.mirrors_for(capability).peekable();
        while let Some(mirror) = mirrors.next() {
            if self.connector.is_resting(mirror) {
                tracing::debug!(
                    "{what}: passing over mirror `{}`, which failed",
                    mirror.name
                );
                continue;
            }
            let error = match request(mirror) {
                Ok(value) => {
                    tracing::debug!("{what}: served by mirror `{}`", mirror.name);
                    return Ok(value);
                }
                Err(error) => error,
            };
            let rests = error.is_transient() || matches!(error, RegistryError::Request { .. });
            if rests {
                self.connector.rest(mirror);
            }
            let next = match mirrors.peek() {
                Some(next) => format!("mirror `{}`", next.name),
                None => format!("`{}`", route.upstream.name),
            };
            let message = format!(
                "mirror `{}` failed for {what}: {}{}; trying {next}",
                mirror.name,
                mirror_failure(&error),
                if rests {
                    "; passing it over for a while"
                } else {
                    ""
                }
            );
            let is_known_lack = matches!(error, RegistryError::NotFound { .. })
                && !self.connector.note_lack(mirror, reference.repository());
            if is_known_lack {
                tracing::debug!("{message}");
            } else {
                tracing::warn!("{message}");
            }
        }
        request(&route.upstream)
    }

    /// Sends a request to one host, answering one authentication challenge
    /// and trying again after failures worth it; returns the last answer
    /// and how many attempts it took.
    fn exchange_counted(
        &self,
        endpoint: &Endpoint,
        mut exchange: Exchange,
    ) -> Result<(Response<ureq::Body>, u32), RegistryError> {
        let scope = scope_of(&exchange);
        let url = endpoint.url(exchange.target);
        let agent = self
            .connector
            .agent(endpoint)
            .map_err(|error| hosts_error(&endpoint.name, &error))?;
        // The upstream is a mirror's retry: a failing mirror gets one more
        // attempt, not the whole budget.
        let mirror_policy;
        let policy = if endpoint.is_mirror() {
            mirror_policy = RetryPolicy {
                max_attempts: self.retry.max_attempts.min(MIRROR_ATTEMPTS),
                ..self.retry.clone()
            };
            &mirror_policy
        } else {
            &self.retry
        };
        let mut attempts = Attempts::new(policy);
        let mut has_answered_challenge = false;
        loop {
            let can_resend = !matches!(exchange.payload, Payload::Stream(..));
            let outcome = self.attempt(endpoint, &agent, &mut exchange, &url, &scope);
            let (delay, reason) = match &outcome {
                Err(RegistryError::Unreachable { source, .. })
                    if can_resend && retry::is_retryable_transport(source) =>
                {
                    (attempts.next_delay(None), source.to_string())
                }
                Ok(response)
                    if response.status() == StatusCode::UNAUTHORIZED
                        && can_resend
                        && !has_answered_challenge =>
                {
                    has_answered_challenge = true;
                    let challenge = header(response, "www-authenticate");
                    if self
                        .auth
                        .on_unauthorized(&endpoint.name, &scope, challenge.as_deref())
                    {
                        continue;
                    }
                    (None, String::new())
                }
                Ok(response)
                    if can_resend && retry::is_retryable_status(response.status().as_u16()) =>
                {
                    let asked = header(response, "retry-after")
                        .and_then(|v| retry::parse_retry_after(&v, SystemTime::now()));
                    (
                        attempts.next_delay(asked),
                        format!("status {}", response.status().as_u16()),
                    )
                }
                _ => (None, String::new()),
            };
            let Some(delay) = delay else {
                return outcome
                    .map(|response| (response, attempts.made()))
                    .map_err(|e| e.after(attempts.made()));
            };
            tracing::debug!("{}: {reason}; trying again in {delay:?}", exchange.what);
            std::thread::sleep(delay);
        }
    }

    /// Makes one attempt of an exchange with one host.
    fn attempt(
        &self,
        endpoint: &Endpoint,
        agent: &ureq::Agent,
        exchange: &mut Exchange,
        url: &str,
        scope: &str,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let authorization = self.auth.authorization(agent, &endpoint.name, scope)?;
        let builder = request_builder(exchange, endpoint, url, authorization);
        tracing::trace!("{:?} {url}", exchange.method);
        let sent = match &mut exchange.payload {
            Payload::Empty => builder.body(()).map(|r| agent.run(r)),
            Payload::Bytes(bytes) => builder.body(*bytes).map(|r| agent.run(r)),
            Payload::Stream(reader, length) => builder
                .header("Content-Length", *length)
                .body(SendBody::from_reader(*reader))
                .map(|r| agent.run(r)),
        };
        sent.map_err(|e| RegistryError::Request {
            url: url.to_string(),
            detail: e.to_string(),
        })?
        .map_err(|source| RegistryError::Unreachable {
            registry: endpoint.name.clone(),
            url: url.to_string(),
            source: Box::new(typed_tls_error(source)),
            attempts: 1,
        })
    }

    /// Turns a failure status into an error with the registry's own words.
    pub(super) fn status_error(
        &self,
        reference: &Reference,
        what: &str,
        response: Response<ureq::Body>,
        attempts: u32,
    ) -> RegistryError {
        self.status_error_at(reference.domain(), reference, what, response, attempts)
    }

    /// Turns a failure status of the host `registry` into an error with
    /// its own words.
    fn status_error_at(
        &self,
        registry: &str,
        reference: &Reference,
        what: &str,
        mut response: Response<ureq::Body>,
        attempts: u32,
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
        let registry = registry.to_string();
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
                attempts,
            },
        }
    }
}

/// Says in a few words why a mirror did not serve a request.
fn mirror_failure(error: &RegistryError) -> String {
    match error {
        RegistryError::NotFound { .. } => "it does not have it".to_string(),
        RegistryError::Unreachable { source, .. } => format!("unreachable ({source})"),
        RegistryError::Unauthorized { detail, .. } => format!("access refused ({detail})"),
        RegistryError::Status { status, detail, .. } => format!("status {status} ({detail})"),
        other => other.to_string(),
    }
}

/// Reports a host configuration that makes requests to `registry`
/// impossible, with the whole chain of causes.
fn hosts_error(registry: &str, error: &HostsError) -> RegistryError {
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    RegistryError::Request {
        url: registry.to_string(),
        detail,
    }
}

/// Returns the token scope an exchange needs.
fn scope_of(exchange: &Exchange) -> String {
    let actions = if exchange.is_push {
        "pull,push"
    } else {
        "pull"
    };
    let mut scope = format!("repository:{}:{actions}", exchange.reference.repository());
    if let Some(source) = exchange.also_reads {
        scope.push_str(&format!(" repository:{source}:pull"));
    }
    scope
}

/// Starts the HTTP request for one attempt of an exchange, with the
/// headers the host's configuration adds.
fn request_builder(
    exchange: &Exchange,
    endpoint: &Endpoint,
    url: &str,
    authorization: Option<String>,
) -> http::request::Builder {
    let mut builder = http::Request::builder()
        .method(exchange.method.as_http())
        .uri(url);
    for (name, value) in &endpoint.headers {
        builder = builder.header(name.as_str(), value);
    }
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
