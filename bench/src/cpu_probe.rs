//! A fixed CPU-bound workload, timed at the start and at the end of a run
//! and shown in its header. The machines these runs are made on change
//! speed by a third within hours (BENCHMARKS.md, thirteenth round), so
//! figures of runs made at different times are compared through it.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Hashes chained: 0.6–0.8 s on one core of the machine of
/// BENCHMARKS.md, long enough to average out a scheduler tick.
const ROUNDS: u32 = 10_000_000;

/// What the probe says about the machine at one moment.
#[derive(Debug, Clone, Copy)]
pub struct CpuProbe {
    pub took: Duration,
}

impl CpuProbe {
    /// Runs the workload on the calling thread (block for it: it is short),
    /// or `None` in an unoptimized build of the harness, where it would take
    /// a minute and mean nothing (smoke runs, tests).
    pub fn measure() -> Option<CpuProbe> {
        (!cfg!(debug_assertions)).then(|| CpuProbe::of_rounds(ROUNDS))
    }

    fn of_rounds(rounds: u32) -> CpuProbe {
        let began = Instant::now();
        let mut digest = [0u8; 32];
        for _ in 0..rounds {
            digest = Sha256::digest(digest).into();
        }
        std::hint::black_box(digest);
        CpuProbe {
            took: began.elapsed(),
        }
    }

    /// The description the run's header shows.
    pub fn describe(start: CpuProbe, end: Option<CpuProbe>) -> String {
        let end = end.map_or("—".to_owned(), |e| {
            format!("{:.2} s", e.took.as_secs_f64())
        });
        format!(
            "{ROUNDS} chained SHA-256 on one core: {:.2} s at the start, {end} at the end (lower is faster)",
            start.took.as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_takes_measurable_time_and_is_described() {
        let probe = CpuProbe::of_rounds(1_000);
        assert!(probe.took > Duration::ZERO);
        let text = CpuProbe::describe(probe, None);
        assert!(
            text.contains("at the start") && text.contains("— at the end"),
            "{text}"
        );
    }
}
