//! The SSRF guard, on literal hosts and on every resolved address.

use std::io;
use std::net::{IpAddr, SocketAddr};

use futures::future::BoxFuture;
use futures::FutureExt;
use herald_actors::{DeliveryError, Transport};
use hyper_util::client::legacy::connect::dns::Name;

use super::*;
use crate::transport::resolver::{GuardedResolver, Resolve, SystemResolver};
use crate::transport::url::{check_literal_host, parse_https_url};

#[tokio::test]
async fn loopback_is_blocked_without_the_allow_list_and_nothing_is_dialled() {
    let cert = self_signed();
    let receiver = start_receiver(&cert).await;
    let ca = ca_file(&cert);
    let transport = transport(&ca, "");

    let by_name = transport
        .send(outbound(&format!("https://localhost:{}/", receiver.port)))
        .await;
    assert_eq!(
        by_name,
        Err(DeliveryError::Blocked(
            "localhost resolves to 127.0.0.1, which is loopback (127.0.0.0/8)".to_owned()
        ))
    );

    let literal = transport
        .send(outbound(&format!("https://127.0.0.1:{}/", receiver.port)))
        .await;
    assert_eq!(
        literal,
        Err(DeliveryError::Blocked(
            "127.0.0.1 is loopback (127.0.0.0/8)".to_owned()
        ))
    );

    for url in [
        "https://[::1]:9/",
        "https://[::ffff:127.0.0.1]:9/",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/",
    ] {
        let result = transport.send(outbound(url)).await;
        assert!(
            matches!(result, Err(DeliveryError::Blocked(_))),
            "{url}: {result:?}"
        );
    }

    assert_eq!(receiver.connections(), 0);
    assert!(receiver.requests().is_empty());
}

