//! The ledger as a transparency log: a Merkle tree over its entries in the sense of Certificate
//! Transparency (RFC 9162 §2.1, the same tree as RFC 6962).
//!
//! Leaf `i` (0-based) is ledger entry `i + 1`; its input is the entry's 32-byte hash, so the leaf
//! hash is `SHA-256(0x00 ‖ entry_hash)` and an interior node `SHA-256(0x01 ‖ left ‖ right)`.
//! The tree of `n` leaves splits at the largest power of two below `n`, exactly as RFC 9162
//! defines `MTH`, `PATH` (inclusion proofs) and `PROOF` (consistency proofs). The verifiers
//! follow the RFC's step-by-step algorithms (§2.1.3.2 and §2.1.4.2) rather than recomputing
//! trees, so they are a second route to the same answer; the tests also check them against an
//! independent Python implementation (`scripts/merkle-rfc9162.py`).
//!
//! This module owns the hashing and the proofs. It does not read the database, sign or decide
//! what a mismatch means; [`crate::ledger`] does.

use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 value.
pub type Hash = [u8; 32];

/// The hash of a leaf: `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The right edge of a tree being built leaf by leaf: the roots of the perfect subtrees that
/// the binary digits of `size` decompose it into, largest first. Enough to extend the tree and
/// to compute its root without keeping the leaves (memory: one hash per set bit of `size`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    peaks: Vec<Hash>,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf, given its leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            let left = self.peaks.pop().expect("a set bit has its peak");
            h = node_hash(&left, &h);
            s >>= 1;
        }
        self.peaks.push(h);
        self.size += 1;
    }

    /// The tree's root (RFC 9162 `MTH` over every leaf pushed).
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else {
            return empty_root();
        };
        peaks.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// Text form for storage: `size:peak,peak,…` (hex).
    pub fn encode(&self) -> String {
        let peaks: Vec<String> = self.peaks.iter().map(hex::encode).collect();
        format!("{}:{}", self.size, peaks.join(","))
    }

    /// Reads [`Frontier::encode`]'s form; None when it is malformed or inconsistent.
    pub fn decode(s: &str) -> Option<Frontier> {
        let (size, peaks) = s.split_once(':')?;
        let size: u64 = size.parse().ok()?;
        let peaks: Vec<Hash> = if peaks.is_empty() {
            Vec::new()
        } else {
            peaks
                .split(',')
                .map(|p| hex::decode(p).ok()?.try_into().ok())
                .collect::<Option<_>>()?
        };
        (peaks.len() == size.count_ones() as usize).then_some(Frontier { size, peaks })
    }
}

