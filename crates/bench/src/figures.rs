//! The benchmark's figures: the key each has in the JSON line, what it measures, and the
//! target it must meet, if any. The printed table and the chart ([`crate::chart`]) both
//! read this one list.

use std::fmt;

/// A target a figure must meet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// The figure must be at least this.
    AtLeast(f64),
    /// The figure must be at most this.
    AtMost(f64),
}

impl Target {
    /// Whether `value` meets the target.
    pub fn is_met(self, value: f64) -> bool {
        match self {
            Self::AtLeast(target) => value >= target,
            Self::AtMost(target) => value <= target,
        }
    }

    /// How far `value` is along the way to the target: 1 exactly at it, more when it is
    /// met with room to spare (`value / target` for at least, `target / value` for at most).
    pub fn share(self, value: f64) -> f64 {
        match self {
            Self::AtLeast(target) if target > 0.0 => value / target,
            Self::AtMost(target) if value > 0.0 => target / value,
            Self::AtLeast(_) => 0.0,
            Self::AtMost(_) => f64::INFINITY,
        }
    }
}

impl fmt::Display for Target {
    /// `>= 0.9`, `<= 120`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AtLeast(target) => write!(f, ">= {target}"),
            Self::AtMost(target) => write!(f, "<= {target}"),
        }
    }
}

/// One figure of the JSON line.
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    /// Its key in the JSON line.
    pub key: &'static str,
    /// What it measures, for the table and the chart.
    pub label: &'static str,
    /// The target it must meet, if any.
    pub target: Option<Target>,
}

const fn figure(key: &'static str, label: &'static str, target: Option<Target>) -> Figure {
    Figure { key, label, target }
}

