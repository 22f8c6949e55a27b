//! Progress of the command line's long runs (`pools load`, `bench`), always
//! on stderr so that stdout stays the result a script reads. On a terminal
//! a bar or spinner redrawn in place; anywhere else (a pipe, a log file,
//! CI) one plain line per step and no escape codes.
//!
//! The binary's own module: the library prints nothing.

use std::{
    io::IsTerminal,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressState, ProgressStyle, style::TemplateError};

/// How often a terminal bar is redrawn, from indicatif's own thread: live
/// enough to read, rare enough to cost nothing next to a benchmark, and
/// drawn even while this thread blocks (redis-benchmark runs synchronously).
const REDRAW: Duration = Duration::from_millis(200);

/// A bar drawn on stderr in `style`, or none when stderr is not a
/// terminal. The templates are this file's (a test parses them); were one
/// bad, the command would print plain lines rather than fail.
fn terminal_bar(
    len: Option<u64>,
    style: impl FnOnce() -> Result<ProgressStyle, TemplateError>,
) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match len {
        Some(len) => ProgressBar::new(len),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(style().ok()?);
    bar.enable_steady_tick(REDRAW);
    Some(bar)
}

/// The bar of [`FileProgress`].
fn files_style() -> Result<ProgressStyle, TemplateError> {
    let template = "{prefix:>8} [{bar:30}] {pos}/{len} files  {msg}  {elapsed} (ETA {eta})";
    Ok(ProgressStyle::with_template(template)?.progress_chars("=> "))
}

/// The spinner of a [`Phase`]: `of` the planned time, and the count of
/// `ops` if the phase counts.
fn phase_style(of: &str, ops: Option<Arc<AtomicU64>>) -> Result<ProgressStyle, TemplateError> {
    let count = if ops.is_some() { "  {ops} ops" } else { "" };
    let style =
        ProgressStyle::with_template(&format!("{{spinner}} {{msg}}  {{elapsed}}{of}{count}"))?;
    Ok(match ops {
        Some(ops) => style.with_key(
            "ops",
            move |_: &ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = write!(out, "{}", ops.load(Ordering::Relaxed));
            },
        ),
        None => style,
    })
}

// === impl FileProgress ===

/// Files of one batch (`pools load`), each holding one pool: a bar of
/// files done, pools and bins so far, the current file and elapsed/ETA; or
/// a line per file.
pub struct FileProgress {
    bar: Option<ProgressBar>,
    total: usize,
    /// Files done in this pass.
    done: usize,
    /// Pools written, and their bins.
    pools: usize,
    bins: u64,
    started: Instant,
}

impl FileProgress {
    /// A batch of `total` files.
    pub fn new(total: usize) -> Self {
        let bar = terminal_bar(Some(total as u64), files_style);
        FileProgress {
            bar,
            total,
            done: 0,
            pools: 0,
            bins: 0,
            started: Instant::now(),
        }
    }

    /// Starts over at 0 files for the next pass over the same files:
    /// "checking" every file before "writing" any.
    pub fn pass(&mut self, name: &'static str) {
        self.done = 0;
        if let Some(bar) = &self.bar {
            bar.set_prefix(name);
            // Elapsed and ETA of this pass, not of the one before.
            bar.reset();
        }
    }

    /// `path` is being worked on (a terminal shows it).
    pub fn current(&self, path: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(match self.pools {
                0 => path.to_string(),
                pools => format!("{pools} pools, {} bins  {path}", self.bins),
            });
        }
    }

    /// A file was checked (a terminal counts it; no line, the writes say
    /// what happened).
    pub fn checked(&mut self) {
        self.done += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// `path` was written: `what` says how (`pool A, 11 bins`).
    pub fn loaded(&mut self, path: &str, what: &str, bins: u64) {
        self.done += 1;
        self.pools += 1;
        self.bins += bins;
        match &self.bar {
            Some(bar) => bar.inc(1),
            None => eprintln!("loaded {}/{} {path}: {what}", self.done, self.total),
        }
    }

    /// Prints `line` on stdout, lifting the bar off a terminal they share.
    pub fn print(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    /// The summary line, on a terminal in place of the bar.
    pub fn finish(self) {
        let line = format!(
            "loaded {} files: {} pools, {} bins in {:.1}s",
            self.total,
            self.pools,
            self.bins,
            self.started.elapsed().as_secs_f64()
        );
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!("{line}");
    }
}

// === impl Phase ===

/// One phase of a benchmark, announced as it starts: on a terminal a
/// spinner with the elapsed time against the planned time and, for a
/// counting phase, the operations completed so far.
pub struct Phase {
    name: String,
    bar: Option<ProgressBar>,
    /// Completed operations, when the phase counts them: one relaxed add
    /// per operation, read only by the redraw.
    ops: Option<Arc<AtomicU64>>,
    started: Instant,
}

impl Phase {
    /// A phase whose operations are not counted here (redis-benchmark,
    /// setup), `planned` long if known.
    pub fn start(name: impl Into<String>, planned: Option<Duration>) -> Self {
        Self::new(name.into(), planned, None)
    }

    /// A phase counting its operations through [`Phase::ops`].
    pub fn counting(name: impl Into<String>, planned: Option<Duration>) -> Self {
        Self::new(name.into(), planned, Some(Arc::default()))
    }

    fn new(name: String, planned: Option<Duration>, ops: Option<Arc<AtomicU64>>) -> Self {
        let of = planned.map_or_else(String::new, |p| format!(" of {}s", p.as_secs()));
        let bar = terminal_bar(None, || phase_style(&of, ops.clone()));
        match &bar {
            Some(bar) => bar.set_message(name.clone()),
            None => eprintln!("bench: {name}{of}..."),
        }
        Phase {
            name,
            bar,
            ops,
            started: Instant::now(),
        }
    }

    /// The counter this phase shows (a fresh one nobody reads if the phase
    /// was started without counting).
    pub fn ops(&self) -> Arc<AtomicU64> {
        self.ops.clone().unwrap_or_default()
    }

    /// Ends the phase with one line saying how long it took (and how many
    /// operations), in place of the spinner on a terminal.
    pub fn finish(self) {
        let ops = self.ops.as_ref().map_or_else(String::new, |ops| {
            format!(", {} ops", ops.load(Ordering::Relaxed))
        });
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!(
            "bench: {}: done in {:.1}s{ops}",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_parse() {
        assert!(files_style().is_ok());
        assert!(phase_style(" of 10s", None).is_ok());
        assert!(phase_style(" of 10s", Some(Arc::default())).is_ok());
        // The check can fail: a broken template is an error.
        assert!(ProgressStyle::with_template("{bar:30x}").is_err());
    }
}
