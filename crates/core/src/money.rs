//! Money: integer minor units and an ISO 4217 currency code. Never floating point.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    pub fn parse(s: &str) -> Option<Self> {
        let bytes: [u8; 3] = s.as_bytes().try_into().ok()?;
        bytes.iter().all(|b| b.is_ascii_uppercase()).then_some(Currency(bytes))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("currency codes are ASCII by construction")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s)
            .ok_or_else(|| serde::de::Error::custom("currency must be a 3-letter upper-case ISO 4217 code"))
    }
}

/// An amount in minor units (cents) of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Money {
    pub amount: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: i64, currency: Currency) -> Self {
        Money { amount, currency }
    }

    /// The sum of several amounts of one currency; `None` on mixed currencies or overflow.
    pub fn sum(mut items: impl Iterator<Item = Money>) -> Option<Money> {
        let first = items.next()?;
        items.try_fold(first, |acc, m| {
            (acc.currency == m.currency)
                .then(|| acc.amount.checked_add(m.amount))
                .flatten()
                .map(|amount| Money { amount, currency: acc.currency })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_refuse_mixed_currencies() {
        let usd = |a| Money::new(a, Currency::USD);
        let eur = Money::new(5, Currency::parse("EUR").unwrap());
        assert_eq!(Money::sum([usd(1), usd(2)].into_iter()), Some(usd(3)));
        assert_eq!(Money::sum([usd(1), eur].into_iter()), None);
        assert_eq!(Money::sum([usd(i64::MAX), usd(1)].into_iter()), None);
    }

    #[test]
    fn currency_codes_are_validated() {
        assert!(Currency::parse("usd").is_none());
        assert!(Currency::parse("US").is_none());
        assert!(serde_json::from_str::<Money>(r#"{"amount":1,"currency":"xx"}"#).is_err());
    }
}
