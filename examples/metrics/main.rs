//! A node's metrics for Prometheus: the `metrics` feature reports through
//! the `metrics` facade, and `metrics-exporter-prometheus` renders them as
//! the page Prometheus scrapes, served here on a loopback port.
//!
//! ```sh
//! cargo run --example metrics --features metrics            # traffic, its own scrape, exit
//! cargo run --example metrics --features metrics -- --hold  # keep serving until Ctrl-C
//! ```
//!
//! Install the recorder before starting nodes: a node takes its handles on
//! its series when it starts.

mod http;

use std::net::TcpListener;
use std::time::Duration;

use bilateral::{HandlerError, Node};
use metrics_exporter_prometheus::PrometheusBuilder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let hold = std::env::args().any(|a| a == "--hold");

    // The recorder first, with buckets for call latency in seconds.
    let handle = PrometheusBuilder::new()
        .set_buckets(&[
            0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 1.0,
        ])?
        .install_recorder()?;
    {
        // Histograms keep raw samples until upkeep folds them in.
        let handle = handle.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(5));
                handle.run_upkeep();
            }
        });
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let page = handle.clone();
    http::serve(listener, move || page.render());
    println!("metrics at http://{addr}/metrics");

    // Two nodes and some traffic: calls that succeed and fail, casts.
    let server = Node::builder("server")
        .listen("tcp://127.0.0.1:*")
        .start()?;
    server.register("add", |_c, (a, b): (i64, i64)| Ok(a + b))?;
    server.register("fail", |_c, ()| -> Result<(), HandlerError> {
        Err(HandlerError::new("no"))
    })?;
    let client = Node::builder("client").start()?;
    client.connect("server", server.endpoint().unwrap())?;
    client.wait_for_peer("server", Duration::from_secs(10))?;
    let timeout = Duration::from_secs(5);
    for i in 0..100 {
        let sum: i64 = client.call_one("server", "add", &(i, 1), timeout)?;
        assert_eq!(sum, i + 1);
    }
    assert!(
        client
            .call_one::<_, ()>("server", "fail", &(), timeout)
            .is_err()
    );
    assert!(
        client
            .call_one::<_, ()>("server", "nope", &(), timeout)
            .is_err()
    );
    client.cast("server", "add", &(1, 2))?;

    // Scrape our own page, as Prometheus would, until the core's figures
    // (sampled once a second) are in.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let body = http::get(addr, "/metrics")?;
        if body.contains("bilateral_peers{node=\"client\",state=\"active\"} 1") {
            break body;
        }
        if std::time::Instant::now() > deadline {
            return Err("the page never showed the client's session".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for line in body.lines().filter(|l| {
        l.starts_with("bilateral_calls_total")
            || l.starts_with("bilateral_requests_served_total")
            || l.starts_with("bilateral_peers")
            || l.starts_with("bilateral_bytes_total")
            || l.starts_with("bilateral_call_duration_seconds_count")
    }) {
        println!("{line}");
    }
    assert!(
        body.contains("bilateral_calls_total{node=\"client\",method=\"add\",outcome=\"ok\"} 100")
    );

    if hold {
        println!("serving until interrupted");
        loop {
            std::thread::park();
        }
    }
    Ok(())
}
