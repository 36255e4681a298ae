//! Medians and percentiles of timed samples.

use std::time::Duration;

use serde_json::{Value, json};

/// A summary of samples, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub median_us: f64,
    pub p99_us: f64,
    pub min_us: f64,
}

impl Summary {
    /// Summarises `samples` (at least one).
    pub fn of(samples: &[Duration]) -> Summary {
        let mut micros: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        micros.sort_by(f64::total_cmp);
        let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize];
        Summary {
            n: micros.len(),
            median_us: at(0.5),
            p99_us: at(0.99),
            min_us: micros[0],
        }
    }

    /// From the peer's JSON (`{n, median_us, p99_us, min_us}`).
    pub fn from_json(value: &Value) -> Option<Summary> {
        Some(Summary {
            n: value["n"].as_u64()? as usize,
            median_us: value["median_us"].as_f64()?,
            p99_us: value["p99_us"].as_f64()?,
            min_us: value["min_us"].as_f64()?,
        })
    }

    pub fn to_json(self) -> Value {
        json!({"n": self.n, "median_us": self.median_us, "p99_us": self.p99_us, "min_us": self.min_us})
    }
}

/// A duration for people: µs, ms or s.
pub fn human(micros: f64) -> String {
    if micros < 1_000.0 {
        format!("{micros:.1} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1_000.0)
    } else {
        format!("{:.2} s", micros / 1_000_000.0)
    }
}
