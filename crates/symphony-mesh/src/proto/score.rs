//! A decayed per-peer score, after Gossipsub v1.1 §"Peer Scoring" (libp2p specs), reduced to
//! what PlumTree needs: which neighbours deserve eager links.
//!
//! Each peer keeps six exponentially decayed counters. The score is
//!
//! ```text
//! score =  w_first   · min(first_deliveries, cap_first)      (P2, first message deliveries)
//!        + w_success · min(send_successes,   cap_success)
//!        + w_fulfil  · min(iwant_fulfilled,  cap_fulfil)
//!        − w_dup     · duplicates
//!        − w_timeout · send_timeouts²                          (P7, behaviour penalty, squared)
//!        − w_failed  · iwant_failed
//! ```
//!
//! Positive terms are capped so a long-lived peer cannot bank credit against misbehaviour;
//! timeouts are squared so a peer that keeps timing out falls fast. Counters decay with a
//! half-life, so old behaviour is forgiven (Gossipsub's `decay` parameters).

use std::time::Duration;

/// Weights, caps and thresholds of the score. Defaults are documented per field.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ScoreParams {
    /// Weight of a first (useful) delivery. Default 0.5.
    pub first_delivery_weight: f64,
    /// Cap on decayed first deliveries. Default 20.
    pub first_delivery_cap: f64,
    /// Weight of a completed send. Default 0.05.
    pub send_success_weight: f64,
    /// Cap on decayed send successes. Default 100.
    pub send_success_cap: f64,
    /// Weight of an IWANT/GRAFT request the peer answered. Default 0.5.
    pub iwant_fulfilled_weight: f64,
    /// Cap on decayed fulfilled requests. Default 10.
    pub iwant_fulfilled_cap: f64,
    /// Weight of a duplicate received from the peer. Default 0.05.
    pub duplicate_weight: f64,
    /// Weight of the squared decayed send timeouts. Default 1.0.
    pub send_timeout_weight: f64,
    /// Weight of an IWANT/GRAFT request the peer did not answer in time. Default 1.0.
    pub iwant_failed_weight: f64,
    /// Counters halve every this long. Default 60 s.
    pub half_life: Duration,
    /// Eager peers scoring below this are demoted to lazy (with a PRUNE). Default -4.
    pub demote_below: f64,
    /// Opportunistic grafting runs for a topic when the median eager score is below this
    /// (Gossipsub v1.1 §"Opportunistic Grafting"). Default -1.
    pub opportunistic_graft_below: f64,
}

impl Default for ScoreParams {
    fn default() -> Self {
        Self {
            first_delivery_weight: 0.5,
            first_delivery_cap: 20.0,
            send_success_weight: 0.05,
            send_success_cap: 100.0,
            iwant_fulfilled_weight: 0.5,
            iwant_fulfilled_cap: 10.0,
            duplicate_weight: 0.05,
            send_timeout_weight: 1.0,
            iwant_failed_weight: 1.0,
            half_life: Duration::from_secs(60),
            demote_below: -4.0,
            opportunistic_graft_below: -1.0,
        }
    }
}

/// One observation about a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The peer was first to bring us a message.
    FirstDelivery,
    /// The peer brought a message we already had.
    Duplicate,
    /// A send to the peer completed.
    SendSuccess,
    /// A send to the peer timed out.
    SendTimeout,
    /// The peer answered an IWANT/GRAFT of ours with the message.
    IwantFulfilled,
    /// The peer did not answer an IWANT/GRAFT of ours before the retry timer.
    IwantFailed,
}

/// The decayed counters of one peer.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct PeerScore {
    first_deliveries: f64,
    duplicates: f64,
    send_successes: f64,
    send_timeouts: f64,
    iwant_fulfilled: f64,
    iwant_failed: f64,
}

impl PeerScore {
    /// Counts one observation.
    pub fn observe(&mut self, observation: Observation) {
        let counter = match observation {
            Observation::FirstDelivery => &mut self.first_deliveries,
            Observation::Duplicate => &mut self.duplicates,
            Observation::SendSuccess => &mut self.send_successes,
            Observation::SendTimeout => &mut self.send_timeouts,
            Observation::IwantFulfilled => &mut self.iwant_fulfilled,
            Observation::IwantFailed => &mut self.iwant_failed,
        };
        *counter += 1.0;
    }

