//! CPU time and resident memory of other processes, read from `/proc`, so that the server's
//! cost is measured apart from the load generator's.

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every Linux target).
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds the processes have used so far (0 for one that is gone).
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter().map(|pid| process_cpu_seconds(&pid.to_string())).sum()
}

/// This process's user plus system CPU seconds.
pub fn own_cpu_seconds() -> f64 {
    process_cpu_seconds("self")
}

fn process_cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces and parentheses; the fields after its last ')' don't.
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are the 14th and 15th fields of the line, the 12th and 13th after the name.
    let ticks: u64 = fields.get(11..13).map_or(0, |pair| pair.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    ticks as f64 / TICKS_PER_SECOND
}

/// Resident set size of the processes in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kilobytes| kilobytes.parse::<u64>().ok())
                .map_or(0, |kilobytes| kilobytes * 1024)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_memory_and_cpu() {
        let pid = std::process::id();
        let spin: u64 = (0..20_000_000u64).fold(0, |acc, n| acc.wrapping_add(n * n));
        std::hint::black_box(spin);
        assert!(rss_bytes(&[pid]) > 0);
        assert!(cpu_seconds(&[pid]) > 0.0);
    }
}
