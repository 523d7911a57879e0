//! A set of ports as a bitmap: the SNAT ports live flows hold at one NLB address.

/// A set of ports, as a bitmap (8 KiB: a set per NLB address stays small at any load).
#[derive(Clone, Debug)]
pub struct Ports {
    bits: Box<[u64; 1024]>,
    len: u64,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            bits: Box::new([0; 1024]),
            len: 0,
        }
    }
}

impl Ports {
    pub fn insert(&mut self, port: u16) {
        let (word, bit) = (usize::from(port / 64), 1u64 << (port % 64));
        if self.bits[word] & bit == 0 {
            self.bits[word] |= bit;
            self.len += 1;
        }
    }

    /// Distinct ports in the set.
    pub const fn len(&self) -> u64 {
        self.len
    }

    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_port_once_across_the_whole_range() {
        let mut p = Ports::default();
        assert!(p.is_empty());
        for port in [0, 63, 64, 65535, 65535, 64] {
            p.insert(port);
        }
        assert_eq!(p.len(), 4);
    }
}
