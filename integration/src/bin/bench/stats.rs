//! Medians and percentiles of measured values.

use std::time::Duration;

/// Returns the median of `values`, the mean of the two middle ones for an
/// even count, or `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let sorted = sorted(values);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// Returns the nearest-rank percentile `p` (0 < p <= 100) of `samples`, in
/// microseconds.
pub fn percentile_micros(samples: &[Duration], p: f64) -> Option<f64> {
    let micros: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    let sorted = sorted(&micros);
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_count() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    }

    #[test]
    fn median_even_count() {
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn median_empty() {
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn percentile_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile_micros(&samples, 50.0), Some(50.0));
        assert_eq!(percentile_micros(&samples, 99.0), Some(99.0));
        assert_eq!(percentile_micros(&samples, 100.0), Some(100.0));
    }

    #[test]
    fn percentile_single_sample() {
        let samples = [Duration::from_micros(7)];
        assert_eq!(percentile_micros(&samples, 1.0), Some(7.0));
        assert_eq!(percentile_micros(&samples, 99.0), Some(7.0));
    }
}
