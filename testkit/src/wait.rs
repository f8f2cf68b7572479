//! Waiting for a condition, with a deadline, instead of sleeping.

use std::time::{Duration, Instant};

/// The longest pause between two polls; the first polls come faster (1 ms, 2 ms, 4 ms...),
/// so a condition that is almost true costs almost nothing.
const MAX_POLL: Duration = Duration::from_millis(50);

/// Polls `condition` until it holds; panics naming `what` if `deadline` passes first.
///
/// ```
/// # use std::time::Duration;
/// let ready = std::time::Instant::now() + Duration::from_millis(20);
/// testkit::wait_until(Duration::from_secs(5), "the flag", || std::time::Instant::now() >= ready);
/// ```
#[track_caller]
pub fn wait_until(deadline: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    wait_for(deadline, what, || condition().then_some(()))
}

/// Polls `probe` until it returns `Some`, and returns that value; panics naming `what` if
/// `deadline` passes first.
#[track_caller]
pub fn wait_for<T>(deadline: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        let elapsed = started.elapsed();
        if elapsed >= deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(pause.min(deadline - elapsed));
        pause = (pause * 2).min(MAX_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_once_the_condition_holds() {
        let mut polls = 0;
        let v = wait_for(Duration::from_secs(5), "the third poll", || {
            polls += 1;
            (polls == 3).then_some(polls * 10)
        });
        assert_eq!(v, 30);
    }

    #[test]
    fn panics_with_what_on_timeout() {
        let started = Instant::now();
        let panic = std::panic::catch_unwind(|| {
            wait_until(Duration::from_millis(30), "Godot", || false);
        })
        .unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert_eq!(message, "timed out after 30ms waiting for Godot");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
