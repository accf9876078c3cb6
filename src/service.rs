//! Talking to systemd (READY, STATUS, WATCHDOG, RELOADING, STOPPING) and the few helpers
//! a long-running process needs: who this process is, and durations in words.
//! Every notification is a no-op when not started by systemd.

use std::sync::OnceLock;

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(false, states)
    {
        tracing::debug!("sd_notify failed: {e}");
    }
}

pub fn ready(status: &str) {
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

pub fn status(status: &str) {
    notify(&[sd_notify::NotifyState::Status(status)]);
}

pub fn reloading() {
    notify(&[sd_notify::NotifyState::Reloading]);
}

pub fn stopping() {
    notify(&[sd_notify::NotifyState::Stopping]);
}

/// The watchdog interval systemd asked for (WatchdogSec), if any.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    static INTERVAL: OnceLock<Option<std::time::Duration>> = OnceLock::new();
    // As sd_watchdog_enabled(3): WATCHDOG_USEC, for this process unless WATCHDOG_PID names
    // another one.
    *INTERVAL.get_or_init(|| {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.parse::<u32>().ok() == Some(std::process::id()));
        (for_us && usec > 0).then(|| std::time::Duration::from_micros(usec))
    })
}

/// Tells the watchdog this process is making progress; called by the loop and between
/// batches of long passes.
pub fn alive() {
    LAST_ALIVE.store(
        chrono::Utc::now().timestamp_millis(),
        std::sync::atomic::Ordering::Relaxed,
    );
    if watchdog_interval().is_some() {
        notify(&[sd_notify::NotifyState::Watchdog]);
    }
}

/// When this process last said it makes progress (unix ms; 0: never): `/healthz` counts a
/// long pass that keeps working as alive.
pub fn last_alive() -> i64 {
    LAST_ALIVE.load(std::sync::atomic::Ordering::Relaxed)
}

static LAST_ALIVE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// This machine's name, for telling registrar processes apart.
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether a process with this id runs on this machine.
pub fn pid_alive(pid: i64) -> bool {
    // Under `ProtectProc=invisible` (the unit sets it) other users' processes are hidden:
    // when even pid 1 cannot be seen, nothing can be judged here, and the heartbeat decides.
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        || !std::path::Path::new("/proc/1").exists()
}

/// "3 h 5 min", "2 days 4 h", "45 s".
pub fn human(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    let (days, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (days, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (1, h, _) => format!("1 day {h} h"),
        (d, h, _) => format!("{d} days {h} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::human;
    use chrono::Duration;

    #[test]
    fn t4_lateness_reads_as_words() {
        assert_eq!(human(Duration::seconds(45)), "45 s");
        assert_eq!(human(Duration::minutes(125)), "2 h 5 min");
        assert_eq!(human(Duration::hours(52)), "2 days 4 h");
    }
}
