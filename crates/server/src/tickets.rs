//! Signed tickets: the QR payload of a ticket is
//! `base64url(ticket_id|event_id|seat_index|revision)` `.` `base64url(Ed25519 signature)`,
//! signed at the order commit with a key generated once and kept in the data dir
//! (`ticket_signing_key`, mode 0600). A door scanner that has the public key can check a
//! payload offline; `POST /v1/tickets/verify` checks it and marks the ticket scanned.
//!
//! Rotation is not automated yet: one key signs and verifies, so replacing the file makes
//! every payload signed with the old key verify as `invalid` (a key id in the payload, or
//! a verifier that keeps old public keys, would allow a gradual change).

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use boxoffice_core::{EventId, TicketId};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// The signing key's file in the data dir: the 32-byte seed in hex.
pub const SIGNING_KEY_FILE: &str = "ticket_signing_key";
/// Longest payload accepted for verification (a real one is about 150 characters).
pub const MAX_PAYLOAD_CHARS: usize = 512;

/// What a valid payload says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTicket {
    pub ticket: TicketId,
    pub event: EventId,
    pub seat_index: u32,
    pub revision: u32,
}

pub struct TicketSigner {
    signing: SigningKey,
    verifying: VerifyingKey,
}

impl std::fmt::Debug for TicketSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketSigner").field("public_key", &hex::encode(self.verifying.as_bytes())).finish()
    }
}

impl TicketSigner {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        TicketSigner { verifying: signing.verifying_key(), signing }
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
        hex::encode(self.verifying.as_bytes())
    }

    pub fn payload(&self, ticket: &TicketId, event: EventId, seat_index: u32, revision: u32) -> String {
        let message = format!("{ticket}|{event}|{seat_index}|{revision}");
        let signature = self.signing.sign(message.as_bytes());
        format!("{}.{}", URL_SAFE_NO_PAD.encode(message), URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// The ticket a payload names, if its signature is ours and its form is exact.
    pub fn verify(&self, payload: &str) -> Option<SignedTicket> {
        if payload.len() > MAX_PAYLOAD_CHARS {
            return None;
        }
        let (message, signature) = payload.split_once('.')?;
        let message = URL_SAFE_NO_PAD.decode(message).ok()?;
        let signature: [u8; 64] = URL_SAFE_NO_PAD.decode(signature).ok()?.try_into().ok()?;
        self.verifying.verify(&message, &Signature::from_bytes(&signature)).ok()?;
        let message = std::str::from_utf8(&message).ok()?;
        let mut parts = message.split('|');
        let ticket = TicketId::parse(parts.next()?).ok()?;
        let event = EventId::parse(parts.next()?).ok()?;
        let seat_index = parse_number(parts.next()?)?;
        let revision = parse_number(parts.next()?)?;
        if parts.next().is_some() {
            return None;
        }
        Some(SignedTicket { ticket, event, seat_index, revision })
    }
}

fn parse_number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
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

    #[test]
    fn the_qr_code_is_an_svg() {
        let signer = TicketSigner::from_seed([1; 32]);
        let svg = qr_svg(&signer.payload(&TicketId::random(), EventId(1), 0, 1)).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{}", &svg[..80]);
    }
}
