//! Which addresses an outbound request may reach: the classification of every IP address that
//! is not on the public internet, and the operator's allow-list (`--outbound-allow`,
//! `BOTLINK_OUTBOUND_ALLOW`) that opens some of them.
//!
//! Pure: no sockets, no DNS. [`super::client`] applies [`OutboundAllow::check`] to every address
//! it is about to connect to, whether it came from DNS or was written in the URL.
//!
//! The ranges are IANA's special-purpose address registries (RFC 6890 and its updates) for
//! IPv4 and IPv6, plus the cloud providers' metadata endpoints. IPv6 forms that carry an IPv4
//! address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, SIIT `::ffff:0:a.b.c.d`,
//! NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the IPv4 address they carry, since
//! that is where the packets end up.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Why an address is refused. [`RefuseReason::code`] is a stable snake_case name for logs and
/// metrics; `Display` is the operator's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefuseReason {
    /// `0.0.0.0/8`, `::`: "this host"; connecting there reaches the local machine.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918: `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// RFC 6598 shared address space (carrier-grade NAT), `100.64.0.0/10`.
    SharedAddressSpace,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// An instance metadata service (169.254.169.254, fd00:ec2::254, ...): it hands out cloud
    /// credentials, so it stays refused unless an allow-list entry names that one address.
    CloudMetadata,
    /// `255.255.255.255`.
    Broadcast,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// RFC 5737 and RFC 3849 / RFC 9637 documentation ranges.
    Documentation,
    /// RFC 2544 `198.18.0.0/15`, RFC 5180 `2001:2::/48`.
    Benchmarking,
    /// RFC 4193 unique local addresses, `fc00::/7`.
    UniqueLocal,
    /// Reserved or special-purpose: `240.0.0.0/4`, `192.0.0.0/24`, the 6to4 relay anycast,
    /// Teredo, the discard prefix, deprecated site-local, local-use NAT64, and IPv6 outside
    /// the global unicast block `2000::/3`.
    Reserved,
}

impl RefuseReason {
    /// A stable snake_case code: `private`, `loopback`, `cloud_metadata`, ...
    pub fn code(self) -> &'static str {
        match self {
            RefuseReason::Unspecified => "unspecified",
            RefuseReason::Loopback => "loopback",
            RefuseReason::Private => "private",
            RefuseReason::SharedAddressSpace => "shared_address_space",
            RefuseReason::LinkLocal => "link_local",
            RefuseReason::CloudMetadata => "cloud_metadata",
            RefuseReason::Broadcast => "broadcast",
            RefuseReason::Multicast => "multicast",
            RefuseReason::Documentation => "documentation",
            RefuseReason::Benchmarking => "benchmarking",
            RefuseReason::UniqueLocal => "unique_local",
            RefuseReason::Reserved => "reserved",
        }
    }
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefuseReason::Unspecified => "unspecified address",
            RefuseReason::Loopback => "loopback",
            RefuseReason::Private => "private network",
            RefuseReason::SharedAddressSpace => "carrier-grade NAT range",
            RefuseReason::LinkLocal => "link-local",
            RefuseReason::CloudMetadata => "cloud metadata endpoint",
            RefuseReason::Broadcast => "broadcast",
            RefuseReason::Multicast => "multicast",
            RefuseReason::Documentation => "documentation range",
            RefuseReason::Benchmarking => "benchmarking range",
            RefuseReason::UniqueLocal => "IPv6 unique local",
            RefuseReason::Reserved => "reserved range",
        })
    }
}

/// An address that no request may reach, why, and the range that would open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The address as it would have been connected to (an IPv4-mapped form stays mapped).
    pub addr: IpAddr,
    pub reason: RefuseReason,
    /// The special-purpose range `addr` falls in (for a form that carries an IPv4 address,
    /// the IPv4 range): what to give `--outbound-allow` to reach it.
    pub range: IpNet,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused {} ({})", self.addr, self.reason)
    }
}

