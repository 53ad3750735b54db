//! Proxies from the environment, read as Go's `net/http` reads them (and
//! so Docker and containerd): `HTTPS_PROXY` for `https://` hosts,
//! `HTTP_PROXY` for `http://` hosts, `NO_PROXY` for hosts to reach
//! directly; each also in lower case, the upper-case form first, an empty
//! value counting as unset. `ALL_PROXY` is not read, as Docker does not.
//!
//! `NO_PROXY` is a comma-separated list of `*` (no proxy at all), IP
//! addresses and CIDR ranges (`10.0.0.0/8`, `::1`), and domain names, each
//! optionally with a port: `example.com` matches it and its subdomains,
//! `.example.com` and `*.example.com` only its subdomains.
//!
//! A loopback host (`localhost`, `127.0.0.0/8`, `[::1]`) is reached
//! through a proxy only when the proxy itself is on loopback: a proxy
//! elsewhere cannot reach this machine's loopback, which is why Go never
//! sends loopback hosts to a proxy.
//!
//! ureq reads the same variables by itself, but with one proxy for both
//! schemes (`HTTPS_PROXY` before `HTTP_PROXY`), `NO_PROXY` entries
//! matched only as whole host names without ports or IP ranges, and
//! whitespace kept; so lkcache decides per host and hands ureq the result.

use std::net::IpAddr;

use super::HostsError;

/// The proxies the environment asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies {
    http: Option<Setting>,
    https: Option<Setting>,
    no_proxy: Vec<NoProxyEntry>,
}

/// A proxy URL and the variable that named it, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Setting {
    url: String,
    variable: &'static str,
}

impl Proxies {
    /// Reads the proxy variables of this process's environment.
    pub fn from_env() -> Proxies {
        Proxies::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the proxy variables through `lookup`, which returns a
    /// variable's value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Proxies {
        let first = |names: [&'static str; 2]| {
            names.into_iter().find_map(|name| {
                let value = lookup(name)?;
                let value = value.trim();
                (!value.is_empty()).then(|| Setting {
                    url: value.to_string(),
                    variable: name,
                })
            })
        };
        Proxies {
            http: first(["HTTP_PROXY", "http_proxy"]),
            https: first(["HTTPS_PROXY", "https_proxy"]),
            no_proxy: first(["NO_PROXY", "no_proxy"])
                .map(|setting| parse_no_proxy(&setting.url))
                .unwrap_or_default(),
        }
    }

    /// Returns the proxy for requests to `authority` (`host[:port]`) over
    /// HTTPS or plain HTTP, or `None` to connect directly.
    pub(crate) fn for_host(&self, is_https: bool, authority: &str) -> Option<&str> {
        let setting = if is_https { &self.https } else { &self.http };
        let setting = setting.as_ref()?;
        let (host, port) = split_authority(authority, if is_https { "443" } else { "80" });
        let ip = host.parse::<IpAddr>().ok();
        if self
            .no_proxy
            .iter()
            .any(|entry| entry.matches(&host, &port, ip))
        {
            return None;
        }
        if is_loopback(&host, ip) && !is_loopback_proxy(&setting.url) {
            return None;
        }
        Some(&setting.url)
    }

    /// Builds ureq's proxy for `url`, which [`Proxies::for_host`] or a
    /// host's `proxy` setting chose.
    pub(crate) fn proxy(&self, url: &str) -> Result<ureq::Proxy, HostsError> {
        let invalid = |detail: &str| HostsError::Proxy {
            url: redact(url),
            variable: self.variable_of(url),
            detail: detail.to_string(),
        };
        let scheme = url.split_once("://").map_or("http", |(scheme, _)| scheme);
        if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
            return Err(invalid(
                "lkcache speaks only to http:// and https:// proxies",
            ));
        }
        ureq::Proxy::new(url).map_err(|e| invalid(&e.to_string()))
    }

    fn variable_of(&self, url: &str) -> &'static str {
        [&self.https, &self.http]
            .into_iter()
            .flatten()
            .find(|setting| setting.url == url)
            .map_or("hosts.toml", |setting| setting.variable)
    }
}

