//! What a client callback may reach: the public internet only (issue #15, SSRF).
//!
//! A tenant chooses its `callback_url`; without this policy the daemon would POST wherever
//! it points, including the operator's own network (loopback, RFC 1918 ranges, the cloud
//! metadata service at 169.254.169.254), and the tenant would learn from timings and retries
//! what answers there. So every address is classified before anything connects to it:
//!
//! - refused: loopback (127/8, ::1), unspecified (0.0.0.0, ::), "this network" (0/8),
//!   private (10/8, 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16, fe80::/10),
//!   shared CGNAT (100.64/10), multicast (224/4, ff00::/8), broadcast (255.255.255.255),
//!   and the other ranges that are not globally routable (IETF protocol assignments,
//!   documentation, benchmarking, 240/4, site-local fec0::/10, discard 100::/64,
//!   documentation 2001:db8::/32);
//! - IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
//!   `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by that IPv4 address;
//! - [`CallbackPolicy::allow_loopback`] lets loopback through (tests, a receiver on the same
//!   machine), and [`CallbackPolicy::allowed_networks`] names internal ranges an operator
//!   wants reachable.
//!
//! Host names are judged twice: at submission by name alone (no DNS lookup: a submission
//! never waits on a resolver, and a name's answer can change anyway), and at every delivery
//! by the addresses it resolves to, the connection then going to a vetted address
//! (`engine::callbacks`). Numeric hosts in any spelling (`0x7f.1`, `017700000001`,
//! `2130706433`, `[::ffff:7f00:1]`) are normalised by the URL parser before they get here.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Loopback,
    Unspecified,
    Private,
    LinkLocal,
    SharedCgnat,
    Multicast,
    Broadcast,
    /// Reserved, documentation, benchmarking and other ranges not routed on the internet.
    NotGlobal,
}

impl Refusal {
    /// What the address is, as said in errors (`"is a loopback address"`).
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::Loopback => "a loopback address",
            Refusal::Unspecified => "an unspecified address",
            Refusal::Private => "a private address",
            Refusal::LinkLocal => "a link-local address",
            Refusal::SharedCgnat => "a shared (CGNAT) address",
            Refusal::Multicast => "a multicast address",
            Refusal::Broadcast => "a broadcast address",
            Refusal::NotGlobal => "a reserved address that is not routed on the internet",
        }
    }
}

/// The class of an address that is not on the public internet; `None` for a public one.
pub fn classify(ip: IpAddr) -> Option<Refusal> {
    match embedded_ipv4(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), else the
/// address itself. `::` and `::1` are IPv6's own unspecified and loopback addresses.
pub fn embedded_ipv4(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    if v6.is_unspecified() || v6.is_loopback() {
        return ip;
    }
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    // IPv4-compatible (::a.b.c.d, deprecated) and NAT64's well-known prefix 64:ff9b::/96.
    if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return IpAddr::V4(tail);
    }
    // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
    if s[0] == 0x2002 {
        return IpAddr::V4(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    ip
}

fn classify_v4(ip: Ipv4Addr) -> Option<Refusal> {
    let [a, b, c, _] = ip.octets();
    if ip.is_unspecified() {
        Some(Refusal::Unspecified)
    } else if ip.is_loopback() {
        Some(Refusal::Loopback)
    } else if ip.is_private() {
        Some(Refusal::Private)
    } else if ip.is_link_local() {
        Some(Refusal::LinkLocal)
    } else if a == 100 && (b & 0xc0) == 64 {
        Some(Refusal::SharedCgnat)
    } else if ip.is_multicast() {
        Some(Refusal::Multicast)
    } else if ip.is_broadcast() {
        Some(Refusal::Broadcast)
    } else if a == 0                             // "this network" 0/8
        || a >= 240                              // reserved 240/4
        || (a == 192 && b == 0 && c == 0)        // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)        // TEST-NET-1
        || (a == 198 && b == 51 && c == 100)     // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)      // TEST-NET-3
        || (a == 198 && (b & 0xfe) == 18)        // benchmarking 198.18/15
        || (a == 192 && b == 88 && c == 99)
    // deprecated 6to4 relay anycast
    {
        Some(Refusal::NotGlobal)
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    let s = ip.segments();
    if ip.is_unspecified() {
        Some(Refusal::Unspecified)
    } else if ip.is_loopback() {
        Some(Refusal::Loopback)
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some(Refusal::Private)
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some(Refusal::LinkLocal)
    } else if (s[0] & 0xff00) == 0xff00 {
        Some(Refusal::Multicast)
    } else if (s[0] & 0xffc0) == 0xfec0                       // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8)                 // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])           // discard-only 100::/64
        || (s[0] & 0xe000) != 0x2000
    // outside global unicast 2000::/3
    {
        Some(Refusal::NotGlobal)
    } else {
        None
    }
}

/// A CIDR range (`10.20.0.0/16`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    base: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// Whether `ip` is inside the range; an IPv4 range also holds that address's IPv6 forms.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, embedded_ipv4(ip), ip) {
            (IpAddr::V4(base), IpAddr::V4(v4), _) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(base) & mask == u32::from(v4) & mask
            }
            (IpAddr::V6(base), _, IpAddr::V6(v6)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(base) & mask == u128::from(v6) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNetwork {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let base: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP network (e.g. 10.20.0.0/16)"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}` has a prefix length that is not 0..={max}"))?,
        };
        Ok(IpNetwork { base, prefix })
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// Parses `MINDO_CALLBACK_ALLOWED_NETWORKS`: CIDR ranges separated by commas or spaces.
pub fn parse_networks(list: &str) -> Result<Vec<IpNetwork>, String> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

/// What callbacks may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackPolicy {
    /// `MINDO_CALLBACK_ALLOW_LOOPBACK`: loopback addresses (and `localhost`) are allowed.
    pub allow_loopback: bool,
    /// `MINDO_CALLBACK_ALLOWED_NETWORKS`: ranges allowed although not public.
    pub allowed_networks: Vec<IpNetwork>,
}

