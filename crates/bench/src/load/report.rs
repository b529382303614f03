//! The figures of a run: throughput and latency percentiles of each
//! scenario, read against the baseline measured in the same run, printed as
//! one Markdown table and written as JSON.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, from 1 µs to 60 s, with three
/// significant digits.
pub fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 60_000_000, 3) {
        Ok(histogram) => histogram,
        Err(error) => unreachable!("constant histogram bounds are valid: {error}"),
    }
}

/// What one phase of a scenario measured.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Latency of each call (or streamed message), in microseconds.
    pub latency: Histogram<u64>,
    /// Units of work done (events, decisions, lookups, journeys).
    pub items: u64,
    /// Calls (or streamed messages) that succeeded.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// The measured window.
    pub elapsed: Duration,
    /// The first failure, to say why.
    pub first_error: Option<String>,
}

impl Measurement {
    /// An empty measurement.
    pub fn new() -> Self {
        Self {
            latency: histogram(),
            items: 0,
            calls: 0,
            failures: 0,
            elapsed: Duration::ZERO,
            first_error: None,
        }
    }

    /// Adds another worker's counts to this one.
    pub fn absorb(&mut self, other: &Measurement) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.items += other.items;
        self.calls += other.calls;
        self.failures += other.failures;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// Records one call that took `latency` and did `items` units of work.
    pub fn success(&mut self, latency: Duration, items: u64) {
        self.latency
            .saturating_record(latency.as_micros().max(1) as u64);
        self.calls += 1;
        self.items += items;
    }

    /// Records one failed call.
    pub fn failure(&mut self, error: impl std::fmt::Display) {
        self.failures += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
    }

