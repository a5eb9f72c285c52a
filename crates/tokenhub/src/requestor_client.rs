//! Delivers token updates to token requestors over HTTP, and refuses to reach
//! an address the operator did not allow: private, loopback, link-local and other non-public
//! addresses are refused unless they are in `TOKENHUB_OUTBOUND_ALLOW`. The check is made on every
//! address a name resolves to, at connection time (so a name that later resolves elsewhere is
//! checked again), and on IP literals before sending. Redirects are not followed; no proxy is used
//! unless one is configured (a proxy would resolve names past the check); an answer's body is read
//! up to [`MAX_ANSWER_BYTES`] at most; `http://` endpoints are refused unless plain HTTP was
//! allowed for development. A requestor registered with its server CA is reached through a client
//! that trusts that CA besides the public roots; every client presents the hub's client
//! certificate to a requestor that asks for one.

use crate::config::OutboundSettings;
use crate::domain::retry_after;
use ipnet::IpNet;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Which addresses requestors may be reached at.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allow: Vec<IpNet>,
}

impl OutboundPolicy {
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// Public addresses, and the non-public ones the operator allowed.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let allowed = |ip: IpAddr| self.allow.iter().any(|net| net.contains(&ip));
        // An IPv6 address that carries an IPv4 one (mapped, compatible, NAT64, 6to4) reaches
        // that IPv4 address: it is judged as that address.
        match embedded_ipv4(ip) {
            Some(v4) => is_public(IpAddr::V4(v4)) || allowed(IpAddr::V4(v4)) || allowed(ip),
            None => is_public(ip) || allowed(ip),
        }
    }
}

fn embedded_ipv4(ip: IpAddr) -> Option<std::net::Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let o = v6.octets();
    let tail = std::net::Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(v4) = v6.to_ipv4_mapped() {
        Some(v4)
    } else if (s[..6] == [0; 6] && !(v6.is_loopback() || v6.is_unspecified()))
        || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
    {
        Some(tail) // IPv4-compatible ::a.b.c.d, or NAT64 64:ff9b::/96
    } else if s[0] == 0x2002 {
        Some(std::net::Ipv4Addr::new(o[2], o[3], o[4], o[5])) // 6to4, 2002::/16
    } else {
        None
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10, shared address space
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24, protocol assignments
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
        }
    }
}

/// Resolves names and keeps only the addresses the policy permits.
struct GuardedResolver(Arc<OutboundPolicy>);

/// Every address a requestor's name resolved to is refused by the policy.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves only to addresses TOKENHUB_OUTBOUND_ALLOW does not allow")]
struct Refused(String);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(Refused(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx.
    Delivered { status: u16 },
    /// 408, 429, 5xx, a time-out or a connection error: try again (not before `retry_after`).
    Retry {
        status: Option<u16>,
        retry_after: Option<Duration>,
        error: String,
    },
    /// 400, 401, 404 and the other refusals: dead letter.
    Refused { status: Option<u16>, error: String },
    /// 410: the endpoint is gone.
    Gone,
}

/// The headers of one delivery.
pub struct Delivery<'a> {
    pub url: &'a str,
    pub authorization: &'a str,
    pub correlation_id: &'a str,
    pub webhook_id: &'a str,
    pub timestamp: i64,
    pub signature: &'a str,
    pub body: &'a str,
    /// The requestor's server CA (PEM), if it registered one.
    pub server_ca_pem: Option<&'a str>,
}

/// The most of a requestor's answer the hub reads (it needs only the status); past it the
/// connection is dropped rather than drained.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct RequestorClient {
    http: reqwest::Client,
    /// Clients that also trust a requestor's server CA, by that CA's PEM.
    by_ca: Arc<RwLock<HashMap<String, reqwest::Client>>>,
    identity: Option<reqwest::Identity>,
    timeout: Duration,
    proxy: Option<String>,
    policy: Arc<OutboundPolicy>,
    allow_plain_http: bool,
}

impl RequestorClient {
    pub fn new(policy: OutboundPolicy, timeout: Duration, outbound: &OutboundSettings) -> Self {
        Self::with_identity(policy, timeout, None, outbound).expect("no identity to load")
    }

