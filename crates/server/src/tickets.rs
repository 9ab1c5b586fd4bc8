//! Signed tickets. Every payload is signed with one Ed25519 key generated once and kept in
//! the data dir (`ticket_signing_key`, mode 0600); a door scanner that has the public key
//! (and the event's revocation list) checks any payload offline. The full scheme, with its
//! clock tolerance, is in `docs/tickets.md`.
//!
//! - **Static** (printable, mailed): `base64url(ticket_id|event_id|seat_index|revision)`
//!   `.` `base64url(signature)`, signed at the order commit (or the transfer). It never
//!   changes, so a copy admits as well as the original: an event may refuse it
//!   (`static_tickets_allowed`).
//! - **Rotating** (the ticket page): `r1.<certificate>.<certificate signature>.<step>.<step
//!   signature>`. The certificate `ticket_id|event_id|seat_index|revision|ticket_public_key`
//!   is signed with the server key; the ticket key is an Ed25519 key derived from the
//!   server key and the certificate's fields (HMAC-SHA256), so it needs no storage; the
//!   step (`unix_seconds / 15`) is signed with the ticket key over
//!   `ticket_id|revision|step`. A scanner accepts steps within one of its own (clock
//!   tolerance), so a screenshot stops working after 15 to 45 seconds. Whoever holds the
//!   ticket key can make the next payloads offline (a wallet app); today the server makes
//!   them (`GET /v1/tickets/{id}/live`).
//!
//! `POST /v1/tickets/verify` checks either form and marks the ticket scanned.
//!
//! Rotation of the server key is not automated yet: one key signs and verifies, so
//! replacing the file makes every payload signed with the old key verify as `invalid` (a
//! key id in the payload, or a verifier that keeps old public keys, would allow a gradual
//! change).

use std::collections::HashSet;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use boxoffice_core::{EventId, TicketId};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The signing key's file in the data dir: the 32-byte seed in hex.
pub const SIGNING_KEY_FILE: &str = "ticket_signing_key";
/// Longest payload accepted for verification (a static one is about 150 characters, a
/// rotating one about 330).
pub const MAX_PAYLOAD_CHARS: usize = 512;
/// How long one step of a rotating payload lasts.
pub const ROTATION_STEP_SECONDS: u64 = 15;
/// Steps either side of the scanner's own step that still verify: the clock tolerance
/// between the device that shows a payload and the scanner (one step, 15 s).
pub const ROTATION_TOLERANCE_STEPS: u64 = 1;
/// The first field of a rotating payload: its format's version.
pub const ROTATING_PREFIX: &str = "r1";
/// Domain of the key from which ticket keys are derived (`SHA-256(domain || seed)`).
const ROTATION_KEY_DOMAIN: &[u8] = b"boxoffice ticket rotation key v1";

/// The time step of a rotating payload at `now_ms` (Unix milliseconds).
pub fn time_step(now_ms: u64) -> u64 {
    now_ms / 1000 / ROTATION_STEP_SECONDS
}

/// When `step` ends, in Unix milliseconds.
pub fn step_end_ms(step: u64) -> u64 {
    (step + 1) * ROTATION_STEP_SECONDS * 1000
}

/// What a valid payload says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTicket {
    pub ticket: TicketId,
    pub event: EventId,
    pub seat_index: u32,
    pub revision: u32,
}

/// What a payload is, once its signatures are checked against the public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// A static payload.
    Static(SignedTicket),
    /// A rotating payload whose step is within the tolerance of the scanner's.
    Rotating { ticket: SignedTicket, step: u64 },
    /// A genuine rotating payload of a step too far from the scanner's: a screenshot, or
    /// a clock off by more than the tolerance.
    Expired { ticket: SignedTicket, step: u64 },
    /// Forged, altered, truncated or not a payload.
    Invalid,
}

/// Checks payloads with the public key only: what an offline door scanner holds.
#[derive(Debug, Clone)]
pub struct TicketVerifier {
    verifying: VerifyingKey,
}

