//! Rendering results: a human line (or a few) or one JSON object per line, on stdout.

use std::io::{self, Write};

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::view::{WindowView as SharedWindowView, view_time};
use lipachat_session::{ClosedCause, PhoneNumber, RefusalReason, WindowState};
use serde::Serialize;

use crate::error::CliError;

/// A result that can be printed both ways.
pub trait Render: Serialize {
    /// The human form: one or a few lines, without the final newline.
    fn human(&self) -> String;
}

/// Prints results on stdout in the chosen form.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    json: bool,
}

impl Printer {
    /// A printer for JSON lines (`json`) or human lines.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Whether results are printed as JSON lines.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints one result.
    pub fn emit(&self, item: &impl Render) -> Result<(), CliError> {
        let mut out = io::stdout().lock();
        if self.json {
            serde_json::to_writer(&mut out, item).map_err(|e| CliError::output(e.into()))?;
            out.write_all(b"\n").map_err(CliError::output)?;
        } else {
            writeln!(out, "{}", item.human()).map_err(CliError::output)?;
        }
        out.flush().map_err(CliError::output)
    }

    /// Prints a human note (such as "no messages queued"); nothing in JSON mode, where an
    /// empty answer is no lines at all.
    pub fn note(&self, text: &str) -> Result<(), CliError> {
        if self.json {
            return Ok(());
        }
        let mut out = io::stdout().lock();
        writeln!(out, "{text}").map_err(CliError::output)?;
        out.flush().map_err(CliError::output)
    }
}

/// A time as RFC 3339 UTC with `Z`, to the millisecond the store keeps, with the
/// milliseconds only when they are not zero (the shared views' format).
pub fn time(at: DateTime<Utc>) -> String {
    view_time(at)
}

/// [`time`] for an optional time.
pub fn time_opt(at: Option<DateTime<Utc>>) -> Option<String> {
    at.map(time)
}

/// Why a window is not open, in words for the human output (the JSON keeps
/// [`RefusalReason::name`]): `never messaged`, `expired`, `closed by the gateway`,
/// `closing within the margin`.
pub fn reason_words(reason: RefusalReason) -> &'static str {
    match reason {
        RefusalReason::NeverMessaged => "never messaged",
        RefusalReason::Expired => "expired",
        RefusalReason::ClosedByGateway => "closed by the gateway",
        RefusalReason::ClosingWithinMargin => "closing within the margin",
        _ => reason.name(),
    }
}

/// WhatsApp's id of a message, as the human output names it: ` (WhatsApp message id
/// wamid.…)`, or nothing when there is none.
pub fn whatsapp_id(wa_id: Option<&str>) -> String {
    wa_id
        .map(|id| format!(" (WhatsApp message id {id})"))
        .unwrap_or_default()
}

