//! Registry authentication: the `WWW-Authenticate` challenge, bearer tokens
//! (Docker's token protocol, the Distribution "token authentication
//! specification" and its OAuth2 variant) and basic auth.
//!
//! A registry tells what it wants on the first `401`. The challenge is kept
//! per registry, and tokens per registry and scope until shortly before
//! they expire, so that parallel downloads share one token rather than each
//! asking the token server again; while one thread fetches a token, the
//! others that need the same one wait for it. Tokens come from a `GET` with
//! basic credentials (or none), or, for an identity token, from an OAuth2
//! refresh-token grant (`POST`), as Docker's own client does. Credentials
//! are looked up only once a registry asks for them. Tokens, passwords and
//! identity tokens are never logged, nor shown in `Debug` or errors.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use super::RegistryError;
use super::credentials::{BasicAuth, Credential, CredentialError, Credentials};

/// How long a token lives when the token server does not say, and at
/// least (the token specification's minimum).
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Tokens are renewed this long before they expire, so that none expires
/// in the middle of a request.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);
/// The OAuth2 client id lkcache names itself by.
const CLIENT_ID: &str = "lkcache";
/// Token server answers beyond this are not read.
const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

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
    /// Parses a `WWW-Authenticate` header value, which may hold several
    /// challenges; prefers a bearer challenge over basic, and returns
    /// `None` when it names no scheme lkcache speaks.
    pub fn parse(header: &str) -> Option<Challenge> {
        let mut basic = None;
        for (scheme, params) in parse_challenges(header) {
            match scheme.as_str() {
                "bearer" => {
                    let Some(realm) = params.get("realm").filter(|r| !r.is_empty()) else {
                        continue;
                    };
                    return Some(Challenge::Bearer {
                        realm: realm.clone(),
                        service: params.get("service").cloned(),
                    });
                }
                "basic" => basic = Some(Challenge::Basic),
                _ => {}
            }
        }
        basic
    }
}

/// Splits a header into challenges: a scheme (lower case), then
/// `key=value` or `key="quoted, value"` parameters (keys in lower case),
/// separated by commas and any spacing. A word not followed by `=` starts
/// the next challenge.
fn parse_challenges(header: &str) -> Vec<(String, HashMap<String, String>)> {
    let is_separator = |c: char| c == ',' || c.is_whitespace();
    let mut challenges = Vec::new();
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches(is_separator);
        if rest.is_empty() {
            return challenges;
        }
        let (scheme, after) = take_token(rest);
        if scheme.is_empty() {
            // A stray `=` or quote: skip it.
            let mut chars = rest.chars();
            chars.next();
            rest = chars.as_str();
            continue;
        }
        rest = after;
        let mut params = HashMap::new();
        loop {
            let next = rest.trim_start_matches(is_separator);
            let (key, after_key) = take_token(next);
            let Some(value) = after_key.trim_start().strip_prefix('=') else {
                break;
            };
            let value = value.trim_start();
            let (value, after_value) = match value.strip_prefix('"') {
                Some(quoted) => take_quoted(quoted),
                None => {
                    let (token, after) = take_value(value);
                    (token.to_string(), after)
                }
            };
            params.insert(key.to_ascii_lowercase(), value);
            rest = after_value;
        }
        challenges.push((scheme.to_ascii_lowercase(), params));
    }
}

/// Takes a scheme or key: everything up to spacing, `,`, `=` or a quote.
fn take_token(input: &str) -> (&str, &str) {
    let end = input
        .find(|c: char| c.is_whitespace() || matches!(c, ',' | '=' | '"'))
        .unwrap_or(input.len());
    input.split_at(end)
}

/// Takes an unquoted value: everything up to spacing or `,`.
fn take_value(input: &str) -> (&str, &str) {
    let end = input
        .find(|c: char| c.is_whitespace() || c == ',')
        .unwrap_or(input.len());
    input.split_at(end)
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

#[derive(Clone)]
struct Token {
    value: String,
    renew_at: Instant,
}

/// A token server's answer: `token` (Docker) or `access_token` (OAuth2).
#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// One token to fetch.
struct TokenRequest<'a> {
    domain: &'a str,
    realm: &'a str,
    service: Option<&'a str>,
    scope: &'a str,
}

