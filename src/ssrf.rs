//! The SSRF guard: which IP addresses outbound delivery may dial.
//!
//! A webhook URL is chosen by whoever can write a subscription, so without a guard herald
//! would happily POST to `127.0.0.1:27017`, the cloud metadata service at
//! `169.254.169.254`, or anything else on the daemon's own network. The guard refuses every
//! address that is not globally routable — private, loopback, link-local, CGNAT,
//! documentation, multicast, ... — unless an operator allowed its range with
//! `--allow-private-networks`.
//!
//! It judges the address that is actually dialled (the transport's resolver calls
//! [`SsrfGuard::check`] on every resolved address, and on IP-literal hosts), so DNS names
//! that point at internal addresses are caught too. IPv6 addresses that merely wrap an IPv4
//! address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64
//! `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`) are judged by the IPv4 address inside,
//! since that is where the packets end up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Decides whether an address may be dialled: globally routable addresses always may,
/// anything else only when it lies inside one of the operator's allowed networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SsrfGuard {
    /// Networks that may be dialled although they are not public
    /// (`--allow-private-networks`).
    allow: Vec<IpNet>,
}

impl SsrfGuard {
    /// A guard that lets through the non-public networks in `allow` (empty: none).
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// Parses `--allow-private-networks`: comma-separated CIDRs such as
    /// `10.0.0.0/8, fd00::/8`. A bare address means just that address (`/32` or `/128`);
    /// blank entries are ignored, so the empty string is the empty list.
    ///
    /// The error names the entry that is neither a CIDR nor an address.
    pub fn parse_allow_list(s: &str) -> Result<Vec<IpNet>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!(
                            "invalid network {entry:?}: \
                             expected a CIDR such as 10.0.0.0/8 or an IP address"
                        )
                    })
            })
            .collect()
    }

    /// The networks this guard lets through although they are not public.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    /// `Ok` when `ip` may be dialled. Otherwise the error says what kind of address it is,
    /// e.g. `"loopback (127.0.0.0/8)"` or, for `::ffff:127.0.0.1`,
    /// `"127.0.0.1 in IPv6 form: loopback (127.0.0.0/8)"`, ready to follow "which is".
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        // An address wrapping an IPv4 one is judged (and may be allowed) as that address.
        let effective = embedded_ipv4(ip).map_or(ip, IpAddr::V4);
        let Some(class) = non_public_class(effective) else {
            return Ok(());
        };
        if self
            .allow
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&effective))
        {
            return Ok(());
        }
        if effective == ip {
            Err(class.to_owned())
        } else {
            Err(format!("{effective} in IPv6 form: {class}"))
        }
    }
}

/// The IPv4 address an IPv6 address carries when packets to it really go to that IPv4
/// address: IPv4-mapped, IPv4-compatible (deprecated, but still routed by some stacks),
/// NAT64 well-known prefix and 6to4.
fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else {
        return None;
    };
    // `::` and `::1` are IPv6's own unspecified and loopback addresses, not wrapped IPv4
    // (and `to_ipv4` would turn them into 0.0.0.0 and 0.0.0.1).
    if v6.is_unspecified() || v6.is_loopback() {
        return None;
    }
    let s = v6.segments();
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible).
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => v6.to_ipv4(),
        // 64:ff9b::a.b.c.d, the NAT64 well-known prefix (RFC 6052).
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4_from_segments(hi, lo)),
        // 2002:AABB:CCDD::/48, 6to4 (RFC 3056).
        [0x2002, hi, lo, ..] => Some(v4_from_segments(hi, lo)),
        _ => None,
    }
}

fn v4_from_segments(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))
}

/// What kind of non-public address `ip` is, or `None` for a globally routable address.
fn non_public_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

/// Special-purpose IPv4 ranges (IANA registry, RFC 6890) that must never be reached by a
/// webhook unless allowed. Order matters only for the name reported.
const V4_RANGES: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 32, "unspecified (0.0.0.0)"),
    (Ipv4Addr::new(0, 0, 0, 0), 8, "\"this network\" (0.0.0.0/8)"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private (10.0.0.0/8)"),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "shared CGNAT (100.64.0.0/10)",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback (127.0.0.0/8)"),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        "link-local (169.254.0.0/16)",
    ),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private (172.16.0.0/12)"),
    (
        Ipv4Addr::new(192, 0, 0, 0),
        24,
        "IETF protocol assignment (192.0.0.0/24)",
    ),
    (
        Ipv4Addr::new(192, 0, 2, 0),
        24,
        "documentation (192.0.2.0/24)",
    ),
    (
        Ipv4Addr::new(192, 88, 99, 0),
        24,
        "6to4 relay anycast (192.88.99.0/24)",
    ),
    (
        Ipv4Addr::new(192, 168, 0, 0),
        16,
        "private (192.168.0.0/16)",
    ),
    (
        Ipv4Addr::new(198, 18, 0, 0),
        15,
        "benchmarking (198.18.0.0/15)",
    ),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        "documentation (198.51.100.0/24)",
    ),
    (
        Ipv4Addr::new(203, 0, 113, 0),
        24,
        "documentation (203.0.113.0/24)",
    ),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast (224.0.0.0/4)"),
    (
        Ipv4Addr::new(255, 255, 255, 255),
        32,
        "broadcast (255.255.255.255)",
    ),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved (240.0.0.0/4)"),
];

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    V4_RANGES.iter().find_map(|&(net, prefix, class)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        (bits & mask == u32::from(net) & mask).then_some(class)
    })
}

