//! Failures as one-line errors: TLS, connect, and a transport that cannot be built.

use std::path::PathBuf;

use herald_actors::{DeliveryError, Transport};

use super::*;
use crate::transport::TransportBuildError;

#[tokio::test]
async fn a_certificate_outside_the_trusted_roots_is_a_tls_error() {
    let trusted = self_signed();
    let ca = ca_file(&trusted);
    let untrusted = self_signed();
    let receiver = start_receiver(&untrusted).await;
    let transport = transport(&ca, "127.0.0.0/8");

    for host in ["localhost", "127.0.0.1"] {
        let result = transport
            .send(outbound(&format!("https://{host}:{}/", receiver.port)))
            .await;
        match result {
            Err(DeliveryError::Tls(message)) => {
                assert!(message.contains("certificate"), "{message}");
                assert!(!message.contains('\n'));
            }
            other => panic!("{host}: expected Tls, got {other:?}"),
        }
    }
    assert!(receiver.requests().is_empty());
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let cert = self_signed();
    let ca = ca_file(&cert);
    let transport = transport(&ca, "127.0.0.0/8");
    let port = closed_port();

    for host in ["localhost", "127.0.0.1"] {
        let result = transport
            .send(outbound(&format!("https://{host}:{port}/")))
            .await;
        match result {
            Err(DeliveryError::Connect(message)) => assert!(!message.contains('\n')),
            other => panic!("{host}: expected Connect, got {other:?}"),
        }
    }
}

#[test]
fn the_ca_file_must_exist_and_hold_certificates() {
    let missing = TransportOptions {
        ca_file: Some(PathBuf::from("/nonexistent/herald-ca.pem")),
        ..TransportOptions::default()
    };
    let error = HttpsTransport::new(missing).expect_err("missing file");
    assert!(
        error.to_string().contains("/nonexistent/herald-ca.pem"),
        "{error}"
    );

    let empty = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(empty.path(), "not a certificate\n").expect("write");
    let error = HttpsTransport::new(TransportOptions {
        ca_file: Some(empty.path().to_owned()),
        ..TransportOptions::default()
    })
    .expect_err("no certificates");
    assert!(matches!(error, TransportBuildError::CaFileEmpty { .. }));
    assert!(
        error
            .to_string()
            .contains(&empty.path().display().to_string()),
        "{error}"
    );
}
