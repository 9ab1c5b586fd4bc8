//! Ticket mail: one RFC 5322 message per order, with each ticket's QR code inline as a
//! PNG part (mail clients show PNG inline; most do not show SVG), written to `<data-dir>/mail/{order_id}.eml` (a temp file, `fsync`, then a
//! rename). The file name is the order id, so a redelivered stream message finds the file
//! and sends nothing; a crash mid-write leaves only a temp file that the next try
//! overwrites. Never two mails for one order.

use std::io::Write;
use std::path::{Path, PathBuf};

use boxoffice_core::OrderId;
use boxoffice_store::{Order, TicketStatus};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

/// The directory of written mail, under the data dir.
pub const MAIL_DIR: &str = "mail";
/// The sender of ticket mail.
pub const MAIL_FROM: &str = "boxoffice tickets <tickets@boxoffice.localhost>";

/// Where the mail of an order goes.
pub fn mail_path(dir: &Path, order: &OrderId) -> PathBuf {
    dir.join(format!("{order}.eml"))
}

/// What the mail tells about the event.
pub struct EventInfo {
    pub name: String,
    pub starts_at: String,
    pub venue: String,
}

/// Renders the mail of an order: a text and an HTML part, the HTML showing each ticket's
/// QR code from an inline PNG part. `qr_png` renders one payload. `None` when the order
/// has no (usable) address: tickets are issued but not mailed.
pub fn render(
    order: &Order,
    event: &EventInfo,
    qr_png: impl Fn(&str) -> Result<Vec<u8>, String>,
) -> Result<Option<Vec<u8>>, String> {
    let Some(to) = order.email.as_deref() else { return Ok(None) };
    let Ok(to) = to.parse::<Mailbox>() else {
        tracing::warn!(order = %order.id, "order email is not an address lettre accepts; tickets not mailed");
        return Ok(None);
    };
    let from: Mailbox = MAIL_FROM.parse().map_err(|e| format!("sender address: {e}"))?;
    let png_type = ContentType::parse("image/png").map_err(|e| format!("content type: {e}"))?;
    let tickets: Vec<_> = order
        .tickets
        .iter()
        .filter(|t| matches!(t.status, TicketStatus::Valid | TicketStatus::Scanned))
        .filter_map(|t| t.qr_payload.as_deref().map(|p| (t, p)))
        .collect();
    let mut text = format!(
        "Your tickets for {} ({}, {}).\nOrder {}\n\n",
        event.name, event.venue, event.starts_at, order.id
    );
    // Short lines: the HTML then travels as plain 7-bit text, its `cid:` links intact.
    let mut html = format!(
        "<html><body>\n<h1>{}</h1>\n<p>{}</p>\n<p>{}</p>\n<p>Order {}</p>\n",
        escape(&event.name),
        escape(&event.venue),
        escape(&event.starts_at),
        order.id
    );
    for (ticket, _) in &tickets {
        text.push_str(&format!("Seat {}: ticket {} (QR code attached)\n", ticket.seat_label, ticket.id));
        html.push_str(&format!(
            "<h2>Seat {}</h2>\n<p><img width=\"240\" height=\"240\" alt=\"QR code\"\nsrc=\"cid:{}\"></p>\n",
            escape(&ticket.seat_label),
            ticket.id,
        ));
    }
    html.push_str("</body></html>\n");
    let mut related = MultiPart::related().singlepart(SinglePart::html(html));
    for (ticket, payload) in &tickets {
        let png = qr_png(payload)?;
        related = related.singlepart(
            Attachment::new_inline_with_name(ticket.id.to_string(), format!("{}.png", ticket.id))
                .body(png, png_type.clone()),
        );
    }
    let body = MultiPart::alternative().singlepart(SinglePart::plain(text)).multipart(related);
    let sent_at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(order.created_at);
    let message = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(format!("Your tickets: {}", event.name))
        .message_id(Some(format!("<{}@boxoffice.localhost>", order.id)))
        .date(sent_at)
        .multipart(body)
        .map_err(|e| format!("cannot build the mail: {e}"))?;
    Ok(Some(message.formatted()))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Writes the mail of an order unless it exists; returns whether it wrote it.
pub fn write_once(dir: &Path, order: &OrderId, message: &[u8]) -> std::io::Result<bool> {
    write_file_once(dir, &format!("{order}.eml"), message)
}

/// A waitlist offer to announce (see `crate::waitlist`).
pub struct WaitlistOffer {
    pub to: String,
    pub event_name: String,
    pub hold_id: String,
    /// Seat labels.
    pub seats: Vec<String>,
    pub expires_at: String,
}

/// Renders the mail announcing a waitlist offer (plain text).
pub fn render_waitlist_offer(offer: &WaitlistOffer) -> Result<Vec<u8>, String> {
    let to: Mailbox = offer.to.parse().map_err(|e| format!("recipient address: {e}"))?;
    let from: Mailbox = MAIL_FROM.parse().map_err(|e| format!("sender address: {e}"))?;
    let text = format!(
        "Seats are waiting for you: {}.\nSeats: {}\nThey are held in your name (hold {}) until {}.\n\
         Check out the hold before then; after it they go to the next fan on the waitlist.\n",
        offer.event_name,
        offer.seats.join(", "),
        offer.hold_id,
        offer.expires_at
    );
    let message = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(format!("Seats for you from the waitlist: {}", offer.event_name))
        .message_id(Some(format!("<{}@boxoffice.localhost>", offer.hold_id)))
        .singlepart(SinglePart::plain(text))
        .map_err(|e| format!("cannot build the mail: {e}"))?;
    Ok(message.formatted())
}

/// Writes `dir/name` unless it exists (a temp file, `fsync`, then a rename); returns
/// whether it wrote it.
pub fn write_file_once(dir: &Path, name: &str, message: &[u8]) -> std::io::Result<bool> {
    let path = dir.join(name);
    if path.exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(message)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(true)
}
