//! Traffic split: a weighted choice among backend services. Each request draws once; a weight
//! update builds a new [`Split`], so it applies to new requests only. Weight 0 gets nothing.

/// Weighted backends, ready for drawing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// (authority, cumulative weight), only backends with weight > 0.
    backends: Vec<(String, u64)>,
    total: u64,
}

impl Split {
    /// `None` when no backend has a positive weight (the caller falls back and logs).
    pub fn new<'a>(backends: impl IntoIterator<Item = (&'a str, u32)>) -> Option<Split> {
        let mut total = 0u64;
        let mut out = Vec::new();
        for (authority, weight) in backends {
            if weight == 0 || authority.is_empty() {
                continue;
            }
            total += u64::from(weight);
            out.push((authority.to_string(), total));
        }
        (total > 0).then_some(Split {
            backends: out,
            total,
        })
    }

    /// A split with one backend.
    pub fn single(authority: &str) -> Split {
        Split {
            backends: vec![(authority.to_string(), 1)],
            total: 1,
        }
    }

    /// The backend for a random draw `r` (any u64; reduced modulo the total weight).
    pub fn pick(&self, r: u64) -> &str {
        let x = r % self.total;
        let i = self.backends.partition_point(|(_, cum)| *cum <= x);
        self.backends
            .get(i)
            .or(self.backends.last())
            .map(|(a, _)| a.as_str())
            .unwrap_or("")
    }

    /// Every backend authority (for warming their discovery watches).
    pub fn authorities(&self) -> impl Iterator<Item = &str> {
        self.backends.iter().map(|(a, _)| a.as_str())
    }

    /// Whether this split has more than one backend (for the `backend` metric label).
    pub fn is_split(&self) -> bool {
        self.backends.len() > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_weights_exactly() {
        let s = Split::new([("a:80", 900), ("b:80", 100)]).unwrap_or_else(|| unreachable!());
        let mut a = 0;
        for r in 0..10_000u64 {
            if s.pick(r) == "a:80" {
                a += 1;
            }
        }
        assert_eq!(a, 9_000);
    }

    #[test]
    fn zero_weights_get_nothing() {
        let s =
            Split::new([("a:80", 0), ("b:80", 5), ("c:80", 0)]).unwrap_or_else(|| unreachable!());
        for r in 0..100 {
            assert_eq!(s.pick(r), "b:80");
        }
        assert!(!s.is_split());
        assert_eq!(Split::new([("a:80", 0)]), None);
        assert_eq!(Split::new([]), None);
        assert_eq!(Split::new([("", 3)]), None);
    }

    #[test]
    fn random_draws_land_near_the_ratio() {
        let s = Split::new([("a:80", 90), ("b:80", 10)]).unwrap_or_else(|| unreachable!());
        let b = (0..10_000)
            .filter(|_| s.pick(fastrand::u64(..)) == "b:80")
            .count();
        assert!((800..=1200).contains(&b), "{b}");
        assert_eq!(s.authorities().count(), 2);
        assert_eq!(Split::single("x:1").pick(u64::MAX), "x:1");
    }
}
