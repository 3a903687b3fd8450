//! Closed-loop load: `C` concurrent tokio tasks, each issuing one operation,
//! waiting for its answer and issuing the next, for a duration or a count.
//! Latencies of successful operations go into an HDR histogram; failures
//! are counted and the first one is kept for the report.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

/// Upper bound on the operations of one load, whatever the stop condition.
const MAX_OPERATIONS: u64 = 100_000_000;
/// Upper bound on the duration of one load, whatever the stop condition.
const MAX_DURATION: Duration = Duration::from_secs(3 * 3600);

/// When a load stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// Start no operation after this long.
    After(Duration),
    /// Start this many operations (numbered 0..n).
    Count(u64),
}

/// What a load measured.
#[derive(Debug)]
pub struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latencies of successful operations, in microseconds.
    pub latency: Histogram<u64>,
    pub first_error: Option<String>,
}

impl LoadResult {
    /// Successful operations per second.
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at `percentile` (0..=100), in milliseconds.
    pub fn percentile_ms(&self, percentile: f64) -> f64 {
        self.latency.value_at_percentile(percentile) as f64 / 1_000.0
    }

    /// One line for notes: count, errors, p50/p95/p99/max.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "n={} p50={:.2} p95={:.2} p99={:.2} max={:.2} ms",
            self.ok,
            self.percentile_ms(50.0),
            self.percentile_ms(95.0),
            self.percentile_ms(99.0),
            self.latency.max() as f64 / 1_000.0,
        );
        if self.errors > 0 {
            line.push_str(&format!(
                "; {} errors, first: {}",
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            ));
        }
        line
    }

    /// Fails unless some operation succeeded and none failed.
    pub fn require_clean(&self, what: &str) -> anyhow::Result<()> {
        if self.ok == 0 || self.errors > 0 {
            anyhow::bail!(
                "{what}: {} ok, {} errors; first error: {}",
                self.ok,
                self.errors,
                self.first_error.as_deref().unwrap_or("none")
            );
        }
        Ok(())
    }
}

/// Largest latency told apart, in microseconds (an hour); longer ones are
/// recorded as this.
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;

/// A latency histogram in microseconds, three significant digits.
fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).context("creating a histogram")
}

struct TaskTally {
    ok: u64,
    errors: u64,
    latency: Histogram<u64>,
    first_error: Option<String>,
}

/// Runs `op(i)` for i = 0, 1, 2, ... on `concurrency` tasks until `stop`.
/// `op` answers `Err(message)` for a failed operation.
pub async fn run<F, Fut>(concurrency: usize, stop: Stop, op: F) -> anyhow::Result<LoadResult>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let op = Arc::clone(&op);
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            let mut tally = TaskTally {
                ok: 0,
                errors: 0,
                latency: histogram()?,
                first_error: None,
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let elapsed = start.elapsed();
                let done = match stop {
                    Stop::After(d) => elapsed >= d,
                    Stop::Count(n) => i >= n,
                };
                if done || i >= MAX_OPERATIONS || elapsed >= MAX_DURATION {
                    break;
                }
                let began = Instant::now();
                match op(i).await {
                    Ok(()) => {
                        let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                        tally.latency.saturating_record(micros.max(1));
                        tally.ok += 1;
                    }
                    Err(e) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert(e);
                    }
                }
            }
            anyhow::Ok(tally)
        }));
    }
    let mut result = LoadResult {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency: histogram()?,
        first_error: None,
    };
    for task in tasks {
        let tally = task.await.context("a load task panicked")??;
        result.ok += tally.ok;
        result.errors += tally.errors;
        result
            .latency
            .add(&tally.latency)
            .context("merging latency histograms")?;
        if result.first_error.is_none() {
            result.first_error = tally.first_error;
        }
    }
    result.elapsed = start.elapsed();
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_operations_and_errors() {
        let result = run(4, Stop::Count(100), |i| async move {
            if i % 10 == 0 {
                Err(format!("op {i} failed"))
            } else {
                Ok(())
            }
        })
        .await
        .expect("load runs");
        assert_eq!(result.ok, 90);
        assert_eq!(result.errors, 10);
        assert!(result
            .first_error
            .as_deref()
            .is_some_and(|e| e.ends_with("failed")));
        assert!(result.require_clean("test").is_err());
    }

    #[tokio::test]
    async fn stops_after_its_duration() {
        let result = run(2, Stop::After(Duration::from_millis(50)), |_| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(())
        })
        .await
        .expect("load runs");
        assert!(result.ok > 0);
        assert!(result.elapsed < Duration::from_secs(5));
        assert!(result.percentile_ms(99.0) >= 4.0);
    }
}
