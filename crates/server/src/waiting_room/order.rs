//! Exact queue positions: a Fenwick tree (binary indexed tree) of "still waiting" flags by
//! sequence number. The position of a waiting entry is the number of waiting entries with
//! a sequence number up to its own, so an entry that expires or leaves in the middle of
//! the line moves everyone behind it forward at once, in O(log n) for the change and
//! O(log n) for each position asked.
//!
//! Sequence numbers only grow (joins append, admission takes from the front), so the tree
//! grows at its end and is rebuilt from the live part of the line once most of it lies
//! behind the front: memory stays proportional to the line, not to everyone who ever
//! joined. Four bytes per sequence number.

/// Waiting flags for the sequence numbers `base..base + len`.
#[derive(Debug, Clone)]
pub struct Ranks {
    base: u64,
    /// 1-based Fenwick tree; `tree[0]` is unused.
    tree: Vec<u32>,
}

impl Default for Ranks {
    fn default() -> Self {
        Ranks::new(0)
    }
}

impl Ranks {
    /// An empty tree whose next pushed sequence number is `base`.
    pub fn new(base: u64) -> Self {
        Ranks { base, tree: vec![0] }
    }

    /// The first sequence number the tree covers.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Sequence numbers covered.
    pub fn len(&self) -> usize {
        self.tree.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sequence number the next push will cover.
    pub fn next_seq(&self) -> u64 {
        self.base + self.len() as u64
    }

    /// Appends the flag of sequence number [`Ranks::next_seq`]: O(log n).
    pub fn push(&mut self, waiting: bool) {
        let i = self.tree.len();
        let low = i & i.wrapping_neg();
        // Node i sums the flags (i - low, i]: this one plus what its children hold.
        let node = u32::from(waiting) + self.prefix(i - 1) - self.prefix(i - low);
        self.tree.push(node);
    }

    /// Clears the flag of `seq` (it was set): the entry no longer waits.
    pub fn remove(&mut self, seq: u64) {
        let mut i = self.index(seq);
        debug_assert!(self.rank(seq) > self.rank_before(seq), "seq {seq} was not waiting");
        while i < self.tree.len() {
            self.tree[i] -= 1;
            i += i & i.wrapping_neg();
        }
    }

    /// Waiting entries with a sequence number up to and including `seq`.
    pub fn rank(&self, seq: u64) -> u64 {
        u64::from(self.prefix(self.index(seq)))
    }

    /// Waiting entries with a sequence number below `seq`.
    fn rank_before(&self, seq: u64) -> u64 {
        u64::from(self.prefix(self.index(seq) - 1))
    }

    /// Every waiting entry.
    pub fn total(&self) -> u64 {
        u64::from(self.prefix(self.len()))
    }

    /// 1-based tree index of `seq`.
    fn index(&self, seq: u64) -> usize {
        assert!(
            seq >= self.base && seq < self.next_seq(),
            "seq {seq} outside the covered {}..{}",
            self.base,
            self.next_seq()
        );
        (seq - self.base) as usize + 1
    }

    /// Sum of the first `i` flags.
    fn prefix(&self, mut i: usize) -> u32 {
        let mut sum = 0;
        while i > 0 {
            sum += self.tree[i];
            i &= i - 1;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn ranks_equal_a_naive_count_under_random_pushes_and_removals() {
        let mut rng = StdRng::seed_from_u64(7);
        let base = 1_000;
        let mut ranks = Ranks::new(base);
        let mut flags: Vec<bool> = Vec::new();
        for _ in 0..5_000 {
            if flags.is_empty() || rng.random_bool(0.6) {
                let waiting = rng.random_bool(0.9);
                ranks.push(waiting);
                flags.push(waiting);
            } else {
                let i = rng.random_range(0..flags.len());
                if flags[i] {
                    ranks.remove(base + i as u64);
                    flags[i] = false;
                }
            }
            let probe = rng.random_range(0..flags.len());
            let naive = flags[..=probe].iter().filter(|&&w| w).count() as u64;
            assert_eq!(ranks.rank(base + probe as u64), naive);
        }
        assert_eq!(ranks.total(), flags.iter().filter(|&&w| w).count() as u64);
        assert_eq!(ranks.next_seq(), base + flags.len() as u64);
    }

    #[test]
    fn removing_an_entry_moves_everyone_behind_it_forward_by_one() {
        let mut ranks = Ranks::new(0);
        for _ in 0..10 {
            ranks.push(true);
        }
        assert_eq!((0..10).map(|s| ranks.rank(s)).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
        ranks.remove(3);
        assert_eq!(ranks.rank(2), 3, "ahead of the hole: unchanged");
        assert_eq!(ranks.rank(4), 4, "behind it: one forward");
        assert_eq!(ranks.rank(9), 9);
        assert_eq!(ranks.total(), 9);
    }

    #[test]
    #[should_panic(expected = "outside the covered")]
    fn a_sequence_number_before_the_base_is_a_bug() {
        Ranks::new(5).rank(4);
    }
}