impl Refusal {
    /// What the operator can do: the `--outbound-allow` value that opens this address.
    pub fn hint(&self) -> String {
        if self.reason == RefuseReason::CloudMetadata {
            format!(
                "allow it with --outbound-allow {} (only an entry naming this one address opens it)",
                self.range
            )
        } else {
            format!("allow it with --outbound-allow {}", self.range)
        }
    }
}

impl std::error::Error for Refusal {}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len))
}

const fn v6(segments: [u16; 8], len: u8) -> IpNet {
    let [a, b, c, d, e, f, g, h] = segments;
    IpNet::V6(Ipv6Net::new_assert(
        Ipv6Addr::new(a, b, c, d, e, f, g, h),
        len,
    ))
}

/// Metadata services, checked before the ranges they sit in: AWS, GCP, Azure, OpenStack and
/// DigitalOcean at 169.254.169.254; AWS ECS task metadata at 169.254.170.2; Azure's host
/// endpoint 168.63.129.16 (a public address); Alibaba Cloud at 100.100.100.200; Oracle Cloud
/// at 192.0.0.192; AWS's IPv6 endpoint fd00:ec2::254.
const METADATA: [IpNet; 6] = [
    v4(169, 254, 169, 254, 32),
    v4(169, 254, 170, 2, 32),
    v4(168, 63, 129, 16, 32),
    v4(100, 100, 100, 200, 32),
    v4(192, 0, 0, 192, 32),
    v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128),
];

/// IANA's IPv4 special-purpose registry, as far as it matters for reaching a host; longer
/// prefixes first where ranges nest (the broadcast address inside 240.0.0.0/4).
const V4_RANGES: [(IpNet, RefuseReason); 16] = [
    (v4(0, 0, 0, 0, 8), RefuseReason::Unspecified),
    (v4(10, 0, 0, 0, 8), RefuseReason::Private),
    (v4(100, 64, 0, 0, 10), RefuseReason::SharedAddressSpace),
    (v4(127, 0, 0, 0, 8), RefuseReason::Loopback),
    (v4(169, 254, 0, 0, 16), RefuseReason::LinkLocal),
    (v4(172, 16, 0, 0, 12), RefuseReason::Private),
    (v4(192, 0, 0, 0, 24), RefuseReason::Reserved),
    (v4(192, 0, 2, 0, 24), RefuseReason::Documentation),
    (v4(192, 88, 99, 0, 24), RefuseReason::Reserved),
    (v4(192, 168, 0, 0, 16), RefuseReason::Private),
    (v4(198, 18, 0, 0, 15), RefuseReason::Benchmarking),
    (v4(198, 51, 100, 0, 24), RefuseReason::Documentation),
    (v4(203, 0, 113, 0, 24), RefuseReason::Documentation),
    (v4(224, 0, 0, 0, 4), RefuseReason::Multicast),
    (v4(255, 255, 255, 255, 32), RefuseReason::Broadcast),
    (v4(240, 0, 0, 0, 4), RefuseReason::Reserved),
];

/// IANA's IPv6 special-purpose registry, less the forms that carry an IPv4 address (judged by
/// that address, see [`embedded_v4`]).
const V6_RANGES: [(IpNet, RefuseReason); 11] = [
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), RefuseReason::Unspecified),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), RefuseReason::Loopback),
    (
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        RefuseReason::Reserved,
    ),
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), RefuseReason::Reserved),
    (
        v6([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48),
        RefuseReason::Benchmarking,
    ),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),
        RefuseReason::Reserved,
    ),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        RefuseReason::Documentation,
    ),
    (
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        RefuseReason::Documentation,
    ),
    (
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        RefuseReason::UniqueLocal,
    ),
    (
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        RefuseReason::LinkLocal,
    ),
    (
        v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        RefuseReason::Multicast,
    ),
];