/// Every figure of the printed table, in its order. Those with a target are the chart's.
pub const FIGURES: &[Figure] = &[
    figure("conversations", "conversations loaded", None),
    figure("check_per_s", "window checks/s, sled store (8 tasks)", None),
    figure(
        "hashmap_check_per_s",
        "window checks/s, in-memory HashMap (8 tasks)",
        None,
    ),
    figure(
        "check_vs_hashmap",
        "sled check / HashMap check",
        Some(Target::AtLeast(0.85)),
    ),
    figure("record_per_s", "inbound records/s, periodic flush", None),
    figure(
        "durable_record_per_s_1",
        "durable records/s, 1 writer",
        None,
    ),
    figure(
        "durable_record_per_s_64",
        "durable records/s, 64 writers (group commit)",
        None,
    ),
    figure(
        "flush_each_record_per_s",
        "records/s with one flush per record",
        None,
    ),
    figure(
        "group_commit_speedup",
        "durable at 64 / flush each",
        Some(Target::AtLeast(5.0)),
    ),
    figure(
        "closing_soon_query_ms",
        "closing-soon query (about 1,000 found), ms",
        None,
    ),
    figure(
        "disk_bytes_per_conversation",
        "disk bytes per conversation",
        Some(Target::AtMost(120.0)),
    ),
    figure(
        "rss_bytes_per_conversation",
        "resident bytes per conversation",
        Some(Target::AtMost(200.0)),
    ),
    figure(
        "send_per_s",
        "guarded sends/s (policy + store + client)",
        None,
    ),
    figure(
        "raw_post_per_s",
        "raw reqwest posts/s, same body and gateway",
        None,
    ),
    figure("send_vs_raw", "guarded / raw", Some(Target::AtLeast(0.9))),
    figure(
        "send_with_message_id_per_s",
        "guarded sends/s naming their messageId",
        None,
    ),
    figure(
        "send_with_message_id_vs_raw",
        "those / raw (each stores its outcome)",
        Some(Target::AtLeast(0.8)),
    ),
    figure(
        "redis_check_per_s",
        "window checks/s, Redis store (8 tasks)",
        None,
    ),
    figure(
        "naive_redis_ttl_check_per_s",
        "checks/s, naive Redis TTL key + EXISTS",
        None,
    ),
    figure(
        "check_vs_redis",
        "sled check / naive Redis check",
        Some(Target::AtLeast(10.0)),
    ),
    figure(
        "redis_engine_vs_naive",
        "Redis store check / naive check",
        Some(Target::AtLeast(0.8)),
    ),
    figure(
        "outcome_sends",
        "sends naming their messageId (outcomes kept)",
        None,
    ),
    figure(
        "disk_bytes_per_send",
        "sled disk bytes per send after those sends",
        None,
    ),
    figure(
        "wave_disk_bytes_per_written",
        "10 expiring waves: disk bytes / outcome written",
        None,
    ),
    figure(
        "wave_disk_bytes_per_live",
        "10 expiring waves: disk bytes / outcome stored",
        None,
    ),
    figure(
        "wave_outcomes_left",
        "10 expiring waves: outcomes stored at the end",
        None,
    ),
    figure(
        "redis_bytes_per_outcome",
        "Redis memory bytes per stored outcome",
        None,
    ),
    figure(
        "record_once_per_s",
        "inbound records by id/s (redelivery memory)",
        None,
    ),
    figure(
        "record_once_vs_record",
        "record by id / plain record, same run",
        None,
    ),
    figure(
        "disk_bytes_per_seen_id",
        "sled disk bytes per remembered inbound id",
        None,
    ),
    figure(
        "redis_bytes_per_seen_id",
        "Redis memory bytes per remembered inbound id",
        None,
    ),
    figure(
        "bsuid_tenth_users",
        "a tenth keyed by user id: user conversations",
        None,
    ),
    figure(
        "bsuid_tenth_check_per_s",
        "a tenth keyed by user id: checks/s, all",
        None,
    ),
    figure(
        "bsuid_tenth_phone_check_per_s",
        "a tenth keyed by user id: checks/s, phones",
        None,
    ),
    figure(
        "all_phone_check_per_s",
        "the same phones in a phones-only store, checks/s",
        None,
    ),
    figure(
        "bsuid_tenth_phone_check_vs_all_phone",
        "phone checks: tenth-by-user-id / phones-only",
        Some(Target::AtLeast(0.95)),
    ),
    figure(
        "redis_cluster_check_per_s",
        "window checks/s, Redis Cluster, 3 primaries",
        None,
    ),
    figure(
        "redis_cluster_vs_single",
        "Redis Cluster check / one-server check",
        None,
    ),
    figure(
        "redis_bytes_per_conversation",
        "Redis memory bytes per conversation",
        None,
    ),
    figure(
        "redis_record_per_s",
        "inbound records/s, Redis store (8 tasks)",
        None,
    ),
    figure(
        "redis_cluster_record_per_s",
        "inbound records/s, Redis Cluster, 3 primaries",
        None,
    ),
    figure(
        "webhook_per_s",
        "signed webhooks/s through the router (durable)",
        None,
    ),
    figure(
        "webhook_raw_axum_per_s",
        "the same bodies/s into a plain axum handler",
        None,
    ),
    figure(
        "webhook_vs_raw",
        "router / plain axum",
        Some(Target::AtLeast(0.5)),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_met_in_their_direction() {
        assert!(Target::AtLeast(0.9).is_met(0.9));
        assert!(!Target::AtLeast(0.9).is_met(0.89));
        assert!(Target::AtMost(120.0).is_met(119.5));
        assert!(!Target::AtMost(120.0).is_met(131.3));
        assert_eq!(Target::AtLeast(0.8).share(0.4), 0.5);
        assert_eq!(Target::AtMost(120.0).share(240.0), 0.5);
        assert_eq!(Target::AtLeast(0.9).to_string(), ">= 0.9");
        assert_eq!(Target::AtMost(120.0).to_string(), "<= 120");
    }

    #[test]
    fn every_key_is_listed_once() {
        let mut keys: Vec<&str> = FIGURES.iter().map(|f| f.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), FIGURES.len());
    }
}
