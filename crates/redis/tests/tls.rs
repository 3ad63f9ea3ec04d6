//! The store over TLS (`rediss://`, `rediss+cluster://`) against `redis-server`s started
//! with `--tls-port` and a certificate authority made at test time (rcgen): the
//! conformance suite, a certificate nobody trusts, an explicit `#insecure`, unusable CA
//! files, and a server that does not speak TLS.
//!
//! Skipped when `redis-server` is missing, unless `REQUIRE_REDIS=1`.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

mod common;

use lipachat_redis::test_server::{RedisCluster, RedisServer, ServerSetup, TestCertificates};
use lipachat_redis::{ConnectError, RedisConfig};
use lipachat_session::{Conversation, OutboxStore, PhoneNumber, WindowStore, conformance};

fn tls_server() -> Option<(TestCertificates, RedisServer)> {
    let certificates = TestCertificates::new();
    let server = RedisServer::start_with(ServerSetup::new().tls(&certificates))?;
    Some((certificates, server))
}

/// Every check of the conformance suite over TLS, the server's certificate verified
/// against the test authority (added to the system's roots).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_over_tls() {
    let Some((certificates, server)) = tls_server() else {
        return;
    };
    assert!(server.url().starts_with("rediss://"), "{}", server.url());
    let store = RedisConfig::new(&server.url())
        .unwrap()
        .with_key_prefix("tls")
        .unwrap()
        .with_ca_cert(certificates.ca_cert())
        .connect()
        .await
        .unwrap();
    assert!(store.config().uses_tls());
    conformance::run_all(&store).await;
}

/// A certificate signed by an authority the client does not trust is refused with a
/// typed error that says so, whether or not another authority is configured.
#[tokio::test]
async fn an_untrusted_certificate_is_a_typed_error() {
    let Some((_certificates, server)) = tls_server() else {
        return;
    };
    let other_authority = TestCertificates::new();
    for config in [
        RedisConfig::new(&server.url()).unwrap(),
        RedisConfig::new(&server.url())
            .unwrap()
            .with_ca_cert(other_authority.ca_cert()),
    ] {
        let error = config.connect().await.unwrap_err();
        assert!(
            matches!(error, ConnectError::UntrustedCertificate { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("certificate is not trusted") && message.contains("UnknownIssuer"),
            "{message}"
        );
        assert!(message.contains("LIPACHAT_REDIS_CA_CERT"), "{message}");
    }
}

/// Verification is skipped only when the URL asks for it (`#insecure`).
#[tokio::test]
async fn insecure_skips_verification_only_when_asked() {
    let Some((_certificates, server)) = tls_server() else {
        return;
    };
    let store = RedisConfig::new(&format!("{}#insecure", server.url()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    store.ping().await.unwrap();
    assert!(store.config().to_string().contains("#insecure"));
}

/// A CA file that is missing, or holds no certificate, is named in a typed error before
/// anything is sent.
#[tokio::test]
async fn an_unusable_ca_file_is_named() {
    let Some((_certificates, server)) = tls_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    for (path, says) in [(missing, "No such file"), (not_pem, "no PEM certificate")] {
        let error = RedisConfig::new(&server.url())
            .unwrap()
            .with_ca_cert(&path)
            .connect()
            .await
            .unwrap_err();
        match &error {
            ConnectError::CaCertificate { path: named, .. } => assert_eq!(named, &path),
            other => panic!("expected CaCertificate, got {other:?}"),
        }
        assert!(error.to_string().contains(says), "{error}");
    }
}

/// `rediss://` to a server that speaks plain TCP fails the handshake with a typed TLS
/// error, within the time bound.
#[tokio::test]
async fn tls_to_a_plain_server_is_a_typed_error() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url().replacen("redis://", "rediss://", 1);
    let certificates = TestCertificates::new();
    let started = std::time::Instant::now();
    let error = RedisConfig::new(&url)
        .unwrap()
        .with_ca_cert(certificates.ca_cert())
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ConnectError::Tls { .. } | ConnectError::Unreachable { .. }
        ),
        "{error:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// A TLS cluster (`rediss+cluster://`, `tls-cluster yes`): the store discovers every
/// primary through one seed and its queries across businesses see them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_works_from_one_seed() {
    let certificates = TestCertificates::new();
    let Some(cluster) = RedisCluster::start(3, 0, Some(&certificates)) else {
        return;
    };
    let url = cluster.url();
    assert!(url.starts_with("rediss+cluster://"), "{url}");
    // One seed: the first node only.
    let seed = url.split(',').next().unwrap().to_owned();
    let store = RedisConfig::new(&seed)
        .unwrap()
        .with_ca_cert(certificates.ca_cert())
        .connect()
        .await
        .unwrap();
    let at = chrono::Utc::now();
    let mut expected = Vec::new();
    for i in 0..24u64 {
        let chat = Conversation::new(
            PhoneNumber::from_u64(254_110_090_000 + i).unwrap(),
            PhoneNumber::from_u64(254_712_000_000 + i).unwrap(),
        );
        store.record_inbound(chat, at).await.unwrap();
        expected.push(chat);
    }
    let owners: std::collections::BTreeSet<Option<usize>> = expected
        .iter()
        .map(|chat| cluster.owner_of_key(&store.keys().window(chat.business)))
        .collect();
    assert!(!owners.contains(&None), "every slot has a primary");
    assert_eq!(owners.len(), 3, "the businesses span every primary");
    assert_eq!(store.count().await.unwrap(), 24);
    expected.sort();
    assert_eq!(common::conversations_with_windows(&store).await, expected);
    assert!(store.conversations_with_queued().await.unwrap().is_empty());
    // Without the authority, the same cluster is refused as untrusted.
    let error = RedisConfig::new(&seed)
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(error, ConnectError::UntrustedCertificate { .. }),
        "{error:?}"
    );
}