/// A token cache key: registry and scope.
type TokenKey = (String, String);

/// Authorises requests to registries: remembers challenges and tokens.
#[derive(Default)]
pub(super) struct Authenticator {
    credentials: Credentials,
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<TokenKey, Token>>,
    /// One lock per token being fetched, so that it is fetched once.
    fetching: Mutex<HashMap<TokenKey, Arc<Mutex<()>>>>,
    /// Refresh tokens a token server handed out in place of the identity
    /// token of the configuration, by registry; used for later grants.
    refresh_tokens: Mutex<HashMap<String, String>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("credentials", &self.credentials)
            .field("challenges", &self.challenges)
            .finish_non_exhaustive()
    }
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
            Some(Challenge::Basic) => match self.credential(domain)? {
                Some(Credential::Basic(auth)) => Ok(Some(basic_header(&auth))),
                Some(Credential::IdentityToken(_)) => {
                    tracing::debug!(
                        registry = domain,
                        "the registry wants basic auth; an identity token cannot answer that"
                    );
                    Ok(None)
                }
                None => Ok(None),
            },
            Some(Challenge::Bearer { realm, service }) => {
                let request = TokenRequest {
                    domain,
                    realm: &realm,
                    service: service.as_deref(),
                    scope,
                };
                let token = self.token(agent, &request)?;
                Ok(Some(format!("Bearer {token}")))
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
            // A failed lookup is worth the retry too: it reports the cause.
            Challenge::Basic => {
                is_new
                    && !matches!(
                        self.credentials.for_registry(domain),
                        Ok(None | Some(Credential::IdentityToken(_)))
                    )
            }
            Challenge::Bearer { .. } => is_new || had_token,
        }
    }

    /// Tells whether credentials are configured for `domain`.
    pub(super) fn has_credentials(&self, domain: &str) -> bool {
        matches!(self.credentials.for_registry(domain), Ok(Some(_)))
    }

    fn credential(&self, domain: &str) -> Result<Option<Credential>, RegistryError> {
        self.credentials
            .for_registry(domain)
            .map_err(|error| credential_error(domain, error))
    }

    /// Returns a token for the request's registry and scope: the cached
    /// one while it lives, else a new one, fetched by one thread while the
    /// others wait for it.
    fn token(&self, agent: &ureq::Agent, request: &TokenRequest) -> Result<String, RegistryError> {
        let key = (request.domain.to_string(), request.scope.to_string());
        if let Some(token) = self.cached_token(&key) {
            return Ok(token);
        }
        let gate = Arc::clone(
            self.fetching
                .lock()
                .expect("lock poisoned")
                .entry(key.clone())
                .or_default(),
        );
        let _fetching = gate.lock().expect("lock poisoned");
        if let Some(token) = self.cached_token(&key) {
            return Ok(token);
        }
        let token = self.fetch_token(agent, request)?;
        let value = token.value.clone();
        self.tokens
            .lock()
            .expect("lock poisoned")
            .insert(key, token);
        Ok(value)
    }

    fn cached_token(&self, key: &TokenKey) -> Option<String> {
        let tokens = self.tokens.lock().expect("lock poisoned");
        let token = tokens.get(key)?;
        (Instant::now() < token.renew_at).then(|| token.value.clone())
    }

    /// Asks the token server for a token, the way the credentials allow.
    fn fetch_token(
        &self,
        agent: &ureq::Agent,
        request: &TokenRequest,
    ) -> Result<Token, RegistryError> {
        let credential = self.credential(request.domain)?;
        let sent = self.send_token_request(agent, request, credential.as_ref());
        let token_error = |detail: String| RegistryError::Token {
            registry: request.domain.to_string(),
            realm: request.realm.to_string(),
            detail,
        };
        let answer = read_token_answer(sent.response, sent.secret.as_deref(), sent.is_grant)
            .map_err(token_error)?;
        let rotated = answer
            .refresh_token
            .as_ref()
            .filter(|t| sent.is_grant && !t.is_empty() && Some(*t) != sent.secret.as_ref());
        if let Some(rotated) = rotated {
            self.refresh_tokens
                .lock()
                .expect("lock poisoned")
                .insert(request.domain.to_string(), rotated.clone());
        }
        answer
            .into_token()
            .ok_or_else(|| token_error("the answer holds no token".to_string()))
    }

    /// Sends the token request the credential calls for: the refresh-token
    /// grant for an identity token, else a `GET`, with basic credentials
    /// or anonymous.
    fn send_token_request(
        &self,
        agent: &ureq::Agent,
        request: &TokenRequest,
        credential: Option<&Credential>,
    ) -> SentTokenRequest {
        let TokenRequest {
            domain,
            realm,
            scope,
            ..
        } = *request;
        match credential {
            Some(Credential::IdentityToken(identity_token)) => {
                let refresh_token = self
                    .refresh_token(domain)
                    .unwrap_or_else(|| identity_token.clone());
                tracing::debug!(registry = domain, scope, "refreshing a token at {realm}");
                SentTokenRequest {
                    response: refresh_grant(agent, request, &refresh_token),
                    secret: Some(refresh_token),
                    is_grant: true,
                }
            }
            Some(Credential::Basic(auth)) => {
                tracing::debug!(
                    registry = domain,
                    scope,
                    "fetching a token from {realm} as `{}`",
                    auth.username
                );
                let response = agent
                    .get(token_url(realm, request.service, scope))
                    .header("Authorization", basic_header(auth))
                    .call();
                SentTokenRequest {
                    response,
                    secret: Some(auth.password.clone()),
                    is_grant: false,
                }
            }
            None => {
                tracing::debug!(
                    registry = domain,
                    scope,
                    "fetching an anonymous token from {realm}"
                );
                SentTokenRequest {
                    response: agent.get(token_url(realm, request.service, scope)).call(),
                    secret: None,
                    is_grant: false,
                }
            }
        }
    }

    fn refresh_token(&self, domain: &str) -> Option<String> {
        let refresh_tokens = self.refresh_tokens.lock().expect("lock poisoned");
        refresh_tokens.get(domain).cloned()
    }
}

