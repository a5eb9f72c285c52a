//! What `/proc` tells of a process (its memory and CPU) and of the machine, and of the files the
//! hub leaves in the bench's folder.

use std::path::{Path, PathBuf};

/// A process's memory and CPU, from `/proc/<pid>/status` and `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcStats {
    /// Peak resident set (VmHWM), kB.
    pub(crate) hwm_kb: u64,
    pub(crate) rss_kb: u64,
    pub(crate) rss_anon_kb: u64,
    pub(crate) rss_file_kb: u64,
    /// User + system CPU, in clock ticks (USER_HZ, 100 per second).
    pub(crate) cpu_ticks: u64,
}

impl ProcStats {
    pub(crate) fn read(pid: u32) -> Self {
        Self::read_path(&PathBuf::from(format!("/proc/{pid}"))).unwrap_or_default()
    }

    pub(crate) fn own() -> Self {
        Self::read_path(Path::new("/proc/self")).unwrap_or_default()
    }

    pub(crate) fn read_path(dir: &Path) -> Option<Self> {
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let kb = |field: &str| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let cpu_ticks =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Self {
            hwm_kb: kb("VmHWM:"),
            rss_kb: kb("VmRSS:"),
            rss_anon_kb: kb("RssAnon:"),
            rss_file_kb: kb("RssFile:"),
            cpu_ticks,
        })
    }
}

/// The machine's busy CPU ticks (all but idle and iowait).
pub(crate) fn machine_busy_ticks() -> u64 {
    let Ok(all) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let cpu: Vec<u64> = all
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    if cpu.len() < 5 {
        return 0;
    }
    cpu.iter().take(8).sum::<u64>() - cpu[3] - cpu[4]
}

pub(crate) fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

pub(crate) fn file_mb(db: &Path) -> f64 {
    ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len() as f64 / 1_048_576.0)
        .sum()
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
