//! The order a client tries a service's targets in (RFC 2782): the lowest priority number
//! first; among records of one priority, drawn at random in proportion to their weights.
//! A weight of 0 is drawn only once no weighted record is left, and records that all weigh
//! 0 are drawn with equal chances (as Go's resolver does; the RFC's inclusive draw would give
//! the first record of a group one chance more than its weight).

/// One target of an SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Lower case, without the final dot.
    pub target: String,
}

/// `targets` in the order to try them; `draw(n)` gives a number from 0 to `n` inclusive,
/// uniformly (the system's random numbers in [`order`], a fixed sequence in tests).
pub fn order_with(mut targets: Vec<Target>, mut draw: impl FnMut(u32) -> u32) -> Vec<Target> {
    targets.sort_by_key(|t| t.priority);
    let mut ordered = Vec::with_capacity(targets.len());
    while let Some(first) = targets.first() {
        let priority = first.priority;
        let n = targets
            .iter()
            .take_while(|t| t.priority == priority)
            .count();
        let mut group: Vec<Target> = targets.drain(..n).collect();
        while !group.is_empty() {
            let sum: u32 = group.iter().map(|t| u32::from(t.weight)).sum();
            let i = if sum == 0 {
                (draw(group.len() as u32 - 1) as usize).min(group.len() - 1)
            } else {
                let pick = draw(sum - 1).min(sum - 1);
                let mut running = 0;
                group
                    .iter()
                    .position(|t| {
                        running += u32::from(t.weight);
                        running > pick
                    })
                    .unwrap_or(0)
            };
            ordered.push(group.remove(i));
        }
    }
    ordered
}

/// `targets` in the order to try them, drawn with the system's random numbers.
pub fn order(targets: Vec<Target>) -> Vec<Target> {
    order_with(targets, |n| {
        let r = getrandom::u32().unwrap_or(0);
        if n == u32::MAX { r } else { r % (n + 1) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(priority: u16, weight: u16, target: &str) -> Target {
        Target {
            priority,
            weight,
            port: 5061,
            target: target.into(),
        }
    }

    #[test]
    fn the_lowest_priority_number_comes_first_whatever_the_weights() {
        let ordered = order_with(vec![t(20, 100, "c"), t(10, 0, "b"), t(0, 0, "a")], |n| n);
        let names: Vec<&str> = ordered.iter().map(|t| t.target.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn within_a_priority_a_target_comes_first_in_proportion_to_its_weight() {
        // A fixed generator: the proportion is the weights', not luck.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u32| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % (u64::from(n) + 1)) as u32
        };
        let mut heavy_first = 0;
        for _ in 0..4000 {
            let ordered = order_with(vec![t(0, 1, "light"), t(0, 3, "heavy")], &mut next);
            if ordered[0].target == "heavy" {
                heavy_first += 1;
            }
        }
        assert!((2850..3150).contains(&heavy_first), "{heavy_first} of 4000");
    }

    #[test]
    fn a_zero_weight_target_comes_after_the_weighted_ones_and_zeros_draw_evenly() {
        for draw in 0..5 {
            let ordered = order_with(vec![t(0, 0, "z"), t(0, 5, "w")], move |n| draw.min(n));
            assert_eq!(ordered[0].target, "w");
        }
        let first =
            |draw: u32| order_with(vec![t(0, 0, "a"), t(0, 0, "b")], move |_| draw)[0].clone();
        assert_eq!((first(0).target, first(1).target), ("a".into(), "b".into()));
    }

    proptest! {
        #[test]
        fn every_target_once_and_priorities_never_go_down(
            records in proptest::collection::vec((0u16..4, 0u16..50), 0..12),
            draws in proptest::collection::vec(any::<u32>(), 64),
        ) {
            let targets: Vec<Target> = records
                .iter()
                .enumerate()
                .map(|(i, (p, w))| t(*p, *w, &format!("t{i}")))
                .collect();
            let mut i = 0;
            let ordered = order_with(targets.clone(), |n| {
                i += 1;
                draws[i % draws.len()] % (n + 1).max(1)
            });
            prop_assert_eq!(ordered.len(), targets.len());
            let mut names: Vec<&String> = ordered.iter().map(|t| &t.target).collect();
            names.sort();
            names.dedup();
            prop_assert_eq!(names.len(), targets.len());
            prop_assert!(ordered.windows(2).all(|w| w[0].priority <= w[1].priority));
        }
    }
}
