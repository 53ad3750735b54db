//! Registry authentication: the `WWW-Authenticate` challenge, anonymous and
//! credentialed bearer tokens (Docker's token protocol, the Distribution
//! "token authentication specification"), and basic auth.
//!
//! A registry tells what it wants on the first `401`. The challenge is kept
//! per registry, and tokens per registry and scope until shortly before
//! they expire, so that parallel downloads share one token rather than each
//! asking the token server again. Tokens and passwords are never logged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use super::RegistryError;
use super::credentials::{BasicAuth, Credentials};

/// How long a token lives when the token server does not say (the token
/// specification's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Tokens are renewed this long before they expire, so that none expires
/// in the middle of a request.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

/// What a registry asked for in its `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP basic auth.
    Basic,
    /// A bearer token from the token server at `realm`.
    Bearer {
        /// The token server's URL.
        realm: String,
        /// The service the token is for.
        service: Option<String>,
    },
}

impl Challenge {
    /// Parses a `WWW-Authenticate` header value; `None` when it names no
    /// scheme lkcache speaks.
    pub fn parse(header: &str) -> Option<Challenge> {
        let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        let params = parse_params(params);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Challenge::Basic),
            "bearer" => Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
            }),
            _ => None,
        }
    }
}

/// Splits `key="quoted, value", key2=token` into a map with lower-case keys.
fn parse_params(input: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut rest = input.trim_start();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => take_quoted(quoted),
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            }
        };
        params.insert(key, value);
        rest = after.trim_start().trim_start_matches(',').trim_start();
    }
    params
}

/// Reads a quoted string whose opening quote is already consumed; returns
/// the unescaped value and what follows the closing quote.
fn take_quoted(input: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = input.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => value.extend(chars.next().map(|(_, escaped)| escaped)),
            '"' => return (value, &input[i + 1..]),
            _ => value.push(c),
        }
    }
    (value, "")
}

#[derive(Debug, Clone)]
struct Token {
    value: String,
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Authorises requests to registries: remembers challenges and tokens.
#[derive(Debug, Default)]
pub(super) struct Authenticator {
    credentials: Credentials,
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<(String, String), Token>>,
}

impl Authenticator {
    pub(super) fn new(credentials: Credentials) -> Authenticator {
        Authenticator {
            credentials,
            ..Authenticator::default()
        }
    }

    /// Returns the `Authorization` value for a request to `domain` within
    /// `scope`, fetching a token if the registry wants one and none is
    /// cached; `None` before the registry has challenged.
    pub(super) fn authorization(
        &self,
        agent: &ureq::Agent,
        domain: &str,
        scope: &str,
    ) -> Result<Option<String>, RegistryError> {
        let challenge = self
            .challenges
            .lock()
            .expect("lock poisoned")
            .get(domain)
            .cloned();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.credentials.for_registry(domain).map(basic_header)),
            Some(Challenge::Bearer { realm, service }) => {
                let key = (domain.to_string(), scope.to_string());
                if let Some(token) = self.cached_token(&key) {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let token = self.fetch_token(agent, domain, &realm, service.as_deref(), scope)?;
                let header = format!("Bearer {}", token.value);
                self.tokens
                    .lock()
                    .expect("lock poisoned")
                    .insert(key, token);
                Ok(Some(header))
            }
        }
    }

    /// Records the challenge of a `401` and forgets the token that was
    /// refused; returns whether a retry can do better.
    pub(super) fn on_unauthorized(&self, domain: &str, scope: &str, header: Option<&str>) -> bool {
        let Some(challenge) = header.and_then(Challenge::parse) else {
            return false;
        };
        let key = (domain.to_string(), scope.to_string());
        let had_token = self
            .tokens
            .lock()
            .expect("lock poisoned")
            .remove(&key)
            .is_some();
        let previous = self
            .challenges
            .lock()
            .expect("lock poisoned")
            .insert(domain.to_string(), challenge.clone());
        let is_new = previous.as_ref() != Some(&challenge);
        match challenge {
            Challenge::Basic => is_new && self.credentials.for_registry(domain).is_some(),
            Challenge::Bearer { .. } => is_new || had_token,
        }
    }

    /// Tells whether credentials are configured for `domain`.
    pub(super) fn has_credentials(&self, domain: &str) -> bool {
        self.credentials.for_registry(domain).is_some()
    }

    fn cached_token(&self, key: &(String, String)) -> Option<String> {
        let tokens = self.tokens.lock().expect("lock poisoned");
        let token = tokens.get(key)?;
        (Instant::now() < token.renew_at).then(|| token.value.clone())
    }

    fn fetch_token(
        &self,
        agent: &ureq::Agent,
        domain: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Token, RegistryError> {
        let url = token_url(realm, service, scope);
        tracing::debug!(registry = domain, scope, "fetching a token from {realm}");
        let mut request = agent.get(&url);
        if let Some(auth) = self.credentials.for_registry(domain) {
            request = request.header("Authorization", basic_header(auth));
        }
        let token_error = |detail: String| RegistryError::Token {
            registry: domain.to_string(),
            realm: realm.to_string(),
            detail,
        };
        let mut response = request.call().map_err(|e| token_error(e.to_string()))?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.body_mut().read_to_string().unwrap_or_default();
            return Err(token_error(format!("status {status}: {}", body.trim())));
        }
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| token_error(format!("unreadable answer: {e}")))?;
        let parsed: TokenResponse = serde_json::from_str(&body)
            .map_err(|e| token_error(format!("unreadable answer: {e}")))?;
        let Some(value) = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
        else {
            return Err(token_error("the answer holds no token".to_string()));
        };
        let lifetime = parsed
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        Ok(Token {
            value,
            renew_at: Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
        })
    }
}

fn basic_header(auth: &BasicAuth) -> String {
    let pair = format!("{}:{}", auth.username, auth.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Builds the token request URL; `scopes` holds one or more scopes
/// separated by spaces, each sent as its own `scope` parameter.
fn token_url(realm: &str, service: Option<&str>, scopes: &str) -> String {
    let params = service
        .map(|service| ("service", service))
        .into_iter()
        .chain(scopes.split(' ').map(|scope| ("scope", scope)));
    let mut url = realm.to_string();
    let mut separator = if realm.contains('?') { '&' } else { '?' };
    for (key, value) in params {
        url.push(separator);
        url.push_str(key);
        url.push('=');
        url.push_str(&percent_encode(value));
        separator = '&';
    }
    url
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let cases = [
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
                Some(Challenge::Bearer {
                    realm: "https://auth.docker.io/token".into(),
                    service: Some("registry.docker.io".into()),
                }),
            ),
            (
                r#"bearer service="a, b" , realm="http://127.0.0.1:9/t?x=\"y\"""#,
                Some(Challenge::Bearer {
                    realm: r#"http://127.0.0.1:9/t?x="y""#.into(),
                    service: Some("a, b".into()),
                }),
            ),
            (r#"Basic realm="Registry Realm""#, Some(Challenge::Basic)),
            ("Bearer service=x", None),
            ("Negotiate", None),
        ];
        for (header, expected) in cases {
            assert_eq!(Challenge::parse(header), expected, "{header}");
        }
    }

    #[test]
    fn builds_token_urls() {
        assert_eq!(
            token_url(
                "https://auth/token",
                Some("reg"),
                "repository:library/a:pull"
            ),
            "https://auth/token?service=reg&scope=repository%3Alibrary%2Fa%3Apull"
        );
        assert_eq!(
            token_url("https://a/t?x=1", None, "s"),
            "https://a/t?x=1&scope=s"
        );
    }
}
