//! A minimal HTTP/1.1 server for one page: enough for Prometheus to scrape
//! `GET /metrics` on a loopback port, with nothing beyond the standard
//! library. Each connection gets one response and is closed.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Serves `page()` at `/metrics` on `listener` from a thread of its own,
/// for as long as the process runs.
pub fn serve(listener: TcpListener, page: impl Fn() -> String + Send + 'static) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Err(e) = respond(stream, &page) {
                log::debug!("metrics page: {e}");
            }
        }
    });
}

fn respond(stream: TcpStream, page: &dyn Fn() -> String) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // The headers are read and ignored (bounded: a scraper sends a few).
    let mut line = String::new();
    for _ in 0..100 {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if request.starts_with("GET ") && path == "/metrics" {
        ("200 OK", page())
    } else {
        ("404 Not Found", "try /metrics\n".to_string())
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Fetches `http://{addr}{path}` and returns the body (for the example's
/// own check and the test).
#[allow(dead_code)]
pub fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        return Err(std::io::Error::other("no end of headers"));
    };
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!(
            "status {}",
            head.lines().next().unwrap_or("")
        )));
    }
    Ok(body.to_string())
}
