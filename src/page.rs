//! The invoice page: `GET /invoice/{id}`, and the script and style sheet it
//! loads (`/static/page.js`, `/static/page.css`, compiled into the binary).
//!
//! The HTML is rendered on the server from one consistent read of the
//! invoice, so it is correct before (and without) any script. `page.js` then
//! opens the invoice's WebSocket room and keeps the page current.
//!
//! Every text that comes from a merchant or a payer (memos) is escaped here
//! with [`escape_html`], and the script inserts text only with
//! `textContent`. The Content-Security-Policy allows no inline script or
//! style at all, so even an escaping mistake could not run code.

use std::fmt::Write;
use std::sync::LazyLock;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use qrcode::QrCode;
use qrcode::render::svg;

use crate::api::{ApiError, parse_invoice_id};
use crate::app::AppState;
use crate::invoice::{self, InvoiceStatus, InvoiceView, PaymentView};

/// The page's script, compiled in.
pub const PAGE_JS: &str = include_str!("../static/page.js");
/// The page's style sheet, compiled in.
pub const PAGE_CSS: &str = include_str!("../static/page.css");

/// Content-Security-Policy of the invoice page: scripts, styles and
/// connections from this origin only, nothing inline, images from this
/// origin or `data:` URIs, no framing, no forms, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Cache lifetime of the static files. Their URLs carry a hash of their
/// content (`?v=`), so a new build is fetched at once whatever this says.
const STATIC_CACHE_CONTROL: &str = "public, max-age=86400";

/// Satoshis in one BCH.
const SATS_PER_BCH: i64 = 100_000_000;

/// Short content hashes of the static files, for cache-busting URLs.
static PAGE_JS_VERSION: LazyLock<String> = LazyLock::new(|| content_version(PAGE_JS));
static PAGE_CSS_VERSION: LazyLock<String> = LazyLock::new(|| content_version(PAGE_CSS));

/// `GET /invoice/{id}`: the invoice page.
pub async fn invoice_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_invoice_id(&id)?;
    let found = invoice::load_with_payments(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::invoice_not_found(id))?;
    let html = render(&found.invoice, &found.payments, Utc::now());
    let mut response = (StatusCode::OK, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    // The page is a live view: never show a stale copy from a cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    common_headers(headers);
    Ok(response)
}

/// `GET /static/page.js`.
pub async fn page_js() -> Response {
    static_file(PAGE_JS, "text/javascript; charset=utf-8")
}

/// `GET /static/page.css`.
pub async fn page_css() -> Response {
    static_file(PAGE_CSS, "text/css; charset=utf-8")
}

fn static_file(body: &'static str, content_type: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(STATIC_CACHE_CONTROL),
    );
    common_headers(headers);
    response
}

fn common_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// Escapes text for an HTML text node or a double- or single-quoted
/// attribute value.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Satoshis as BCH, with up to 8 decimals and no trailing zeros:
/// `100000` is `0.001`, `100000000` is `1`.
pub fn format_bch(sats: i64) -> String {
    let sign = if sats < 0 { "-" } else { "" };
    let sats = sats.unsigned_abs();
    let per = SATS_PER_BCH.unsigned_abs();
    let (whole, fraction) = (sats / per, sats % per);
    if fraction == 0 {
        return format!("{sign}{whole}");
    }
    let fraction = format!("{fraction:08}");
    format!("{sign}{whole}.{}", fraction.trim_end_matches('0'))
}

/// An integer with thousands separators: `100000` is `100,000`.
pub fn group_thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The BIP21-style payment URI a wallet reads from the QR code:
/// `bitcoincash:q...?amount=0.001`.
pub fn payment_uri(address: &str, amount_sats: i64) -> String {
    format!("{address}?amount={}", format_bch(amount_sats))
}

/// What the page says for a status; `page.js` uses the same words.
pub fn status_label(status: InvoiceStatus) -> &'static str {
    match status {
        InvoiceStatus::Unpaid => "Awaiting payment",
        InvoiceStatus::PartiallyPaid => "Partially paid",
        InvoiceStatus::Paid => "Paid",
        InvoiceStatus::Overpaid => "Overpaid",
        InvoiceStatus::Expired => "Expired",
    }
}

fn status_key(status: InvoiceStatus) -> &'static str {
    match status {
        InvoiceStatus::Unpaid => "unpaid",
        InvoiceStatus::PartiallyPaid => "partially_paid",
        InvoiceStatus::Paid => "paid",
        InvoiceStatus::Overpaid => "overpaid",
        InvoiceStatus::Expired => "expired",
    }
}

