//! Every listener is bounded: a client that trickles its request head is disconnected within
//! the header-read timeout, and the server keeps answering others meanwhile.

use std::time::{Duration, Instant};

use syncroot_testkit::{Options, TestApp};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test]
async fn a_trickling_client_is_disconnected_while_healthz_keeps_answering() {
    let mut app = TestApp::spawn_with(Options {
        extra_env: vec![("SYNCROOT_HTTP_HEADER_TIMEOUT_MS".into(), "1000".into())],
        ..Options::default()
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let started = Instant::now();
    // Reads until the server closes the connection (it may answer 408 first).
    let reader = tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = rd.read_to_end(&mut sink).await;
        sink
    });
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut healthz_answers = 0;
    for byte in head.iter() {
        if reader.is_finished() || wr.write_all(&[*byte]).await.is_err() {
            break;
        }
        let r = app
            .http
            .get(format!("{}/healthz", app.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("/healthz answers while a client trickles");
        assert_eq!(r.status(), 200);
        healthz_answers += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let answered = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the trickling client is disconnected")
        .unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "disconnected only after {took:?}"
    );
    assert!(healthz_answers >= 1);
    // Never served: whatever came back is not a 200.
    let text = String::from_utf8_lossy(&answered);
    assert!(!text.starts_with("HTTP/1.1 200"), "{text}");
    app.stop().await;
}