/// One entry of `NO_PROXY`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NoProxyEntry {
    /// `*`: every host.
    All,
    /// An address, on any port or on one.
    Ip { ip: IpAddr, port: Option<String> },
    /// A range of addresses.
    Cidr { network: IpAddr, prefix_len: u8 },
    /// A domain: `suffix` starts with a dot; `matches_itself` for entries
    /// written without one.
    Domain {
        suffix: String,
        matches_itself: bool,
        port: Option<String>,
    },
}

impl NoProxyEntry {
    fn matches(&self, host: &str, port: &str, ip: Option<IpAddr>) -> bool {
        let port_matches = |wanted: &Option<String>| wanted.as_deref().is_none_or(|p| p == port);
        match (self, ip) {
            (NoProxyEntry::All, _) => true,
            (
                NoProxyEntry::Ip {
                    ip: wanted,
                    port: p,
                },
                Some(ip),
            ) => *wanted == ip && port_matches(p),
            (
                NoProxyEntry::Cidr {
                    network,
                    prefix_len,
                },
                Some(ip),
            ) => is_in_network(ip, *network, *prefix_len),
            (
                NoProxyEntry::Domain {
                    suffix,
                    matches_itself,
                    port: p,
                },
                None,
            ) => {
                let host_matches =
                    host.ends_with(suffix.as_str()) || (*matches_itself && host == &suffix[1..]);
                host_matches && port_matches(p)
            }
            _ => false,
        }
    }
}

/// Parses `NO_PROXY`; malformed entries are skipped, as Go skips them.
fn parse_no_proxy(value: &str) -> Vec<NoProxyEntry> {
    let mut entries = Vec::new();
    for entry in value.split(',') {
        let entry = entry.trim().to_ascii_lowercase();
        if entry.is_empty() {
            continue;
        }
        if entry == "*" {
            return vec![NoProxyEntry::All];
        }
        if let Some((network, prefix_len)) = entry.split_once('/') {
            let network = network.parse::<IpAddr>().ok();
            let prefix_len = prefix_len.parse::<u8>().ok();
            if let (Some(network), Some(prefix_len)) = (network, prefix_len) {
                let bits = if network.is_ipv4() { 32 } else { 128 };
                if prefix_len <= bits {
                    entries.push(NoProxyEntry::Cidr {
                        network,
                        prefix_len,
                    });
                }
            }
            continue;
        }
        let (host, port) = match split_host_port(&entry) {
            Some((host, port)) => (host, Some(port.to_string())),
            None => (entry.as_str(), None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            entries.push(NoProxyEntry::Ip { ip, port });
            continue;
        }
        let host = host.strip_prefix('*').unwrap_or(host);
        if host.is_empty() || host == "." {
            continue;
        }
        let matches_itself = !host.starts_with('.');
        let suffix = if matches_itself {
            format!(".{host}")
        } else {
            host.to_string()
        };
        entries.push(NoProxyEntry::Domain {
            suffix,
            matches_itself,
            port,
        });
    }
    entries
}

/// Splits `host:port` or `[v6]:port`; `None` when there is no port (a
/// bare IPv6 address has colons but no port).
fn split_host_port(text: &str) -> Option<(&str, &str)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return Some((host, after.strip_prefix(':')?));
    }
    let (host, port) = text.rsplit_once(':')?;
    (!host.contains(':') && !port.is_empty()).then_some((host, port))
}

/// Splits an authority into its lower-case host, without brackets, and
/// its port, `default_port` when it names none.
fn split_authority(authority: &str, default_port: &str) -> (String, String) {
    let (host, port) = split_host_port(authority).unwrap_or((authority, default_port));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host.to_ascii_lowercase(), port.to_string())
}

fn is_in_network(ip: IpAddr, network: IpAddr, prefix_len: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            u128::from(ip) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

fn is_loopback(host: &str, ip: Option<IpAddr>) -> bool {
    host == "localhost" || host.ends_with(".localhost") || ip.is_some_and(|ip| ip.is_loopback())
}

/// Tells whether a proxy URL names a loopback host.
fn is_loopback_proxy(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, _) = split_authority(authority, "");
    let ip = host.parse::<IpAddr>().ok();
    is_loopback(&host, ip)
}