/// Why a callback URL or address is refused, as said to the tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetRefused {
    #[error("is not a URL")]
    NotUrl,
    #[error("must use https")]
    NotHttps,
    #[error("has no host")]
    NoHost,
    #[error("is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("has user credentials in it")]
    Credentials,
    #[error("points to {ip}, {}", .class.describe())]
    Address { ip: IpAddr, class: Refusal },
    #[error("names {host}, a host that is not on the public internet")]
    InternalName { host: String },
    #[error("{host} resolves to {ip}, {}", .class.describe())]
    Resolved {
        host: String,
        ip: IpAddr,
        class: Refusal,
    },
    #[error("{host} does not resolve to any address")]
    Unresolved { host: String },
}

/// The longest `callback_url` accepted.
pub const MAX_URL_LEN: usize = 2048;

/// The host of a callback URL, as the delivery needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackHost {
    /// A numeric address, already vetted.
    Ip(IpAddr),
    /// A name, vetted by name; its addresses still have to be (see [`CallbackPolicy::pick`]).
    Name(String),
}

impl CallbackPolicy {
    /// Whether an address may be connected to.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.allowed_networks.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        match classify(ip) {
            None => Ok(()),
            Some(Refusal::Loopback) if self.allow_loopback => Ok(()),
            Some(class) => Err(class),
        }
    }

    /// Checks a `callback_url` without resolving it: the scheme (https; http only to an
    /// allowed loopback host), the length, no credentials, and the host: a numeric address
    /// must be allowed, a name must not be one that only resolves inside a network
    /// (`localhost` unless loopback is allowed, single labels, `.local`, `.internal`,
    /// `.home.arpa`, `.localdomain`). Returns the normalised URL and its host.
    pub fn check_url(&self, value: &str) -> Result<(url::Url, CallbackHost), TargetRefused> {
        if value.len() > MAX_URL_LEN {
            return Err(TargetRefused::TooLong);
        }
        let url = url::Url::parse(value).map_err(|_| TargetRefused::NotUrl)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetRefused::Credentials);
        }
        let host = match url.host() {
            None => return Err(TargetRefused::NoHost),
            Some(url::Host::Ipv4(v4)) => {
                let ip = IpAddr::V4(v4);
                self.check_ip(ip)
                    .map_err(|class| TargetRefused::Address { ip, class })?;
                CallbackHost::Ip(ip)
            }
            Some(url::Host::Ipv6(v6)) => {
                let ip = IpAddr::V6(v6);
                self.check_ip(ip)
                    .map_err(|class| TargetRefused::Address { ip, class })?;
                CallbackHost::Ip(ip)
            }
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if is_loopback_name(&name) {
                    if !self.allow_loopback {
                        return Err(TargetRefused::InternalName { host: name });
                    }
                } else if is_internal_name(&name) {
                    return Err(TargetRefused::InternalName { host: name });
                }
                CallbackHost::Name(name)
            }
        };
        let loopback = match &host {
            CallbackHost::Ip(ip) => classify(*ip) == Some(Refusal::Loopback),
            CallbackHost::Name(name) => is_loopback_name(name),
        };
        match url.scheme() {
            "https" => {}
            // Plain http only to this machine (local receivers, tests).
            "http" if loopback => {}
            _ => return Err(TargetRefused::NotHttps),
        }
        Ok((url, host))
    }

    /// The address to connect to among those `host` resolved to: the first allowed one.
    /// Refused when there is none (the refusal names the first address).
    pub fn pick(&self, host: &str, resolved: &[IpAddr]) -> Result<IpAddr, TargetRefused> {
        let mut first_refusal = None;
        for ip in resolved {
            match self.check_ip(*ip) {
                Ok(()) => return Ok(*ip),
                Err(class) => {
                    first_refusal.get_or_insert(TargetRefused::Resolved {
                        host: host.to_owned(),
                        ip: *ip,
                        class,
                    });
                }
            }
        }
        Err(first_refusal.unwrap_or_else(|| TargetRefused::Unresolved {
            host: host.to_owned(),
        }))
    }
}

