//! One suite for both result stores: the local directory and S3 (s3s-fs over HTTP).

use std::sync::Arc;
use std::time::Duration;

use crate::common::S3Server;
use secrecy::SecretString;
use wacheck_blob::{BlobError, BlobStore, LocalStore, S3Store};

async fn suite(store: Arc<dyn BlobStore>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.csv");
    std::fs::write(&path, b"Number,whatsapp\n+41798284651,yes\n").unwrap();
    store
        .put_file("results/t1.csv", &path, "text/csv")
        .await
        .unwrap();
    assert_eq!(
        store.get("results/t1.csv").await.unwrap(),
        b"Number,whatsapp\n+41798284651,yes\n"
    );

    // Replacing keeps one object with the new content.
    std::fs::write(&path, b"v2").unwrap();
    store
        .put_file("results/t1.csv", &path, "text/csv")
        .await
        .unwrap();
    assert_eq!(store.get("results/t1.csv").await.unwrap(), b"v2");

    assert!(matches!(
        store.get("results/missing.csv").await,
        Err(BlobError::NotFound(_))
    ));
    for bad in ["../etc/passwd", "/abs", "a//b", "a b"] {
        assert!(
            matches!(
                store.put_file(bad, &path, "text/csv").await,
                Err(BlobError::InvalidKey(_))
            ),
            "{bad}"
        );
    }

    let u1 = store
        .url("results/t1.csv", "t1.csv", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(u1.contains("results/t1.csv"));

    store.delete("results/t1.csv").await.unwrap();
    store.delete("results/t1.csv").await.unwrap();
    assert!(matches!(
        store.get("results/t1.csv").await,
        Err(BlobError::NotFound(_))
    ));
}

#[tokio::test]
async fn local_store_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(
        dir.path(),
        "http://127.0.0.1:1",
        SecretString::from("s3cret"),
    )
    .unwrap();
    suite(Arc::new(store)).await;
}

#[tokio::test]
async fn s3_store_passes_the_suite() {
    let server = S3Server::start();
    let store = S3Store::new(&server.config("suite"));
    store.ensure_bucket().await.unwrap();
    store.ensure_bucket().await.unwrap();
    suite(Arc::new(store)).await;
}

#[tokio::test]
async fn s3_presigned_links_download_and_expire() {
    let server = S3Server::start();
    let store = S3Store::new(&server.config("links"));
    store.ensure_bucket().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.csv");
    std::fs::write(&path, b"hello").unwrap();
    store
        .put_file("results/a.csv", &path, "text/csv")
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let url = store
        .url("results/a.csv", "a.csv", Duration::from_secs(60))
        .await
        .unwrap();
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("a.csv")
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"hello");
    // A changed signature is refused by the server.
    // (Flip its last hex digit; replacing it by a fixed digit would be no change 1 time in 16.)
    let last = if url.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &url[..url.len() - 1]);
    assert_eq!(
        http.get(&forged).send().await.unwrap().status().as_u16(),
        403
    );
    // A link of one second, used after it ended.
    let short = store
        .url("results/a.csv", "a.csv", Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        http.get(&short).send().await.unwrap().status().as_u16(),
        403,
        "expired link"
    );
    // Wrong credentials are refused as well.
    let mut bad = server.config("links");
    bad.secret_key = SecretString::from("wrong");
    assert!(S3Store::new(&bad).get("results/a.csv").await.is_err());
}

#[tokio::test]
async fn local_links_verify_signature_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path(), "http://h", SecretString::from("k1")).unwrap();
    let url = store
        .url("results/x.xlsx", "x.xlsx", Duration::from_secs(60))
        .await
        .unwrap();
    let q: std::collections::HashMap<String, String> = url
        .split_once('?')
        .unwrap()
        .1
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let exp: i64 = q["expires"].parse().unwrap();
    assert!(
        store
            .verify("results/x.xlsx", exp, "x.xlsx", &q["sig"])
            .is_ok()
    );
    assert!(
        store
            .verify("results/y.xlsx", exp, "x.xlsx", &q["sig"])
            .is_err()
    );
    assert!(
        store
            .verify("results/x.xlsx", exp + 1, "x.xlsx", &q["sig"])
            .is_err()
    );
    let other = LocalStore::new(dir.path(), "http://h", SecretString::from("k2")).unwrap();
    assert!(
        other
            .verify("results/x.xlsx", exp, "x.xlsx", &q["sig"])
            .is_err()
    );
    let past = chrono::Utc::now().timestamp() - 1;
    let url = store
        .url("results/x.xlsx", "x.xlsx", Duration::from_secs(0))
        .await
        .unwrap();
    let sig = url.rsplit_once("sig=").unwrap().1;
    let exp_now: i64 = url
        .split("expires=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(exp_now >= past);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        store.verify("results/x.xlsx", exp_now, "x.xlsx", sig),
        Err(wacheck_blob::LinkError::Expired)
    );
}