/// Returns a proxy URL without its user name and password, for messages.
pub(crate) fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("…@{host}"),
        None => authority.to_string(),
    };
    if scheme.is_empty() {
        format!("{authority}{path}")
    } else {
        format!("{scheme}://{authority}{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(vars: &[(&str, &str)]) -> Proxies {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Proxies::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn chooses_the_proxy_by_scheme() {
        let both = proxies(&[
            ("HTTP_PROXY", "http://plain.proxy:3128"),
            ("https_proxy", "http://secure.proxy:3128"),
        ]);
        assert_eq!(
            both.for_host(false, "reg.example"),
            Some("http://plain.proxy:3128")
        );
        assert_eq!(
            both.for_host(true, "reg.example"),
            Some("http://secure.proxy:3128")
        );

        let only_http = proxies(&[("http_proxy", "http://plain.proxy:3128")]);
        assert_eq!(only_http.for_host(true, "reg.example"), None);

        let upper_first = proxies(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:1"),
        ]);
        assert_eq!(
            upper_first.for_host(true, "reg.example"),
            Some("http://upper:1")
        );

        let empty_upper = proxies(&[("HTTPS_PROXY", " "), ("https_proxy", "http://lower:1")]);
        assert_eq!(
            empty_upper.for_host(true, "reg.example"),
            Some("http://lower:1")
        );
        assert_eq!(proxies(&[]).for_host(true, "reg.example"), None);
    }

    #[test]
    fn matches_no_proxy_entries_as_go_does() {
        let no_proxy = " corp.example, .internal.example,*.wild.example ,10.0.0.0/8,\
                        192.168.1.5, reg.ports.example:5000, [fd00::1]:443, 2001:db8::/32 ";
        let proxies = proxies(&[
            ("HTTPS_PROXY", "http://proxy.example:3128"),
            ("NO_PROXY", no_proxy),
        ]);
        let cases = [
            ("corp.example", false),
            ("registry.corp.example", false),
            ("CORP.EXAMPLE:443", false),
            ("notcorp.example", true),
            ("internal.example", true),
            ("a.internal.example", false),
            ("wild.example", true),
            ("a.wild.example", false),
            ("10.1.2.3:5000", false),
            ("11.1.2.3", true),
            ("192.168.1.5:5000", false),
            ("192.168.1.6", true),
            ("reg.ports.example:5000", false),
            ("reg.ports.example", true),
            ("[fd00::1]", false),
            ("[fd00::1]:5000", true),
            ("[2001:db8::7]:5000", false),
            ("[2001:db9::7]", true),
        ];
        for (authority, proxied) in cases {
            assert_eq!(
                proxies.for_host(true, authority).is_some(),
                proxied,
                "{authority}"
            );
        }
    }

    #[test]
    fn sends_loopback_hosts_only_to_loopback_proxies() {
        let remote = proxies(&[("HTTP_PROXY", "http://user:secret@proxy.example:3128")]);
        let local = proxies(&[("HTTP_PROXY", "127.0.0.1:3128")]);
        for authority in [
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "a.localhost",
        ] {
            assert_eq!(remote.for_host(false, authority), None, "{authority}");
            assert_eq!(
                local.for_host(false, authority),
                Some("127.0.0.1:3128"),
                "{authority}"
            );
        }
        let everything = proxies(&[("HTTP_PROXY", "127.0.0.1:3128"), ("NO_PROXY", "*")]);
        assert_eq!(everything.for_host(false, "127.0.0.1:5000"), None);
    }

    #[test]
    fn refuses_proxies_it_cannot_speak_to_without_showing_passwords() {
        let proxies = proxies(&[("HTTPS_PROXY", "socks5://user:secret@proxy.example:1080")]);
        let url = proxies.for_host(true, "reg.example").unwrap();
        let error = proxies.proxy(url).unwrap_err().to_string();
        assert!(error.contains("HTTPS_PROXY"), "{error}");
        assert!(error.contains("socks5://…@proxy.example:1080"), "{error}");
        assert!(!error.contains("secret"), "{error}");
        assert!(proxies.proxy("http://proxy.example:3128").is_ok());
    }
}
