//! Name resolution for requests to other servers: only public addresses (finding 4 of the
//! b6dd975 review). Another server chooses the names we connect to — an FID's domain, the
//! host its `.well-known` delegates to —, so without this filter a hostile server could make
//! us send requests to this machine or its network.
//!
//! The filter runs inside the HTTP client's connector: the addresses checked are the
//! addresses connected to, so a DNS answer that changes between a check and the connection
//! (rebinding) changes nothing. Requests to the origins of the operator's `federation.resolve`
//! map go through another client without this resolver (development and tests; see
//! `remote.rs`); `federation.hosts` answers names without DNS but through the filter (tests
//! of the filter itself).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A name that resolved to an address we never connect to for another server.
#[derive(Debug, thiserror::Error)]
#[error("{name} resolves to a non-public address ({addr})")]
pub struct NonPublicAddress {
    pub name: String,
    pub addr: IpAddr,
}

#[derive(Debug, thiserror::Error)]
#[error("{0} has no address")]
struct NoAddress(String);

/// The resolver of the federation HTTP client.
pub struct PublicOnly {
    /// `federation.hosts`: fixed answers, filtered.
    fixed: Arc<BTreeMap<String, Vec<IpAddr>>>,
}

impl PublicOnly {
    pub fn new(hosts: &BTreeMap<String, Vec<IpAddr>>) -> Self {
        let fixed = hosts
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        Self {
            fixed: Arc::new(fixed),
        }
    }
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let fixed = self.fixed.get(&host).cloned();
        Box::pin(async move {
            // Port 0: the client puts in the URL's port or the scheme's default.
            let addrs: Vec<SocketAddr> = match fixed {
                Some(ips) => ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect(),
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            // One private address among public ones is refused too: a public name has no
            // business pointing into a private network.
            if let Some(a) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(NonPublicAddress {
                    name: host,
                    addr: a.ip(),
                }
                .into());
            }
            if addrs.is_empty() {
                return Err(NoAddress(host).into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Whether we may connect to `ip` for another server: a globally routable unicast address,
/// not loopback, private, link-local, unique-local, CGNAT, multicast, unspecified,
/// broadcast, reserved, documentation or benchmarking — judged on the IPv4 address inside
/// IPv4-mapped, IPv4-compatible, NAT64 and 6to4 forms too.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                     // "this network" 0.0.0.0/8
        || a == 10                               // private
        || (a == 100 && (64..128).contains(&b))  // CGNAT 100.64.0.0/10
        || a == 127                              // loopback
        || (a == 169 && b == 254)                // link-local
        || (a == 172 && (16..32).contains(&b))   // private
        || (a == 192 && b == 0 && c == 0)        // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)        // documentation
        || (a == 192 && b == 88 && c == 99)      // 6to4 relay anycast
        || (a == 192 && b == 168)                // private
        || (a == 198 && (18..20).contains(&b))   // benchmarking 198.18.0.0/15
        || (a == 198 && b == 51 && c == 100)     // documentation
        || (a == 203 && b == 0 && c == 113)      // documentation
        || a >= 224) // multicast 224/4, reserved 240/4, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Forms that carry an IPv4 address are judged by that address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s[..6] == [0; 6] {
        // IPv4-compatible (deprecated), and :: and ::1.
        return is_public_v4(embedded(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 (RFC 6052)
        return is_public_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        // 6to4 (RFC 3056)
        return is_public_v4(embedded(s[1], s[2]));
    }
    // Only global unicast 2000::/3 is routable; that leaves out unique-local fc00::/7,
    // link-local fe80::/10, multicast ff00::/8 and the rest of the unassigned space.
    (s[0] & 0xe000) == 0x2000
        && !(s[0] == 0x2001 && s[1] == 0x0db8)  // documentation
        && !(s[0] == 0x2001 && s[1] == 0)       // Teredo
        && !(s[0] == 0x2001 && s[1] == 2 && s[2] == 0) // benchmarking 2001:2::/48
        && !(s[0] == 0x3fff && s[1] < 0x1000) // documentation 3fff::/20
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_non_public_class_is_refused() {
        for bad in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:192.168.0.1",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff05::1:3",
            "2001:db8::1",
            "2001::1",
            "2001:2::1",
            "3fff::1",
            "100::1",
            "4000::1",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(!is_public(ip), "{bad} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ok in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "192.169.0.1",
            "198.17.0.1",
            "198.20.0.1",
            "223.255.255.1",
            "::ffff:93.184.216.34",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
        ] {
            let ip: IpAddr = ok.parse().unwrap();
            assert!(is_public(ip), "{ok} must pass");
        }
    }

    fn resolver(hosts: &[(&str, &str)]) -> PublicOnly {
        let hosts = hosts
            .iter()
            .map(|(n, ip)| ((*n).to_owned(), vec![ip.parse().unwrap()]))
            .collect();
        PublicOnly::new(&hosts)
    }

    async fn resolve(r: &PublicOnly, name: &str) -> Result<Vec<SocketAddr>, String> {
        r.resolve(name.parse().unwrap())
            .await
            .map(Iterator::collect)
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn the_resolver_filters_fixed_and_dns_answers() {
        let r = resolver(&[
            ("internal.test", "127.0.0.1"),
            ("mapped.test", "::ffff:10.0.0.1"),
            ("public.test", "93.184.216.34"),
        ]);
        let err = resolve(&r, "internal.test").await.unwrap_err();
        assert!(err.contains("non-public address (127.0.0.1)"), "{err}");
        let err = resolve(&r, "mapped.test").await.unwrap_err();
        assert!(err.contains("non-public address"), "{err}");
        assert_eq!(
            resolve(&r, "public.test").await.unwrap(),
            ["93.184.216.34:0".parse().unwrap()]
        );
        // The system resolver's answers: localhost is loopback, so it is refused, also when
        // the operator's map names it (that map has a client of its own, see `remote.rs`).
        let err = resolve(&resolver(&[]), "localhost").await.unwrap_err();
        assert!(err.contains("non-public address"), "{err}");
        let err = resolve(&r, "localhost").await.unwrap_err();
        assert!(err.contains("non-public address"), "{err}");
    }
}
