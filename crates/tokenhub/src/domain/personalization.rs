//! Personalizations: a profile for a device, sealed to it when the device first asks for it and
//! offered until the device settles it.

use super::named::named_enum;

named_enum! {
    /// Whether a personalization is a token's first one or a re-personalization.
    pub enum Kind ("a personalization kind") {
        Perso = "PERSO",
        Reperso = "REPERSO",
    }
}

named_enum! {
    /// Where a personalization stands.
    pub enum PersonalizationState ("a personalization state") {
        /// Offered to the device until it says how it went.
        Pending = "PENDING",
        Confirmed = "CONFIRMED",
        Failed = "FAILED",
    }
}

#[derive(Clone)]
pub struct Personalization {
    pub personalization_id: String,
    pub token_id: String,
    pub device_id: String,
    pub profile_version: String,
    pub kind: Kind,
    pub state: PersonalizationState,
    /// The HPKE-sealed profile; gone once the personalization is settled.
    pub enc: Option<Vec<u8>>,
    pub ciphertext: Option<Vec<u8>>,
    pub tries: i64,
    pub next_offer_ms: i64,
    pub expires_ms: i64,
    pub result_reason: Option<String>,
    pub correlation_id: String,
    pub created_ms: i64,
}

impl Personalization {
    /// Pending and past its end at `now`: expired unfetched, or out of tries (`max_tries`) and
    /// past its last offer's window.
    pub fn is_overdue(&self, max_tries: i64, now: i64) -> bool {
        self.state == PersonalizationState::Pending
            && (self.expires_ms <= now || (self.tries >= max_tries && self.next_offer_ms <= now))
    }
}

impl std::fmt::Debug for Personalization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Personalization")
            .field("personalization_id", &self.personalization_id)
            .field("token_id", &self.token_id)
            .field("state", &self.state)
            .field("tries", &self.tries)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(tries: i64, next_offer_ms: i64, expires_ms: i64) -> Personalization {
        Personalization {
            personalization_id: "p".into(),
            token_id: "t".into(),
            device_id: "d".into(),
            profile_version: "v1".into(),
            kind: Kind::Perso,
            state: PersonalizationState::Pending,
            enc: None,
            ciphertext: None,
            tries,
            next_offer_ms,
            expires_ms,
            result_reason: None,
            correlation_id: "c".into(),
            created_ms: 0,
        }
    }

    #[test]
    fn overdue_is_expired_or_out_of_tries_past_the_last_window_and_still_pending() {
        let max_tries = 3;
        assert!(pending(0, 0, 100).is_overdue(max_tries, 100), "expired");
        assert!(!pending(0, 0, 100).is_overdue(max_tries, 99));
        assert!(
            pending(3, 50, 1_000).is_overdue(max_tries, 50),
            "out of tries"
        );
        assert!(
            !pending(3, 51, 1_000).is_overdue(max_tries, 50),
            "its last window runs"
        );
        assert!(
            !pending(2, 0, 1_000).is_overdue(max_tries, 50),
            "tries left"
        );
        let mut settled = pending(0, 0, 100);
        settled.state = PersonalizationState::Failed;
        assert!(!settled.is_overdue(max_tries, 1_000), "already settled");
    }
}
