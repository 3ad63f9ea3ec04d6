//! `--store` with the URLs production Redis needs: `rediss://` (the server's certificate
//! checked against the system's roots plus `$LIPACHAT_REDIS_CA_CERT`), an ACL user, and
//! `redis+cluster://` (one seed enough), each run as the built binary against servers the
//! test starts on loopback (rcgen makes the certificate authority).
//!
//! Without `redis-server` (and `REQUIRE_REDIS` unset) these print a skip notice and pass.
#![allow(clippy::unwrap_used)]

mod common;

use common::{BUSINESS, CUSTOMER_DIGITS, Cli, T0};
use lipachat_redis::KeyLayout;
use lipachat_redis::test_server::{RedisCluster, RedisServer, ServerSetup, TestCertificates};

/// `--store URL` followed by `args`.
fn on<'a>(url: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut full = vec!["--store", url];
    full.extend_from_slice(args);
    full
}

/// A TLS server is used with the authority `LIPACHAT_REDIS_CA_CERT` names; without it the
/// certificate is untrusted: exit 2, one line saying so and naming the variable.
#[test]
fn rediss_works_with_the_ca_file_and_an_untrusted_certificate_exits_2() {
    let certificates = TestCertificates::new();
    let Some(server) = RedisServer::start_with(ServerSetup::new().tls(&certificates)) else {
        eprintln!("skipped: no redis-server (set REQUIRE_REDIS=1 to make this a failure)");
        return;
    };
    let url = server.url();
    assert!(url.starts_with("rediss://"));
    let mut cli = Cli::new();
    cli.run_raw(
        &on(&url, &["record", BUSINESS, CUSTOMER_DIGITS, "--at", T0]),
        None,
    )
    .expect_error(&[
        "cannot open the Redis store",
        "certificate is not trusted",
        "LIPACHAT_REDIS_CA_CERT",
    ]);
    cli.env(
        "LIPACHAT_REDIS_CA_CERT",
        certificates.ca_cert().to_str().unwrap(),
    );
    cli.run_raw(
        &on(&url, &["record", BUSINESS, CUSTOMER_DIGITS, "--at", T0]),
        None,
    )
    .expect(0);
    let status = cli
        .run_raw(
            &on(
                &url,
                &["status", BUSINESS, CUSTOMER_DIGITS, "--now", T0, "--json"],
            ),
            None,
        )
        .expect(0)
        .json();
    assert_eq!(status["state"], "open", "{status}");
    // A CA file that is not there is named.
    cli.env("LIPACHAT_REDIS_CA_CERT", "/nonexistent/ca.pem");
    cli.run_raw(&on(&url, &["status", BUSINESS, CUSTOMER_DIGITS]), None)
        .expect_error(&["certificate authority file /nonexistent/ca.pem"]);
}

/// An ACL user's wrong password: exit 2, naming authentication, the password nowhere.
#[test]
fn a_wrong_password_exits_2_naming_authentication_without_the_password() {
    let rules = KeyLayout::new("lipachat").acl_rules();
    let Some(server) =
        RedisServer::start_with(ServerSetup::new().user("bot", "Right-Pass-1", &rules))
    else {
        eprintln!("skipped: no redis-server (set REQUIRE_REDIS=1 to make this a failure)");
        return;
    };
    let cli = Cli::new();
    let wrong = server.url_as(Some("bot"), "Wrong-Pass-2");
    let run = cli
        .run_raw(&on(&wrong, &["status", BUSINESS, CUSTOMER_DIGITS]), None)
        .expect_error(&["cannot open the Redis store", "authentication failed"]);
    assert!(!run.stderr.contains("Wrong-Pass-2"), "{run:?}");
    // The least permissions are enough for the tool too.
    let right = server.url_as(Some("bot"), "Right-Pass-1");
    cli.run_raw(
        &on(&right, &["record", BUSINESS, CUSTOMER_DIGITS, "--at", T0]),
        None,
    )
    .expect(0);
    let listed = cli
        .run_raw(&on(&right, &["list", "--now", T0, "--json"]), None)
        .expect(0)
        .json_lines();
    assert_eq!(listed.len(), 1, "{listed:?}");
}

/// `redis+cluster://` with one seed: records for businesses whose slots are on every
/// primary, all listed.
#[test]
fn a_cluster_url_reaches_every_primary_from_one_seed() {
    let Some(cluster) = RedisCluster::start(3, 0, None) else {
        eprintln!("skipped: no redis-server (set REQUIRE_REDIS=1 to make this a failure)");
        return;
    };
    let seed = cluster.url().split(',').next().unwrap().to_owned();
    assert!(seed.starts_with("redis+cluster://"), "{seed}");
    let cli = Cli::new();
    let businesses: Vec<String> = (0..12).map(|i| format!("25411009{:04}", i)).collect();
    let keys = KeyLayout::new("lipachat");
    let mut owners = std::collections::BTreeSet::new();
    for business in &businesses {
        cli.run_raw(
            &on(&seed, &["record", business, CUSTOMER_DIGITS, "--at", T0]),
            None,
        )
        .expect(0);
        owners.insert(cluster.owner_of_key(&keys.window(business.parse().unwrap())));
    }
    assert!(!owners.contains(&None) && owners.len() == 3, "{owners:?}");
    let listed = cli
        .run_raw(&on(&seed, &["list", "--now", T0, "--json"]), None)
        .expect(0)
        .json_lines();
    assert_eq!(listed.len(), businesses.len(), "{listed:?}");
    // A single-server URL naming a cluster node is refused, saying what to write.
    let node = format!("redis://127.0.0.1:{}/0", cluster.nodes()[0].port());
    cli.run_raw(&on(&node, &["status", BUSINESS, CUSTOMER_DIGITS]), None)
        .expect_error(&["Redis Cluster node", "redis+cluster://"]);
}