    fn per_second(&self, count: u64) -> f64 {
        count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn millis(&self, quantile: f64) -> f64 {
        if self.latency.is_empty() {
            return 0.0;
        }
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

impl Default for Measurement {
    fn default() -> Self {
        Self::new()
    }
}

/// How a phase drove the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Closed loop: a fixed number of calls in flight, as fast as answered.
    Saturation,
    /// Open loop: calls started on a fixed schedule, latency counted from
    /// the scheduled start.
    Rate,
}

/// A target of the issue, checked against a figure.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// As written ("≥ 50,000 events/s").
    pub text: String,
    /// Whether the run met it.
    pub met: bool,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// The scenario ("decide", "resolve", "ingest (stream)").
    pub scenario: String,
    /// How it was driven.
    pub mode: Mode,
    /// The load shape in words ("4 connections × 32 in flight", "1000/s").
    pub load: String,
    /// What `items` counts ("events", "decisions").
    pub unit: String,
    /// Units of work done in the window.
    pub items: u64,
    /// Successful calls (or streamed messages).
    pub calls: u64,
    /// Failed calls.
    pub failures: u64,
    /// The window, in seconds.
    pub seconds: f64,
    /// Units of work per second.
    pub per_second: f64,
    /// Calls per second.
    pub calls_per_second: f64,
    /// Latency percentiles and maximum, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
    /// The baseline's units per second in the same mode (saturation rows),
    /// or its p99 (rate rows).
    pub baseline: Option<f64>,
    /// This figure over the baseline: throughput ratio for saturation rows,
    /// p99 ratio for rate rows.
    pub ratio: Option<f64>,
    /// The targets for this row.
    pub targets: Vec<Target>,
    /// Anything else measured (durability check, rows stored).
    pub note: String,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

impl Figure {
    /// A row from a measurement.
    pub fn new(
        scenario: impl Into<String>,
        mode: Mode,
        load: impl Into<String>,
        unit: impl Into<String>,
        measured: &Measurement,
    ) -> Self {
        Self {
            scenario: scenario.into(),
            mode,
            load: load.into(),
            unit: unit.into(),
            items: measured.items,
            calls: measured.calls,
            failures: measured.failures,
            seconds: measured.elapsed.as_secs_f64(),
            per_second: measured.per_second(measured.items),
            calls_per_second: measured.per_second(measured.calls),
            p50_ms: measured.millis(0.5),
            p90_ms: measured.millis(0.9),
            p99_ms: measured.millis(0.99),
            max_ms: if measured.latency.is_empty() {
                0.0
            } else {
                measured.latency.max() as f64 / 1000.0
            },
            baseline: None,
            ratio: None,
            targets: Vec::new(),
            note: String::new(),
            first_error: measured.first_error.clone(),
        }
    }

    /// Reads this row against `baseline` (the empty method, same mode).
    pub fn against(mut self, baseline: &Figure) -> Self {
        match self.mode {
            Mode::Saturation => {
                self.baseline = Some(baseline.per_second);
                self.ratio = Some(self.per_second / baseline.per_second.max(1e-9));
            }
            Mode::Rate => {
                self.baseline = Some(baseline.p99_ms);
                self.ratio = Some(self.p99_ms / baseline.p99_ms.max(1e-9));
            }
        }
        self
    }

    /// Adds a target and whether it was met.
    pub fn target(mut self, text: impl Into<String>, met: bool) -> Self {
        self.targets.push(Target {
            text: text.into(),
            met,
        });
        self
    }

    /// Adds a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// A whole run: the machine, the figures and free-form sections.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// CPUs the machine shows.
    pub cpus: usize,
    /// The load average when the run started (others' work on the machine).
    pub load_average_at_start: String,
    /// The options of the run.
    pub options: serde_json::Value,
    /// The rows.
    pub figures: Vec<Figure>,
    /// How cost grows with stored data.
    pub growth: Vec<GrowthPoint>,
    /// The recommendation quality benchmark's rows, as it printed them.
    pub quality: Vec<String>,
}

/// One point of the growth curve.
#[derive(Debug, Clone, Serialize)]
pub struct GrowthPoint {
    /// The scenario.
    pub scenario: String,
    /// Rows stored when it ran (profiles or touchpoints).
    pub stored: u64,
    /// Units per second.
    pub per_second: f64,
    /// 99th percentile latency, in milliseconds.
    pub p99_ms: f64,
}

fn number(value: f64) -> String {
    if value >= 100.0 {
        let whole = value.round() as u64;
        let text = whole.to_string();
        let mut grouped = String::new();
        for (i, digit) in text.chars().enumerate() {
            if i > 0 && (text.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        grouped
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

impl Report {
    /// The report as Markdown: the figures table, the growth curve and the
    /// quality rows.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "Cairn benchmark, {} ({} CPUs, load average at start {})\n\n",
            self.started_at, self.cpus, self.load_average_at_start
        ));
        out.push_str("| scenario | load | throughput | p50 ms | p90 ms | p99 ms | max ms | failed | baseline | ratio to baseline | target |\n");
        out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
        for figure in &self.figures {
            let (baseline, ratio) = match (figure.mode, figure.baseline, figure.ratio) {
                (Mode::Saturation, Some(baseline), Some(ratio)) => (
                    format!("{} calls/s", number(baseline)),
                    format!("{:.0}% of its throughput", ratio * 100.0),
                ),
                (Mode::Rate, Some(baseline), Some(ratio)) => (
                    format!("p99 {} ms", number(baseline)),
                    format!("p99 × {}", number(ratio)),
                ),
                _ => ("—".into(), "—".into()),
            };
            let targets = if figure.targets.is_empty() {
                "—".to_string()
            } else {
                figure
                    .targets
                    .iter()
                    .map(|t| format!("{} {}", t.text, if t.met { "✅" } else { "❌" }))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            out.push_str(&format!(
                "| {} | {} | {} {}/s | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                figure.scenario,
                figure.load,
                number(figure.per_second),
                figure.unit,
                number(figure.p50_ms),
                number(figure.p90_ms),
                number(figure.p99_ms),
                number(figure.max_ms),
                figure.failures,
                baseline,
                ratio,
                targets,
            ));
        }
        let notes: Vec<_> = self
            .figures
            .iter()
            .filter(|f| !f.note.is_empty() || f.first_error.is_some())
            .collect();
        if !notes.is_empty() {
            out.push('\n');
            for figure in notes {
                out.push_str(&format!(
                    "- {} ({}): {}",
                    figure.scenario, figure.load, figure.note
                ));
                if let Some(error) = &figure.first_error {
                    out.push_str(&format!(" First failure: {error}"));
                }
                out.push('\n');
            }
        }
        if !self.growth.is_empty() {
            out.push_str("\nHow cost grows with stored rows (saturation throughput, p99):\n\n");
            out.push_str("| scenario | stored rows | throughput | p99 ms | throughput vs smallest |\n|---|---|---|---|---|\n");
            for point in &self.growth {
                let first = self
                    .growth
                    .iter()
                    .find(|p| p.scenario == point.scenario)
                    .map_or(point.per_second, |p| p.per_second);
                out.push_str(&format!(
                    "| {} | {} | {}/s | {} | {:.0}% |\n",
                    point.scenario,
                    number(point.stored as f64),
                    number(point.per_second),
                    number(point.p99_ms),
                    100.0 * point.per_second / first.max(1e-9),
                ));
            }
        }
        if !self.quality.is_empty() {
            out.push_str("\nRecommendation quality (acceptance rates; the service against uniform random, popularity and the oracle):\n\n");
            for line in &self.quality {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}
