//! A growable Fenwick (binary indexed) tree: prefix sums with O(log n)
//! update, query and append. Pack sizes arrive in any order as jobs finish,
//! and a path's cost is a sum over a run of edges.

/// Prefix sums over `u64` values.
#[derive(Clone, Debug)]
pub struct Fenwick {
    tree: Vec<u64>, // 1-based: tree[0] unused
}

impl Default for Fenwick {
    fn default() -> Self {
        Self::new()
    }
}

fn lowbit(k: usize) -> usize {
    k & k.wrapping_neg()
}

impl Fenwick {
    /// An empty tree.
    pub fn new() -> Self {
        Fenwick { tree: vec![0] }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.tree.len() - 1
    }

    /// Appends a value.
    pub fn push(&mut self, value: u64) {
        let k = self.tree.len();
        // Node k covers (k - lowbit(k), k]: the values before it in that
        // range are prefix(k-1) - prefix(k - lowbit(k)).
        let covered = self.prefix(k - 1) - self.prefix(k - lowbit(k));
        self.tree.push(covered + value);
    }

    /// Adds `delta` to value `i` (0-based).
    pub fn add(&mut self, i: usize, delta: u64) {
        let mut k = i + 1;
        while k < self.tree.len() {
            self.tree[k] += delta;
            k += lowbit(k);
        }
    }

    /// Sum of the first `n` values.
    pub fn prefix(&self, n: usize) -> u64 {
        let mut k = n.min(self.len());
        let mut sum = 0;
        while k > 0 {
            sum += self.tree[k];
            k -= lowbit(k);
        }
        sum
    }

    /// Sum of values `a..b` (0-based, `b` exclusive).
    pub fn range(&self, a: usize, b: usize) -> u64 {
        if b <= a {
            return 0;
        }
        self.prefix(b) - self.prefix(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_a_plain_vector(ops in prop::collection::vec((0usize..64, 0u64..1000, any::<bool>()), 1..200)) {
            let mut f = Fenwick::new();
            let mut v: Vec<u64> = Vec::new();
            for (i, x, push) in ops {
                if push || v.is_empty() {
                    f.push(x);
                    v.push(x);
                } else {
                    let i = i % v.len();
                    f.add(i, x);
                    v[i] += x;
                }
                for a in 0..=v.len() {
                    prop_assert_eq!(f.prefix(a), v[..a].iter().sum::<u64>());
                }
            }
        }
    }
}
