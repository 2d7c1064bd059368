//! What requests did and how they were judged: the operations, the
//! outcomes (documented errors apart from failures), and the tally that
//! counts them and keeps the first failures for the report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::Rng;

/// What one request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Hit,
    Miss,
    Range,
    RangeMiss,
    Uncacheable,
    Head,
    Post,
    Purge,
}

impl Op {
    pub const ALL: [Op; 8] = [
        Op::Hit,
        Op::Miss,
        Op::Range,
        Op::RangeMiss,
        Op::Uncacheable,
        Op::Head,
        Op::Post,
        Op::Purge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Hit => "hot",
            Op::Miss => "miss",
            Op::Range => "range",
            Op::RangeMiss => "rng-miss",
            Op::Uncacheable => "nocache",
            Op::Head => "head",
            Op::Post => "post",
            Op::Purge => "purge",
        }
    }

    pub fn pick(rng: &mut Rng) -> Op {
        const WEIGHTS: [(Op, u64); 8] = [
            (Op::Hit, 46),
            (Op::Miss, 10),
            (Op::Range, 16),
            (Op::RangeMiss, 4),
            (Op::Uncacheable, 8),
            (Op::Head, 3),
            (Op::Post, 8),
            (Op::Purge, 2),
        ];
        let mut roll = rng.below(WEIGHTS.iter().map(|(_, w)| w).sum());
        for (op, weight) in WEIGHTS {
            if roll < weight {
                return op;
            }
            roll -= weight;
        }
        Op::Hit
    }
}

/// How a response was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    /// Correct, but a version older than a hard purge that completed before
    /// the request was sent (a fill in flight across the purge).
    OkOlderThanPurge,
    /// The origin's own injected 500/503, passed on.
    OriginError,
    Edge502,
    Edge503,
    Edge504,
    /// A correct prefix, then the connection closed: the origin cut it off.
    Truncated,
    /// The connection closed before any response head, while the origin
    /// failed an exchange for the same path.
    ClosedBeforeHead,
    /// `only-if-cached` on an object not in the cache (final re-read).
    NotCached,
    // Failures from here on.
    WrongBody,
    /// A complete-looking body shorter than the object.
    ShortComplete,
    /// Cut-off bytes that are not a prefix of the object.
    BadPrefix,
    WrongRange,
    WrongStatus,
    /// A hit on an object held whole (no origin involved) cut off.
    TruncatedHit,
    /// Cut off, though the origin failed nothing for it meanwhile.
    UnexplainedCut,
    NoHead,
    ConnectFailed,
    Hang,
    PurgeRefused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::OkOlderThanPurge => "ok_older_than_purge",
            Outcome::OriginError => "origin_5xx_passed",
            Outcome::Edge502 => "edge_502",
            Outcome::Edge503 => "edge_503",
            Outcome::Edge504 => "edge_504",
            Outcome::Truncated => "truncated_signalled",
            Outcome::ClosedBeforeHead => "closed_before_head",
            Outcome::NotCached => "not_cached",
            Outcome::WrongBody => "FAIL wrong_body",
            Outcome::ShortComplete => "FAIL short_complete",
            Outcome::BadPrefix => "FAIL bad_prefix",
            Outcome::WrongRange => "FAIL wrong_range",
            Outcome::WrongStatus => "FAIL wrong_status",
            Outcome::TruncatedHit => "FAIL truncated_hit",
            Outcome::UnexplainedCut => "FAIL unexplained_cut",
            Outcome::NoHead => "FAIL no_response_head",
            Outcome::ConnectFailed => "FAIL connect",
            Outcome::Hang => "FAIL hang",
            Outcome::PurgeRefused => "FAIL purge_refused",
        }
    }

    pub fn is_failure(self) -> bool {
        self >= Outcome::WrongBody
    }
}

pub type Verdict = (Outcome, String);

pub fn ok() -> Verdict {
    (Outcome::Ok, String::new())
}

/// Counts by outcome and operation, cache statuses of correct answers,
/// and the first failures in full.
#[derive(Debug, Default)]
pub struct Tally {
    pub counts: Mutex<BTreeMap<(Outcome, Op), u64>>,
    x_cache: Mutex<BTreeMap<String, u64>>,
    pub failures: Mutex<Vec<String>>,
    /// The first answers older than a purge, in full.
    pub notes: Mutex<Vec<String>>,
    pub failed: AtomicU64,
}

impl Tally {
    pub fn record(&self, op: Op, path: &str, verdict: Verdict, x_cache: &str) {
        let (outcome, detail) = verdict;
        *self
            .counts
            .lock()
            .expect("tally lock")
            .entry((outcome, op))
            .or_default() += 1;
        if outcome == Outcome::Ok {
            *self
                .x_cache
                .lock()
                .expect("tally lock")
                .entry(x_cache.to_owned())
                .or_default() += 1;
        }
        if outcome == Outcome::OkOlderThanPurge {
            let mut notes = self.notes.lock().expect("tally lock");
            if notes.len() < 10 {
                notes.push(format!(
                    "{} {path}: x-cache {x_cache}, {detail}",
                    op.as_str()
                ));
            }
        }
        if outcome.is_failure() {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut failures = self.failures.lock().expect("tally lock");
            if failures.len() < 40 {
                failures.push(format!(
                    "{} {} {} {path}: {detail}",
                    utc_now(),
                    outcome.as_str(),
                    op.as_str()
                ));
            }
        }
    }
}

impl Tally {
    /// Outcomes, and the X-Cache of the correct answers, on one line.
    pub fn brief(&self) -> String {
        let counts = self.counts.lock().expect("tally lock");
        let mut by_outcome: BTreeMap<Outcome, u64> = BTreeMap::new();
        for ((outcome, _), n) in counts.iter() {
            *by_outcome.entry(*outcome).or_default() += n;
        }
        let outcomes: Vec<String> = by_outcome
            .iter()
            .map(|(o, n)| format!("{} {n}", o.as_str()))
            .collect();
        let mut statuses: BTreeMap<&str, u64> = BTreeMap::new();
        let x_cache = self.x_cache.lock().expect("tally lock");
        for (key, n) in x_cache.iter() {
            *statuses
                .entry(key.split('|').next().unwrap_or("-"))
                .or_default() += n;
        }
        format!("{} (correct by X-Cache: {statuses:?})", outcomes.join(", "))
    }
}

/// The time of day (UTC, as the edge's log has it), to find a failure there.
fn utc_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, millis) = (now.as_secs() % 86_400, now.subsec_millis());
    format!(
        "{:02}:{:02}:{:02}.{millis:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Requests by outcome (rows) and operation (columns).
pub fn print_outcomes(counts: &BTreeMap<(Outcome, Op), u64>) {
    print!("{:<24}{:>9}", "outcome", "total");
    for op in Op::ALL {
        print!("{:>9}", op.as_str());
    }
    println!();
    let outcomes: BTreeSet<Outcome> = counts.keys().map(|(o, _)| *o).collect();
    for outcome in outcomes {
        let row: Vec<u64> = Op::ALL
            .iter()
            .map(|op| counts.get(&(outcome, *op)).copied().unwrap_or(0))
            .collect();
        print!("{:<24}{:>9}", outcome.as_str(), row.iter().sum::<u64>());
        for n in row {
            print!("{n:>9}");
        }
        println!();
    }
}