/// `fec0::/10`: site-local, deprecated by RFC 3879 but still routed inside some networks.
const SITE_LOCAL: IpNet = v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10);
/// `2000::/3`: the only IPv6 block IANA hands out for global unicast.
const GLOBAL_UNICAST: IpNet = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// The IPv4 address that an IPv6 form carries, when it is one of those forms: IPv4-mapped
/// `::ffff:0:0/96`, SIIT `::ffff:0:0:0/96`, IPv4-compatible `::/96` (not `::` or `::1`), the
/// NAT64 well-known prefix `64:ff9b::/96` (RFC 6052) and 6to4 `2002::/16` (RFC 3056, bits
/// 16-47).
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0, 0, 0, 0, 0, 0, _, _] if u32::from(low) > 1 => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// Why `ip` must not be reached, or `None` for an address on the public internet.
pub fn classify(ip: IpAddr) -> Option<Refusal> {
    let refusal = |reason, range| Refusal {
        addr: ip,
        reason,
        range,
    };
    if let Some(net) = METADATA.iter().find(|n| n.contains(&ip)) {
        return Some(refusal(RefuseReason::CloudMetadata, *net));
    }
    match ip {
        IpAddr::V4(_) => V4_RANGES
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|&(net, reason)| refusal(reason, net)),
        IpAddr::V6(v6) => {
            if let Some(inner) = embedded_v4(v6) {
                return classify(IpAddr::V4(inner)).map(|r| Refusal { addr: ip, ..r });
            }
            if let Some(&(net, reason)) = V6_RANGES.iter().find(|(net, _)| net.contains(&ip)) {
                return Some(refusal(reason, net));
            }
            if SITE_LOCAL.contains(&ip) {
                return Some(refusal(RefuseReason::Reserved, SITE_LOCAL));
            }
            if !GLOBAL_UNICAST.contains(&ip) {
                return Some(refusal(RefuseReason::Reserved, IpNet::from(ip)));
            }
            None
        }
    }
}

/// The operator's allow-list: CIDR ranges that outbound requests may reach although they are
/// private, loopback or otherwise refused. Empty by default.
///
/// Written as `--outbound-allow 127.0.0.0/8,10.1.0.0/16` (or `BOTLINK_OUTBOUND_ALLOW`): ranges
/// separated by commas, spaces around them ignored; a bare address means that one address.
/// A range whose address has bits set past its prefix (`10.1.2.3/8`) is refused as a likely
/// typo. A cloud metadata address is opened only by an entry naming exactly that address
/// (`169.254.169.254/32`), never by a wider range that happens to contain it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundAllow {
    ranges: Vec<IpNet>,
}

/// An `--outbound-allow` value that could not be read; says which entry and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--outbound-allow: {problem}; write CIDR ranges separated by commas, e.g. 127.0.0.0/8,10.1.0.0/16"
)]
pub struct AllowParseError {
    problem: String,
}

impl OutboundAllow {
    /// Allows exactly these ranges.
    pub fn new(ranges: Vec<IpNet>) -> OutboundAllow {
        OutboundAllow { ranges }
    }

    /// Reads the `--outbound-allow` value: CIDR ranges separated by commas.
    pub fn parse(value: &str) -> Result<OutboundAllow, AllowParseError> {
        let mut ranges = Vec::new();
        for entry in value.split(',').map(str::trim) {
            if entry.is_empty() {
                if value.trim().is_empty() {
                    continue;
                }
                return Err(AllowParseError {
                    problem: format!("an empty entry in {value:?}"),
                });
            }
            ranges.push(parse_range(entry)?);
        }
        Ok(OutboundAllow { ranges })
    }

    /// The allowed ranges, in the order given.
    pub fn ranges(&self) -> &[IpNet] {
        &self.ranges
    }