impl TicketVerifier {
    /// The verifier of a public key in hex (as `TicketSigner::public_key_hex` gives it).
    pub fn from_public_key_hex(hex_key: &str) -> Option<Self> {
        let bytes: [u8; 32] = hex::decode(hex_key.trim()).ok()?.try_into().ok()?;
        Some(TicketVerifier { verifying: VerifyingKey::from_bytes(&bytes).ok()? })
    }

    /// The ticket a static payload names, if its signature is ours and its form is exact.
    pub fn verify_static(&self, payload: &str) -> Option<SignedTicket> {
        if payload.len() > MAX_PAYLOAD_CHARS {
            return None;
        }
        let (message, signature) = payload.split_once('.')?;
        let message = URL_SAFE_NO_PAD.decode(message).ok()?;
        let signature: [u8; 64] = URL_SAFE_NO_PAD.decode(signature).ok()?.try_into().ok()?;
        self.verifying.verify(&message, &Signature::from_bytes(&signature)).ok()?;
        let message = std::str::from_utf8(&message).ok()?;
        let mut parts = message.split('|');
        let ticket = parse_ticket_fields(&mut parts)?;
        if parts.next().is_some() {
            return None;
        }
        Some(ticket)
    }

    /// Checks a static or rotating payload at the scanner's time `now_ms`.
    pub fn check(&self, payload: &str, now_ms: u64) -> Checked {
        let payload = payload.trim();
        let rotating = payload.strip_prefix(ROTATING_PREFIX).and_then(|rest| rest.strip_prefix('.'));
        match rotating {
            Some(rest) => self.check_rotating(rest, now_ms).unwrap_or(Checked::Invalid),
            None => self.verify_static(payload).map_or(Checked::Invalid, Checked::Static),
        }
    }

    /// `rest` is the payload after `r1.`: certificate, its signature, step, step signature.
    fn check_rotating(&self, rest: &str, now_ms: u64) -> Option<Checked> {
        if rest.len() + ROTATING_PREFIX.len() + 1 > MAX_PAYLOAD_CHARS {
            return None;
        }
        let mut parts = rest.split('.');
        let (certificate, certificate_signature, step, step_signature) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let certificate = URL_SAFE_NO_PAD.decode(certificate).ok()?;
        let signature: [u8; 64] = URL_SAFE_NO_PAD.decode(certificate_signature).ok()?.try_into().ok()?;
        self.verifying.verify(&certificate, &Signature::from_bytes(&signature)).ok()?;
        let certificate = std::str::from_utf8(&certificate).ok()?;
        let mut fields = certificate.split('|');
        let ticket = parse_ticket_fields(&mut fields)?;
        let ticket_key: [u8; 32] = URL_SAFE_NO_PAD.decode(fields.next()?).ok()?.try_into().ok()?;
        if fields.next().is_some() {
            return None;
        }
        let ticket_key = VerifyingKey::from_bytes(&ticket_key).ok()?;
        let step_number = parse_u64(step)?;
        let signature: [u8; 64] = URL_SAFE_NO_PAD.decode(step_signature).ok()?.try_into().ok()?;
        let message = step_message(&ticket, step_number);
        ticket_key.verify(message.as_bytes(), &Signature::from_bytes(&signature)).ok()?;
        let current = time_step(now_ms);
        Some(if current.abs_diff(step_number) <= ROTATION_TOLERANCE_STEPS {
            Checked::Rotating { ticket, step: step_number }
        } else {
            Checked::Expired { ticket, step: step_number }
        })
    }
}

/// What an offline scanner decides from a payload, the public key and the revocation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfflineVerdict {
    Admit(SignedTicket),
    /// The revision is on the revocation list (refunded or transferred).
    Revoked(SignedTicket),
    Expired(SignedTicket),
    /// A static payload at an event that refuses them.
    StaticRefused(SignedTicket),
    Invalid,
}

/// A door scanner without a connection: the public key, the revocation list of its event
/// (`GET /v1/events/{id}/revocations`, kept current while it can reach the server) and
/// whether the event takes static payloads. It cannot see a ticket scanned at another
/// door: that is what the online `POST /v1/tickets/verify` adds.
#[derive(Debug, Clone)]
pub struct OfflineScanner {
    pub verifier: TicketVerifier,
    pub event: EventId,
    pub static_tickets_allowed: bool,
    revoked: HashSet<(TicketId, u32)>,
}

