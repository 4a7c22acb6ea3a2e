//! RabbitMQ over TLS: an `amqps://` URL is accepted and the broker's certificate is verified
//! (a server whose certificate no trusted CA signed is refused before any AMQP is spoken).

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

/// `openssl s_server` with a self-signed certificate for `localhost`, killed on drop.
struct UntrustedTlsServer {
    child: std::process::Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl UntrustedTlsServer {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("syncroot-amqps-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
            ])
            .current_dir(&dir)
            .output()
            .expect("the openssl CLI runs");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let port = syncroot_testkit::free_port().unwrap();
        let child = std::process::Command::new("openssl")
            .args([
                "s_server", "-quiet", "-cert", "cert.pem", "-key", "key.pem", "-accept",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(&dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        Self { child, dir, port }
    }
}

impl Drop for UntrustedTlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn an_amqps_broker_with_an_untrusted_certificate_is_refused() {
    let server = UntrustedTlsServer::start();
    syncroot_testkit::eventually("openssl s_server listens", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let url = format!("amqps://sync:pw@localhost:{}/%2f", server.port);
    // The configuration takes the URL.
    let cfg =
        syncroot::config::Layers::gather(None, [("SYNCROOT_AMQP_URL".to_owned(), url.clone())])
            .parse()
            .expect("amqps:// is accepted");
    assert!(cfg.queue.amqp_url.expose().starts_with("amqps://"));
    let connected = tokio::time::timeout(
        Duration::from_secs(20),
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    .expect("the TLS handshake ends");
    let err = connected.expect_err("an untrusted certificate is refused");
    let text = format!("{err:?}").to_ascii_lowercase();
    assert!(
        text.contains("certificate") || text.contains("issuer"),
        "{err:?}"
    );
}
