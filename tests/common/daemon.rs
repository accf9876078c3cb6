//! `registrar serve` started in the test process ([`registrar::daemon::Daemon`]) on a free
//! port, with the office's config, a bearer token, and a handle to stop it.

use super::http::{Answer, request};
use super::office::Office;
use registrar::daemon::{Daemon, Handle};
use serde_json::Value;
use std::time::{Duration, Instant};

pub const TOKEN: &str = "concurrency-token-0123456789";

/// The `http` block of a config for an in-process daemon: port 0, token from a file.
pub fn http_config() -> &'static str {
    "http:\n  listen: 127.0.0.1:0\n  token_file: api-token\n"
}

pub struct Running {
    pub port: u16,
    handle: Handle,
    runtime: Option<tokio::runtime::Runtime>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Builds and starts the daemon of `office` (whose config ends with [`http_config`]),
    /// and waits until /healthz answers 200.
    pub fn start(office: &Office) -> Running {
        std::fs::write(office.dir.path().join("api-token"), TOKEN).expect("token");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let config = registrar::config::Config::load(&office.config()).expect("config");
        let daemon = runtime
            .block_on(Daemon::build(config))
            .expect("daemon builds");
        let (port, handle) = (daemon.port(), daemon.handle());
        let task = runtime.spawn(daemon.run_until_stopped());
        let started = Instant::now();
        while request(port, "GET", "/healthz", &[], b"").status != 200 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the daemon did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Running {
            port,
            handle,
            runtime: Some(runtime),
            task: Some(task),
        }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        call(self.port, method, path, body)
    }

    /// Stops the daemon and waits for it to finish.
    pub fn stop(mut self) {
        self.handle.stop();
        if let (Some(rt), Some(task)) = (self.runtime.take(), self.task.take()) {
            let result = rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(60), task).await })
                .expect("the daemon stops within 60 s")
                .expect("the daemon task ends");
            result.expect("the daemon ran without error");
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// An API request with the bearer token.
pub fn call(port: u16, method: &str, path: &str, body: Option<&Value>) -> Answer {
    let auth = format!("Bearer {TOKEN}");
    let bytes = body.map(Value::to_string).unwrap_or_default();
    let mut headers = vec![("Authorization", auth.as_str())];
    if !bytes.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    request(port, method, path, &headers, bytes.as_bytes())
}

/// Waits (up to `limit`) for `done`.
pub fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    done()
}

/// Runs `jobs` on `threads` threads at once; returns their results in order.
pub fn in_parallel<T: Send + 'static>(
    threads: usize,
    jobs: Vec<Box<dyn FnOnce() -> T + Send>>,
) -> Vec<T> {
    let jobs: Vec<(usize, Box<dyn FnOnce() -> T + Send>)> = jobs.into_iter().enumerate().collect();
    let n = jobs.len();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(jobs));
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (queue, barrier) = (queue.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut out = Vec::new();
                loop {
                    let job = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                    let Some((i, job)) = job else { break };
                    out.push((i, job()));
                }
                out
            })
        })
        .collect();
    let mut all: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for h in handles {
        for (i, r) in h.join().expect("thread") {
            all[i] = Some(r);
        }
    }
    all.into_iter().map(|r| r.expect("every job ran")).collect()
}