/// A token request on its way, and the secret it carried.
struct SentTokenRequest {
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    /// The password or refresh token sent, to keep out of messages.
    secret: Option<String>,
    /// Whether it was a refresh-token grant.
    is_grant: bool,
}

/// Reads a token server's answer; a failure becomes words without the
/// secret that was sent.
fn read_token_answer(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    secret: Option<&str>,
    is_grant: bool,
) -> Result<TokenResponse, String> {
    let mut response = response.map_err(|e| redact(e.to_string(), secret))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_string();
    if status != 200 {
        let said = redact(body.unwrap_or_default().trim().to_string(), secret);
        let hint = if is_grant && matches!(status, 400 | 401 | 403) {
            "; the identity token in the Docker configuration may have expired or been \
             revoked: log in again"
        } else {
            ""
        };
        return Err(format!("status {status}: {said}{hint}"));
    }
    let body = body.map_err(|e| format!("unreadable answer: {e}"))?;
    serde_json::from_str(&body).map_err(|e| format!("unreadable answer: {e}"))
}

impl TokenResponse {
    /// Returns the token it holds, to be renewed shortly before it expires
    /// (after at least the specification's minimum lifetime).
    fn into_token(self) -> Option<Token> {
        let value = self.token.or(self.access_token).filter(|t| !t.is_empty())?;
        let lifetime = self
            .expires_in
            .map_or(MIN_TOKEN_LIFETIME, Duration::from_secs)
            .max(MIN_TOKEN_LIFETIME);
        Some(Token {
            value,
            renew_at: Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
        })
    }
}

/// Trades a refresh token for an access token: the OAuth2 refresh-token
/// grant, a form `POST` to the realm with every scope in one `scope`
/// parameter, as Docker's distribution client sends it.
fn refresh_grant(
    agent: &ureq::Agent,
    request: &TokenRequest,
    refresh_token: &str,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", CLIENT_ID),
        ("scope", request.scope),
    ];
    if let Some(service) = request.service {
        form.push(("service", service));
    }
    agent.post(request.realm).send_form(form)
}