/// A span for people: `23h 59m`, `4m 10s`, `42s`; from 48 hours on, `3d 2h` (whole units,
/// rounded down; a whole window reads `24h 0m`).
pub fn span(delta: TimeDelta) -> String {
    let secs = delta.num_seconds().max(0);
    let (hours, minutes, seconds) = (secs / 3_600, secs % 3_600 / 60, secs % 60);
    if hours >= 48 {
        format!("{}d {}h", hours / 24, hours % 24)
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m {seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// One conversation's window, as `status`, `list` and `record` print it.
///
/// JSON: the shared [`lipachat_session::view::WindowView`] object, exactly the contract's
/// fields (`{"business", "customer", "state", "last_inbound", "expires_at",
/// "remaining_secs"}`), the same object a running bot's admin route answers. Why a window
/// is closed (expired, or closed by the gateway) is in the human line only.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct WindowView {
    /// The shared JSON object.
    pub window: SharedWindowView,
    #[serde(skip)]
    human: String,
}

impl WindowView {
    /// The view of `state` for the conversation of `business` with `customer` (as
    /// [`crate::commands::customer_name`] names it).
    pub fn new(business: PhoneNumber, customer: String, state: WindowState) -> Self {
        Self::from_shared(
            SharedWindowView::new(business, customer, &state),
            SharedWindowView::closed_cause(&state),
        )
    }

    /// The view of a shared window object and why it is closed (as a running bot's admin
    /// route answers them): the human line is made from these alone, whichever side
    /// examined the window.
    pub fn from_shared(window: SharedWindowView, cause: Option<ClosedCause>) -> Self {
        let at = window.expires_at.clone().unwrap_or_default();
        let human = match window.state.as_str() {
            "open" => format!(
                "open: closes {at} (in {})",
                span(TimeDelta::seconds(
                    window.remaining_secs.unwrap_or_default()
                ))
            ),
            "closed" => {
                let words = match cause {
                    Some(ClosedCause::Gateway) => "closed by the gateway",
                    _ => "expired",
                };
                format!("closed: since {at} ({words})")
            }
            "none" => "none: never messaged (no inbound message recorded)".to_owned(),
            other => other.to_owned(),
        };
        Self { window, human }
    }

    /// Whether the window is open.
    pub fn is_open(&self) -> bool {
        self.window.state == "open"
    }

    /// The human line without the conversation (as `status` prints it).
    pub fn state_line(&self) -> &str {
        &self.human
    }
}

impl Render for WindowView {
    fn human(&self) -> String {
        self.human.clone()
    }
}

/// A window in a list: the human line names the conversation first.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct ListedWindow(pub WindowView);

impl Render for ListedWindow {
    fn human(&self) -> String {
        format!(
            "{} {} {}",
            self.0.window.business, self.0.window.customer, self.0.human
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    #[test]
    fn times_show_milliseconds_only_when_there_are_some() {
        assert_eq!(time(t("2026-11-24T10:00:00Z")), "2026-11-24T10:00:00Z");
        assert_eq!(
            time(t("2026-11-24T10:00:00.250Z")),
            "2026-11-24T10:00:00.250Z"
        );
        assert_eq!(
            time(t("2026-11-24T13:00:00.000999+03:00")),
            "2026-11-24T10:00:00Z"
        );
    }

    #[test]
    fn spans() {
        let s = |secs| span(TimeDelta::seconds(secs));
        assert_eq!(s(24 * 3600 - 1), "23h 59m");
        assert_eq!(s(250), "4m 10s");
        assert_eq!(s(42), "42s");
        assert_eq!(s(0), "0s");
        assert_eq!(s(-5), "0s");
        assert_eq!(s(3 * 86_400 + 2 * 3600 + 5), "3d 2h");
        assert_eq!(s(86_400), "24h 0m");
        assert_eq!(s(47 * 3600 + 59 * 60), "47h 59m");
        assert_eq!(span(TimeDelta::milliseconds(86_399_999)), "23h 59m");
    }

    #[test]
    fn window_views() {
        let Ok(business) = "254110090747".parse::<PhoneNumber>() else {
            panic!("a valid number");
        };
        let view = |state| WindowView::new(business, "254712345678".to_owned(), state);
        let open = view(WindowState::Open {
            last_inbound: t("2026-11-23T10:00:00Z"),
            expires_at: t("2026-11-24T10:00:00Z"),
            remaining: TimeDelta::seconds(24 * 3600 - 30),
        });
        assert_eq!(
            open.state_line(),
            "open: closes 2026-11-24T10:00:00Z (in 23h 59m)"
        );
        assert_eq!(open.window.remaining_secs, Some(24 * 3600 - 30));
        let closed = view(WindowState::Closed {
            last_inbound: t("2026-11-23T10:00:00Z"),
            closed_since: t("2026-11-24T10:00:00Z"),
            cause: ClosedCause::Expired,
        });
        assert_eq!(
            closed.state_line(),
            "closed: since 2026-11-24T10:00:00Z (expired)"
        );
        let none = view(WindowState::Never);
        assert_eq!(
            none.state_line(),
            "none: never messaged (no inbound message recorded)"
        );
        assert_eq!(
            ListedWindow(none).human(),
            "254110090747 254712345678 none: never messaged (no inbound message recorded)"
        );
    }
}
