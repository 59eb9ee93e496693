//! Every HTTP call the server makes (hooks and model providers) goes through
//! one [`HttpClient`]: it follows no redirects, ignores proxy variables, and
//! applies one [`OutboundPolicy`] to the address it actually connects to.
//!
//! The policy refuses link-local and cloud-metadata addresses by default
//! (169.254.0.0/16, fe80::/10, fd00:ec2::254, 100.100.100.200 and the name
//! `metadata.google.internal`); with `deny_private` it also refuses
//! loopback, unspecified and private ranges. Names are checked on every
//! resolution, at call time, so a name that changes its answer (DNS
//! rebinding) is caught; IP-literal URLs skip the resolver and are checked
//! by [`HttpClient::check_url`]. The URL parser has already turned other
//! spellings of an IPv4 address (`2852039166`, `0xA9FEA9FE`, `0251.0376.…`)
//! into the address, and IPv4-mapped IPv6 addresses are checked as IPv4.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, RequestBuilder, Response, Url};

/// Which destinations outbound calls may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Also refuse loopback, unspecified and private (RFC 1918, CGNAT,
    /// ULA) addresses. Off by default: local model servers live there.
    pub deny_private: bool,
}

/// Why a destination is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    LinkLocal,
    CloudMetadata,
    Loopback,
    Private,
}

impl Rule {
    fn describe(self) -> &'static str {
        match self {
            Rule::LinkLocal => {
                "link-local addresses (169.254.0.0/16, fe80::/10) are never called: \
                 cloud metadata services live there"
            }
            Rule::CloudMetadata => "cloud metadata services are never called",
            Rule::Loopback => "loopback addresses are refused (--outbound-deny-private)",
            Rule::Private => "private addresses are refused (--outbound-deny-private)",
        }
    }
}

/// A call the policy refused; carried as the source of the transport error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Refused {
    pub host: String,
    /// The resolved address, when a name resolved to a refused one.
    pub address: Option<IpAddr>,
    pub rule: Rule,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "outbound call to {} refused", self.host)?;
        if let Some(address) = self.address {
            write!(f, " (it resolves to {address})")?;
        }
        write!(f, ": {}", self.rule.describe())
    }
}

/// Cloud metadata endpoints outside the link-local range.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
const ALIBABA_METADATA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);
/// Names of metadata services, refused before any lookup.
const METADATA_NAMES: &[&str] = &["metadata.google.internal"];

impl OutboundPolicy {
    /// Whether `ip` may be called.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Rule> {
        match ip {
            IpAddr::V4(v4) => self.check_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.check_v4(v4),
                None => self.check_v6(v6),
            },
        }
    }

    fn check_v4(&self, ip: Ipv4Addr) -> Result<(), Rule> {
        if ip.is_link_local() {
            return Err(Rule::LinkLocal);
        }
        if ip == ALIBABA_METADATA {
            return Err(Rule::CloudMetadata);
        }
        if self.deny_private {
            if ip.is_loopback() || ip.octets()[0] == 0 {
                return Err(Rule::Loopback);
            }
            // RFC 1918 and the shared address space 100.64.0.0/10.
            let [a, b, ..] = ip.octets();
            if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
                return Err(Rule::Private);
            }
        }
        Ok(())
    }

    fn check_v6(&self, ip: Ipv6Addr) -> Result<(), Rule> {
        if ip == AWS_METADATA_V6 {
            return Err(Rule::CloudMetadata);
        }
        let first = ip.segments()[0];
        if first & 0xffc0 == 0xfe80 {
            return Err(Rule::LinkLocal);
        }
        if self.deny_private {
            if ip.is_loopback() || ip.is_unspecified() {
                return Err(Rule::Loopback);
            }
            // Unique local fc00::/7 and the old site-local fec0::/10.
            if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
                return Err(Rule::Private);
            }
        }
        Ok(())
    }

    /// Whether `url`'s host may be called as written: IP literals by
    /// address, names by the metadata name list (their addresses are
    /// checked when they are resolved).
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        let refused = |rule, address| Refused {
            host: url.host_str().unwrap_or_default().to_string(),
            address,
            rule,
        };
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self
                .check_ip(IpAddr::V4(ip))
                .map_err(|rule| refused(rule, None)),
            Some(url::Host::Ipv6(ip)) => self
                .check_ip(IpAddr::V6(ip))
                .map_err(|rule| refused(rule, None)),
            Some(url::Host::Domain(name)) => check_name(name).map_err(|rule| refused(rule, None)),
            None => Ok(()),
        }
    }
}

fn check_name(name: &str) -> Result<(), Rule> {
    let name = name.trim_end_matches('.');
    if METADATA_NAMES
        .iter()
        .any(|metadata| name.eq_ignore_ascii_case(metadata))
    {
        return Err(Rule::CloudMetadata);
    }
    Ok(())
}

