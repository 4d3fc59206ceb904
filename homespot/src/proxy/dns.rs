//! Upstream name resolution with hickory (cached; no glibc NSS, so a static build works).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use hyper_util::client::legacy::connect::dns::Name;

/// A name that did not resolve, or resolved only to addresses the proxy may not reach.
#[derive(Debug, thiserror::Error)]
#[error("{}", if *.forbidden { format!("{host}: {reason}: not allowed through this proxy") } else { format!("cannot resolve {host}: {reason}") })]
pub struct DnsError {
    /// The name.
    pub host: String,
    /// What the resolver said, or why the address is refused.
    pub reason: String,
    /// Resolved, but to a destination the policy refuses (answered 403, not 502).
    pub forbidden: bool,
}

/// A cloneable resolver, usable as hyper-util's connector resolver. With a destination
/// policy, it hands out only addresses the proxy may reach.
#[derive(Clone)]
pub struct Dns {
    resolver: Arc<TokioResolver>,
    policy: Option<Arc<super::dest::DestPolicy>>,
}

impl Dns {
    /// Servers `servers`, or the system's (/etc/resolv.conf) when empty; without a readable
    /// /etc/resolv.conf, the router's own resolver at 127.0.0.1 (dnsmasq on OpenWrt), with a
    /// warning: the proxy runs either way.
    pub fn new(servers: &[IpAddr]) -> Result<Dns, DnsError> {
        let fail = |e: &dyn std::fmt::Display| DnsError {
            host: "(resolver)".into(),
            reason: e.to_string(),
            forbidden: false,
        };
        let system = if servers.is_empty() {
            match TokioResolver::builder_tokio() {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the system's DNS servers (/etc/resolv.conf); the proxy asks 127.0.0.1");
                    None
                }
            }
        } else {
            None
        };
        let local = [IpAddr::from([127, 0, 0, 1])];
        let servers = if servers.is_empty() {
            &local[..]
        } else {
            servers
        };
        let mut builder = if let Some(b) = system {
            b
        } else {
            let ns = servers
                .iter()
                .map(|ip| NameServerConfig::udp_and_tcp(*ip))
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(ns),
                TokioRuntimeProvider::default(),
            )
        };
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        opts.cache_size = 1024;
        builder = builder.with_options(opts);
        Ok(Dns {
            resolver: Arc::new(builder.build().map_err(|e| fail(&e))?),
            policy: None,
        })
    }

    /// The same resolver, filtering its answers through `policy`.
    pub fn with_policy(mut self, policy: Arc<super::dest::DestPolicy>) -> Dns {
        self.policy = Some(policy);
        self
    }

    /// The addresses of `host` (an IP literal, in any spelling, is taken as is) that the
    /// destination policy allows.
    pub async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, DnsError> {
        let addrs: Vec<SocketAddr> = if let Some(ip) = super::dest::numeric_host(host) {
            vec![SocketAddr::new(ip, port)]
        } else if super::dest::is_localhost_name(host) {
            vec![SocketAddr::new(
                IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                port,
            )]
        } else {
            let found = self.resolver.lookup_ip(host).await.map_err(|e| DnsError {
                host: host.to_string(),
                reason: e.to_string(),
                forbidden: false,
            })?;
            found.iter().map(|ip| SocketAddr::new(ip, port)).collect()
        };
        if addrs.is_empty() {
            return Err(DnsError {
                host: host.to_string(),
                reason: "no addresses".into(),
                forbidden: false,
            });
        }
        let Some(policy) = &self.policy else {
            return Ok(addrs);
        };
        let mut why = None;
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match policy.refusal(a.ip()) {
                Some(w) => {
                    why.get_or_insert(w);
                    false
                }
                None => true,
            })
            .collect();
        if allowed.is_empty() {
            return Err(DnsError {
                host: host.to_string(),
                reason: why.unwrap_or_default(),
                forbidden: true,
            });
        }
        Ok(allowed)
    }
}

impl tower_service::Service<Name> for Dns {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = DnsError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DnsError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), DnsError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let dns = self.clone();
        // hyper-util sets the port on the addresses it gets back.
        Box::pin(async move { dns.lookup(name.as_str(), 0).await.map(|v| v.into_iter()) })
    }
}
