//! Measured values, grouped by metric and path.

use std::collections::BTreeMap;

use crate::paths::NetworkPath;
use crate::stats::median;

/// The quantity one row of a results table shows.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// A stable identifier that the target checks look rows up by.
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
}

/// The values of one path for one metric: one per successful run, and the
/// reason the path has no value (or fewer than planned), if any.
#[derive(Clone, Debug, Default)]
pub struct Cell {
    pub values: Vec<f64>,
    pub missing: Option<String>,
}

impl Cell {
    pub fn missing(reason: impl Into<String>) -> Self {
        Self {
            values: Vec::new(),
            missing: Some(reason.into()),
        }
    }

    /// Returns the median of the runs, or `None` when any run failed, so a
    /// partial set never passes for a full one.
    pub fn median(&self) -> Option<f64> {
        if self.missing.is_some() {
            return None;
        }
        median(&self.values)
    }
}

/// One metric measured on several paths.
#[derive(Clone, Debug)]
pub struct Row {
    pub metric: Metric,
    pub cells: BTreeMap<NetworkPath, Cell>,
}

impl Row {
    pub fn new(metric: Metric) -> Self {
        Self {
            metric,
            cells: BTreeMap::new(),
        }
    }

    pub fn median(&self, path: NetworkPath) -> Option<f64> {
        self.cells.get(&path).and_then(Cell::median)
    }

    /// Returns the median of `path` divided by the median of the direct path.
    pub fn ratio_to_direct(&self, path: NetworkPath) -> Option<f64> {
        let direct = self.median(NetworkPath::Direct)?;
        let value = self.median(path)?;
        (direct != 0.0).then(|| value / direct)
    }
}

/// Every row of one suite run, in the order they were measured.
#[derive(Default)]
pub struct Results {
    pub rows: Vec<Row>,
    /// Observations the tables cannot show, such as lost queries or socket
    /// errors, one sentence each.
    pub notes: Vec<String>,
}

impl Results {
    pub fn row(&self, key: &str) -> Option<&Row> {
        self.rows.iter().find(|row| row.metric.key == key)
    }

    /// Returns the median of the netjail cell of row `key`.
    pub fn netjail(&self, key: &str) -> Option<f64> {
        self.row(key)?.median(NetworkPath::Netjail)
    }
}