impl OfflineScanner {
    pub fn new(verifier: TicketVerifier, event: EventId, static_tickets_allowed: bool) -> Self {
        OfflineScanner { verifier, event, static_tickets_allowed, revoked: HashSet::new() }
    }

    /// Adds an entry of the revocation list.
    pub fn revoke(&mut self, ticket: TicketId, revision: u32) {
        self.revoked.insert((ticket, revision));
    }

    pub fn scan(&self, payload: &str, now_ms: u64) -> OfflineVerdict {
        let (ticket, is_static) = match self.verifier.check(payload, now_ms) {
            Checked::Invalid => return OfflineVerdict::Invalid,
            Checked::Expired { ticket, .. } => return OfflineVerdict::Expired(ticket),
            Checked::Static(ticket) => (ticket, true),
            Checked::Rotating { ticket, .. } => (ticket, false),
        };
        if ticket.event != self.event {
            return OfflineVerdict::Invalid;
        }
        if self.revoked.contains(&(ticket.ticket.clone(), ticket.revision)) {
            return OfflineVerdict::Revoked(ticket);
        }
        if is_static && !self.static_tickets_allowed {
            return OfflineVerdict::StaticRefused(ticket);
        }
        OfflineVerdict::Admit(ticket)
    }
}

pub struct TicketSigner {
    signing: SigningKey,
    verifier: TicketVerifier,
    /// The key ticket keys are derived from (never leaves the server).
    rotation_key: [u8; 32],
}

impl std::fmt::Debug for TicketSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketSigner").field("public_key", &self.public_key_hex()).finish()
    }
}

impl TicketSigner {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let rotation_key: [u8; 32] =
            Sha256::new().chain_update(ROTATION_KEY_DOMAIN).chain_update(seed).finalize().into();
        TicketSigner {
            verifier: TicketVerifier { verifying: signing.verifying_key() },
            signing,
            rotation_key,
        }
    }

    /// The key in `<data_dir>/ticket_signing_key`, created (0600) on first use.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join(SIGNING_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bad = |why: String| std::io::Error::other(format!("{}: {why}", path.display()));
                let bytes = hex::decode(text.trim()).map_err(|e| bad(format!("not hex: {e}")))?;
                let seed: [u8; 32] = bytes.try_into().map_err(|_| bad("expected a 32-byte seed".into()))?;
                Ok(Self::from_seed(seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let seed: [u8; 32] = rand::random();
                let tmp = data_dir.join(format!("{SIGNING_KEY_FILE}.tmp"));
                {
                    use std::io::Write;
                    let mut options = std::fs::OpenOptions::new();
                    options.write(true).create(true).truncate(true);
                    #[cfg(unix)]
                    {
                        use std::os::unix::fs::OpenOptionsExt;
                        options.mode(0o600);
                    }
                    let mut file = options.open(&tmp)?;
                    file.write_all(hex::encode(seed).as_bytes())?;
                    file.sync_all()?;
                }
                std::fs::rename(&tmp, &path)?;
                Ok(Self::from_seed(seed))
            }
            Err(e) => Err(e),
        }
    }

    /// The public key, hex: what an offline scanner needs.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.verifier.verifying.as_bytes())
    }

    /// The verifier of this key (public key only).
    pub fn verifier(&self) -> &TicketVerifier {
        &self.verifier
    }

    /// The static payload of a ticket revision.
    pub fn payload(&self, ticket: &TicketId, event: EventId, seat_index: u32, revision: u32) -> String {
        let message = format!("{ticket}|{event}|{seat_index}|{revision}");
        let signature = self.signing.sign(message.as_bytes());
        format!("{}.{}", URL_SAFE_NO_PAD.encode(message), URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// The ticket a static payload names, if its signature is ours and its form is exact.
    pub fn verify(&self, payload: &str) -> Option<SignedTicket> {
        self.verifier.verify_static(payload)
    }

    /// The key of one ticket revision: derived, never stored. HMAC-SHA256 keyed with the
    /// rotation key over `ticket_id|event_id|seat_index|revision` is the Ed25519 seed.
    pub fn ticket_key(&self, ticket: &SignedTicket) -> SigningKey {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.rotation_key).expect("HMAC takes any key length");
        mac.update(ticket_fields(ticket).as_bytes());
        SigningKey::from_bytes(&mac.finalize().into_bytes().into())
    }

    /// The rotating payload of a ticket revision for one time step (see the module docs).
    pub fn rotating_payload(&self, ticket: &SignedTicket, step: u64) -> String {
        let ticket_key = self.ticket_key(ticket);
        let certificate = format!(
            "{}|{}",
            ticket_fields(ticket),
            URL_SAFE_NO_PAD.encode(ticket_key.verifying_key().as_bytes())
        );
        let certificate_signature = self.signing.sign(certificate.as_bytes());
        let step_signature = ticket_key.sign(step_message(ticket, step).as_bytes());
        format!(
            "{ROTATING_PREFIX}.{}.{}.{step}.{}",
            URL_SAFE_NO_PAD.encode(&certificate),
            URL_SAFE_NO_PAD.encode(certificate_signature.to_bytes()),
            URL_SAFE_NO_PAD.encode(step_signature.to_bytes())
        )
    }
}

