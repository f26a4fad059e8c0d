//! A TCP proxy in front of a real `ota serve` that injects the faults a
//! device meets: error statuses, bodies cut short, stalls, a slow link,
//! a server that is gone. Each request gets its own connection upstream
//! (`Connection: close` is added), so a fault hits exactly one request.
//! Faults apply to downloads only (`/otafiles/`, bundles, confirms), in
//! the order queued.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Answer this status without asking the server.
    Status(u16),
    /// Relay this many response bytes, then close.
    CutAfter(usize),
    /// Relay this many response bytes, then send nothing more.
    StallAfter(usize),
}

/// (path, Range header) of the download requests seen.
pub type Requests = Arc<Mutex<Vec<(String, Option<String>)>>>;

#[derive(Clone)]
pub struct Proxy {
    pub base: String,
    pub upstream: Arc<Mutex<String>>,
    pub faults: Arc<Mutex<VecDeque<Fault>>>,
    /// Bytes per second downstream (0: unlimited).
    pub rate: Arc<AtomicU64>,
    /// (path, Range header) of every download request.
    pub downloads: Requests,
    /// Bumped by [`Proxy::cut_all`]: connections of an older epoch close.
    pub epoch: Arc<AtomicU64>,
}

fn is_download(path: &str) -> bool {
    path.starts_with("/otafiles/")
        || path.contains("/update/bundles/")
        || path.ends_with("/update/confirm")
}

impl Proxy {
    pub fn start() -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = Proxy {
            base: format!("http://{}", l.local_addr().unwrap()),
            upstream: Arc::new(Mutex::new(String::new())),
            faults: Arc::new(Mutex::new(VecDeque::new())),
            rate: Arc::new(AtomicU64::new(0)),
            downloads: Arc::new(Mutex::new(Vec::new())),
            epoch: Arc::new(AtomicU64::new(0)),
        };
        let q = p.clone();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let q = q.clone();
                std::thread::spawn(move || {
                    let keep = c.try_clone();
                    let _ = q.handle(c);
                    // Close for good, even with a clone still reading.
                    if let Ok(k) = keep {
                        let _ = k.shutdown(std::net::Shutdown::Both);
                    }
                });
            }
        });
        p
    }

    pub fn set_upstream(&self, base: &str) {
        *self.upstream.lock().unwrap() = base.trim_start_matches("http://").to_owned();
    }

    /// Cuts every connection open now (a server that stops: the bytes in
    /// flight in socket buffers are lost too).
    pub fn cut_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    pub fn queue(&self, faults: &[Fault]) {
        self.faults.lock().unwrap().extend(faults.iter().cloned());
    }

    fn handle(&self, mut client: TcpStream) -> std::io::Result<()> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if client.read(&mut byte)? == 0 || head.len() > 65536 {
                return Ok(());
            }
            head.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let path = text.split_whitespace().nth(1).unwrap_or("").to_owned();
        let range = text
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("range:"))
            .map(|l| l[6..].trim().to_owned());
        let fault = if is_download(&path) {
            self.downloads.lock().unwrap().push((path.clone(), range));
            self.faults.lock().unwrap().pop_front()
        } else {
            None
        };
        if let Some(Fault::Status(code)) = fault {
            let r = format!(
                "HTTP/1.1 {code} Injected\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            return client.write_all(r.as_bytes());
        }
        let upstream = self.upstream.lock().unwrap().clone();
        let Ok(mut server) = TcpStream::connect(&upstream) else {
            return Ok(()); // the server is gone: the connection just closes
        };
        let mut lines: Vec<&str> = text
            .trim_end()
            .split("\r\n")
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .collect();
        lines.push("connection: close");
        server.write_all(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes())?;
        let mut up = client.try_clone()?;
        let mut server_w = server.try_clone()?;
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut up, &mut server_w);
        });
        let limit = match fault {
            Some(Fault::CutAfter(n)) | Some(Fault::StallAfter(n)) => n,
            _ => usize::MAX,
        };
        let mut sent = 0usize;
        let started = Instant::now();
        let epoch = self.epoch.load(Ordering::SeqCst);
        let mut buf = vec![0u8; 16384];
        loop {
            let want = buf.len().min(limit - sent);
            if want == 0 {
                break;
            }
            let n = server.read(&mut buf[..want])?;
            if n == 0 || self.epoch.load(Ordering::SeqCst) != epoch {
                return Ok(());
            }
            client.write_all(&buf[..n])?;
            sent += n;
            let rate = self.rate.load(Ordering::Relaxed);
            if rate > 0 {
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        if let Some(Fault::StallAfter(_)) = fault {
            // Hold the connection open, sending nothing.
            std::thread::sleep(Duration::from_secs(30));
        }
        Ok(())
    }
}
