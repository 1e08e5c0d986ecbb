//! What the scenarios see as they run, kept for `--plot` (drawn by `crate::plot`): the
//! progress of every wait on the receiver and latency samples.

use std::sync::Mutex;

/// (label, (seconds since the wait began, requests answered so far)) per wait.
pub type Progress = (String, Vec<(f64, u64)>);

static PROGRESS: Mutex<Vec<Progress>> = Mutex::new(Vec::new());
static LATENCIES: Mutex<Vec<Latencies>> = Mutex::new(Vec::new());

/// Keeps one wait's progress for the charts.
pub fn record_progress(label: &str, seen: Vec<(f64, u64)>) {
    if let Ok(mut all) = PROGRESS.lock() {
        all.push((label.trim().to_owned(), seen));
    }
}

/// Keeps latency samples (ns) for the charts.
pub fn record_latencies(label: &str, samples_ns: &[u64]) {
    if let Ok(mut all) = LATENCIES.lock() {
        all.push((label.to_owned(), samples_ns.to_vec()));
    }
}

/// (label, samples in ns) per series.
pub type Latencies = (String, Vec<u64>);

/// What was recorded since the last call, forgotten here.
pub fn take() -> Result<(Vec<Progress>, Vec<Latencies>), String> {
    let progress = std::mem::take(&mut *PROGRESS.lock().map_err(|e| e.to_string())?);
    let latencies = std::mem::take(&mut *LATENCIES.lock().map_err(|e| e.to_string())?);
    Ok((progress, latencies))
}
