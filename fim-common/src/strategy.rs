//! The attach strategies, named once for fimd (`--strategy`), the test suites
//! (`FIM_STRATEGY`) and xtask (`--strategy`, the VM runs).
//!
//! Which of them a kernel permits is user space's business (`fim-userspace::strategy`); the
//! kernel programs only need to agree on the names, so the type lives here beside the map names.
use core::{fmt, str::FromStr};

/// How the kernel programs attach: BPF LSM hooks, fentry/fexit on VFS functions, or syscall
/// tracepoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Strategy {
    Lsm,
    Fentry,
    Tracepoint,
}

impl Strategy {
    /// In order of preference: LSM sees every resolved path and cannot be raced; tracepoints
    /// work on every kernel with BPF.
    pub const ALL: [Strategy; 3] = [Strategy::Lsm, Strategy::Fentry, Strategy::Tracepoint];

    /// The name on command lines and in logs.
    pub const fn name(self) -> &'static str {
        match self {
            Strategy::Lsm => "lsm",
            Strategy::Fentry => "fentry",
            Strategy::Tracepoint => "tracepoint",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownStrategy;

impl fmt::Display for UnknownStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown strategy: use lsm, fentry or tracepoint")
    }
}

impl FromStr for Strategy {
    type Err = UnknownStrategy;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .into_iter()
            .find(|strategy| strategy.name() == text)
            .ok_or(UnknownStrategy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for strategy in Strategy::ALL {
            assert_eq!(strategy.name().parse(), Ok(strategy));
        }
        assert_eq!("kprobe".parse::<Strategy>(), Err(UnknownStrategy));
    }
}
