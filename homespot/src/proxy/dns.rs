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

/// A name that did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {host}: {reason}")]
pub struct DnsError {
    /// The name.
    pub host: String,
    /// What the resolver said.
    pub reason: String,
}

/// A cloneable resolver, usable as hyper-util's connector resolver.
#[derive(Clone)]
pub struct Dns {
    resolver: Arc<TokioResolver>,
}

impl Dns {
    /// Servers `servers`, or the system's (/etc/resolv.conf) when empty.
    pub fn new(servers: &[IpAddr]) -> Result<Dns, DnsError> {
        let fail = |e: &dyn std::fmt::Display| DnsError {
            host: "(resolver)".into(),
            reason: e.to_string(),
        };
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| fail(&e))?
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
        })
    }

    /// The addresses of `host` (an IP literal is returned as is).
    pub async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, DnsError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let found = self.resolver.lookup_ip(host).await.map_err(|e| DnsError {
            host: host.to_string(),
            reason: e.to_string(),
        })?;
        let addrs: Vec<SocketAddr> = found.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        if addrs.is_empty() {
            return Err(DnsError {
                host: host.to_string(),
                reason: "no addresses".into(),
            });
        }
        Ok(addrs)
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
