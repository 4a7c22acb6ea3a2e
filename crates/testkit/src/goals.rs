//! Goals a measurement run is judged by: a figure, the bound it must meet and the verdict,
//! PASS or MISS, so a run that misses a goal says so (and its caller can exit non-zero)
//! instead of printing a target beside a number.
//!
//! What the goals are, and how a run measures them, is the run's business (`benches/`).

use serde::Serialize;

/// The bound a figure must meet.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Verdict {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "MISS")]
    Miss,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pass => "PASS",
            Self::Miss => "MISS",
        })
    }
}

/// One goal, judged.
#[derive(Clone, Debug, Serialize)]
pub struct Goal {
    /// A short stable name (`accept_ratio`): the column of a results table.
    pub key: &'static str,
    /// What is measured, for people.
    pub name: String,
    /// The measured figure; NaN when it could not be measured (a miss).
    pub figure: f64,
    pub bound: Bound,
    /// Printed after the figure and the bound (`ms`, `%`; empty for a ratio).
    pub unit: &'static str,
    /// Decimals the figure and bound are printed with.
    pub decimals: usize,
    pub verdict: Verdict,
}

impl Goal {
    pub fn new(key: &'static str, name: impl Into<String>, figure: f64, bound: Bound) -> Self {
        Self {
            key,
            name: name.into(),
            figure,
            bound,
            unit: "",
            decimals: 2,
            verdict: judge(figure, bound),
        }
    }

    /// The same goal printed with `unit` and `decimals`.
    pub fn shown(mut self, unit: &'static str, decimals: usize) -> Self {
        self.unit = unit;
        self.decimals = decimals;
        self
    }

    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
    }

    /// The figure with its unit (`30.0 ms`); `—` when not measured.
    pub fn figure_text(&self) -> String {
        if self.figure.is_nan() {
            return "—".into();
        }
        self.with_unit(self.figure)
    }

    /// The bound (`≤ 50.0 ms`).
    pub fn target_text(&self) -> String {
        match self.bound {
            Bound::AtLeast(b) => format!("≥ {}", self.with_unit(b)),
            Bound::AtMost(b) => format!("≤ {}", self.with_unit(b)),
        }
    }

    fn with_unit(&self, v: f64) -> String {
        let n = format!("{v:.*}", self.decimals);
        match self.unit {
            "" => n,
            "%" => format!("{n} %"),
            u => format!("{n} {u}"),
        }
    }
}

/// Whether `figure` meets `bound`. A figure that could not be measured (NaN) misses.
pub fn judge(figure: f64, bound: Bound) -> Verdict {
    let met = match bound {
        Bound::AtLeast(b) => figure >= b,
        Bound::AtMost(b) => figure <= b,
    };
    if met { Verdict::Pass } else { Verdict::Miss }
}

/// How many of `goals` were missed.
pub fn missed(goals: &[Goal]) -> usize {
    goals.iter().filter(|g| !g.passed()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_on_the_right_side_of_its_bound_passes_and_on_the_other_misses() {
        assert_eq!(judge(0.5, Bound::AtLeast(0.5)), Verdict::Pass);
        assert_eq!(judge(0.12, Bound::AtLeast(0.5)), Verdict::Miss);
        assert_eq!(judge(50.0, Bound::AtMost(50.0)), Verdict::Pass);
        assert_eq!(judge(50.1, Bound::AtMost(50.0)), Verdict::Miss);
        assert_eq!(judge(0.0, Bound::AtMost(0.0)), Verdict::Pass);
    }

    #[test]
    fn a_figure_that_was_not_measured_misses_either_way() {
        assert_eq!(judge(f64::NAN, Bound::AtLeast(0.5)), Verdict::Miss);
        assert_eq!(judge(f64::NAN, Bound::AtMost(50.0)), Verdict::Miss);
        // An infinite latency (a contact never delivered) misses an upper bound.
        assert_eq!(judge(f64::INFINITY, Bound::AtMost(200.0)), Verdict::Miss);
    }

    #[test]
    fn missed_counts_the_misses_and_figures_print_with_their_units() {
        let goals = [
            Goal::new("p50", "p50", 30.04, Bound::AtMost(50.0)).shown("ms", 1),
            Goal::new("fill", "fill", 83.0, Bound::AtLeast(95.0)).shown("%", 0),
            Goal::new("ratio", "ratio", f64::NAN, Bound::AtLeast(0.5)),
        ];
        assert_eq!(missed(&goals), 2);
        assert_eq!(goals[0].figure_text(), "30.0 ms");
        assert_eq!(goals[0].target_text(), "≤ 50.0 ms");
        assert_eq!(goals[1].figure_text(), "83 %");
        assert_eq!(goals[2].figure_text(), "—");
        assert_eq!(goals[2].target_text(), "≥ 0.50");
    }
}
