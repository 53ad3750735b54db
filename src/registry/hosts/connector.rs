//! The client's memory of how to reach hosts: each registry's route, read
//! from the host directories once; one ureq agent per distinct way of
//! connecting (TLS setup, proxy, connect timeout), built when first needed
//! and shared by every request that connects the same way, so that
//! connections are reused; and mirrors that just failed, which are left
//! alone for a while rather than waited for again on every blob.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::reference::Reference;

use super::proxy::redact;
use super::{Endpoint, Hosts, HostsError, Proxies, Route, Scheme, TlsSetup};

/// How long connecting may take unless a host says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a mirror that was unreachable or failing is skipped.
const MIRROR_REST: Duration = Duration::from_secs(60);

/// Routes, agents and failed mirrors; shared by a client's threads.
#[derive(Debug)]
pub(crate) struct Connector {
    hosts: Hosts,
    insecure: Vec<String>,
    proxies: Proxies,
    read_timeout: Duration,
    routes: Mutex<HashMap<String, Arc<Route>>>,
    agents: Mutex<HashMap<AgentKey, ureq::Agent>>,
    resting: Mutex<HashMap<String, Instant>>,
    /// Mirrors (by base URL) and repositories they were found to lack.
    lacking: Mutex<HashSet<(String, String)>>,
}

/// What makes two agents differ.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AgentKey {
    tls: TlsSetup,
    proxy: Option<String>,
    connect_timeout: Option<Duration>,
}

impl Connector {
    /// Prepares to reach hosts as `hosts` configures them; `insecure`
    /// registries speak plain HTTP; a response may stall `read_timeout`.
    pub(crate) fn new(
        hosts: Hosts,
        insecure: Vec<String>,
        proxies: Proxies,
        read_timeout: Duration,
    ) -> Connector {
        Connector {
            hosts,
            insecure,
            proxies,
            read_timeout,
            routes: Mutex::default(),
            agents: Mutex::default(),
            resting: Mutex::default(),
            lacking: Mutex::default(),
        }
    }

    /// Returns the hosts to ask for `reference`'s registry.
    pub(crate) fn route(&self, reference: &Reference) -> Result<Arc<Route>, HostsError> {
        let domain = reference.domain();
        if let Some(route) = self.routes.lock().expect("lock poisoned").get(domain) {
            return Ok(Arc::clone(route));
        }
        let route = Arc::new(self.hosts.route(reference, &self.insecure)?);
        for mirror in &route.mirrors {
            tracing::debug!(registry = domain, "mirror {}", mirror.url(""));
        }
        self.routes
            .lock()
            .expect("lock poisoned")
            .insert(domain.to_string(), Arc::clone(&route));
        Ok(route)
    }

    /// Returns the agent that connects to `endpoint`, building it on first
    /// use.
    pub(crate) fn agent(&self, endpoint: &Endpoint) -> Result<ureq::Agent, HostsError> {
        let proxy = match &endpoint.proxy {
            Some(proxy) => Some(proxy.clone()),
            None => self
                .proxies
                .for_host(endpoint.scheme == Scheme::Https, &endpoint.authority)
                .map(str::to_string),
        };
        let key = AgentKey {
            tls: endpoint.tls.clone(),
            proxy,
            connect_timeout: endpoint.connect_timeout,
        };
        let mut agents = self.agents.lock().expect("lock poisoned");
        if let Some(agent) = agents.get(&key) {
            return Ok(agent.clone());
        }
        if let Some(proxy) = &key.proxy {
            tracing::debug!(
                "reaching {} through proxy {}",
                endpoint.authority,
                redact(proxy)
            );
        }
        let agent = self.build(&key)?;
        agents.insert(key, agent.clone());
        Ok(agent)
    }

    fn build(&self, key: &AgentKey) -> Result<ureq::Agent, HostsError> {
        let proxy = match &key.proxy {
            Some(url) => Some(self.proxies.proxy(url)?),
            None => None,
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("lkcache/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(key.connect_timeout.unwrap_or(CONNECT_TIMEOUT)))
            // A stalled body must not hang a pull forever.
            .timeout_per_read(Some(self.read_timeout))
            .max_redirects(10)
            // Parallel blob downloads each keep their connection for the next.
            .max_idle_connections_per_host(16)
            // The proxy was chosen for this host already; none else applies.
            .proxy(proxy)
            .tls_config(key.tls.config()?)
            .build();
        Ok(config.new_agent())
    }

    /// Tells whether `mirror` failed recently and is being left alone.
    pub(crate) fn is_resting(&self, mirror: &Endpoint) -> bool {
        let mut resting = self.resting.lock().expect("lock poisoned");
        let base = mirror.base_url();
        match resting.get(&base) {
            Some(until) if Instant::now() < *until => true,
            Some(_) => {
                resting.remove(&base);
                false
            }
            None => false,
        }
    }

    /// Notes that `mirror` lacks content of `repository`; returns whether
    /// that is news. A mirror that lacks an image lacks each of its blobs
    /// too: one warning says it.
    pub(crate) fn note_lack(&self, mirror: &Endpoint, repository: &str) -> bool {
        self.lacking
            .lock()
            .expect("lock poisoned")
            .insert((mirror.base_url(), repository.to_string()))
    }

    /// Leaves `mirror` alone for a while: it is unreachable or failing.
    pub(crate) fn rest(&self, mirror: &Endpoint) {
        self.resting
            .lock()
            .expect("lock poisoned")
            .insert(mirror.base_url(), Instant::now() + MIRROR_REST);
    }
}
