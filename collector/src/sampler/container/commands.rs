//! A container's processes that ended, grouped by command name.

use std::collections::HashMap;

/// Processes of one command name.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct CommandAgg {
    pub(crate) processes: u64,
    pub(crate) cpu_seconds: f64,
    pub(crate) peak_rss: u64,
    pub(crate) longest_seconds: f64,
}

impl CommandAgg {
    pub(crate) fn add(&mut self, processes: u64, cpu_seconds: f64, rss: u64, lifetime: f64) {
        self.processes += processes;
        self.cpu_seconds += cpu_seconds;
        self.peak_rss = self.peak_rss.max(rss);
        self.longest_seconds = self.longest_seconds.max(lifetime);
    }
}

/// Most command names kept per container: a job that runs thousands of differently named
/// scripts keeps the ones with the most CPU.
const MAX_COMMANDS: usize = 1024;

/// A container's ended processes by command name.
#[derive(Debug, Default)]
pub(crate) struct Commands(HashMap<String, CommandAgg>);

impl Commands {
    /// Counts one more process of `name` (or, with `processes` 0, corrects the CPU of one
    /// already counted).
    pub(crate) fn count(
        &mut self,
        name: &str,
        processes: u64,
        cpu_seconds: f64,
        rss: u64,
        lifetime: f64,
    ) {
        if !self.0.contains_key(name) && self.0.len() >= MAX_COMMANDS {
            let mut by_cpu: Vec<(String, f64)> = self
                .0
                .iter()
                .map(|(n, c)| (n.clone(), c.cpu_seconds))
                .collect();
            by_cpu.sort_by(|a, b| b.1.total_cmp(&a.1));
            for (n, _) in by_cpu.into_iter().skip(MAX_COMMANDS / 2) {
                self.0.remove(&n);
            }
        }
        self.0
            .entry(name.to_owned())
            .or_default()
            .add(processes, cpu_seconds, rss, lifetime);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &CommandAgg)> {
        self.0.iter()
    }
}
