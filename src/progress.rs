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

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

/// How often a terminal bar is redrawn, from indicatif's own thread: live
/// enough to read, rare enough to cost nothing next to a benchmark, and
/// drawn even while this thread blocks (redis-benchmark runs synchronously).
const REDRAW: Duration = Duration::from_millis(200);

/// A bar drawn on stderr with `template`, or none when stderr is not a
/// terminal. The templates are constants of this file, so a bad one is a
/// bug shown once as plain lines rather than a failed command.
fn terminal_bar(
    len: Option<u64>,
    style: impl FnOnce() -> Option<ProgressStyle>,
) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match len {
        Some(len) => ProgressBar::new(len),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(style()?);
    bar.enable_steady_tick(REDRAW);
    Some(bar)
}

// === impl FileProgress ===

/// Files of one batch (`pools load`), each holding one pool: a bar of
/// files done, pools and bins so far, the current file and elapsed/ETA; or
/// a line per file.
pub struct FileProgress {
    bar: Option<ProgressBar>,
    total: usize,
    done: usize,
    bins: u64,
    started: Instant,
}

impl FileProgress {
    /// A batch of `total` files.
    pub fn new(total: usize) -> Self {
        let bar = terminal_bar(Some(total as u64), || {
            ProgressStyle::with_template(
                "{prefix:>8} [{bar:30}] {pos}/{len} files  {msg}  {elapsed} (ETA {eta})",
            )
            .ok()
            .map(|s| s.progress_chars("=> "))
        });
        FileProgress {
            bar,
            total,
            done: 0,
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
            bar.set_position(0);
        }
    }

    /// `path` is being worked on (a terminal shows it).
    pub fn current(&self, path: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} bins  {path}", self.bins));
        }
    }

    /// `path` was checked (a terminal counts it; no line, the writes say
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
        self.bins += bins;
        let line = format!("loaded {}/{} {path}: {what}", self.done, self.total);
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(format!("{} bins", self.bins));
            }
            None => eprintln!("{line}"),
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
            self.done,
            self.done,
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
        let count = if ops.is_some() { "  {ops} ops" } else { "" };
        let counter = ops.clone();
        let bar = terminal_bar(None, || {
            let style = ProgressStyle::with_template(&format!(
                "{{spinner}} {{msg}}  {{elapsed}}{of}{count}"
            ))
            .ok()?;
            Some(match counter {
                Some(ops) => style.with_key(
                    "ops",
                    move |_: &ProgressState, out: &mut dyn std::fmt::Write| {
                        let _ = write!(out, "{}", ops.load(Ordering::Relaxed));
                    },
                ),
                None => style,
            })
        });
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
