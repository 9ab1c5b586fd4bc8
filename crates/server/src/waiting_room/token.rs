//! Admission tokens: `at1.<event>.<expires_ms>.<tag>`, where the tag is
//! HMAC-SHA256(key, event, expiry, user) in URL-safe base64. The user is not written in
//! the token but is part of what the tag signs, so a token verifies only for the caller
//! it was issued to (the user comes from the caller's JWT), only for its event and only
//! until it expires. The key is generated once and kept in the data dir
//! (`admission_secret`), so tokens outlive a restart of the server.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use boxoffice_core::{EventId, UnixMs, UserId};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the admission token is malformed")]
    Malformed,
    #[error("the admission token is for another event")]
    OtherEvent,
    #[error("the admission token has expired")]
    Expired,
    /// Forged, altered, or issued to another user.
    #[error("the admission token is not valid for this user")]
    BadSignature,
}

pub struct AdmissionKeys {
    mac: HmacSha256,
}

impl AdmissionKeys {
    pub fn new(secret: &[u8]) -> Self {
        AdmissionKeys { mac: HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length") }
    }

    /// A key for another purpose derived from the admission key (HMAC of `purpose`), so
    /// that every node has it without storing one more secret.
    pub fn derived_key(&self, purpose: &str) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(b"derive\n");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The token admitting `user` to hold seats of `event` until `expires_ms`.
    pub fn sign(&self, event: EventId, user: &UserId, expires_ms: UnixMs) -> String {
        let tag = self.tagged(event, user, expires_ms).finalize().into_bytes();
        format!("at1.{event}.{expires_ms}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// Checks `token` for this caller and event at `now`; returns its expiry.
    pub fn verify(
        &self,
        token: &str,
        event: EventId,
        user: &UserId,
        now: UnixMs,
    ) -> Result<UnixMs, TokenError> {
        let mut parts = token.trim().split('.');
        let (Some("at1"), Some(token_event), Some(expires), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let token_event = EventId::parse(token_event).map_err(|_| TokenError::Malformed)?;
        let expires_ms: UnixMs = expires.parse().map_err(|_| TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenError::Malformed)?;
        if tag.len() != 32 {
            return Err(TokenError::Malformed);
        }
        // The signature first: nothing about a forged token is worth telling.
        self.tagged(token_event, user, expires_ms)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        if token_event != event {
            return Err(TokenError::OtherEvent);
        }
        if now >= expires_ms {
            return Err(TokenError::Expired);
        }
        Ok(expires_ms)
    }

    fn tagged(&self, event: EventId, user: &UserId, expires_ms: UnixMs) -> HmacSha256 {
        let mut mac = self.mac.clone();
        // Fields separated by a newline: neither an event id, a number nor a user id
        // (control characters are refused) contains one, so the message is unambiguous.
        mac.update(format!("boxoffice-admission-v1\n{event}\n{expires_ms}\n{user}").as_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    const NOW: UnixMs = 1_800_000_000_000;

    #[test]
    fn a_token_verifies_for_its_user_and_event_until_it_expires() {
        let keys = AdmissionKeys::new(b"test key");
        let token = keys.sign(EventId(3), &user("alice"), NOW + 600_000);
        assert!(token.starts_with("at1.ev_3."), "{token}");
        assert_eq!(keys.verify(&token, EventId(3), &user("alice"), NOW), Ok(NOW + 600_000));
        assert_eq!(keys.verify(&token, EventId(3), &user("alice"), NOW + 599_999), Ok(NOW + 600_000));
        assert_eq!(keys.verify(&token, EventId(3), &user("alice"), NOW + 600_000), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_is_refused_to_another_user_another_event_and_another_key() {
        let keys = AdmissionKeys::new(b"test key");
        let token = keys.sign(EventId(3), &user("alice"), NOW + 600_000);
        assert_eq!(keys.verify(&token, EventId(3), &user("bob"), NOW), Err(TokenError::BadSignature));
        assert_eq!(keys.verify(&token, EventId(4), &user("alice"), NOW), Err(TokenError::OtherEvent));
        let other_server = AdmissionKeys::new(b"another key");
        assert_eq!(
            other_server.verify(&token, EventId(3), &user("alice"), NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn an_altered_or_malformed_token_is_refused() {
        let keys = AdmissionKeys::new(b"test key");
        let token = keys.sign(EventId(3), &user("alice"), NOW + 600_000);
        let later = token.replace(&format!(".{}.", NOW + 600_000), &format!(".{}.", NOW + 9_600_000));
        assert_eq!(keys.verify(&later, EventId(3), &user("alice"), NOW), Err(TokenError::BadSignature));
        let moved = token.replace("ev_3", "ev_4");
        assert_eq!(keys.verify(&moved, EventId(4), &user("alice"), NOW), Err(TokenError::BadSignature));
        for bad in [
            "",
            "at1",
            "at1.ev_3.1.",
            "at2.ev_3.1.AAAA",
            "at1.ev_x.1.AAAA",
            "at1.ev_3.x.AAAA",
            "at1.ev_3.1.!!",
        ] {
            assert_eq!(
                keys.verify(bad, EventId(3), &user("alice"), NOW),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            keys.verify(&format!("{token}.extra"), EventId(3), &user("alice"), NOW),
            Err(TokenError::Malformed)
        );
    }
}
