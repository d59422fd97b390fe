//! A [`Message`] as each target wants it: a Slack incoming-webhook payload (`text` for
//! notifications and clients without blocks, `blocks` for the layout), the generic JSON
//! body and its HMAC-SHA256 signature, and an email's subject, plain text and HTML.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::message::{Event, Message};

/// The header carrying the signature of a generic webhook's body: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Nbpipe-Signature";
/// The header carrying the Unix time (seconds) the signature covers.
pub const TIMESTAMP_HEADER: &str = "X-Nbpipe-Timestamp";
/// The header naming the event (`failure`, `success`, `recovery`, `digest`).
pub const EVENT_HEADER: &str = "X-Nbpipe-Event";
/// The header carrying the delivery's id, the same on every retry (for idempotence).
pub const DELIVERY_HEADER: &str = "X-Nbpipe-Delivery";

fn icon(event: Event) -> &'static str {
    match event {
        Event::Failure | Event::Digest => ":x:",
        Event::Success | Event::Recovery => ":white_check_mark:",
    }
}

/// Slack's escaping of `&`, `<`, `>` in message text.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Slack-compatible payload: `text` (the whole message as plain text) and `blocks` (a
/// header section, the details as fields, a link to the report).
pub fn slack_payload(msg: &Message) -> Value {
    let headline = format!("{} {}", icon(msg.event), slack_escape(&msg.headline()));
    let mut fields = Vec::new();
    let mut report = None;
    for (k, v) in msg.detail_lines() {
        if k == "Report" {
            report = Some(v);
            continue;
        }
        let value = if k == "Error" {
            format!("```{}```", slack_escape(&v))
        } else {
            slack_escape(&v)
        };
        fields.push(json!({"type": "mrkdwn", "text": format!("*{k}*\n{value}")}));
    }
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": format!("*{headline}*")}
    })];
    // Slack takes at most 10 fields per section.
    for chunk in fields.chunks(10) {
        blocks.push(json!({"type": "section", "fields": chunk}));
    }
    if let Some(url) = report {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("<{url}|Open the run report>")}
        }));
    }
    json!({"text": msg.text(), "blocks": blocks})
}

/// The generic webhook's body: the message's fields (see [`Message`]) plus `type`.
pub fn json_body(msg: &Message) -> Value {
    let mut v = serde_json::to_value(msg).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("type".into(), json!("nbpipe.run.notification"));
        m.insert("text".into(), json!(msg.text()));
    }
    v
}

/// The signature of `body` sent at `timestamp` (Unix seconds): `sha256=` and the hex
/// HMAC-SHA256 with `secret` of `"{timestamp}.{body}"`. Receivers recompute it over the raw
/// body and the `X-Nbpipe-Timestamp` header, compare in constant time, and refuse old
/// timestamps (replay protection, as Slack and Stripe do).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// An email's subject: `[nbpipe] daily (prod): run … failed — ValueError in clean`.
pub fn email_subject(msg: &Message, prefix: Option<&str>) -> String {
    let mut s = format!("{} {}", prefix.unwrap_or("[nbpipe]"), msg.headline());
    if msg.event == Event::Failure {
        if let (Some(step), Some(e)) = (&msg.step, &msg.error) {
            let what = e.ename.clone().unwrap_or_else(|| "error".into());
            s.push_str(&format!(" — {what} in {step}"));
        }
    }
    s.chars().filter(|c| !c.is_control()).take(250).collect()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An email's HTML part: the headline, a table of the details, links for URLs.
pub fn email_html(msg: &Message) -> String {
    let colour = match msg.event {
        Event::Failure | Event::Digest => "#b91c1c",
        Event::Success | Event::Recovery => "#15803d",
    };
    let mut rows = String::new();
    for (k, v) in msg.detail_lines() {
        let value = if v.starts_with("http://") || v.starts_with("https://") {
            format!("<a href=\"{0}\">{0}</a>", html_escape(&v))
        } else if k == "Error" {
            format!("<code>{}</code>", html_escape(&v))
        } else {
            html_escape(&v)
        };
        rows.push_str(&format!(
            "<tr><th style=\"text-align:left;padding:2px 12px 2px 0\">{k}</th><td>{value}</td></tr>\n"
        ));
    }
    format!(
        "<!doctype html>\n<html><body style=\"font-family:sans-serif\">\n\
         <h2 style=\"color:{colour}\">{}</h2>\n<table>\n{rows}</table>\n</body></html>\n",
        html_escape(&msg.headline())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Message {
        let mut m = Message::for_run("p<1>", None, "r1", "failed", None, Some("boom & bust"));
        m.report_url = Some("http://127.0.0.1:8787/runs/r1".into());
        m
    }

    #[test]
    fn slack_payload_has_text_blocks_and_the_report_link() {
        let p = slack_payload(&msg());
        assert!(p["text"].as_str().unwrap().contains("p<1>: run r1 failed"));
        let blocks = p["blocks"].as_array().unwrap();
        assert!(blocks[0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("p&lt;1&gt;"));
        let last = blocks.last().unwrap()["text"]["text"].as_str().unwrap();
        assert_eq!(last, "<http://127.0.0.1:8787/runs/r1|Open the run report>");
    }

    #[test]
    fn signature_matches_openssls_hmac() {
        // printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            signature(b"key", 1_700_000_000, br#"{"a":1}"#),
            "sha256=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
    }

    #[test]
    fn html_escapes_and_links() {
        let h = email_html(&msg());
        assert!(h.contains("p&lt;1&gt;"));
        assert!(h.contains("boom &amp; bust"));
        assert!(h.contains("<a href=\"http://127.0.0.1:8787/runs/r1\">"));
    }
}