/// A time as the page shows it (UTC, to the second); `page.js` formats the
/// same way.
fn format_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The time attribute value (RFC 3339, milliseconds, `Z`).
fn time_attribute(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Time left before `expires_at`, as the countdown shows it.
pub fn format_remaining(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let left = (expires_at - now).num_seconds();
    if left <= 0 {
        return "expired".to_owned();
    }
    let (days, hours, minutes, seconds) =
        (left / 86_400, left / 3600 % 24, left / 60 % 60, left % 60);
    if days > 0 {
        format!("{days}d {hours}h left")
    } else if hours > 0 {
        format!("{hours}:{minutes:02}:{seconds:02} left")
    } else {
        format!("{minutes}:{seconds:02} left")
    }
}

/// An inline SVG QR code of `text`, or `None` if it is too long for one.
fn qr_svg(text: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    let image = code
        .render::<svg::Color>()
        .module_dimensions(1, 1)
        .quiet_zone(true)
        .dark_color(svg::Color("#111"))
        .light_color(svg::Color("#fff"))
        .build();
    // Inline SVG in HTML takes no XML declaration.
    let start = image.find("<svg")?;
    Some(image[start..].replacen(
        "<svg ",
        "<svg class=\"qr-code\" role=\"img\" aria-label=\"QR code of the payment request\" ",
        1,
    ))
}

/// The whole page.
pub fn render(invoice: &InvoiceView, payments: &[PaymentView], now: DateTime<Utc>) -> String {
    let id = invoice.id.as_uuid().simple().to_string();
    let status = status_key(invoice.status);
    let settled = matches!(
        invoice.status,
        InvoiceStatus::Paid | InvoiceStatus::Overpaid
    );
    let mut html = String::with_capacity(8 * 1024);
    let title = if invoice.memo.is_empty() {
        "Payment request".to_owned()
    } else {
        escape_html(&invoice.memo)
    };

    // `write!` to a String cannot fail.
    let _ = write!(
        html,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} · Invoice</title>
<link rel="stylesheet" href="/static/page.css?v={css_version}">
<script src="/static/page.js?v={js_version}" defer></script>
</head>
<body>
<main id="invoice" class="invoice" data-invoice-id="{id}" data-amount-sats="{amount}" data-paid-sats="{paid}" data-status="{status}" data-expires-at="{expires}">
<header class="head">
<p class="eyebrow">Invoice <span id="connection" class="badge" data-state="idle" role="status" hidden></span></p>
<h1 id="memo" class="title">{title}</h1>
</header>
<section class="summary" aria-live="polite">
<p id="status" class="status" data-status="{status}">{status_label}</p>
<dl class="figures">
<div class="figure"><dt>Amount</dt><dd><span id="amount">{amount_bch} BCH</span><small id="amount-sats">{amount_sats} sats</small></dd></div>
<div class="figure"><dt>Paid</dt><dd><span id="paid">{paid_bch} BCH</span><small id="paid-sats">{paid_sats} sats</small></dd></div>
<div id="expiry-row" class="figure"{expiry_hidden}><dt>Expires</dt><dd><time id="expiry" datetime="{expires}">{remaining}</time><small>{expires_text}</small></dd></div>
</dl>
</section>
"#,
        css_version = *PAGE_CSS_VERSION,
        js_version = *PAGE_JS_VERSION,
        amount = invoice.amount_sats,
        paid = invoice.paid_sats,
        expires = time_attribute(invoice.expires_at),
        status_label = status_label(invoice.status),
        amount_bch = format_bch(invoice.amount_sats),
        amount_sats = group_thousands(invoice.amount_sats),
        paid_bch = format_bch(invoice.paid_sats),
        paid_sats = group_thousands(invoice.paid_sats),
        expiry_hidden = if settled { " hidden" } else { "" },
        remaining = format_remaining(invoice.expires_at, now),
        expires_text = format_time(invoice.expires_at),
    );

    if let Some(address) = &invoice.address {
        let uri = payment_uri(address, invoice.amount_sats);
        let _ = write!(
            html,
            r#"<section class="pay">
<h2>Pay to</h2>
<div class="qr">{qr}</div>
<p class="address-line"><code id="address" class="address">{address}</code></p>
<p class="pay-actions"><a class="wallet-link" href="{uri}">Open in wallet</a> <button id="copy-address" class="copy" type="button" hidden>Copy address</button></p>
</section>
"#,
            qr = qr_svg(&uri).unwrap_or_default(),
            address = escape_html(address),
            uri = escape_html(&uri),
        );
    }

    let _ = write!(
        html,
        r#"<section class="payments">
<h2>Payments</h2>
<p id="no-payments" class="empty"{empty_hidden}>No payments yet.</p>
<ol id="payments" class="payment-list">
"#,
        empty_hidden = if payments.is_empty() { "" } else { " hidden" },
    );
    for payment in payments {
        render_payment(&mut html, payment);
    }
    let _ = write!(
        html,
        r#"</ol>
</section>
<footer class="foot"><p>Invoice <code class="id">{id}</code></p><p id="page-note" class="note">This page updates by itself.</p></footer>
</main>
</body>
</html>
"#
    );
    html
}

