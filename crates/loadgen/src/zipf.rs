//! Seat choice: uniform over an event's seats, or Zipf-distributed, where the seat of
//! rank k (k = 1 is seat index 0, the first seat of the first section's front row) is
//! picked with probability proportional to 1 / k^s. The Zipf sampler precomputes the
//! cumulative distribution once (8 bytes per seat) and samples by binary search.

use rand::Rng;

/// A Zipf(n, s) sampler over `0..n`.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// `n` >= 1 outcomes, exponent `s` in 0..=10 (0 is uniform).
    pub fn new(n: u32, s: f64) -> Result<Zipf, String> {
        if n == 0 {
            return Err("a Zipf distribution needs at least one seat".into());
        }
        if !s.is_finite() || !(0.0..=10.0).contains(&s) {
            return Err(format!("the Zipf exponent must be between 0 and 10, not {s}"));
        }
        let mut cdf = Vec::with_capacity(n as usize);
        let mut total = 0.0;
        for k in 1..=n {
            total += 1.0 / f64::from(k).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Ok(Zipf { cdf })
    }

    pub fn len(&self) -> u32 {
        self.cdf.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }

    /// A value in `0..n`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u32 {
        let u: f64 = rng.random();
        let i = self.cdf.partition_point(|&c| c <= u);
        // u < 1 and the last entry is 1 (up to rounding): clamp for the rounding case.
        i.min(self.cdf.len() - 1) as u32
    }
}

/// How seats are picked.
#[derive(Debug, Clone)]
pub enum SeatDist {
    /// Uniform over `0..n`.
    Uniform(u32),
    Zipf(Zipf),
}

impl SeatDist {
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u32 {
        match self {
            SeatDist::Uniform(n) => rng.random_range(0..*n),
            SeatDist::Zipf(z) => z.sample(rng),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn samples_stay_in_range_and_favour_low_ranks() {
        let mut rng = SmallRng::seed_from_u64(7);
        for (n, s) in [(1, 1.0), (2, 0.5), (10, 1.2), (60_000, 1.0), (60_000, 3.0), (1000, 0.0)] {
            let z = Zipf::new(n, s).expect("valid");
            assert_eq!(z.len(), n);
            let mut counts = vec![0u32; n as usize];
            for _ in 0..20_000 {
                let v = z.sample(&mut rng);
                assert!(v < n, "{v} out of 0..{n}");
                counts[v as usize] += 1;
            }
            if n >= 10 && s >= 1.0 {
                assert!(counts[0] > counts[n as usize / 2], "rank 1 is the most popular (n {n}, s {s})");
            }
        }
        // With s = 1 over 10 outcomes, rank 1 has probability 1 / H(10) ~ 0.341.
        let z = Zipf::new(10, 1.0).expect("valid");
        let hits = (0..100_000).filter(|_| z.sample(&mut rng) == 0).count();
        assert!((32_000..36_000).contains(&hits), "{hits}");
    }

    #[test]
    fn extreme_draws_stay_in_range() {
        struct Fixed(u64);
        impl rand::RngCore for Fixed {
            fn next_u32(&mut self) -> u32 {
                self.0 as u32
            }
            fn next_u64(&mut self) -> u64 {
                self.0
            }
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                dest.fill(self.0 as u8);
            }
        }
        let z = Zipf::new(5, 1.0).expect("valid");
        assert_eq!(z.sample(&mut Fixed(0)), 0);
        assert_eq!(z.sample(&mut Fixed(u64::MAX)), 4);
        let uniform = SeatDist::Uniform(3);
        assert!(uniform.sample(&mut Fixed(u64::MAX)) < 3);
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(Zipf::new(0, 1.0).is_err());
        assert!(Zipf::new(10, -1.0).is_err());
        assert!(Zipf::new(10, f64::NAN).is_err());
        assert!(Zipf::new(10, 11.0).is_err());
    }
}
