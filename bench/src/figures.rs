//! The figures of issue 4 and their targets ("must reach" and "goal"), and
//! a measured value judged against them. The one place where targets live.

/// A target: the figure must be at least or at most this value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

impl Bound {
    pub fn holds(self, value: f64) -> bool {
        match self {
            Bound::AtLeast(limit) => value >= limit,
            Bound::AtMost(limit) => value <= limit,
        }
    }

    pub fn show(self) -> String {
        match self {
            Bound::AtLeast(limit) => format!("≥ {}", number(limit)),
            Bound::AtMost(limit) => format!("≤ {}", number(limit)),
        }
    }
}

/// What a figure measures and what it should reach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    pub name: &'static str,
    pub unit: &'static str,
    pub must: Option<Bound>,
    pub goal: Option<Bound>,
    /// The goal also asks for at least this share of the limit measured in
    /// the same run.
    pub goal_share_of_limit: Option<f64>,
}

const fn spec(
    name: &'static str,
    unit: &'static str,
    must: Option<Bound>,
    goal: Option<Bound>,
) -> Spec {
    Spec {
        name,
        unit,
        must,
        goal,
        goal_share_of_limit: None,
    }
}

use Bound::{AtLeast, AtMost};

pub const INPROCESS_LIMIT: Spec = spec(
    "limit: create in process (Automerge doc + save + SQLite insert, group commit, no HTTP)",
    "creates/s",
    None,
    None,
);
pub const CREATE_RATE: Spec = Spec {
    goal_share_of_limit: Some(0.75),
    ..spec(
        "create a client over HTTP, 32 concurrent, durable",
        "creates/s",
        Some(AtLeast(3_000.0)),
        Some(AtLeast(5_000.0)),
    )
};
pub const CREATE_P99: Spec = spec(
    "create a client over HTTP: p99",
    "ms",
    Some(AtMost(30.0)),
    None,
);
pub const GET_RATE: Spec = spec(
    "GET a record by id, 32 concurrent",
    "req/s",
    Some(AtLeast(15_000.0)),
    Some(AtLeast(30_000.0)),
);
pub const LIST_P99: Spec = spec(
    "list page (filter + sort, 50 rows, pages 1 and 2): p99",
    "ms",
    Some(AtMost(30.0)),
    Some(AtMost(10.0)),
);
pub const SEARCH_P99: Spec = spec(
    "full-text search: p99",
    "ms",
    Some(AtMost(80.0)),
    Some(AtMost(25.0)),
);
pub const FIRST_SYNC: Spec = spec(
    "first sync of a new node from a peer, loopback",
    "records/s",
    Some(AtLeast(5_000.0)),
    Some(AtLeast(15_000.0)),
);
pub const ONE_CHANGE_TIME: Spec = spec(
    "one changed record pulled by a converged peer: round",
    "ms",
    Some(AtMost(50.0)),
    Some(AtMost(10.0)),
);
pub const ONE_CHANGE_BYTES: Spec = spec(
    "one changed record pulled by a converged peer: bytes pulled",
    "B",
    None,
    None,
);
pub const NOOP_REQUESTS: Spec = spec(
    "no-op sync between converged nodes: requests per direction",
    "requests",
    Some(AtMost(1.0)),
    Some(AtMost(1.0)),
);
pub const NOOP_BYTES: Spec = spec(
    "no-op sync between converged nodes: bytes both ways",
    "B",
    Some(AtMost(2_048.0)),
    Some(AtMost(2_048.0)),
);
pub const NOOP_TIME: Spec = spec(
    "no-op sync between converged nodes: round",
    "ms",
    None,
    Some(AtMost(5.0)),
);
pub const VISIBILITY_P95: Spec = spec(
    "write at A visible in a list at B, continuous sync: p95",
    "ms",
    Some(AtMost(500.0)),
    Some(AtMost(100.0)),
);
pub const RSS: Spec = spec(
    "node memory (peak RSS) serving the data set under load",
    "MB",
    Some(AtMost(400.0)),
    Some(AtMost(200.0)),
);
pub const STARTUP: Spec = spec(
    "start-up to ready (/healthz 200)",
    "s",
    Some(AtMost(3.0)),
    Some(AtMost(1.0)),
);
pub const IMPORT_RATE: Spec = spec(
    "bulk import of clients from CSV",
    "rows/s",
    Some(AtLeast(10_000.0)),
    Some(AtLeast(30_000.0)),
);

/// Every figure a full run reports, in table order.
pub const ALL: &[Spec] = &[
    INPROCESS_LIMIT,
    CREATE_RATE,
    CREATE_P99,
    GET_RATE,
    LIST_P99,
    SEARCH_P99,
    FIRST_SYNC,
    ONE_CHANGE_TIME,
    ONE_CHANGE_BYTES,
    NOOP_REQUESTS,
    NOOP_BYTES,
    NOOP_TIME,
    VISIBILITY_P95,
    RSS,
    STARTUP,
    IMPORT_RATE,
];