/// A whole tree kept in memory: every complete node on every level, so that roots of ranges,
/// inclusion and consistency proofs take O(log² n) hashes instead of O(n). Memory is about
/// 64 bytes per leaf.
pub struct Tree {
    /// `levels[k][i]` is the root of leaves `i·2^k .. (i+1)·2^k` (complete subtrees only).
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// Builds the tree over these leaf hashes.
    pub fn from_leaves(leaves: Vec<Hash>) -> Tree {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() >= 2) {
            let below = levels.last().expect("checked");
            let up: Vec<Hash> = below
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
            levels.push(up);
        }
        Tree { levels }
    }

    /// Leaf hash `i`.
    pub fn leaf(&self, i: u64) -> Option<Hash> {
        self.levels[0].get(i as usize).copied()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// `MTH(D[a:b])`.
    fn range_root(&self, a: u64, b: u64) -> Hash {
        let n = b - a;
        if n == 0 {
            return empty_root();
        }
        if n.is_power_of_two() && a.is_multiple_of(n) {
            let k = n.trailing_zeros() as usize;
            return self.levels[k][(a >> k) as usize];
        }
        let k = split(n);
        node_hash(&self.range_root(a, a + k), &self.range_root(a + k, b))
    }

    /// The root of the tree's first `size` leaves (`size` ≤ [`Tree::size`]).
    pub fn root_at(&self, size: u64) -> Hash {
        self.range_root(0, size)
    }

    /// RFC 9162 `PATH(m, D[0:size])`: the inclusion proof of leaf `m` in the tree of the first
    /// `size` leaves. None when `m ≥ size` or `size` exceeds the tree.
    pub fn inclusion_proof(&self, m: u64, size: u64) -> Option<Vec<Hash>> {
        if m >= size || size > self.size() {
            return None;
        }
        let mut path = Vec::new();
        self.path(m, 0, size, &mut path);
        Some(path)
    }

    fn path(&self, m: u64, a: u64, b: u64, out: &mut Vec<Hash>) {
        let n = b - a;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, a, a + k, out);
            out.push(self.range_root(a + k, b));
        } else {
            self.path(m - k, a + k, b, out);
            out.push(self.range_root(a, a + k));
        }
    }

    /// RFC 9162 `PROOF(m, D[0:size])`: the consistency proof between the trees of the first
    /// `m` and the first `size` leaves. None unless `0 < m ≤ size ≤` [`Tree::size`].
    pub fn consistency_proof(&self, m: u64, size: u64) -> Option<Vec<Hash>> {
        if m == 0 || m > size || size > self.size() {
            return None;
        }
        let mut proof = Vec::new();
        self.subproof(m, 0, size, true, &mut proof);
        Some(proof)
    }

    fn subproof(&self, m: u64, a: u64, b: u64, whole: bool, out: &mut Vec<Hash>) {
        let n = b - a;
        if m == n {
            if !whole {
                out.push(self.range_root(a, b));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, a, a + k, whole, out);
            out.push(self.range_root(a + k, b));
        } else {
            self.subproof(m - k, a + k, b, false, out);
            out.push(self.range_root(a, a + k));
        }
    }
}

/// RFC 9162 §2.1.3.2: does `path` prove that the leaf with this hash is leaf `index` of the tree
/// of `size` leaves whose root is `root`?
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: does `proof` show that the tree of `second` leaves (root `second_root`)
/// extends the tree of `first` leaves (root `first_root`) by appending only?
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first == 0 || first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((start, rest)) = path.split_first() else {
        return false;
    };
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *first_root && sr == *second_root && sn == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `MTH` straight from the RFC's recursive definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n as u32).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn frontier_tree_and_definition_agree() {
        for n in 0..70usize {
            let l = leaves(n);
            let mut f = Frontier::default();
            for h in &l {
                f.push(*h);
            }
            assert_eq!(f.root(), mth(&l), "frontier, n={n}");
            assert_eq!(Frontier::decode(&f.encode()), Some(f.clone()));
            let t = Tree::from_leaves(l.clone());
            for m in 0..=n {
                assert_eq!(t.root_at(m as u64), mth(&l[..m]), "tree, {m} of {n}");
            }
        }
    }

    #[test]
    fn every_proof_verifies_and_a_changed_one_does_not() {
        for n in 1..40u64 {
            let l = leaves(n as usize);
            let t = Tree::from_leaves(l.clone());
            let root = t.root_at(n);
            for m in 0..n {
                let p = t.inclusion_proof(m, n).unwrap();
                assert!(verify_inclusion(&l[m as usize], m, n, &p, &root));
                assert!(!verify_inclusion(&l[m as usize], m + 1, n, &p, &root) || n == 1);
                if let Some(first) = p.first() {
                    let mut bad = p.clone();
                    bad[0] = node_hash(first, first);
                    assert!(!verify_inclusion(&l[m as usize], m, n, &bad, &root));
                }
                let first = m + 1;
                let c = t.consistency_proof(first, n).unwrap();
                let old = t.root_at(first);
                assert!(
                    verify_consistency(first, n, &old, &root, &c),
                    "{first}->{n}"
                );
                assert!(!verify_consistency(first, n, &root, &old, &c) || first == n);
                let forged = node_hash(&old, &old);
                assert!(!verify_consistency(first, n, &forged, &root, &c));
            }
        }
    }
}