/// `ticket_id|event_id|seat_index|revision`: what the static payload and the certificate
/// of the rotating one sign.
fn ticket_fields(ticket: &SignedTicket) -> String {
    format!("{}|{}|{}|{}", ticket.ticket, ticket.event, ticket.seat_index, ticket.revision)
}

/// What the ticket key signs for one step.
fn step_message(ticket: &SignedTicket, step: u64) -> String {
    format!("{}|{}|{step}", ticket.ticket, ticket.revision)
}

/// Reads `ticket_id|event_id|seat_index|revision` from the fields.
fn parse_ticket_fields<'a>(parts: &mut impl Iterator<Item = &'a str>) -> Option<SignedTicket> {
    let ticket = TicketId::parse(parts.next()?).ok()?;
    let event = EventId::parse(parts.next()?).ok()?;
    let seat_index = parse_number(parts.next()?)?;
    let revision = parse_number(parts.next()?)?;
    Some(SignedTicket { ticket, event, seat_index, revision })
}

fn parse_number(s: &str) -> Option<u32> {
    u32::try_from(parse_u64(s)?).ok()
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The payload as a QR code in SVG (fails only for data far longer than a payload).
pub fn qr_svg(payload: &str) -> Result<String, String> {
    let code =
        qrcode::QrCode::new(payload.as_bytes()).map_err(|e| format!("cannot render a QR code: {e}"))?;
    Ok(code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(240, 240).quiet_zone(true).build())
}

/// Pixels per QR module in the PNG form, and the quiet zone in modules.
const PNG_MODULE_PIXELS: usize = 6;
const PNG_QUIET_MODULES: usize = 4;

/// The payload as a QR code in PNG (1-bit greyscale; what mail clients show inline).
pub fn qr_png(payload: &str) -> Result<Vec<u8>, String> {
    let code =
        qrcode::QrCode::new(payload.as_bytes()).map_err(|e| format!("cannot render a QR code: {e}"))?;
    let modules = code.width();
    let dark = code.to_colors();
    let side = (modules + 2 * PNG_QUIET_MODULES) * PNG_MODULE_PIXELS;
    let row_bytes = side.div_ceil(8);
    // Scanlines: a filter byte (0, none), then the pixels, 1 bit each, 1 = white.
    let mut raw = Vec::with_capacity((row_bytes + 1) * side);
    for y in 0..side {
        raw.push(0);
        let my = (y / PNG_MODULE_PIXELS).checked_sub(PNG_QUIET_MODULES).filter(|&m| m < modules);
        let mut byte = 0u8;
        for x in 0..side {
            let mx = (x / PNG_MODULE_PIXELS).checked_sub(PNG_QUIET_MODULES).filter(|&m| m < modules);
            let is_dark =
                matches!((mx, my), (Some(mx), Some(my)) if dark[my * modules + mx] == qrcode::Color::Dark);
            byte = (byte << 1) | u8::from(!is_dark);
            if x % 8 == 7 {
                raw.push(byte);
                byte = 0;
            }
        }
        if !side.is_multiple_of(8) {
            raw.push(byte << (8 - side % 8));
        }
    }
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut zlib, &raw).map_err(|e| e.to_string())?;
    let idat = zlib.finish().map_err(|e| e.to_string())?;
    let side = u32::try_from(side).map_err(|_| "QR code too large".to_owned())?;
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    // Bit depth 1, greyscale, deflate, no filter method beyond 0, no interlace.
    ihdr.extend_from_slice(&[1, 0, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", &ihdr[..]), (b"IDAT", &idat[..]), (b"IEND", &[][..])] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let crc = crc32fast::hash(&png[start..]);
        png.extend_from_slice(&crc.to_be_bytes());
    }
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_png_is_a_valid_image_of_the_code() {
        let payload = "bt1.tk_0123456789abcdef.ev_1.42.1.signature";
        let png = qr_png(payload).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // Chunks: every CRC matches, IHDR first, IEND last.
        let mut at = 8;
        let mut kinds = Vec::new();
        let mut idat = Vec::new();
        let mut side = 0;
        while at < png.len() {
            let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
            let kind = &png[at + 4..at + 8];
            let data = &png[at + 8..at + 8 + len];
            let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().unwrap());
            assert_eq!(crc, crc32fast::hash(&png[at + 4..at + 8 + len]));
            if kind == b"IHDR" {
                side = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
                assert_eq!(&data[8..], &[1, 0, 0, 0, 0]);
            }
            if kind == b"IDAT" {
                idat.extend_from_slice(data);
            }
            kinds.push(String::from_utf8(kind.to_vec()).unwrap());
            at += 12 + len;
        }
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
        // The pixels decode back to the code's modules.
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&idat[..]), &mut raw).unwrap();
        let row = side.div_ceil(8) + 1;
        assert_eq!(raw.len(), row * side);
        let code = qrcode::QrCode::new(payload.as_bytes()).unwrap();
        let colors = code.to_colors();
        let pixel = |x: usize, y: usize| raw[y * row + 1 + x / 8] >> (7 - x % 8) & 1 == 1;
        for my in 0..code.width() {
            for mx in 0..code.width() {
                let (x, y) = ((mx + 4) * 6 + 3, (my + 4) * 6 + 3);
                assert_eq!(!pixel(x, y), colors[my * code.width() + mx] == qrcode::Color::Dark);
            }
        }
        assert!(pixel(0, 0), "a white quiet zone");
    }

    #[test]
    fn a_payload_verifies_and_names_its_ticket() {
        let signer = TicketSigner::from_seed([7; 32]);
        let ticket = TicketId::random();
        let payload = signer.payload(&ticket, EventId(12), 345, 1);
        assert!(payload.len() < 200, "{payload}");
        let signed = signer.verify(&payload).expect("valid");
        assert_eq!(signed, SignedTicket { ticket, event: EventId(12), seat_index: 345, revision: 1 });
    }

    #[test]
    fn forged_or_altered_payloads_do_not_verify() {
        let signer = TicketSigner::from_seed([7; 32]);
        let other = TicketSigner::from_seed([8; 32]);
        let ticket = TicketId::random();
        let payload = signer.payload(&ticket, EventId(1), 2, 1);
        assert!(other.verify(&payload).is_none(), "another key's signature");
        let (message, signature) = payload.split_once('.').unwrap();
        let altered = URL_SAFE_NO_PAD.encode(format!("{ticket}|ev_1|3|1"));
        assert!(signer.verify(&format!("{altered}.{signature}")).is_none(), "another seat");
        assert!(signer.verify(message).is_none());
        assert!(signer.verify("").is_none());
        assert!(signer.verify("a.b").is_none());
        assert!(signer.verify(&"x".repeat(MAX_PAYLOAD_CHARS + 1)).is_none());
    }

    #[test]
    fn the_key_is_created_once_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = TicketSigner::load_or_create(dir.path()).unwrap();
        let again = TicketSigner::load_or_create(dir.path()).unwrap();
        assert_eq!(first.public_key_hex(), again.public_key_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SIGNING_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let payload = first.payload(&TicketId::random(), EventId(1), 0, 1);
        assert!(again.verify(&payload).is_some());
    }

    fn signed(seat_index: u32, revision: u32) -> SignedTicket {
        SignedTicket { ticket: TicketId::random(), event: EventId(12), seat_index, revision }
    }

    /// 10:00:07 on some day: step `T / 15 s`, 8 s left in it.
    const NOW_MS: u64 = 1_800_000_007_000;

    #[test]
    fn a_rotating_payload_verifies_within_one_step_and_expires_outside() {
        let signer = TicketSigner::from_seed([7; 32]);
        let verifier = TicketVerifier::from_public_key_hex(&signer.public_key_hex()).unwrap();
        let ticket = signed(345, 2);
        let step = time_step(NOW_MS);
        let payload = signer.rotating_payload(&ticket, step);
        assert!(payload.starts_with("r1.") && payload.len() <= MAX_PAYLOAD_CHARS, "{payload}");
        assert_eq!(verifier.check(&payload, NOW_MS), Checked::Rotating { ticket: ticket.clone(), step });
        // The scanner's clock may be one step either side of the device's.
        let step_ms = ROTATION_STEP_SECONDS * 1000;
        for now in
            [NOW_MS - step_ms, NOW_MS + step_ms, step_end_ms(step) + step_ms - 1, step * step_ms - step_ms]
        {
            assert!(matches!(verifier.check(&payload, now), Checked::Rotating { .. }), "at {now}");
        }
        // Two steps away: a screenshot shown 30 s or more later.
        for now in [step_end_ms(step) + step_ms, step * step_ms - step_ms - 1, NOW_MS + 3_600_000, 0] {
            assert_eq!(
                verifier.check(&payload, now),
                Checked::Expired { ticket: ticket.clone(), step },
                "at {now}"
            );
        }
        // A payload made for a later step verifies then, and only then.
        let later = signer.rotating_payload(&ticket, step + 10);
        assert!(matches!(verifier.check(&later, NOW_MS), Checked::Expired { .. }));
        assert!(matches!(verifier.check(&later, NOW_MS + 10 * step_ms), Checked::Rotating { .. }));
    }

    #[test]
    fn altered_or_foreign_rotating_payloads_do_not_verify() {
        let signer = TicketSigner::from_seed([7; 32]);
        let other = TicketSigner::from_seed([8; 32]);
        let ticket = signed(3, 1);
        let step = time_step(NOW_MS);
        let payload = signer.rotating_payload(&ticket, step);
        assert_eq!(other.verifier().check(&payload, NOW_MS), Checked::Invalid, "another server key");
        let parts: Vec<&str> = payload.split('.').collect();
        assert_eq!(parts.len(), 5);
        let with = |i: usize, value: &str| {
            let mut p = parts.clone();
            p[i] = value;
            p.join(".")
        };
        // The step changed without its signature: the screenshot trick.
        let next = (step + 1).to_string();
        assert_eq!(signer.verifier().check(&with(3, &next), NOW_MS), Checked::Invalid);
        // Another ticket's step signature, or a certificate for another seat.
        let theirs = signer.rotating_payload(&signed(4, 1), step);
        let their_parts: Vec<&str> = theirs.split('.').collect();
        assert_eq!(signer.verifier().check(&with(4, their_parts[4]), NOW_MS), Checked::Invalid);
        assert_eq!(signer.verifier().check(&with(1, their_parts[1]), NOW_MS), Checked::Invalid);
        // A certificate re-signed by another server key with the same ticket key.
        let forged = other.rotating_payload(&ticket, step);
        let forged_parts: Vec<&str> = forged.split('.').collect();
        assert_eq!(signer.verifier().check(&with(2, forged_parts[2]), NOW_MS), Checked::Invalid);
        for junk in
            ["r1", "r1.", "r1.a.b.c.d", "r1....", &format!("{payload}.x"), &format!("r2{}", &payload[2..])]
        {
            assert_eq!(signer.verifier().check(junk, NOW_MS), Checked::Invalid, "{junk}");
        }
        assert_eq!(signer.verifier().check(&with(3, "99999999999999999999999"), NOW_MS), Checked::Invalid);
        // The static form is still recognised, and a rotating one is no static payload.
        let static_payload = signer.payload(&ticket.ticket, ticket.event, 3, 1);
        assert_eq!(signer.verifier().check(&static_payload, NOW_MS), Checked::Static(ticket.clone()));
        assert!(signer.verify(&payload).is_none());
    }

    #[test]
    fn ticket_keys_are_per_revision_and_stable() {
        let signer = TicketSigner::from_seed([7; 32]);
        let ticket = signed(3, 1);
        let again = TicketSigner::from_seed([7; 32]);
        assert_eq!(signer.ticket_key(&ticket).to_bytes(), again.ticket_key(&ticket).to_bytes());
        let next_revision = SignedTicket { revision: 2, ..ticket.clone() };
        assert_ne!(signer.ticket_key(&ticket).to_bytes(), signer.ticket_key(&next_revision).to_bytes());
        assert_ne!(
            signer.ticket_key(&ticket).to_bytes(),
            TicketSigner::from_seed([8; 32]).ticket_key(&ticket).to_bytes()
        );
    }

    #[test]
    fn an_offline_scanner_needs_only_the_public_key_and_the_revocation_list() {
        let signer = TicketSigner::from_seed([7; 32]);
        let verifier = TicketVerifier::from_public_key_hex(&signer.public_key_hex()).unwrap();
        let mut scanner = OfflineScanner::new(verifier, EventId(12), true);
        let ticket = signed(5, 1);
        let step = time_step(NOW_MS);
        let rotating = signer.rotating_payload(&ticket, step);
        let printed = signer.payload(&ticket.ticket, ticket.event, 5, 1);
        assert_eq!(scanner.scan(&rotating, NOW_MS), OfflineVerdict::Admit(ticket.clone()));
        assert_eq!(scanner.scan(&printed, NOW_MS), OfflineVerdict::Admit(ticket.clone()));
        assert_eq!(scanner.scan(&rotating, NOW_MS + 60_000), OfflineVerdict::Expired(ticket.clone()));
        scanner.static_tickets_allowed = false;
        assert_eq!(scanner.scan(&printed, NOW_MS), OfflineVerdict::StaticRefused(ticket.clone()));
        assert_eq!(scanner.scan(&rotating, NOW_MS), OfflineVerdict::Admit(ticket.clone()));
        // Transferred: revision 1 is revoked, the new ticket's revision 2 admits.
        scanner.revoke(ticket.ticket.clone(), 1);
        assert_eq!(scanner.scan(&rotating, NOW_MS), OfflineVerdict::Revoked(ticket.clone()));
        let reissued = SignedTicket { ticket: TicketId::random(), revision: 2, ..ticket.clone() };
        let new_payload = signer.rotating_payload(&reissued, step);
        assert_eq!(scanner.scan(&new_payload, NOW_MS), OfflineVerdict::Admit(reissued));
        let elsewhere = SignedTicket { event: EventId(13), ..signed(5, 1) };
        assert_eq!(scanner.scan(&signer.rotating_payload(&elsewhere, step), NOW_MS), OfflineVerdict::Invalid);
        assert!(TicketVerifier::from_public_key_hex("zz").is_none());
    }

    #[test]
    fn a_rotating_payload_fits_a_qr_code() {
        let signer = TicketSigner::from_seed([1; 32]);
        let ticket = SignedTicket {
            seat_index: u32::MAX,
            revision: u32::MAX,
            event: EventId(u64::MAX >> 1),
            ..signed(0, 1)
        };
        let payload = signer.rotating_payload(&ticket, u64::MAX / 1000);
        assert!(payload.len() <= MAX_PAYLOAD_CHARS, "{} characters", payload.len());
        assert!(qr_svg(&payload).unwrap().contains("<svg"));
    }

    #[test]
    fn the_qr_code_is_an_svg() {
        let signer = TicketSigner::from_seed([1; 32]);
        let svg = qr_svg(&signer.payload(&TicketId::random(), EventId(1), 0, 1)).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{}", &svg[..80]);
    }
}