    /// Whether a request may connect to `ip`: `Ok` for a public address or one the allow-list
    /// opens, else the refusal that says why not and how to open it.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let Some(refusal) = classify(ip) else {
            return Ok(());
        };
        // An IPv6 form that carries an IPv4 address is opened by a range holding either.
        let carried = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let candidates = [Some(ip), carried];
        let candidates = candidates.iter().flatten();
        let opened = if refusal.reason == RefuseReason::CloudMetadata {
            self.ranges.iter().any(|net| {
                net.prefix_len() == net.max_prefix_len()
                    && candidates.clone().any(|c| *c == net.addr())
            })
        } else {
            self.ranges
                .iter()
                .any(|net| candidates.clone().any(|c| net.contains(c)))
        };
        if opened { Ok(()) } else { Err(refusal) }
    }
}

fn parse_range(entry: &str) -> Result<IpNet, AllowParseError> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    let net = entry.parse::<IpNet>().map_err(|_| AllowParseError {
        problem: format!("{entry:?} is not an address or a CIDR range"),
    })?;
    if net.trunc() != net {
        return Err(AllowParseError {
            problem: format!(
                "{entry:?} has bits set past its /{} prefix; did you mean {}?",
                net.prefix_len(),
                net.trunc()
            ),
        });
    }
    Ok(net)
}

impl FromStr for OutboundAllow {
    type Err = AllowParseError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        OutboundAllow::parse(value)
    }
}

