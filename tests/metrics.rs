//! The `metrics` feature as an operator sees it: a Prometheus page served
//! over real HTTP on a loopback port (the `metrics` example's server),
//! whose figures move with the traffic.

mod common;
#[path = "../examples/metrics/http.rs"]
mod http;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use bilateral::HandlerError;
use common::PATIENCE;
use metrics_exporter_prometheus::PrometheusBuilder;

/// The value of the series `series` (name and labels, exactly as rendered).
fn value(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// Scrapes until `series` reaches at least `at_least`; returns the page.
fn scrape_until(addr: SocketAddr, series: &str, at_least: f64) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let page = http::get(addr, "/metrics").expect("the page is served");
        if value(&page, series).is_some_and(|v| v >= at_least) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {at_least}; the page:\n{page}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_prometheus_page_follows_the_traffic() {
    // The recorder before the nodes: a node takes its handles at start.
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    http::serve(listener, move || handle.render());

    let server = common::node("m-server");
    server
        .register("add", |_c, (a, b): (i64, i64)| Ok(a + b))
        .unwrap();
    server
        .register("fail", |_c, ()| -> Result<(), HandlerError> {
            Err(HandlerError::new("no"))
        })
        .unwrap();
    let client = common::node("m-client");
    common::join(&client, &server);
    let t = Duration::from_secs(5);
    for i in 0..10 {
        assert_eq!(
            client.call_one::<_, i64>("m-server", "add", &(i, 1), t),
            Ok(i + 1)
        );
    }
    assert!(
        client
            .call_one::<_, ()>("m-server", "fail", &(), t)
            .is_err()
    );

    let ok = r#"bilateral_calls_total{node="m-client",method="add",outcome="ok"}"#;
    let page = scrape_until(addr, ok, 10.0);
    assert_eq!(value(&page, ok), Some(10.0));
    let failed = r#"bilateral_calls_total{node="m-client",method="fail",outcome="remote_error"}"#;
    assert_eq!(value(&page, failed), Some(1.0));
    let served = r#"bilateral_requests_served_total{node="m-server",method="add",status="ok"}"#;
    assert_eq!(value(&page, served), Some(10.0));
    let latency = r#"bilateral_call_duration_seconds_count{node="m-client",method="add"}"#;
    assert_eq!(value(&page, latency), Some(10.0));
    let out = r#"bilateral_bytes_total{node="m-client",direction="out"}"#;
    let bytes_before = value(&page, out).expect("bytes out");
    assert!(bytes_before > 0.0);
    let active = r#"bilateral_peers{node="m-client",state="active"}"#;
    let page = scrape_until(addr, active, 1.0);
    assert_eq!(value(&page, active), Some(1.0));

    // More traffic moves the figures: calls, a cast, bytes.
    for i in 0..5 {
        client
            .call_one::<_, i64>("m-server", "add", &(i, i), t)
            .unwrap();
    }
    client.cast("m-server", "add", &(1, 1)).unwrap();
    let page = scrape_until(addr, ok, 15.0);
    assert!(value(&page, out).unwrap() > bytes_before);
    let casts = r#"bilateral_casts_served_total{node="m-server",method="add"}"#;
    scrape_until(addr, casts, 1.0);

    // Names a peer makes up do not become series of their own.
    for i in 0..3 {
        let made_up = format!("made-up-{i}");
        assert!(
            client
                .call_one::<_, ()>("m-server", &made_up, &(), t)
                .is_err()
        );
    }
    let unregistered = r#"bilateral_requests_served_total{node="m-server",method="(unregistered)",status="unknown_method"}"#;
    let page = scrape_until(addr, unregistered, 3.0);
    // (The caller's own series name what it called: its names are its own.)
    assert!(
        !page
            .lines()
            .any(|l| l.contains("node=\"m-server\"") && l.contains("made-up")),
        "{page}"
    );

    // Garbage from a stranger shows up as a drop, by reason.
    let ctx = bilateral::testkit::zmq::Context::new().unwrap();
    let stranger = common::raw::dealer(&ctx, Some(b"stranger"), server.endpoint().unwrap());
    common::raw::send_parts(&stranger, &[b"not a frame"]);
    let malformed = r#"bilateral_dropped_total{node="m-server",reason="malformed"}"#;
    scrape_until(addr, malformed, 1.0);

    // The built-in services' sizes: a channel's entries.
    let channel = server.channel::<u32>("sizes").unwrap();
    channel.set_all([("a", 1), ("b", 2), ("c", 3)]).unwrap();
    let entries = r#"bilateral_service{node="m-server",service="channel",counter="entries"}"#;
    scrape_until(addr, entries, 3.0);

    // A peer that leaves is no longer active.
    server.close();
    let page = {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let page = http::get(addr, "/metrics").unwrap();
            if value(&page, active) == Some(0.0) {
                break page;
            }
            assert!(Instant::now() < deadline, "still active:\n{page}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert!(page.contains("bilateral_pending_calls{node=\"m-client\"}"));
}