    /// Multiplies every counter by `factor` (from [`decay_factor`]).
    pub fn decay(&mut self, factor: f64) {
        for counter in [
            &mut self.first_deliveries,
            &mut self.duplicates,
            &mut self.send_successes,
            &mut self.send_timeouts,
            &mut self.iwant_fulfilled,
            &mut self.iwant_failed,
        ] {
            *counter *= factor;
        }
    }

    /// The score under `params` (formula in the module docs).
    pub fn value(&self, params: &ScoreParams) -> f64 {
        params.first_delivery_weight * self.first_deliveries.min(params.first_delivery_cap)
            + params.send_success_weight * self.send_successes.min(params.send_success_cap)
            + params.iwant_fulfilled_weight * self.iwant_fulfilled.min(params.iwant_fulfilled_cap)
            - params.duplicate_weight * self.duplicates
            - params.send_timeout_weight * self.send_timeouts * self.send_timeouts
            - params.iwant_failed_weight * self.iwant_failed
    }

    /// True when every counter has decayed below 0.01: the entry carries no information and
    /// may be dropped for a peer that is no longer a neighbour.
    pub fn is_negligible(&self) -> bool {
        [
            self.first_deliveries,
            self.duplicates,
            self.send_successes,
            self.send_timeouts,
            self.iwant_fulfilled,
            self.iwant_failed,
        ]
        .iter()
        .all(|c| *c < 0.01)
    }
}

/// The factor that decays counters over `elapsed` with the given half-life:
/// `0.5^(elapsed / half_life)`, in (0, 1]. A zero half-life forgets everything (factor 0).
pub fn decay_factor(elapsed: Duration, half_life: Duration) -> f64 {
    if half_life.is_zero() {
        return 0.0;
    }
    0.5f64.powf(elapsed.as_secs_f64() / half_life.as_secs_f64())
}

/// The median of `values` (mean of the two middle values for an even count), or `None` when
/// empty. Sorts `values` in place; NaN sorts last.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(observations: &[(Observation, usize)]) -> PeerScore {
        let mut score = PeerScore::default();
        for (observation, count) in observations {
            for _ in 0..*count {
                score.observe(*observation);
            }
        }
        score
    }

    #[test]
    fn fresh_peer_scores_zero() {
        assert_eq!(PeerScore::default().value(&ScoreParams::default()), 0.0);
    }

    #[test]
    fn useful_peer_beats_duplicate_sender() {
        let params = ScoreParams::default();
        let useful = observed(&[(Observation::FirstDelivery, 10)]);
        let redundant = observed(&[(Observation::Duplicate, 10)]);
        assert!(useful.value(&params) > 0.0);
        assert!(redundant.value(&params) < 0.0);
    }

    #[test]
    fn positive_terms_are_capped_so_timeouts_still_demote() {
        let params = ScoreParams::default();
        let mut score = observed(&[
            (Observation::FirstDelivery, 1000),
            (Observation::SendSuccess, 1000),
        ]);
        let banked = score.value(&params);
        assert_eq!(banked, 0.5 * 20.0 + 0.05 * 100.0);
        for _ in 0..5 {
            score.observe(Observation::SendTimeout);
        }
        assert!(score.value(&params) < params.demote_below);
    }

    #[test]
    fn timeouts_are_penalised_quadratically() {
        let params = ScoreParams::default();
        let one = observed(&[(Observation::SendTimeout, 1)]).value(&params);
        let three = observed(&[(Observation::SendTimeout, 3)]).value(&params);
        assert_eq!(one, -1.0);
        assert_eq!(three, -9.0);
    }

    #[test]
    fn decay_halves_per_half_life_and_forgets() {
        let half_life = Duration::from_secs(60);
        assert!((decay_factor(half_life, half_life) - 0.5).abs() < 1e-12);
        assert!((decay_factor(half_life * 2, half_life) - 0.25).abs() < 1e-12);
        assert_eq!(decay_factor(Duration::ZERO, half_life), 1.0);
        assert_eq!(decay_factor(half_life, Duration::ZERO), 0.0);

        let mut score = observed(&[(Observation::SendTimeout, 4)]);
        assert!(!score.is_negligible());
        for _ in 0..20 {
            score.decay(decay_factor(half_life, half_life));
        }
        assert!(score.is_negligible());
        assert!(score.value(&ScoreParams::default()).abs() < 1e-6);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