impl fmt::Display for OutboundAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(addr: &str) -> Option<RefuseReason> {
        classify(addr.parse().unwrap()).map(|r| r.reason)
    }

    #[test]
    fn each_ipv4_range_is_refused_for_its_reason() {
        use RefuseReason::*;
        let cases = [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("10.0.0.5", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", SharedAddressSpace),
            ("100.127.255.254", SharedAddressSpace),
            ("127.0.0.1", Loopback),
            ("127.255.0.9", Loopback),
            ("169.254.1.1", LinkLocal),
            ("169.254.169.254", CloudMetadata),
            ("169.254.170.2", CloudMetadata),
            ("168.63.129.16", CloudMetadata),
            ("100.100.100.200", CloudMetadata),
            ("192.0.0.192", CloudMetadata),
            ("192.0.0.8", Reserved),
            ("192.0.2.10", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.200", Documentation),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.1", Benchmarking),
            ("192.88.99.1", Reserved),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("240.0.0.1", Reserved),
            ("255.255.255.255", Broadcast),
        ];
        for (addr, expected) in cases {
            assert_eq!(reason(addr), Some(expected), "{addr}");
        }
    }

    #[test]
    fn public_ipv4_and_the_edges_of_the_ranges_pass() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "149.154.167.220", // api.telegram.org
        ] {
            assert_eq!(reason(addr), None, "{addr}");
        }
    }

    #[test]
    fn each_ipv6_range_is_refused_for_its_reason() {
        use RefuseReason::*;
        let cases = [
            ("::", Unspecified),
            ("::1", Loopback),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fd00:ec2::254", CloudMetadata),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Reserved),
            ("ff02::1", Multicast),
            ("2001:db8::1", Documentation),
            ("3fff:0fff::1", Documentation),
            ("2001:2::1", Benchmarking),
            ("2001:0:4136:e378::1", Reserved), // Teredo
            ("100::1", Reserved),
            ("64:ff9b:1::a00:5", Reserved),
            ("4000::1", Reserved), // outside 2000::/3
        ];
        for (addr, expected) in cases {
            assert_eq!(reason(addr), Some(expected), "{addr}");
        }
        for addr in [
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
            "2606:4700::1111",
        ] {
            assert_eq!(reason(addr), None, "{addr}");
        }
    }

    #[test]
    fn ipv6_forms_carrying_ipv4_are_judged_by_the_ipv4_address() {
        use RefuseReason::*;
        let cases = [
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:10.0.0.5", Some(Private)),
            ("::ffff:169.254.169.254", Some(CloudMetadata)),
            ("::ffff:0:192.168.0.1", Some(Private)),
            ("::127.0.0.1", Some(Loopback)),
            ("::10.1.2.3", Some(Private)),
            ("64:ff9b::10.0.0.5", Some(Private)),
            ("64:ff9b::127.0.0.1", Some(Loopback)),
            ("2002:c0a8:0101::1", Some(Private)), // 6to4 of 192.168.1.1
            ("2002:7f00:0001::", Some(Loopback)),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::8.8.8.8", None),
            ("2002:0808:0808::1", None),
        ];
        for (addr, expected) in cases {
            assert_eq!(reason(addr), expected, "{addr}");
        }
        let r = classify("::ffff:10.0.0.5".parse().unwrap()).unwrap();
        assert_eq!(r.addr.to_string(), "::ffff:10.0.0.5");
        assert_eq!(
            r.range.to_string(),
            "10.0.0.0/8",
            "the hint names the IPv4 range"
        );
    }

    #[test]
    fn the_refusal_says_which_address_why_and_how_to_open_it() {
        let r = classify("10.0.0.5".parse().unwrap()).unwrap();
        assert_eq!(
            format!("{r}: {}", r.hint()),
            "refused 10.0.0.5 (private network): allow it with --outbound-allow 10.0.0.0/8"
        );
        assert_eq!(r.reason.code(), "private");
    }

    #[test]
    fn the_allow_list_opens_its_ranges_and_nothing_else() {
        let allow = OutboundAllow::parse("127.0.0.0/8, 10.1.0.0/16").unwrap();
        assert_eq!(allow.to_string(), "127.0.0.0/8,10.1.0.0/16");
        for ok in ["127.0.0.1", "10.1.200.3", "::ffff:127.0.0.1", "8.8.8.8"] {
            assert_eq!(allow.check(ok.parse().unwrap()), Ok(()), "{ok}");
        }
        for refused in ["10.2.0.1", "::1", "192.168.0.1", "169.254.169.254"] {
            assert!(allow.check(refused.parse().unwrap()).is_err(), "{refused}");
        }
        assert!(
            OutboundAllow::default()
                .check("127.0.0.1".parse().unwrap())
                .is_err()
        );
    }

    #[test]
    fn metadata_opens_only_to_an_entry_naming_it() {
        let wide = OutboundAllow::parse("169.254.0.0/16,0.0.0.0/0").unwrap();
        assert_eq!(
            wide.check("169.254.169.254".parse().unwrap())
                .unwrap_err()
                .reason,
            RefuseReason::CloudMetadata
        );
        assert_eq!(wide.check("169.254.1.1".parse().unwrap()), Ok(()));
        let exact = OutboundAllow::parse("169.254.169.254").unwrap();
        assert_eq!(exact.check("169.254.169.254".parse().unwrap()), Ok(()));
    }

    #[test]
    fn a_bad_allow_value_says_what_is_wrong() {
        assert_eq!(OutboundAllow::parse("").unwrap(), OutboundAllow::default());
        assert_eq!(OutboundAllow::parse("  ").unwrap().ranges().len(), 0);
        assert_eq!(
            OutboundAllow::parse("::1, fd00::/8")
                .unwrap()
                .ranges()
                .len(),
            2
        );
        let e = OutboundAllow::parse("10.0.0.0/33").unwrap_err().to_string();
        assert!(
            e.contains("\"10.0.0.0/33\" is not an address or a CIDR range"),
            "{e}"
        );
        assert!(e.starts_with("--outbound-allow: "), "{e}");
        let e = OutboundAllow::parse("10.1.2.3/8").unwrap_err().to_string();
        assert!(e.contains("did you mean 10.0.0.0/8?"), "{e}");
        let e = OutboundAllow::parse("127.0.0.0/8,,10.0.0.0/8")
            .unwrap_err()
            .to_string();
        assert!(e.contains("an empty entry"), "{e}");
        assert!("localhost".parse::<OutboundAllow>().is_err());
    }
}
