//! RabbitMQ over TLS: an `amqps://` URL is accepted, the broker's certificate is verified
//! against the system's CAs and the CA file the URL's `cacertfile` names (RabbitMQ's URI
//! convention), and SyncRoot works end to end through it. The broker is the shared RabbitMQ
//! behind a TLS front with certificates `openssl` makes for the test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use syncroot_testkit::proxy::tls_front;
use syncroot_testkit::{Options, TestApp};

/// A CA and a certificate it signed for `localhost`, and a second CA that signed nothing here,
/// made by the `openssl` CLI in a directory removed on drop.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn make() -> Self {
        let dir = std::env::temp_dir().join(format!("syncroot-amqps-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        for ca in ["ca", "other-ca"] {
            openssl(
                &dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    &format!("/CN=SyncRoot test {ca}"),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.pem"),
                ],
            );
        }
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        );
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The shared RabbitMQ behind TLS with the server certificate; returns its port.
    async fn front(&self) -> u16 {
        tls_front(
            "127.0.0.1:5672",
            &self.path("server.pem"),
            &self.path("server.key"),
        )
        .await
        .port()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An `amqps://` URL for the front on `port`, trusting `ca` when given.
fn amqps(port: u16, ca: Option<&Path>) -> String {
    let url = format!("amqps://guest:guest@localhost:{port}/%2f");
    match ca {
        Some(ca) => format!("{url}?cacertfile={}", ca.display()),
        None => url,
    }
}

fn queue_config(url: &str) -> Result<syncroot::config::QueueConfig, String> {
    syncroot::config::Layers::gather(None, [("SYNCROOT_AMQP_URL".to_owned(), url.to_owned())])
        .parse()
        .map(|c| c.queue)
        .map_err(|e| e.to_string())
}

/// Connects as SyncRoot does; the error's text when refused.
async fn connect(url: &str) -> Result<(), String> {
    let cfg = queue_config(url)?;
    let connected = tokio::time::timeout(
        Duration::from_secs(20),
        syncroot::queue::connect(&cfg, "tls-test"),
    )
    .await
    .expect("the TLS handshake ends");
    match connected {
        Ok(conn) => {
            let _ = conn.close(200, "done".into()).await;
            Ok(())
        }
        Err(e) => Err(format!("{e:?}").to_ascii_lowercase()),
    }
}

#[tokio::test]
async fn an_amqps_broker_is_verified_against_the_ca_the_url_names() {
    let pki = Pki::make();
    let port = pki.front().await;

    // The system's CAs don't know the test CA, and another CA doesn't vouch for the broker.
    for ca in [None, Some(pki.path("other-ca.pem"))] {
        let err = connect(&amqps(port, ca.as_deref()))
            .await
            .expect_err("a certificate no trusted CA signed is refused");
        assert!(
            err.contains("certificate") || err.contains("issuer"),
            "{ca:?}: {err}"
        );
    }
    // The CA that signed it.
    connect(&amqps(port, Some(&pki.path("ca.pem"))))
        .await
        .expect("the broker's certificate is trusted through cacertfile");
}

#[tokio::test]
async fn syncroot_accepts_and_applies_changes_through_an_amqps_broker() {
    let pki = Pki::make();
    let port = pki.front().await;
    let app = TestApp::spawn_with(Options {
        amqp_url: Some(amqps(port, Some(&pki.path("ca.pem")))),
        ..Options::default()
    })
    .await;
    app.wait_ready().await;
    // Published by the API and consumed by the forwarder, both over TLS.
    let id = app.create(json!({"email": "tls@example.com"})).await;
    let contact = app.wait_applied(&id, 1).await;
    assert_eq!(contact["email"], "tls@example.com");
}

#[test]
fn a_cacertfile_is_checked_at_start_without_echoing_the_url() {
    let pki = Pki::make();
    let plain = format!(
        "amqp://sync:s3cret-pw@localhost/%2f?cacertfile={}",
        pki.path("ca.pem").display()
    );
    let err = queue_config(&plain).expect_err("cacertfile needs amqps");
    assert!(err.contains("not amqps"), "{err}");
    let missing = "amqps://sync:s3cret-pw@localhost/%2f?cacertfile=/no/such/ca.pem";
    let err = queue_config(missing).expect_err("an unreadable CA file is refused");
    assert!(err.contains("/no/such/ca.pem"), "{err}");
    let not_pem = format!(
        "amqps://sync:s3cret-pw@localhost/%2f?cacertfile={}",
        pki.path("server.ext").display()
    );
    let err = queue_config(&not_pem).expect_err("a file without a certificate is refused");
    assert!(err.contains("no PEM certificate"), "{err}");
    for e in [queue_config(&plain), queue_config(missing)] {
        assert!(!e.unwrap_err().contains("s3cret-pw"));
    }
    let ok = queue_config(&amqps(5671, Some(&pki.path("ca.pem")))).unwrap();
    assert!(ok.amqp_ca.unwrap().contains("BEGIN CERTIFICATE"));
}