/// How a measured value compares with its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    MeetsGoal,
    MeetsMust,
    /// Misses the "must reach" target.
    Misses,
    /// No "must reach" target, and the goal is not met.
    BelowGoal,
    NoTarget,
    /// The figure could not be measured.
    Failed,
}

impl Verdict {
    pub fn show(self) -> &'static str {
        match self {
            Verdict::MeetsGoal => "meets goal",
            Verdict::MeetsMust => "meets must",
            Verdict::Misses => "MISSES",
            Verdict::BelowGoal => "below goal",
            Verdict::NoTarget => "—",
            Verdict::Failed => "FAILED",
        }
    }
}

/// One row of the results: a figure at a data-set size.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub spec: Spec,
    /// Records in the data set; `None` for figures that do not depend on it.
    pub size: Option<u64>,
    /// `None` when the figure could not be measured (`note` says why).
    pub value: Option<f64>,
    /// The value as a share of the limit measured in the same run.
    pub ratio: Option<f64>,
    pub note: String,
}

impl Measurement {
    pub fn new(spec: Spec, size: Option<u64>, value: f64) -> Measurement {
        Measurement {
            spec,
            size,
            value: Some(value),
            ratio: None,
            note: String::new(),
        }
    }

    pub fn failed(spec: Spec, size: Option<u64>, why: String) -> Measurement {
        Measurement {
            spec,
            size,
            value: None,
            ratio: None,
            note: why,
        }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Measurement {
        self.note = note.into();
        self
    }

    pub fn with_ratio(mut self, ratio: Option<f64>) -> Measurement {
        self.ratio = ratio;
        self
    }

    pub fn verdict(&self) -> Verdict {
        let Some(value) = self.value else {
            return Verdict::Failed;
        };
        let share_ok = match self.spec.goal_share_of_limit {
            Some(share) => self.ratio.is_some_and(|r| r >= share),
            None => true,
        };
        let must_ok = self.spec.must.map(|b| b.holds(value));
        let goal_ok = self.spec.goal.map(|b| b.holds(value) && share_ok);
        match (must_ok, goal_ok) {
            (Some(false), _) => Verdict::Misses,
            (_, Some(true)) => Verdict::MeetsGoal,
            (Some(true), _) => Verdict::MeetsMust,
            (None, Some(false)) => Verdict::BelowGoal,
            (None, None) => Verdict::NoTarget,
        }
    }

    /// The goal as shown in the table, with its share of the limit.
    pub fn goal_text(&self) -> String {
        let goal = self.spec.goal.map(Bound::show);
        let share = self
            .spec
            .goal_share_of_limit
            .map(|s| format!("≥ {:.0}% of limit", s * 100.0));
        match (goal, share) {
            (Some(g), Some(s)) => format!("{g} and {s}"),
            (Some(g), None) => g,
            (None, Some(s)) => s,
            (None, None) => "—".to_owned(),
        }
    }
}

/// A number for people: thousands separated by commas above 1,000, a few
/// significant decimals below.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let abs = value.abs();
    if abs >= 1_000.0 {
        let rounded = value.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if rounded < 0 {
            out.insert(0, '-');
        }
        out
    } else if abs >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if abs >= 10.0 {
        format!("{value:.1}")
    } else if abs >= 0.1 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(1_234_567.4), "1,234,567");
        assert_eq!(number(3_000.0), "3,000");
        assert_eq!(number(999.6), "1000");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.4567), "0.46");
        assert_eq!(number(0.0123), "0.012");
    }

    #[test]
    fn verdicts_follow_targets() {
        let at = |spec: Spec, v: f64, ratio: Option<f64>| {
            Measurement::new(spec, None, v).with_ratio(ratio).verdict()
        };
        assert_eq!(at(LIST_P99, 5.0, None), Verdict::MeetsGoal);
        assert_eq!(at(LIST_P99, 20.0, None), Verdict::MeetsMust);
        assert_eq!(at(LIST_P99, 31.0, None), Verdict::Misses);
        assert_eq!(at(CREATE_RATE, 6_000.0, Some(0.8)), Verdict::MeetsGoal);
        assert_eq!(at(CREATE_RATE, 6_000.0, Some(0.5)), Verdict::MeetsMust);
        assert_eq!(at(CREATE_RATE, 6_000.0, None), Verdict::MeetsMust);
        assert_eq!(at(NOOP_TIME, 9.0, None), Verdict::BelowGoal);
        assert_eq!(at(ONE_CHANGE_BYTES, 900.0, None), Verdict::NoTarget);
        let failed = Measurement::failed(GET_RATE, Some(10), "no node".into());
        assert_eq!(failed.verdict(), Verdict::Failed);
        assert_eq!(failed.goal_text(), "≥ 30,000");
        assert_eq!(
            Measurement::new(CREATE_RATE, None, 1.0).goal_text(),
            "≥ 5,000 and ≥ 75% of limit"
        );
    }
}
