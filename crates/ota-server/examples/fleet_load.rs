//! An open-loop load generator for fleet-scale check-ins: devices that
//! each open a new connection, ask once and hang up, arriving at a fixed
//! rate whatever the server's speed (so a slow server shows as latency,
//! not as a lower request rate: no coordinated omission).
//!
//! ```text
//! cargo run --release -p ota-server --example fleet_load -- \
//!     --addr 127.0.0.1:8080 --rate 16700 --seconds 20 --packages 1000 --pid SERVER_PID
//! ```
//!
//! Each request is `GET /maxVersion?package=pkg-K&branch=main` with `K`
//! drawn per device and an `X-Device-Id` header, over a fresh connection
//! from one of 16 loopback source addresses (so client ports last). It
//! prints the rate asked, the rate achieved, failures, latency percentiles
//! measured from each request's *scheduled* start, and the server's RSS.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// Check-ins waiting at once before new ones are counted as failed.
const MAX_IN_FLIGHT: u64 = 20_000;

struct Args {
    addr: SocketAddr,
    rate: f64,
    seconds: f64,
    packages: u64,
    pid: Option<u32>,
    path: String,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        addr: "127.0.0.1:8080".parse().map_err(|e| format!("{e}"))?,
        rate: 16_700.0,
        seconds: 20.0,
        packages: 1000,
        pid: None,
        path: "/maxVersion?package=pkg-{K}&branch=main".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--rate" => a.rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--seconds" => a.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--packages" => {
                a.packages = value()?.parse().map_err(|e| format!("--packages: {e}"))?
            }
            "--pid" => a.pid = Some(value()?.parse().map_err(|e| format!("--pid: {e}"))?),
            "--path" => a.path = value()?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// VmRSS and VmHWM of a process, in MiB.
fn rss(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User and system CPU seconds of a process (`/proc/PID/stat` fields 14
/// and 15, in clock ticks of 1/100 s as Linux reports them to user space).
fn cpu_seconds(pid: &str) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields start after its ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i)?.parse::<f64>().ok().map(|t| t / 100.0);
    Some((tick(11)?, tick(12)?))
}

/// The machine's CPU seconds from `/proc/stat`: (busy, softirq, total).
fn machine_seconds() -> Option<(f64, f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse::<f64>().ok().map(|t| t / 100.0))
        .collect();
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, *v.get(6)?, total))
}

/// One device's check-in; the latency from `scheduled`, in microseconds.
async fn check_in(
    addr: SocketAddr,
    source: IpAddr,
    request: String,
    scheduled: Instant,
) -> Result<u64, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| format!("bind: {e}"))?;
    let mut stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::with_capacity(1024);
    stream
        .read_to_end(&mut answer)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if !answer.starts_with(b"HTTP/1.1 200") {
        let head = String::from_utf8_lossy(&answer[..answer.len().min(40)]).into_owned();
        return Err(format!("answer {head:?}"));
    }
    Ok(scheduled.elapsed().as_micros() as u64)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fleet_load: {e}");
            std::process::exit(2);
        }
    };
    let total = (args.rate * args.seconds) as u64;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let failures = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut peak_in_flight = 0;
    let cpu_before = (
        cpu_seconds("self"),
        args.pid.and_then(|p| cpu_seconds(&p.to_string())),
        machine_seconds(),
    );
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / args.rate);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        // xorshift: a device id and its package, reproducibly.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let device = seed % 1_000_000;
        let package = seed % args.packages.max(1);
        let path = args.path.replace("{K}", &package.to_string());
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nX-Device-Id: dev-{device}\r\nConnection: close\r\n\r\n",
            args.addr
        );
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % 16) as u8));
        let (lat, fail, err, flying) = (
            latencies.clone(),
            failures.clone(),
            first_error.clone(),
            in_flight.clone(),
        );
        // Past the cap the server is far behind: count the device as failed
        // rather than run the generator out of descriptors.
        if flying.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            fail.fetch_add(1, Ordering::Relaxed);
            err.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(format!("{MAX_IN_FLIGHT} check-ins already waiting"));
            continue;
        }
        peak_in_flight = peak_in_flight.max(flying.fetch_add(1, Ordering::Relaxed) + 1);
        let addr = args.addr;
        tasks.spawn(async move {
            let r = tokio::time::timeout(
                Duration::from_secs(10),
                check_in(addr, source, request, due),
            )
            .await;
            flying.fetch_sub(1, Ordering::Relaxed);
            match r {
                Ok(Ok(us)) => lat.lock().unwrap_or_else(|p| p.into_inner()).push(us),
                Ok(Err(e)) => {
                    fail.fetch_add(1, Ordering::Relaxed);
                    err.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
                Err(_) => {
                    fail.fetch_add(1, Ordering::Relaxed);
                    err.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert("no answer within 10 s".into());
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    let scheduling_ended = started.elapsed();
    let rss_loaded = args.pid.and_then(rss);
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
    lat.sort_unstable();
    let ok = lat.len() as u64;
    println!(
        "asked {:.0}/s for {:.1} s: {ok} answered, {} failed, achieved {:.0}/s (scheduling took {:.1} s, peak {} in flight)",
        args.rate,
        args.seconds,
        failures.load(Ordering::Relaxed),
        ok as f64 / elapsed.as_secs_f64(),
        scheduling_ended.as_secs_f64(),
        peak_in_flight,
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        percentile(&lat, 1.0)
    );
    if let Some((now, peak)) = rss_loaded {
        println!("server RSS under load: {now:.1} MiB (peak {peak:.1} MiB)");
    }
    // Where the cores went: evidence of what limits the rate.
    let cpu_after = (
        cpu_seconds("self"),
        args.pid.and_then(|p| cpu_seconds(&p.to_string())),
        machine_seconds(),
    );
    let used = |a: Option<(f64, f64)>, b: Option<(f64, f64)>| {
        a.zip(b)
            .map(|(a, b)| format!("{:.1} user + {:.1} sys", b.0 - a.0, b.1 - a.1))
    };
    if let Some(g) = used(cpu_before.0, cpu_after.0) {
        println!(
            "CPU s over {:.1} s: load generator {g}",
            elapsed.as_secs_f64()
        );
    }
    if let Some(s) = used(cpu_before.1, cpu_after.1) {
        println!("CPU s: server {s}");
    }
    if let Some(((b0, q0, t0), (b1, q1, t1))) = cpu_before.2.zip(cpu_after.2) {
        println!(
            "CPU s: whole machine busy {:.1} of {:.1} ({:.0} %), of which softirq (network stack) {:.1}",
            b1 - b0,
            t1 - t0,
            100.0 * (b1 - b0) / (t1 - t0).max(0.01),
            q1 - q0
        );
    }
    let first = first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(e) = first {
        println!("first failure: {e}");
    }
}