    /// A client that presents `identity_pem` (certificate chain then private key, PEM) to a
    /// requestor that asks for a client certificate.
    pub fn with_identity(
        policy: OutboundPolicy,
        timeout: Duration,
        identity_pem: Option<&[u8]>,
        outbound: &OutboundSettings,
    ) -> Result<Self, String> {
        crate::telemetry::install_crypto_provider();
        let identity = identity_pem
            .map(reqwest::Identity::from_pem)
            .transpose()
            .map_err(|_| "the hub's client certificate or key does not load".to_string())?;
        let mut client = Self {
            http: reqwest::Client::new(),
            by_ca: Arc::default(),
            identity,
            timeout,
            proxy: outbound.proxy.clone(),
            policy: Arc::new(policy),
            allow_plain_http: outbound.allow_plain_http,
        };
        client.http = client.build(None)?;
        Ok(client)
    }

    fn build(&self, server_ca_pem: Option<&str>) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver(self.policy.clone())))
            .pool_max_idle_per_host(64);
        // A proxy the operator configured resolves names itself: the literal check still runs,
        // the proxy answers for the rest.
        builder = match &self.proxy {
            Some(p) => builder.proxy(
                reqwest::Proxy::all(p)
                    .map_err(|_| "the outbound proxy is not valid".to_string())?,
            ),
            None => builder.no_proxy(),
        };
        if let Some(id) = &self.identity {
            builder = builder.identity(id.clone());
        }
        if let Some(pem) = server_ca_pem {
            for ca in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|_| "the requestor's server CA does not load".to_string())?
            {
                builder = builder.add_root_certificate(ca);
            }
        }
        builder.build().map_err(|e| e.to_string())
    }

    /// The client for a requestor with this server CA (built once per CA).
    fn client_for(&self, server_ca_pem: Option<&str>) -> Result<reqwest::Client, String> {
        let Some(pem) = server_ca_pem else {
            return Ok(self.http.clone());
        };
        if let Some(c) = self
            .by_ca
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(pem)
        {
            return Ok(c.clone());
        }
        let c = self.build(Some(pem))?;
        let mut by_ca = self.by_ca.write().unwrap_or_else(|p| p.into_inner());
        // Registrations are few; a map that somehow grew large is simply started again.
        if by_ca.len() >= 1024 {
            by_ca.clear();
        }
        Ok(by_ca.entry(pem.to_string()).or_insert(c).clone())
    }

    /// Whether a requestor's base URL may be used: http(s), and a literal address the policy
    /// permits (names are checked when they are resolved). The message says why not.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let u = reqwest::Url::parse(url).map_err(|_| "baseUrl is not a valid URL".to_string())?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err("baseUrl must be http:// or https://".into());
        }
        if u.scheme() == "http" && !self.allow_plain_http {
            return Err(
                "baseUrl must be https:// (http:// is accepted only with allow_plain_http_endpoints, for development)"
                    .into(),
            );
        }
        let host = u
            .host_str()
            .ok_or_else(|| "baseUrl has no host".to_string())?;
        let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        else {
            return Ok(()); // a name: checked when it is resolved
        };
        if self.policy.permits(ip) {
            Ok(())
        } else {
            Err(format!(
                "baseUrl points at {ip}, a non-public address; allow its network with TOKENHUB_OUTBOUND_ALLOW"
            ))
        }
    }

    pub async fn send(&self, d: &Delivery<'_>) -> Attempt {
        if let Err(why) = self.check_url(d.url) {
            return Attempt::Refused {
                status: None,
                error: why,
            };
        }
        let mut headers = HeaderMap::new();
        let mut auth = match HeaderValue::from_str(d.authorization) {
            Ok(v) => v,
            Err(_) => {
                return Attempt::Refused {
                    status: None,
                    error: "the API key cannot be sent in a header".into(),
                }
            }
        };
        auth.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, auth);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in [
            ("x-correlation-id", d.correlation_id.to_string()),
            ("webhook-id", d.webhook_id.to_string()),
            ("webhook-timestamp", d.timestamp.to_string()),
            ("webhook-signature", d.signature.to_string()),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
        let http = match self.client_for(d.server_ca_pem) {
            Ok(c) => c,
            Err(error) => {
                return Attempt::Refused {
                    status: None,
                    error,
                }
            }
        };
        let sent = http
            .post(d.url)
            .headers(headers)
            .body(d.body.to_string())
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => return classify_error(&e),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after::parse(v, chrono::Utc::now().timestamp_millis()));
        // The body is not needed; reading a small one lets the connection be reused, a large one
        // is dropped with its connection.
        let mut read = 0;
        if resp
            .content_length()
            .is_none_or(|n| n <= MAX_ANSWER_BYTES as u64)
        {
            while let Ok(Some(chunk)) = resp.chunk().await {
                read += chunk.len();
                if read > MAX_ANSWER_BYTES {
                    break;
                }
            }
        }
        drop(resp);
        classify_status(status, retry_after)
    }
}