fn render_payment(html: &mut String, payment: &PaymentView) {
    let _ = write!(
        html,
        r#"<li class="payment" data-event-id="{event_id}">
<div class="payment-head"><span class="payment-amount">{bch} BCH</span><time class="payment-time" datetime="{at}">{at_text}</time></div>
<code class="txid">{txid}</code>
"#,
        event_id = payment.event_id,
        bch = format_bch(payment.amount_sats),
        at = time_attribute(payment.paid_at),
        at_text = format_time(payment.paid_at),
        txid = escape_html(&payment.txid),
    );
    if !payment.memo.is_empty() {
        let _ = writeln!(
            html,
            "<p class=\"payment-memo\">{}</p>",
            escape_html(&payment.memo)
        );
    }
    html.push_str("</li>\n");
}

/// A short hex digest (FNV-1a, 64 bits) of a static file, for its URL.
fn content_version(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use uuid::Uuid;

    #[test]
    fn escape_html_escapes_the_five_special_characters() {
        assert_eq!(
            escape_html(r#"<img src=x onerror=alert(1)>"#),
            "&lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(
            escape_html(r#"a & b "c" 'd'"#),
            "a &amp; b &quot;c&quot; &#39;d&#39;"
        );
        assert_eq!(escape_html("&amp;"), "&amp;amp;");
        assert_eq!(
            escape_html("plain text, ünïcødé ✓"),
            "plain text, ünïcødé ✓"
        );
        assert_eq!(escape_html(""), "");
    }

    #[test]
    fn bch_has_at_most_eight_decimals_and_no_trailing_zeros() {
        assert_eq!(format_bch(1), "0.00000001");
        assert_eq!(format_bch(100_000), "0.001");
        assert_eq!(format_bch(100_000_000), "1");
        assert_eq!(format_bch(123_456_789), "1.23456789");
        assert_eq!(format_bch(250_000_000), "2.5");
        assert_eq!(format_bch(0), "0");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
        assert_eq!(group_thousands(100_000), "100,000");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn payment_uri_names_address_and_amount_in_bch() {
        assert_eq!(
            payment_uri(
                "bitcoincash:qr6m7j9njldwwzlg9v7v53unlr4jkmx6eylep8ekg2",
                150_000
            ),
            "bitcoincash:qr6m7j9njldwwzlg9v7v53unlr4jkmx6eylep8ekg2?amount=0.0015"
        );
    }

    #[test]
    fn remaining_time_counts_down() {
        let now = Utc::now();
        assert_eq!(
            format_remaining(now + Duration::seconds(125), now),
            "2:05 left"
        );
        assert_eq!(
            format_remaining(now + Duration::seconds(3 * 3600 + 61), now),
            "3:01:01 left"
        );
        assert_eq!(
            format_remaining(now + Duration::days(2) + Duration::hours(5), now),
            "2d 5h left"
        );
        assert_eq!(format_remaining(now, now), "expired");
    }

    fn view(memo: &str, address: Option<&str>) -> InvoiceView {
        let now = Utc::now();
        InvoiceView {
            id: Uuid::new_v4().into(),
            amount_sats: 100_000,
            paid_sats: 40_000,
            status: InvoiceStatus::PartiallyPaid,
            expires_at: now + Duration::minutes(30),
            memo: memo.to_owned(),
            created_at: now,
            address: address.map(str::to_owned),
        }
    }

    #[test]
    fn page_escapes_memos_and_has_no_inline_script_or_style() {
        let evil = r#"<img src=x onerror=alert(1)>"#;
        let payment = PaymentView {
            event_id: 7,
            txid: "ab".repeat(32),
            paid_at: Utc::now(),
            amount_sats: 40_000,
            memo: format!("{evil}</li><script>alert(2)</script>"),
            address: None,
            token_id: None,
            invoice_id: None,
        };
        let html = render(&view(evil, None), &[payment], Utc::now());
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("Partially paid"));
        assert!(html.contains(r#"data-event-id="7""#));
        // Every script is external, and nothing is styled inline.
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains(r#"<script src="/static/page.js?v="#));
        assert!(!html.contains("style="), "{html}");
        assert!(!html.contains("<style"), "{html}");
        assert!(!html.contains("alert(1)>"), "{html}");
    }

    #[test]
    fn page_with_an_address_has_its_qr_code_and_uri() {
        let address = "bitcoincash:qr6m7j9njldwwzlg9v7v53unlr4jkmx6eylep8ekg2";
        let html = render(&view("", Some(address)), &[], Utc::now());
        assert!(html.contains(r#"<svg class="qr-code""#));
        assert!(!html.contains("<?xml"));
        assert!(html.contains(&format!(r#"href="{address}?amount=0.001""#)));
        assert!(html.contains(&format!(
            r#"<code id="address" class="address">{address}</code>"#
        )));
        assert!(html.contains("No payments yet."));
    }
}