/// Resolves names with `inner` and keeps only the addresses the policy
/// allows; a name left with none fails with [`Refused`].
struct PolicyResolver {
    policy: OutboundPolicy,
    inner: Arc<dyn Resolve>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_string();
        if let Err(rule) = check_name(&host) {
            return Box::pin(async move {
                Err(Box::new(Refused {
                    host,
                    address: None,
                    rule,
                }) as _)
            });
        }
        let lookup = self.inner.resolve(name);
        Box::pin(async move {
            let mut refused = None;
            let allowed: Vec<SocketAddr> = lookup
                .await?
                .filter(|address| match policy.check_ip(address.ip()) {
                    Ok(()) => true,
                    Err(rule) => {
                        refused.get_or_insert((address.ip(), rule));
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some((address, rule))) => Err(Box::new(Refused {
                    host,
                    address: Some(address),
                    rule,
                }) as _),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// The operating system's resolver (getaddrinfo, on a blocking thread).
struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addresses = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(Box::new(addresses.collect::<Vec<_>>().into_iter()) as Addrs)
        })
    }
}

/// The outbound HTTP client: cheap to clone, shared by every caller.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    policy: OutboundPolicy,
}

impl HttpClient {
    /// A client resolving names with the operating system's resolver.
    pub fn new(policy: OutboundPolicy) -> reqwest::Result<HttpClient> {
        HttpClient::with_resolver(policy, Arc::new(SystemResolver))
    }

    /// A client resolving names with `resolver`; the policy still filters
    /// every answer.
    pub fn with_resolver(
        policy: OutboundPolicy,
        resolver: Arc<dyn Resolve>,
    ) -> reqwest::Result<HttpClient> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("taskloom/", env!("CARGO_PKG_VERSION")))
            // A redirect could carry credentials to another origin, or lead
            // to an address the policy would refuse: a 3xx is an answer.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve names itself, out of the policy's reach.
            .no_proxy()
            .dns_resolver(Arc::new(PolicyResolver {
                policy,
                inner: resolver,
            }))
            .build()?;
        Ok(HttpClient { client, policy })
    }

    /// Whether `url` may be called as written (see
    /// [`OutboundPolicy::check_url`]).
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        self.policy.check_url(url)
    }

    /// The client itself, for callers that checked their (fixed) base URL
    /// once with [`HttpClient::check_url`].
    pub(crate) fn checked(&self) -> &reqwest::Client {
        &self.client
    }

    /// A request to `url`, refused up front when the policy refuses its
    /// host as written.
    pub fn request(&self, method: Method, url: Url) -> Result<RequestBuilder, Refused> {
        self.check_url(&url)?;
        Ok(self.client.request(method, url))
    }
}

/// The policy refusal behind a transport error, if that is what it was.
pub fn refusal(error: &reqwest::Error) -> Option<&Refused> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
}

/// A 3xx answer: names the status and where it pointed (scheme, host and
/// port only: the rest of a location may carry anything).
pub fn redirect_description(response: &Response) -> String {
    let target = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|location| response.url().join(location).ok())
        .map(|target| format!(" to {}", target.origin().ascii_serialization()))
        .unwrap_or_default();
    format!(
        "HTTP {}: a redirect{target}, which is not followed (configure the final URL)",
        response.status().as_u16()
    )
}

/// How much of an error body is read: enough to find secrets that start
/// within the excerpt and run past its end.
const ERROR_BODY_READ_BYTES: usize = 64 * 1024;
/// How much of an error body is shown.
pub const ERROR_EXCERPT_BYTES: usize = 1024;
pub const REDACTED: &str = "[REDACTED]";

/// The first [`ERROR_BODY_READ_BYTES`] of a response body; a body that
/// fails midway keeps what arrived.
pub async fn read_error_body(mut response: Response) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_READ_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(ERROR_BODY_READ_BYTES);
    String::from_utf8_lossy(&body).into_owned()
}

/// `text` with every secret replaced by [`REDACTED`], then cut to
/// [`ERROR_EXCERPT_BYTES`] on a character boundary with a marker.
/// Redacting first means a secret that straddles the cut is gone whole.
pub fn error_excerpt<S: AsRef<str>>(text: &str, secrets: &[S]) -> String {
    let redacted = redact(text, secrets);
    if redacted.len() <= ERROR_EXCERPT_BYTES {
        return redacted;
    }
    let mut cut = ERROR_EXCERPT_BYTES;
    while !redacted.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}… [truncated, {} bytes in all]",
        &redacted[..cut],
        redacted.len()
    )
}