fn classify_error(e: &reqwest::Error) -> Attempt {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return Attempt::Refused {
                status: None,
                error: r.to_string(),
            };
        }
        source = s.source();
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    };
    Attempt::Retry {
        status: None,
        retry_after: None,
        error: what.to_string(),
    }
}

/// What an HTTP status means for a delivery.
pub fn classify_status(status: u16, retry_after: Option<Duration>) -> Attempt {
    match status {
        200..=299 => Attempt::Delivered { status },
        410 => Attempt::Gone,
        408 | 429 | 500..=599 => Attempt::Retry {
            status: Some(status),
            retry_after,
            error: format!("HTTP {status}"),
        },
        300..=399 => Attempt::Refused {
            status: Some(status),
            error: format!("HTTP {status}: redirects are not followed"),
        },
        _ => Attempt::Refused {
            status: Some(status),
            error: format!("HTTP {status}"),
        },
    }
}

/// `Retry-After`: seconds, or an HTTP date. At most a day is honoured.
#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_need_the_operators_leave() {
        let none = OutboundPolicy::default();
        for blocked in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::a00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!none.permits(ip(blocked)), "{blocked}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(none.permits(ip(public)), "{public}");
        }
        let local = OutboundPolicy::new(crate::config::parse_cidrs("127.0.0.0/8").unwrap());
        assert!(local.permits(ip("127.0.0.1")) && local.permits(ip("::ffff:127.0.0.2")));
        assert!(!local.permits(ip("10.0.0.1")));
    }

    #[test]
    fn literal_urls_are_checked_before_anything_is_sent() {
        let plain = OutboundSettings {
            allow_plain_http: true,
            proxy: None,
        };
        let c = RequestorClient::new(OutboundPolicy::default(), Duration::from_secs(1), &plain);
        assert!(c
            .check_url("http://127.0.0.1:9/x")
            .unwrap_err()
            .contains("TOKENHUB_OUTBOUND_ALLOW"));
        assert!(c.check_url("http://[::1]:9/").is_err());
        assert!(c.check_url("ftp://example.com/").is_err());
        assert!(c.check_url("https://psp.example.com/hooks").is_ok());
        assert!(c.check_url("http://psp.example.com/hooks").is_ok());
        let strict = RequestorClient::new(
            OutboundPolicy::default(),
            Duration::from_secs(1),
            &OutboundSettings::default(),
        );
        assert!(strict
            .check_url("http://psp.example.com/hooks")
            .unwrap_err()
            .contains("https://"));
        assert!(strict.check_url("https://psp.example.com/hooks").is_ok());
    }

    #[tokio::test]
    async fn names_resolving_to_blocked_addresses_are_refused_at_connection_time() {
        let plain = OutboundSettings {
            allow_plain_http: true,
            proxy: None,
        };
        let c = RequestorClient::new(OutboundPolicy::default(), Duration::from_secs(2), &plain);
        let d = Delivery {
            url: "http://localhost:9/notify-token-update",
            authorization: "APIKEY k",
            correlation_id: "c",
            webhook_id: "w",
            timestamp: 0,
            signature: "v1,x",
            body: "{}",
            server_ca_pem: None,
        };
        match c.send(&d).await {
            Attempt::Refused { error, .. } => {
                assert!(error.contains("TOKENHUB_OUTBOUND_ALLOW"), "{error}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn statuses_map_to_the_contract() {
        assert_eq!(
            classify_status(204, None),
            Attempt::Delivered { status: 204 }
        );
        assert_eq!(classify_status(410, None), Attempt::Gone);
        for s in [429, 500, 503, 408] {
            assert!(
                matches!(classify_status(s, None), Attempt::Retry { .. }),
                "{s}"
            );
        }
        for s in [400, 401, 404, 403, 301] {
            assert!(
                matches!(classify_status(s, None), Attempt::Refused { .. }),
                "{s}"
            );
        }
    }
}
