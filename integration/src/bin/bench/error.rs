//! One error type for the suite: a message with the context of what failed.

use std::fmt::{self, Display};

/// An error message, with the steps that led to it joined by ": ".
#[derive(Debug)]
pub struct BenchError(String);

pub type Result<T> = std::result::Result<T, BenchError>;

impl BenchError {
    pub fn new(message: impl Display) -> Self {
        Self(message.to_string())
    }
}

impl Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// BenchError itself does not implement std::error::Error, so this blanket
// conversion does not overlap with `From<T> for T`.
impl<E: std::error::Error> From<E> for BenchError {
    fn from(err: E) -> Self {
        Self(err.to_string())
    }
}

/// Adds what the suite was doing to an error, as anyhow's `Context` does.
pub trait Context<T> {
    fn context(self, what: impl Display) -> Result<T>;
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Display) -> Result<T> {
        self.map_err(|err| BenchError(format!("{what}: {err}")))
    }

    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|err| BenchError(format!("{}: {err}", what())))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Display) -> Result<T> {
        self.ok_or_else(|| BenchError(what.to_string()))
    }

    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.ok_or_else(|| BenchError(what().to_string()))
    }
}

/// Returns early with a [`BenchError`] built from a format string.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::BenchError::new(format!($($arg)*)))
    };
}

pub(crate) use bail;
