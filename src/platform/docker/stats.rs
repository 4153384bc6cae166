//! Live stats of running replicas: one streaming `stats` request per container, turned into
//! [`StatsSample`]s with the same arithmetic as `docker stats`.
//!
//! Not for deciding when a stream runs: the worker starts one when a replica runs and aborts it
//! when the replica stops or goes away.

use bollard::Docker;
use bollard::container::{MemoryStatsStats, Stats, StatsOptions};
use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::debug;

use crate::model::StatsSample;
use crate::platform::Update;

/// CPU use as `docker stats` shows it: percent of one core, so two busy cores give 200%.
/// Zero when either delta is not positive (an idle container, a counter reset).
pub fn cpu_percent(stats: &Stats) -> f64 {
    let cpu = &stats.cpu_stats;
    let pre = &stats.precpu_stats;
    let cpu_delta = cpu.cpu_usage.total_usage as f64 - pre.cpu_usage.total_usage as f64;
    let system_delta =
        cpu.system_cpu_usage.unwrap_or(0) as f64 - pre.system_cpu_usage.unwrap_or(0) as f64;
    let online = match cpu.online_cpus {
        Some(n) if n > 0 => n as f64,
        _ => cpu.cpu_usage.percpu_usage.as_ref().map_or(0, Vec::len) as f64,
    };
    if cpu_delta > 0.0 && system_delta > 0.0 {
        cpu_delta / system_delta * online * 100.0
    } else {
        0.0
    }
}

/// Memory in use without the page cache the kernel can drop, as `docker stats` shows it:
/// usage minus `total_inactive_file` (cgroup v1) or `inactive_file` (cgroup v2) when smaller.
pub fn memory_used(stats: &Stats) -> u64 {
    let usage = stats.memory_stats.usage.unwrap_or(0);
    let cache = match stats.memory_stats.stats {
        Some(MemoryStatsStats::V1(v1)) => v1.total_inactive_file,
        Some(MemoryStatsStats::V2(v2)) => v2.inactive_file,
        None => 0,
    };
    if cache < usage { usage - cache } else { usage }
}

/// Bytes received and sent, summed over the container's interfaces.
pub fn network_totals(stats: &Stats) -> (u64, u64) {
    let mut totals = (0u64, 0u64);
    for net in stats.networks.iter().flat_map(|n| n.values()) {
        totals.0 = totals.0.saturating_add(net.rx_bytes);
        totals.1 = totals.1.saturating_add(net.tx_bytes);
    }
    totals
}

/// One read of the engine's stats as a sample for the store.
pub fn sample(stats: &Stats) -> StatsSample {
    let (net_rx, net_tx) = network_totals(stats);
    StatsSample {
        cpu_percent: cpu_percent(stats),
        mem_bytes: memory_used(stats),
        mem_limit: stats.memory_stats.limit.unwrap_or(0),
        net_rx,
        net_tx,
    }
}

/// Whether the engine measured anything: a container that is not running is answered with a
/// read time of 0001-01-01 and zeros.
pub fn has_reading(stats: &Stats) -> bool {
    !stats.read.starts_with("0001-")
}

/// Whether a read has a previous one to measure CPU against. The first read of a stream has
/// none: its `precpu_stats` are empty, and the arithmetic of [`cpu_percent`] would then give
/// the container's CPU time over the host's since boot, near zero even for a busy container.
pub fn has_cpu_baseline(stats: &Stats) -> bool {
    stats.precpu_stats.system_cpu_usage.unwrap_or(0) > 0
}

