//! Summary validation and merging on fuzzed JSON (`summary`): the input is read as a push
//! body (`MetricsPush`), as one `RunSummary`, and as a pair `[earlier, later]`.
//!
//! - Parsing, `validate_at()` (on a fixed clock), histogram decoding and `merge_runs` never panic.
//! - A summary that validates survives a JSON round trip unchanged and still validates.
//! - Its histograms decode or fail cleanly; decoded statistics are finite and non-negative.
//! - `merge_runs` of two valid summaries (the earlier starting no later than the later
//!   ends, at most 31 days in all, as two pieces of one valid run) validates, starts with the earlier, ends with the
//!   later, and adds up the sample counts (saturating).
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use summary::{
    Accumulator, MetricsPush, RunSummary, merge::merge_runs, time::parse_rfc3339_nanos,
    validate::MAX_DURATION_SECONDS,
};

/// The receiver's clock for validation (2027-01-01), so that verdicts do not change with
/// the day the fuzzer runs.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_798_761_600)
}

fn check_valid(s: &RunSummary) {
    let json = serde_json::to_string(s).unwrap();
    let back: RunSummary = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, s, "JSON round trip changed the summary: {json}");
    back.validate_at(now()).unwrap();
    let all = s
        .histograms
        .iter()
        .chain(s.containers.iter().filter_map(|c| c.histograms.as_ref()));
    for h in all.flat_map(|h| h.values()).take(8) {
        if let Ok(acc) = Accumulator::decode(h) {
            let st = acc.stats();
            for v in [st.peak, st.p99, st.p95, st.p75, st.p50, st.avg] {
                assert!(v.is_finite() && v >= 0.0, "{st:?} from {h:?}");
            }
            let again = Accumulator::decode(&acc.encode()).expect("an encoded histogram decodes");
            assert_eq!(again.sample_count(), acc.sample_count());
        }
    }
}

fn check_merge(earlier: &RunSummary, later: &RunSummary) {
    let start = parse_rfc3339_nanos(&earlier.start_time).unwrap();
    let end = parse_rfc3339_nanos(&later.end_time).unwrap();
    let merged = merge_runs(earlier, later);
    if start > end || end - start > (MAX_DURATION_SECONDS as i128) * 1_000_000_000 {
        // Not two pieces of one valid run; only "no panic" is asked of it.
        return;
    }
    if let Err(e) = merged.validate_at(now()) {
        panic!(
            "merge of two valid summaries is invalid: {e}\nearlier: {earlier:?}\nlater: {later:?}"
        );
    }
    assert_eq!(merged.start_time, earlier.start_time);
    assert_eq!(merged.end_time, later.end_time);
    // Counters saturate rather than overflow.
    assert_eq!(
        merged.sample_count,
        earlier.sample_count.saturating_add(later.sample_count)
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(push) = serde_json::from_slice::<MetricsPush>(data)
        && push.validate_at(now()).is_ok()
    {
        check_valid(&push.summary);
    }
    if let Ok(s) = serde_json::from_slice::<RunSummary>(data)
        && s.validate_at(now()).is_ok()
    {
        check_valid(&s);
        check_merge(&s, &s);
    }
    if let Ok([a, b]) = serde_json::from_slice::<[RunSummary; 2]>(data) {
        if a.validate_at(now()).is_ok() && b.validate_at(now()).is_ok() {
            check_valid(&a);
            check_valid(&b);
            check_merge(&a, &b);
        }
    }
});
