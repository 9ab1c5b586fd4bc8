//! Identifiers. Internally compact (integers, 128-bit randoms); externally opaque strings
//! with a prefix that says what they name (`ev_12`, `ho_12_<32 hex>`, `or_<26 hex>`).

use std::fmt;
use std::sync::Arc;

use rand::Rng;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("malformed id")]
    Malformed,
    #[error("user id must be 1 to {max} printable characters", max = UserId::MAX_LEN)]
    BadUser,
}

/// An event, numbered by the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub u64);

impl EventId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let digits = s.strip_prefix("ev_").ok_or(IdError::Malformed)?;
        parse_decimal(digits).map(EventId)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ev_{}", self.0)
    }
}

fn parse_decimal(digits: &str) -> Result<u64, IdError> {
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdError::Malformed);
    }
    digits.parse().map_err(|_| IdError::Malformed)
}

/// A hold: the event it belongs to plus 128 random bits. The event is part of the id so
/// that any node finds the hold's shard without a lookup; the random part is the fence
/// (a hold id is never reused, unlike a counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HoldId {
    pub event: EventId,
    pub nonce: u128,
}

impl HoldId {
    pub fn random(event: EventId) -> Self {
        HoldId { event, nonce: rand::rng().random() }
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        let rest = s.strip_prefix("ho_").ok_or(IdError::Malformed)?;
        let (event, nonce) = rest.split_once('_').ok_or(IdError::Malformed)?;
        if nonce.len() != 32 {
            return Err(IdError::Malformed);
        }
        let nonce = u128::from_str_radix(nonce, 16).map_err(|_| IdError::Malformed)?;
        Ok(HoldId { event: EventId(parse_decimal(event)?), nonce })
    }
}

impl fmt::Display for HoldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ho_{}_{:032x}", self.event.0, self.nonce)
    }
}

macro_rules! random_string_id {
    ($name:ident, $prefix:literal) => {
        #[doc = concat!("A random id rendered as `", $prefix, "<26 hex>`.")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn random() -> Self {
                let bits: u128 = rand::rng().random::<u128>() >> 24;
                $name(format!(concat!($prefix, "{:026x}"), bits))
            }

            pub fn parse(s: &str) -> Result<Self, IdError> {
                let hex = s.strip_prefix($prefix).ok_or(IdError::Malformed)?;
                if hex.len() != 26 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(IdError::Malformed);
                }
                Ok($name(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

random_string_id!(OrderId, "or_");
random_string_id!(TicketId, "tk_");

/// A user, as named by the `sub` claim of a verified token. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

impl UserId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() || s.len() > Self::MAX_LEN || s.chars().any(|c| c.is_control()) {
            return Err(IdError::BadUser);
        }
        Ok(UserId(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_text_form() {
        let event = EventId(42);
        assert_eq!(EventId::parse(&event.to_string()), Ok(event));
        let hold = HoldId::random(event);
        assert_eq!(HoldId::parse(&hold.to_string()), Ok(hold));
        let order = OrderId::random();
        assert_eq!(OrderId::parse(order.as_str()), Ok(order.clone()));
        assert!(TicketId::parse(order.as_str()).is_err(), "prefix decides the kind");
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in ["", "ev_", "ev_-1", "ev_1a", "12", "ev_99999999999999999999"] {
            assert_eq!(EventId::parse(bad), Err(IdError::Malformed), "{bad}");
        }
        for bad in ["ho_1_", "ho_1_zz", "ho_x_00000000000000000000000000000000", "ho_1"] {
            assert_eq!(HoldId::parse(bad), Err(IdError::Malformed), "{bad}");
        }
    }

    #[test]
    fn user_ids_are_bounded_and_printable() {
        assert!(UserId::parse("alice").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("a\nb").is_err());
        assert!(UserId::parse(&"x".repeat(UserId::MAX_LEN + 1)).is_err());
    }
}