/// `text` with every occurrence of each secret replaced by [`REDACTED`]:
/// as written, in any ASCII case, JSON-escaped and percent-encoded, and
/// each long enough word of it (the token of `Bearer <token>`).
pub fn redact<S: AsRef<str>>(text: &str, secrets: &[S]) -> String {
    let mut needles: Vec<String> = Vec::new();
    for secret in secrets {
        let secret = secret.as_ref();
        if secret.trim().is_empty() {
            continue;
        }
        needles.push(secret.to_string());
        let json = serde_json::to_string(secret).unwrap_or_default();
        needles.push(json[1..json.len() - 1].to_string());
        needles.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
        needles.extend(
            secret
                .split_whitespace()
                .filter(|word| word.len() >= 8)
                .map(str::to_string),
        );
    }
    // Longest first, so a secret is not half-replaced by one of its words.
    needles.sort_by_key(|needle| std::cmp::Reverse(needle.len()));
    needles.dedup();
    let mut text = text.to_string();
    for needle in needles {
        text = replace_ignoring_ascii_case(&text, &needle, REDACTED);
    }
    text
}

fn replace_ignoring_ascii_case(text: &str, needle: &str, with: &str) -> String {
    // ASCII lower-casing keeps byte offsets, so matches found in the
    // lowered copy are valid ranges (and char boundaries) of the original.
    let lowered = text.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, _) in lowered.match_indices(&needle) {
        if start < last {
            continue;
        }
        out.push_str(&text[last..start]);
        out.push_str(with);
        last = start + needle.len();
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn default_policy_refuses_link_local_and_metadata_in_every_spelling() {
        let policy = OutboundPolicy::default();
        for refused in [
            "http://169.254.169.254/latest/meta-data/",
            "http://169.254.170.2/v2/credentials",
            // Decimal, hex, octal and short forms of 169.254.169.254.
            "http://2852039166/",
            "http://0xA9FEA9FE/",
            "http://0251.0376.0251.0376/",
            "http://169.254.43518/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://169.254.169.254./",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[fe80::1]/",
            "http://[fd00:ec2::254]/",
            "http://100.100.100.200/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.Google.Internal./",
        ] {
            let parsed = url(refused);
            let error = policy.check_url(&parsed).expect_err(refused);
            assert!(
                matches!(error.rule, Rule::LinkLocal | Rule::CloudMetadata),
                "{refused}: {error}"
            );
            assert!(error.to_string().contains("refused"), "{error}");
        }
        for allowed in [
            "http://127.0.0.1:11434/",
            "http://localhost:8080/",
            "http://[::1]/",
            "http://10.0.0.5/",
            "http://192.168.1.10/",
            "http://[fd12:3456::1]/",
            "https://api.openai.com/v1",
            "http://0/",
        ] {
            policy.check_url(&url(allowed)).expect(allowed);
        }
    }

    #[test]
    fn deny_private_also_refuses_loopback_and_private_ranges() {
        let policy = OutboundPolicy { deny_private: true };
        for refused in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0.0.0.0/",
            "http://0/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.0.1/",
            "http://100.64.0.1/",
            "http://[fd12:3456::1]/",
            "http://[fc00::1]/",
        ] {
            let error = policy.check_url(&url(refused)).expect_err(refused);
            assert!(
                matches!(error.rule, Rule::Loopback | Rule::Private),
                "{refused}: {error:?}"
            );
        }
        for allowed in [
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://8.8.8.8/",
            "http://[2001:db8::1]/",
        ] {
            policy.check_url(&url(allowed)).expect(allowed);
        }
    }

    #[test]
    fn excerpts_redact_before_cutting_and_cut_on_char_boundaries() {
        let secret = "Bearer sk-live-0123456789abcdef";
        // The secret straddles the 1 KiB cut.
        let body = format!("{}{secret}{}", "x".repeat(1010), "y".repeat(100));
        let shown = error_excerpt(&body, &[secret]);
        assert!(!shown.contains("sk-live"), "{shown}");
        assert!(!shown.contains("0123"), "{shown}");
        assert!(shown.contains("[truncated, "), "{shown}");
        assert!(shown.len() < ERROR_EXCERPT_BYTES + 64);

        // Variants: token alone, other case, JSON-escaped, percent-encoded.
        let tricky = "p@ss\"w/rd and more";
        let body = format!(
            "token sk-live-0123456789abcdef, upper SK-LIVE-0123456789ABCDEF, \
             json {}, form {}",
            serde_json::to_string(tricky).unwrap(),
            url::form_urlencoded::byte_serialize(tricky.as_bytes()).collect::<String>()
        );
        let shown = redact(&body, &[secret, tricky]);
        assert!(!shown.to_ascii_lowercase().contains("sk-live"), "{shown}");
        assert!(!shown.contains("p@ss"), "{shown}");
        assert!(!shown.contains("p%40ss"), "{shown}");

        // Multi-byte characters at the cut.
        let body = "é".repeat(2000);
        let shown = error_excerpt(&body, &[] as &[&str]);
        assert!(shown.starts_with("ééé"));
        assert!(shown.ends_with("bytes in all]"));
    }
}
