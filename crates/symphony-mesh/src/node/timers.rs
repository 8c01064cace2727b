//! The protocol's one-shot timers (`Command::SetTimer`) in a min-heap, fired in deadline
//! order and, for equal deadlines, in the order they were set.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::proto::Timer;

struct Armed {
    at: Instant,
    seq: u64,
    timer: Timer,
}

impl PartialEq for Armed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Armed {}

impl PartialOrd for Armed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Armed {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Armed timers. Bounded by what the protocol arms: one tick, one IHAVE flush, and one graft
/// timer per missing message (`pubsub.max_missing`).
#[derive(Default)]
pub(super) struct TimerQueue {
    heap: BinaryHeap<Reverse<Armed>>,
    seq: u64,
}

impl TimerQueue {
    pub(super) fn arm(&mut self, at: Instant, timer: Timer) {
        self.seq += 1;
        self.heap.push(Reverse(Armed {
            at,
            seq: self.seq,
            timer,
        }));
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(a)| a.at)
    }

    /// Removes and returns the timers due at `now`, earliest first.
    pub(super) fn due(&mut self, now: Instant) -> Vec<Timer> {
        let mut due = Vec::new();
        while self.heap.peek().is_some_and(|Reverse(a)| a.at <= now) {
            if let Some(Reverse(armed)) = self.heap.pop() {
                due.push(armed.timer);
            }
        }
        due
    }

    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timers_fire_in_deadline_order_then_in_arming_order() {
        let t0 = Instant::now();
        let mut queue = TimerQueue::default();
        queue.arm(t0 + Duration::from_millis(20), Timer::Tick);
        queue.arm(t0 + Duration::from_millis(10), Timer::IHaveFlush);
        queue.arm(t0 + Duration::from_millis(20), Timer::IHaveFlush);
        assert_eq!(queue.next(), Some(t0 + Duration::from_millis(10)));
        assert!(queue.due(t0).is_empty());
        assert_eq!(
            queue.due(t0 + Duration::from_millis(20)),
            vec![Timer::IHaveFlush, Timer::Tick, Timer::IHaveFlush]
        );
        assert_eq!(queue.len(), 0);
    }
}