/// Turns a failed credential lookup into a registry error that keeps it
/// as its cause.
fn credential_error(domain: &str, error: CredentialError) -> RegistryError {
    RegistryError::Credentials {
        registry: domain.to_string(),
        source: Box::new(error),
    }
}

/// Replaces every occurrence of `secret` in `text`.
fn redact(text: String, secret: Option<&str>) -> String {
    match secret.filter(|s| !s.is_empty()) {
        Some(secret) if text.contains(secret) => text.replace(secret, "<redacted>"),
        _ => text,
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

    fn bearer(realm: &str, service: Option<&str>) -> Option<Challenge> {
        Some(Challenge::Bearer {
            realm: realm.into(),
            service: service.map(str::to_string),
        })
    }

    #[test]
    fn parses_challenges() {
        let cases = [
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
                bearer("https://auth.docker.io/token", Some("registry.docker.io")),
            ),
            // Several scopes, one of them with two actions.
            (
                r#"Bearer realm="https://a/token",service="reg",scope="repository:a:pull repository:b/c:pull,push""#,
                bearer("https://a/token", Some("reg")),
            ),
            (
                r#"bearer service="a, b" , realm="http://127.0.0.1:9/t?x=\"y\"""#,
                bearer(r#"http://127.0.0.1:9/t?x="y""#, Some("a, b")),
            ),
            // Odd spacing around `=` and commas, tabs, a trailing comma.
            (
                "Bearer   realm = \"https://a/t\" ,\tservice =\"reg\" ,",
                bearer("https://a/t", Some("reg")),
            ),
            ("Bearer\trealm=\"https://a/t\"", bearer("https://a/t", None)),
            // Unquoted values, with and without commas between them.
            (
                "Bearer realm=https://a/t?x=1,service=reg",
                bearer("https://a/t?x=1", Some("reg")),
            ),
            (
                "Bearer realm=https://a/t service=reg",
                bearer("https://a/t", Some("reg")),
            ),
            (
                r#"BEARER REALM="https://a/t",Service="Reg""#,
                bearer("https://a/t", Some("Reg")),
            ),
            // Several challenges in one header: bearer wins over basic.
            (
                r#"Basic realm="r", Bearer realm="https://a/t",service="s""#,
                bearer("https://a/t", Some("s")),
            ),
            (
                r#"Negotiate abc==, Basic realm="r""#,
                Some(Challenge::Basic),
            ),
            (r#"Basic realm="Registry Realm""#, Some(Challenge::Basic)),
            ("Basic", Some(Challenge::Basic)),
            // An unterminated quote takes the rest.
            (r#"Bearer realm="https://a/t"#, bearer("https://a/t", None)),
            (r#"Bearer realm="""#, None),
            ("Bearer service=x", None),
            ("Bearer =x, \"", None),
            ("Negotiate", None),
            ("", None),
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
        assert_eq!(
            token_url("https://a/t", None, "repository:a:pull repository:b:pull"),
            "https://a/t?scope=repository%3Aa%3Apull&scope=repository%3Ab%3Apull"
        );
    }

    #[test]
    fn redacts_secrets_from_token_server_answers() {
        let cases = [
            (
                "bad refresh token r3fresh",
                Some("r3fresh"),
                "bad refresh token <redacted>",
            ),
            ("unauthorized", Some("r3fresh"), "unauthorized"),
            ("x", Some(""), "x"),
            ("x", None, "x"),
        ];
        for (text, secret, expected) in cases {
            assert_eq!(redact(text.to_string(), secret), expected);
        }
    }

    #[test]
    fn keeps_the_credential_error_as_the_cause() {
        let error = credential_error(
            "r.example",
            CredentialError::BadTimeout {
                value: "soon".into(),
            },
        );
        let cause = std::error::Error::source(&error).expect("a cause");
        assert!(cause.to_string().contains("`soon`"), "{cause}");
    }
}