fn is_loopback_name(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost")
}

/// Names that resolve only inside a network: single labels (search domains), mDNS and the
/// suffixes reserved or customary for private use.
fn is_internal_name(name: &str) -> bool {
    const SUFFIXES: [&str; 5] = [".local", ".internal", ".home.arpa", ".localdomain", ".lan"];
    !name.contains('.') || SUFFIXES.iter().any(|s| name.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_refused_class_of_ipv4() {
        let cases = [
            ("127.0.0.1", Refusal::Loopback),
            ("127.255.255.254", Refusal::Loopback),
            ("0.0.0.0", Refusal::Unspecified),
            ("0.1.2.3", Refusal::NotGlobal),
            ("10.0.0.1", Refusal::Private),
            ("172.16.0.1", Refusal::Private),
            ("172.31.255.255", Refusal::Private),
            ("192.168.1.1", Refusal::Private),
            ("169.254.169.254", Refusal::LinkLocal),
            ("100.64.0.1", Refusal::SharedCgnat),
            ("100.127.255.255", Refusal::SharedCgnat),
            ("224.0.0.1", Refusal::Multicast),
            ("239.255.255.250", Refusal::Multicast),
            ("255.255.255.255", Refusal::Broadcast),
            ("240.0.0.1", Refusal::NotGlobal),
            ("192.0.2.1", Refusal::NotGlobal),
            ("198.18.0.1", Refusal::NotGlobal),
            ("192.0.0.8", Refusal::NotGlobal),
        ];
        for (addr, class) in cases {
            assert_eq!(classify(ip(addr)), Some(class), "{addr}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.0.1",
            "198.20.0.1",
            "223.255.255.255",
        ] {
            assert_eq!(classify(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn every_refused_class_of_ipv6() {
        let cases = [
            ("::1", Refusal::Loopback),
            ("::", Refusal::Unspecified),
            ("fc00::1", Refusal::Private),
            ("fd12:3456::1", Refusal::Private),
            ("fe80::1", Refusal::LinkLocal),
            ("febf::1", Refusal::LinkLocal),
            ("ff02::1", Refusal::Multicast),
            ("fec0::1", Refusal::NotGlobal),
            ("2001:db8::1", Refusal::NotGlobal),
            ("100::1", Refusal::NotGlobal),
            // IPv4 in IPv6 clothing is judged as IPv4.
            ("::ffff:127.0.0.1", Refusal::Loopback),
            ("::ffff:7f00:1", Refusal::Loopback),
            ("::ffff:10.1.2.3", Refusal::Private),
            ("::ffff:169.254.169.254", Refusal::LinkLocal),
            ("::ffff:0.0.0.0", Refusal::Unspecified),
            ("::127.0.0.1", Refusal::Loopback),
            ("64:ff9b::192.168.0.1", Refusal::Private),
            ("2002:a9fe:a9fe::1", Refusal::LinkLocal),
        ];
        for (addr, class) in cases {
            assert_eq!(classify(ip(addr)), Some(class), "{addr}");
        }
        for public in ["2606:4700::1111", "2a03:2880:f10c::1", "::ffff:8.8.8.8"] {
            assert_eq!(classify(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn loopback_and_named_networks_can_be_allowed() {
        let strict = CallbackPolicy::default();
        assert_eq!(strict.check_ip(ip("127.0.0.1")), Err(Refusal::Loopback));
        let local = CallbackPolicy {
            allow_loopback: true,
            ..CallbackPolicy::default()
        };
        assert_eq!(local.check_ip(ip("127.0.0.1")), Ok(()));
        assert_eq!(local.check_ip(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(local.check_ip(ip("10.0.0.1")), Err(Refusal::Private));
        let internal = CallbackPolicy {
            allow_loopback: false,
            allowed_networks: parse_networks("10.20.0.0/16, fd00:1::/32").unwrap(),
        };
        assert_eq!(internal.check_ip(ip("10.20.3.4")), Ok(()));
        assert_eq!(internal.check_ip(ip("::ffff:10.20.3.4")), Ok(()));
        assert_eq!(internal.check_ip(ip("10.21.0.1")), Err(Refusal::Private));
        assert_eq!(internal.check_ip(ip("fd00:1::5")), Ok(()));
        assert_eq!(internal.check_ip(ip("fd00:2::5")), Err(Refusal::Private));
        assert_eq!(internal.check_ip(ip("127.0.0.1")), Err(Refusal::Loopback));
    }

    #[test]
    fn networks_parse_and_refuse_nonsense() {
        let nets = parse_networks("10.0.0.0/8 192.168.1.7,fd00::/8").unwrap();
        assert_eq!(
            nets.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8"]
        );
        assert!(parse_networks("").unwrap().is_empty());
        assert!(parse_networks("10.0.0.0/33").is_err());
        assert!(parse_networks("intranet").is_err());
        let all: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("10.0.0.1")));
        assert!(!all.contains(ip("fd00::1")));
    }

    fn refusal(policy: &CallbackPolicy, url: &str) -> Option<TargetRefused> {
        policy.check_url(url).err()
    }

    #[test]
    fn urls_with_numeric_hosts_in_any_spelling_are_judged_by_their_address() {
        let policy = CallbackPolicy::default();
        for url in [
            "https://127.0.0.1/hook",
            "https://0x7f.1/hook",
            "https://0177.0.0.1/hook",
            "https://017700000001/hook",
            "https://2130706433/hook",
            "https://127.1/hook",
            "https://[::1]/hook",
            "https://[::ffff:127.0.0.1]/hook",
            "https://[::ffff:7f00:1]/hook",
            "https://[0:0:0:0:0:ffff:7f00:0001]/hook",
        ] {
            assert!(
                matches!(
                    refusal(&policy, url),
                    Some(TargetRefused::Address {
                        class: Refusal::Loopback,
                        ..
                    })
                ),
                "{url}: {:?}",
                refusal(&policy, url)
            );
        }
        for (url, class) in [
            ("https://0.0.0.0:9/x", Refusal::Unspecified),
            ("https://0/x", Refusal::Unspecified),
            ("https://[::]/x", Refusal::Unspecified),
            (
                "https://169.254.169.254/latest/meta-data/",
                Refusal::LinkLocal,
            ),
            ("https://0xa9.0xfe.0xa9.0xfe/", Refusal::LinkLocal),
            ("https://10.0.0.1/", Refusal::Private),
            ("https://012.0.0.1/", Refusal::Private),
            ("https://[fd00::1]/", Refusal::Private),
            ("https://100.64.1.1/", Refusal::SharedCgnat),
            ("https://224.0.0.1/", Refusal::Multicast),
            ("https://255.255.255.255/", Refusal::Broadcast),
        ] {
            assert_eq!(
                refusal(&policy, url),
                Some(TargetRefused::Address {
                    ip: match policy.check_url(url) {
                        Err(TargetRefused::Address { ip, .. }) => ip,
                        other => panic!("{url}: {other:?}"),
                    },
                    class
                }),
                "{url}"
            );
        }
        assert_eq!(refusal(&policy, "https://8.8.8.8/hook"), None);
        assert_eq!(refusal(&policy, "https://[2606:4700::1111]/hook"), None);
    }

    #[test]
    fn names_that_only_resolve_inside_a_network_are_refused() {
        let policy = CallbackPolicy::default();
        for url in [
            "https://localhost/x",
            "https://LOCALHOST./x",
            "https://api.localhost/x",
            "https://metadata/computeMetadata/v1/",
            "https://metadata.google.internal/x",
            "https://printer.local/x",
            "https://router.home.arpa/x",
        ] {
            assert!(
                matches!(
                    refusal(&policy, url),
                    Some(TargetRefused::InternalName { .. })
                ),
                "{url}"
            );
        }
        assert_eq!(refusal(&policy, "https://hooks.example.com/x"), None);
        let local = CallbackPolicy {
            allow_loopback: true,
            ..CallbackPolicy::default()
        };
        assert_eq!(refusal(&local, "http://localhost:9000/x"), None);
        assert_eq!(refusal(&local, "http://127.0.0.1:9000/x"), None);
        assert_eq!(refusal(&local, "http://[::1]:9000/x"), None);
    }

    #[test]
    fn scheme_length_and_credentials() {
        let local = CallbackPolicy {
            allow_loopback: true,
            ..CallbackPolicy::default()
        };
        assert_eq!(
            refusal(&local, "http://hooks.example.com/x"),
            Some(TargetRefused::NotHttps)
        );
        assert_eq!(
            refusal(&local, "ftp://127.0.0.1/x"),
            Some(TargetRefused::NotHttps)
        );
        assert_eq!(
            refusal(&local, "javascript:alert(1)"),
            Some(TargetRefused::NoHost)
        );
        assert_eq!(refusal(&local, "not a url"), Some(TargetRefused::NotUrl));
        assert_eq!(
            refusal(&local, "https://user:pw@hooks.example.com/"),
            Some(TargetRefused::Credentials)
        );
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(refusal(&local, &long), Some(TargetRefused::TooLong));
    }

    #[test]
    fn the_delivery_connects_only_to_an_allowed_resolved_address() {
        let policy = CallbackPolicy::default();
        assert_eq!(
            policy.pick("h.example", &[ip("10.0.0.1"), ip("93.184.215.14")]),
            Ok(ip("93.184.215.14"))
        );
        assert_eq!(
            policy.pick("h.example", &[ip("127.0.0.1"), ip("::1")]),
            Err(TargetRefused::Resolved {
                host: "h.example".into(),
                ip: ip("127.0.0.1"),
                class: Refusal::Loopback
            })
        );
        assert_eq!(
            policy.pick("h.example", &[]),
            Err(TargetRefused::Unresolved {
                host: "h.example".into()
            })
        );
        assert_eq!(
            policy
                .pick("h.example", &[ip("169.254.169.254")])
                .unwrap_err()
                .to_string(),
            "h.example resolves to 169.254.169.254, a link-local address"
        );
    }

    /// Property: whatever the spelling of an IPv4 address (dotted decimal, hex, octal, a
    /// single number, IPv4-mapped IPv6 in both notations), a URL naming it is judged exactly
    /// as the address itself; and the mapped IPv6 form classifies like the IPv4 form.
    #[test]
    fn property_every_spelling_of_an_address_gets_the_same_verdict() {
        let policy = CallbackPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        // Random addresses, plus a dense sample of the boundaries of every refused range.
        let mut addresses: Vec<u32> = (0..20_000).map(|_| rng.random()).collect();
        for edge in [
            0u32,
            0x0a00_0000,
            0x6440_0000,
            0x7f00_0000,
            0xa9fe_0000,
            0xac10_0000,
            0xc0a8_0000,
            0xe000_0000,
            0xf000_0000,
            0xffff_ffff,
        ] {
            for d in 0..64u32 {
                addresses.push(edge.wrapping_add(d));
                addresses.push(edge.wrapping_sub(d));
            }
        }
        for n in addresses {
            let v4 = Ipv4Addr::from(n);
            let expected = policy.check_ip(IpAddr::V4(v4)).err();
            let mapped = v4.to_ipv6_mapped();
            assert_eq!(classify(IpAddr::V6(mapped)), classify(IpAddr::V4(v4)));
            let [a, b, c, d] = v4.octets();
            let spellings = [
                format!("{a}.{b}.{c}.{d}"),
                format!("{n}"),
                format!("0x{n:x}"),
                format!("0{n:o}"),
                format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"),
                format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
                format!(
                    "{a}.{}",
                    (u32::from(b) << 16) | (u32::from(c) << 8) | u32::from(d)
                ),
                format!("[::ffff:{a}.{b}.{c}.{d}]"),
                format!("[{mapped}]"),
            ];
            for host in spellings {
                let url = format!("https://{host}/hook");
                let verdict = match policy.check_url(&url) {
                    Ok(_) => None,
                    Err(TargetRefused::Address { class, .. }) => Some(class),
                    Err(other) => panic!("{url}: {other:?}"),
                };
                assert_eq!(verdict, expected, "{url}");
            }
        }
    }
}