#[test]
fn numeric_ipv4_spellings_are_judged_as_the_address_they_spell() {
    let strict = SsrfGuard::default();
    let loopback_allowed =
        SsrfGuard::new(SsrfGuard::parse_allow_list("127.0.0.0/8").expect("allow list"));
    let check = |url: &str, guard: &SsrfGuard| {
        check_literal_host(&parse_https_url(url).expect("parses"), guard)
    };
    let blocked = [
        (
            "https://2130706433/",
            "2130706433 is 127.0.0.1, which is loopback",
        ),
        (
            "https://0x7f.0.0.1/",
            "0x7f.0.0.1 is 127.0.0.1, which is loopback",
        ),
        ("https://0x7f000001/", "is 127.0.0.1, which is loopback"),
        ("https://017700000001/", "is 127.0.0.1, which is loopback"),
        ("https://0177.0.0.1/", "is 127.0.0.1, which is loopback"),
        ("https://127.1/", "127.1 is 127.0.0.1, which is loopback"),
        ("https://0/", "0 is 0.0.0.0, which is unspecified"),
        (
            "https://0xa9fea9fe/",
            "is 169.254.169.254, which is link-local",
        ),
        ("https://127.0.0.1/", "127.0.0.1 is loopback"),
        (
            "https://[::ffff:7f00:1]/",
            "127.0.0.1 in IPv6 form: loopback",
        ),
        (
            "https://[::ffff:127.0.0.1]/",
            "127.0.0.1 in IPv6 form: loopback",
        ),
        ("https://[::]/", ":: is unspecified"),
        ("https://0.0.0.0/", "0.0.0.0 is unspecified"),
        (
            "https://1681915905/",
            "1681915905 is 100.64.0.1, which is shared CGNAT",
        ),
        (
            "https://0xe0000001/",
            "0xe0000001 is 224.0.0.1, which is multicast",
        ),
        (
            "https://012.0.0.1/",
            "012.0.0.1 is 10.0.0.1, which is private",
        ),
        (
            "https://0300.0250.1.1/",
            "0300.0250.1.1 is 192.168.1.1, which is private",
        ),
        (
            "https://[::ffff:a9fe:a9fe]/",
            "169.254.169.254 in IPv6 form: link-local",
        ),
    ];
    for (url, reason) in blocked {
        match check(url, &strict) {
            Err(DeliveryError::Blocked(message)) => {
                assert!(message.contains(reason), "{url}: {message}")
            }
            other => panic!("{url}: expected Blocked, got {other:?}"),
        }
    }

    // Allowed or public, a numeric spelling is still refused, and says how to fix it.
    for (url, guard) in [
        ("https://2130706433/", &loopback_allowed),
        ("https://134744072/", &strict),
    ] {
        match check(url, guard) {
            Err(DeliveryError::InvalidUrl(message)) => {
                assert!(
                    message.contains("non-canonical spelling"),
                    "{url}: {message}"
                )
            }
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }
    // Names and canonical addresses pass when allowed: the resolver judges names.
    for (url, guard) in [
        ("https://localhost./", &strict),
        ("https://127.0.0.1/", &loopback_allowed),
        ("https://example.com/", &strict),
        ("https://localhost.example.com/", &strict),
        ("https://1.1.1.1/", &strict),
    ] {
        assert_eq!(check(url, guard), Ok(()), "{url}");
    }
}

#[tokio::test]
async fn localhost_names_resolve_to_loopback_whatever_the_system_resolver_says() {
    use std::str::FromStr;
    use tower_service::Service;

    let mut strict = GuardedResolver {
        guard: Arc::new(SsrfGuard::default()),
        resolver: Arc::new(SystemResolver),
    };
    for name in [
        "localhost",
        "LOCALHOST",
        "localhost.",
        "LocalHost.",
        "api.localhost",
        "api.LOCALHOST.",
    ] {
        let error = strict
            .call(Name::from_str(name).expect("name"))
            .await
            .expect_err(name);
        assert_eq!(
            error.to_string(),
            format!("{name} resolves to 127.0.0.1, which is loopback (127.0.0.0/8)")
        );
    }

    let mut v4_only = GuardedResolver {
        guard: Arc::new(SsrfGuard::new(
            SsrfGuard::parse_allow_list("127.0.0.0/8").expect("allow list"),
        )),
        resolver: Arc::new(SystemResolver),
    };
    let addrs: Vec<SocketAddr> = v4_only
        .call(Name::from_str("localhost.").expect("name"))
        .await
        .expect("allowed")
        .collect();
    assert_eq!(addrs, [SocketAddr::from(([127, 0, 0, 1], 0))]);
}

/// A resolver whose answer changes under herald's feet: `first` for the first lookup
/// (say, when the webhook is created), `then` for every later one.
#[derive(Debug)]
struct Rebinding {
    first: IpAddr,
    then: IpAddr,
    lookups: AtomicUsize,
}

impl Resolve for Rebinding {
    fn resolve(&self, _host: &str) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> {
        let n = self.lookups.fetch_add(1, Ordering::SeqCst);
        let ip = if n == 0 { self.first } else { self.then };
        futures::future::ready(Ok(vec![ip])).boxed()
    }
}

#[tokio::test]
async fn a_name_rebound_to_loopback_after_creation_is_refused_at_dial_time_unless_allowed() {
    use std::str::FromStr;
    use tower_service::Service;

    let cert = rcgen::generate_simple_self_signed(vec!["rebind.example".to_owned()])
        .expect("self-signed certificate");
    let receiver = start_receiver(&cert).await;
    let ca = ca_file(&cert);
    let resolver = Arc::new(Rebinding {
        first: "93.184.216.34".parse().expect("ip"),
        then: IpAddr::from([127, 0, 0, 1]),
        lookups: AtomicUsize::new(0),
    });
    let options = |allow: &str| TransportOptions {
        ca_file: Some(ca.path().to_owned()),
        allow_private: SsrfGuard::parse_allow_list(allow).expect("allow list"),
        ..TransportOptions::default()
    };
    let url = format!("https://rebind.example:{}/hook", receiver.port);

    // When the webhook is created the name is public, and the guard agrees.
    let mut at_creation = GuardedResolver {
        guard: Arc::new(SsrfGuard::default()),
        resolver: resolver.clone(),
    };
    let public: Vec<SocketAddr> = at_creation
        .call(Name::from_str("rebind.example").expect("name"))
        .await
        .expect("a public address passes")
        .collect();
    assert_eq!(public, [SocketAddr::from(([93, 184, 216, 34], 0))]);

    // At dial time it resolves to loopback: refused, and nothing reaches the receiver
    // listening there.
    let strict = HttpsTransport::with_resolver(options(""), resolver.clone()).expect("transport");
    assert_eq!(
        strict.send(outbound(&url)).await,
        Err(DeliveryError::Blocked(
            "rebind.example resolves to 127.0.0.1, which is loopback (127.0.0.0/8)".to_owned()
        ))
    );
    assert_eq!(receiver.connections(), 0);

    // Inside --allow-private-networks the same dial goes through.
    let allowed =
        HttpsTransport::with_resolver(options("127.0.0.0/8"), resolver.clone()).expect("transport");
    let response = allowed.send(outbound(&url)).await.expect("delivered");
    assert_eq!(response.status, 503);
    assert_eq!(receiver.requests().len(), 1);
    assert_eq!(resolver.lookups.load(Ordering::SeqCst), 3);
}