/// Special-purpose IPv6 ranges. The IPv4-embedding prefixes are handled before this, by
/// judging the embedded address.
const V6_RANGES: &[(Ipv6Addr, u8, &str)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, "unspecified (::)"),
    (Ipv6Addr::LOCALHOST, 128, "loopback (::1)"),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "discard-only (100::/64)",
    ),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        "local-use NAT64 (64:ff9b:1::/48)",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation (2001:db8::/32)",
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "documentation (3fff::/20)",
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "unique-local (fc00::/7)",
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        "link-local (fe80::/10)",
    ),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        "site-local (fec0::/10)",
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        "multicast (ff00::/8)",
    ),
];

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    V6_RANGES.iter().find_map(|&(net, prefix, class)| {
        let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        (bits & mask == u128::from(net) & mask).then_some(class)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn refuses_non_public_addresses_by_default() {
        let guard = SsrfGuard::default();
        let cases = [
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "this network"),
            ("100.64.0.1", "CGNAT"),
            ("100.127.255.255", "CGNAT"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("192.0.2.10", "documentation"),
            ("198.51.100.10", "documentation"),
            ("203.0.113.10", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("240.0.0.1", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("::ffff:100.64.0.1", "CGNAT"),
            ("::ffff:224.0.0.1", "multicast"),
            ("::ffff:255.255.255.255", "broadcast"),
            ("64:ff9b::a00:1", "private"),
            ("2002:a9fe:a9fe::1", "link-local"),
            ("ff05::1:3", "multicast"),
        ];
        for (addr, class) in cases {
            let err = guard
                .check(ip(addr))
                .expect_err(&format!("{addr} must be refused"));
            assert!(
                err.contains(class),
                "{addr}: {err:?} should mention {class}"
            );
        }
    }

    #[test]
    fn lets_public_addresses_through() {
        let guard = SsrfGuard::default();
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "169.253.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:1.1.1.1",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(guard.check(ip(addr)), Ok(()), "{addr} must be allowed");
        }
    }

    #[test]
    fn the_allow_list_opens_exactly_its_networks() {
        let allow =
            SsrfGuard::parse_allow_list("127.0.0.0/8, 10.1.0.0/16, fd00::/8").expect("valid list");
        let guard = SsrfGuard::new(allow);
        let cases = [
            ("127.0.0.1", true),
            ("::ffff:127.0.0.1", true),
            ("64:ff9b::7f00:1", true),
            ("10.1.2.3", true),
            ("10.2.0.1", false),
            ("fd00::1", true),
            ("fc00::1", false),
            ("::1", false),
            ("169.254.169.254", false),
            ("192.168.0.1", false),
        ];
        for (addr, allowed) in cases {
            assert_eq!(guard.check(ip(addr)).is_ok(), allowed, "{addr}");
        }
    }

    #[test]
    fn mapped_addresses_name_what_they_embed() {
        let err = SsrfGuard::default()
            .check(ip("::ffff:127.0.0.1"))
            .expect_err("refused");
        assert_eq!(err, "127.0.0.1 in IPv6 form: loopback (127.0.0.0/8)");
    }

    #[test]
    fn parses_allow_lists() {
        let net = |s: &str| s.parse::<IpNet>().expect("test net");
        let cases: [(&str, Vec<IpNet>); 5] = [
            ("", vec![]),
            ("  ", vec![]),
            ("10.0.0.0/8", vec![net("10.0.0.0/8")]),
            (
                "127.0.0.1, ::1 ,fd00::/8,",
                vec![net("127.0.0.1/32"), net("::1/128"), net("fd00::/8")],
            ),
            (
                "192.168.0.0/16,172.16.0.0/12",
                vec![net("192.168.0.0/16"), net("172.16.0.0/12")],
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                SsrfGuard::parse_allow_list(input),
                Ok(expected),
                "{input:?}"
            );
        }
    }

    #[test]
    fn a_bad_allow_list_entry_is_named() {
        for (input, bad) in [
            ("10.0.0.0/8,nope", "nope"),
            ("10.0.0.0/33", "10.0.0.0/33"),
            ("localhost", "localhost"),
            ("1.2.3.4/8/8", "1.2.3.4/8/8"),
        ] {
            let err = SsrfGuard::parse_allow_list(input).expect_err(input);
            assert!(err.contains(&format!("{bad:?}")), "{input}: {err}");
        }
    }
}