/// Streams the stats of one container until the engine ends the stream or the task is aborted.
/// The first read is not sent when it has no CPU baseline, so a busy replica never shows as
/// idle, nor counts so for the autoscaler; the next read comes a second later.
pub async fn follow(docker: Docker, target: String, id: String, updates: mpsc::Sender<Update>) {
    let options = StatsOptions {
        stream: true,
        one_shot: false,
    };
    let mut stream = docker.stats(&id, Some(options));
    let mut first = true;
    while let Some(item) = stream.next().await {
        let is_first = std::mem::replace(&mut first, false);
        match item {
            // Only the first read is judged: an engine that never sends a baseline still
            // gets its memory and network shown from the second read on.
            Ok(stats) if is_first && has_reading(&stats) && !has_cpu_baseline(&stats) => {
                debug!(container = %id, "first stats read has no CPU baseline: not sent");
            }
            Ok(stats) if !has_reading(&stats) => {
                // A stopped container's stream goes on sending empty reads; it has nothing to
                // say until the container runs again, when a new stream is started.
                debug!(container = %id, "stats stream has no reading: the container stopped");
                return;
            }
            Ok(stats) => {
                let update = Update::Stats {
                    target: target.clone(),
                    id: id.clone(),
                    sample: sample(&stats),
                };
                if updates.send(update).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                // LIMITATION: bollard 0.18 parses memory stats into fixed structs that reject
                // unknown keys, so a kernel that adds cgroup counters breaks this stream.
                debug!(container = %id, error = %err, "stats stream ended with an error");
                return;
            }
        }
    }
    debug!(container = %id, "stats stream ended");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn a_stopped_containers_empty_read_is_no_reading() {
        let mut stats = stats_json(
            cpu(0, 0, Some(2), None),
            cpu(0, 0, Some(2), None),
            v1_memory(0, 0, 0),
            json!({}),
        );
        assert!(has_reading(&stats));
        stats.read = "0001-01-01T00:00:00Z".to_string();
        assert!(!has_reading(&stats));
    }

    /// A stats read as a cgroup v1 engine sends it, with the numbers under test filled in.
    fn stats_json(cpu: Value, precpu: Value, memory: Value, networks: Value) -> Stats {
        let value = json!({
            "read": "2024-05-01T10:00:01Z",
            "preread": "2024-05-01T10:00:00Z",
            "num_procs": 0,
            "pids_stats": {"current": 1},
            "blkio_stats": {},
            "storage_stats": {},
            "cpu_stats": cpu,
            "precpu_stats": precpu,
            "memory_stats": memory,
            "networks": networks,
            "name": "/web-1",
            "id": "abc"
        });
        serde_json::from_value(value).expect("stats JSON")
    }

    fn cpu(total: u64, system: u64, online: Option<u64>, percpu: Option<Vec<u64>>) -> Value {
        json!({
            "cpu_usage": {
                "total_usage": total,
                "percpu_usage": percpu,
                "usage_in_kernelmode": 0,
                "usage_in_usermode": 0
            },
            "system_cpu_usage": system,
            "online_cpus": online,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
        })
    }

    fn v1_memory(usage: u64, total_inactive_file: u64, limit: u64) -> Value {
        let mut stats = serde_json::Map::new();
        for key in [
            "cache",
            "dirty",
            "mapped_file",
            "pgpgout",
            "rss",
            "total_mapped_file",
            "writeback",
            "unevictable",
            "pgpgin",
            "total_unevictable",
            "pgmajfault",
            "total_rss",
            "total_rss_huge",
            "total_writeback",
            "total_inactive_anon",
            "rss_huge",
            "hierarchical_memory_limit",
            "total_pgfault",
            "total_active_file",
            "active_anon",
            "total_active_anon",
            "total_pgpgout",
            "total_cache",
            "total_dirty",
            "inactive_anon",
            "active_file",
            "pgfault",
            "inactive_file",
            "total_pgmajfault",
            "total_pgpgin",
        ] {
            stats.insert(key.to_string(), json!(0));
        }
        stats.insert("total_inactive_file".into(), json!(total_inactive_file));
        // v1 also has `inactive_file`; it must not be the one subtracted.
        stats.insert("inactive_file".into(), json!(1));
        json!({"usage": usage, "limit": limit, "stats": stats})
    }

    fn v2_memory(usage: u64, inactive_file: u64, limit: u64) -> Value {
        let mut stats = serde_json::Map::new();
        for key in [
            "anon",
            "file",
            "kernel_stack",
            "slab",
            "sock",
            "shmem",
            "file_mapped",
            "file_dirty",
            "file_writeback",
            "anon_thp",
            "inactive_anon",
            "active_anon",
            "active_file",
            "unevictable",
            "slab_reclaimable",
            "slab_unreclaimable",
            "pgfault",
            "pgmajfault",
            "workingset_refault",
            "workingset_activate",
            "workingset_nodereclaim",
            "pgrefill",
            "pgscan",
            "pgsteal",
            "pgactivate",
            "pgdeactivate",
            "pglazyfree",
            "pglazyfreed",
            "thp_fault_alloc",
            "thp_collapse_alloc",
        ] {
            stats.insert(key.to_string(), json!(0));
        }
        stats.insert("inactive_file".into(), json!(inactive_file));
        json!({"usage": usage, "limit": limit, "stats": stats})
    }

    fn no_networks() -> Value {
        json!({})
    }

    #[test]
    fn the_first_read_of_a_stream_has_no_cpu_baseline_and_later_ones_do() {
        // As the engine sends it: precpu_stats without system_cpu_usage; total 0.
        let first = stats_json(
            cpu(3_000_000_000, 108_000_000_000, Some(2), None),
            json!({"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
                   "usage_in_usermode": 0}, "throttling_data": {"periods": 0,
                   "throttled_periods": 0, "throttled_time": 0}}),
            v1_memory(0, 0, 0),
            no_networks(),
        );
        assert!(!has_cpu_baseline(&first));
        let later = stats_json(
            cpu(3_000_000_000, 108_000_000_000, Some(2), None),
            cpu(1_000_000_000, 100_000_000_000, Some(2), None),
            v1_memory(0, 0, 0),
            no_networks(),
        );
        assert!(has_cpu_baseline(&later));
    }

    #[test]
    fn cpu_percent_is_the_share_of_system_time_times_online_cpus() {
        // cpu_delta = 3_000_000_000 - 1_000_000_000 = 2e9 ns
        // system_delta = 108e9 - 100e9 = 8e9 ns (all cores together)
        // 2e9 / 8e9 = 0.25; * 4 cores * 100 = 100.0 (one core fully busy)
        let s = stats_json(
            cpu(3_000_000_000, 108_000_000_000, Some(4), None),
            cpu(1_000_000_000, 100_000_000_000, Some(4), None),
            v1_memory(0, 0, 0),
            no_networks(),
        );
        assert!(
            (cpu_percent(&s) - 100.0).abs() < 1e-9,
            "got {}",
            cpu_percent(&s)
        );
    }

    #[test]
    fn cpu_percent_falls_back_to_the_per_cpu_list_length() {
        // online_cpus missing; percpu_usage has 2 entries.
        // cpu_delta = 1.5e9 - 0.5e9 = 1e9; system_delta = 14e9 - 10e9 = 4e9
        // 1e9 / 4e9 = 0.25; * 2 * 100 = 50.0
        let s = stats_json(
            cpu(1_500_000_000, 14_000_000_000, None, Some(vec![1, 2])),
            cpu(500_000_000, 10_000_000_000, None, Some(vec![1, 2])),
            v1_memory(0, 0, 0),
            no_networks(),
        );
        assert!(
            (cpu_percent(&s) - 50.0).abs() < 1e-9,
            "got {}",
            cpu_percent(&s)
        );
    }

    #[test]
    fn cpu_percent_is_zero_when_the_container_used_no_cpu_between_reads() {
        // Same totals in both reads: cpu_delta = 0, so no division happens.
        let s = stats_json(
            cpu(1_000, 200_000, Some(2), None),
            cpu(1_000, 100_000, Some(2), None),
            v1_memory(0, 0, 0),
            no_networks(),
        );
        assert_eq!(cpu_percent(&s), 0.0);
    }

    #[test]
    fn memory_on_cgroup_v1_subtracts_total_inactive_file() {
        // 100 MiB used, 30 MiB of it inactive page cache: 104_857_600 - 31_457_280 = 73_400_320
        let s = stats_json(
            cpu(0, 0, Some(1), None),
            cpu(0, 0, Some(1), None),
            v1_memory(104_857_600, 31_457_280, 536_870_912),
            no_networks(),
        );
        assert_eq!(memory_used(&s), 73_400_320);
        assert_eq!(sample(&s).mem_limit, 536_870_912);
    }

    #[test]
    fn memory_on_cgroup_v2_subtracts_inactive_file() {
        // 50_000 used, 20_000 inactive: 30_000
        let s = stats_json(
            cpu(0, 0, Some(1), None),
            cpu(0, 0, Some(1), None),
            v2_memory(50_000, 20_000, 0),
            no_networks(),
        );
        assert_eq!(memory_used(&s), 30_000);
    }

    #[test]
    fn memory_keeps_usage_when_the_cache_is_not_smaller() {
        // inactive 60_000 >= usage 50_000: docker shows the usage unchanged.
        let s = stats_json(
            cpu(0, 0, Some(1), None),
            cpu(0, 0, Some(1), None),
            v2_memory(50_000, 60_000, 0),
            no_networks(),
        );
        assert_eq!(memory_used(&s), 50_000);
    }

    #[test]
    fn network_bytes_are_summed_over_interfaces() {
        // rx 1_000 + 24 = 1_024; tx 10 + 5 = 15
        let net = |rx: u64, tx: u64| {
            json!({"rx_bytes": rx, "rx_packets": 0, "rx_errors": 0, "rx_dropped": 0,
                   "tx_bytes": tx, "tx_packets": 0, "tx_errors": 0, "tx_dropped": 0})
        };
        let s = stats_json(
            cpu(0, 0, Some(1), None),
            cpu(0, 0, Some(1), None),
            v1_memory(0, 0, 0),
            json!({"eth0": net(1_000, 10), "eth1": net(24, 5)}),
        );
        assert_eq!(network_totals(&s), (1_024, 15));
        let sample = sample(&s);
        assert_eq!((sample.net_rx, sample.net_tx), (1_024, 15));
    }
}
