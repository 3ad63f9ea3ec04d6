//! Drawing a conversation on the terminal: one lane per kind of event on a shared time
//! axis, the window as a bar with its margin, then the events in time order.
//!
//! ```text
//!             2026-11-23 10:00                            2026-11-24 10:00
//! inbound     ●
//! window      █████████████████████████████████████████████████████████▒▒▒
//! now                                       ▲
//! ```
//!
//! This module only draws: [`crate::commands`] reads the events from the store.

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_api::MessageId;
use serde::Serialize;

use crate::output::time;

/// The columns of the time axis.
pub const WIDTH: usize = 60;

/// The width of the lane names, before the axis.
const LABEL: usize = 12;

/// What an event is. The JSON output names it in snake case (`closed_by_gateway`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The latest inbound message: the window opens.
    Inbound,
    /// The invitation template sent while the window was closed.
    Invitation,
    /// A message waiting in the outbox for the customer's reply.
    Queued,
    /// A message sent at once.
    Sent,
    /// A queued message sent after the customer's reply.
    Delivered,
    /// A message not sent: the template went instead.
    Rerouted,
    /// A queued message whose time ran out before the customer replied.
    Expired,
    /// A message the gateway refused as outside the window.
    Refused,
    /// The gateway reported the window closed (131047).
    ClosedByGateway,
    /// The safety margin begins: free-form sends are refused from here.
    Margin,
    /// The window's end, 24 hours after the inbound message.
    WindowEnd,
    /// The time the timeline is drawn at.
    Now,
    /// The business's reply opened a free entry point window (listed, not drawn in a
    /// lane: a pricing window, not a permission).
    FreeEntryPoint,
    /// The free entry point window ends (predicted, or the platform's once confirmed).
    FreeEntryPointEnd,
}

/// One event: when, what, and the words the list shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When it happened (or will).
    #[serde(serialize_with = "serialize_time")]
    pub at: DateTime<Utc>,
    /// What it is.
    #[serde(rename = "event")]
    pub kind: EventKind,
    /// The message's `messageId`, for a message.
    pub message_id: Option<MessageId>,
    /// WhatsApp's id of what was sent, when known.
    pub wa_id: Option<String>,
    /// The event in words.
    pub description: String,
}

fn serialize_time<S: serde::Serializer>(at: &DateTime<Utc>, out: S) -> Result<S::Ok, S::Error> {
    out.serialize_str(&time(*at))
}

/// The window as the bar draws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpan {
    /// The latest inbound message: the bar's start.
    pub opened: DateTime<Utc>,
    /// When the margin begins.
    pub margin_from: DateTime<Utc>,
    /// When the window ends by its length: the bar's end.
    pub ends: DateTime<Utc>,
    /// When the gateway closed it, if it did before its end.
    pub closed_by_gateway: Option<DateTime<Utc>>,
}

/// A lane of the chart: its name and which events it shows.
struct Lane {
    name: &'static str,
    kinds: &'static [EventKind],
}

/// The lanes under the window bar, in order (the window's own lane comes second).
const LANES: [Lane; 7] = [
    Lane {
        name: "inbound",
        kinds: &[EventKind::Inbound],
    },
    Lane {
        name: "invitation",
        kinds: &[EventKind::Invitation],
    },
    Lane {
        name: "queued",
        kinds: &[EventKind::Queued],
    },
    Lane {
        name: "sent",
        kinds: &[EventKind::Sent, EventKind::Delivered],
    },
    Lane {
        name: "not sent",
        kinds: &[EventKind::Rerouted, EventKind::Expired, EventKind::Refused],
    },
    Lane {
        name: "closed",
        kinds: &[EventKind::ClosedByGateway, EventKind::WindowEnd],
    },
    Lane {
        name: "now",
        kinds: &[EventKind::Now],
    },
];

/// The bar's open part, its margin, and what a gateway closure cut off.
const OPEN: char = '█';
const MARGIN: char = '▒';
const CUT: char = '·';

/// The mark of `event` at `now`: the window's end and margin are marks of the bar until
/// they pass, or, after a gateway closure, what would have been.
fn glyph(event: &Event, now: DateTime<Utc>, cut: bool) -> char {
    match event.kind {
        EventKind::Inbound => '●',
        EventKind::Invitation => '◆',
        EventKind::Queued => '○',
        EventKind::Sent | EventKind::Delivered => '✓',
        EventKind::Rerouted | EventKind::Expired | EventKind::Refused => '✗',
        EventKind::ClosedByGateway => '✕',
        EventKind::Margin | EventKind::WindowEnd if cut => CUT,
        EventKind::Margin => MARGIN,
        EventKind::WindowEnd if event.at <= now => '✕',
        EventKind::WindowEnd => OPEN,
        EventKind::Now => '▲',
        EventKind::FreeEntryPoint | EventKind::FreeEntryPointEnd => '$',
    }
}

/// Whether `event` is drawn in a lane: a window end is a closure once it has passed and
/// the gateway did not close the window first; a margin is drawn in the bar only.
fn in_lane(event: &Event, now: DateTime<Utc>, cut: bool) -> bool {
    match event.kind {
        EventKind::WindowEnd => event.at <= now && !cut,
        EventKind::Margin => false,
        _ => true,
    }
}

/// The time axis: which column an instant falls in.
struct Axis {
    start: DateTime<Utc>,
    span_ms: i128,
}

impl Axis {
    /// An axis from the earliest to the latest of `times` (an hour when they are one).
    fn over(times: impl Iterator<Item = DateTime<Utc>> + Clone) -> Self {
        let start = times.clone().min().unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let end = times.max().unwrap_or(start);
        let span_ms = i128::from((end - start).num_milliseconds());
        Self {
            start,
            span_ms: if span_ms > 0 {
                span_ms
            } else {
                i128::from(TimeDelta::hours(1).num_milliseconds())
            },
        }
    }

    /// The column of `at`, the nearest (a half rounds up), within the axis.
    fn column(&self, at: DateTime<Utc>) -> usize {
        let offset = i128::from((at - self.start).num_milliseconds()).clamp(0, self.span_ms);
        let last = (WIDTH - 1) as i128;
        let column = (2 * offset * last + self.span_ms) / (2 * self.span_ms);
        usize::try_from(column).unwrap_or(WIDTH - 1).min(WIDTH - 1)
    }

    /// The end of the axis.
    fn end(&self) -> DateTime<Utc> {
        let span = i64::try_from(self.span_ms).unwrap_or(i64::MAX);
        self.start + TimeDelta::milliseconds(span)
    }
}

/// An axis label: the minute, UTC (`2026-11-23 10:00`).
fn label(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M").to_string()
}

/// One lane: its name, then the cells, without trailing blanks.
fn lane_line(name: &str, cells: &[char]) -> String {
    let cells: String = cells.iter().collect();
    format!("{name:<LABEL$}{}", cells.trim_end())
}

/// Draws the chart and the list: the axis, the inbound lane, the window's bar (or
/// "never messaged" without one), the lanes with events, then every event by time.
/// `events` must be in time order.
pub fn draw(window: Option<&WindowSpan>, events: &[Event], now: DateTime<Utc>) -> Vec<String> {
    // The free entry point window is listed, not drawn: its 72 hours would squeeze the
    // 24-hour window the chart is about.
    let mut times: Vec<DateTime<Utc>> = events
        .iter()
        .filter(|e| {
            !matches!(
                e.kind,
                EventKind::FreeEntryPoint | EventKind::FreeEntryPointEnd
            )
        })
        .map(|e| e.at)
        .collect();
    times.push(now);
    if let Some(window) = window {
        times.extend([window.opened, window.ends]);
    }
    let axis = Axis::over(times.iter().copied());
    let cut = window.is_some_and(|w| w.closed_by_gateway.is_some());

    let mut lines = Vec::new();
    let (first, last) = (label(axis.start), label(axis.end()));
    let gap = WIDTH.saturating_sub(first.chars().count() + last.chars().count());
    lines.push(format!(
        "{:LABEL$}{first}{}{last}",
        "",
        " ".repeat(gap.max(1))
    ));
    for (index, lane) in LANES.iter().enumerate() {
        let mut cells = vec![' '; WIDTH];
        let mut used = false;
        for event in events.iter().filter(|e| lane.kinds.contains(&e.kind)) {
            if in_lane(event, now, cut) {
                cells[axis.column(event.at)] = glyph(event, now, cut);
                used = true;
            }
        }
        if used || matches!(lane.name, "inbound" | "now") {
            lines.push(lane_line(lane.name, &cells));
        }
        if index == 0 {
            lines.push(match window {
                Some(window) => lane_line("window", &bar(&axis, window)),
                None => lane_line(
                    "window",
                    &"never messaged: no window".chars().collect::<Vec<_>>(),
                ),
            });
        }
    }
    lines.push(String::new());
    let shown: Vec<String> = events.iter().map(|event| time(event.at)).collect();
    let width = shown.iter().map(String::len).max().unwrap_or(0);
    for (event, at) in events.iter().zip(shown) {
        lines.push(format!(
            "{at:<width$}  {} {}",
            glyph(event, now, cut),
            event.description
        ));
    }
    lines
}

/// The window's cells: open from the inbound message, the margin before its end, and
/// what a gateway closure cut off dotted.
fn bar(axis: &Axis, window: &WindowSpan) -> Vec<char> {
    let mut cells = vec![' '; WIDTH];
    let end = axis.column(window.ends);
    let mut paint = |from: DateTime<Utc>, mark: char| {
        for cell in &mut cells[axis.column(from).min(end)..=end] {
            *cell = mark;
        }
    };
    paint(window.opened, OPEN);
    if window.margin_from < window.ends {
        paint(window.margin_from, MARGIN);
    }
    if let Some(closed) = window.closed_by_gateway.filter(|c| *c < window.ends) {
        paint(closed, CUT);
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(hours: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000) + TimeDelta::hours(hours)
    }

    fn event(at: DateTime<Utc>, kind: EventKind) -> Event {
        Event {
            at,
            kind,
            message_id: None,
            wa_id: None,
            description: format!("{kind:?}"),
        }
    }

    #[test]
    fn columns_span_the_axis() {
        let axis = Axis::over([t(0), t(24)].into_iter());
        assert_eq!(axis.column(t(0)), 0);
        assert_eq!(axis.column(t(24)), WIDTH - 1);
        assert_eq!(axis.column(t(12)), 30);
        assert_eq!(axis.column(t(-5)), 0);
        assert_eq!(axis.column(t(99)), WIDTH - 1);
        // One instant: an hour's axis from it.
        let axis = Axis::over([t(3)].into_iter());
        assert_eq!(axis.column(t(3)), 0);
        assert_eq!(axis.end(), t(4));
    }

    #[test]
    fn a_gateway_closure_dots_the_rest_of_the_window() {
        let window = WindowSpan {
            opened: t(0),
            margin_from: t(23),
            ends: t(24),
            closed_by_gateway: Some(t(6)),
        };
        let events = [
            event(t(0), EventKind::Inbound),
            event(t(6), EventKind::ClosedByGateway),
            event(t(8), EventKind::Now),
            event(t(23), EventKind::Margin),
            event(t(24), EventKind::WindowEnd),
        ];
        let lines = draw(Some(&window), &events, t(8));
        let bar = lines.iter().find(|l| l.starts_with("window")).unwrap();
        let cells: String = bar.chars().skip(LABEL).collect();
        assert_eq!(cells, format!("{}{}", "█".repeat(15), "·".repeat(45)));
        let closed = lines.iter().find(|l| l.starts_with("closed")).unwrap();
        assert_eq!(closed, &format!("closed      {}✕", " ".repeat(15)));
        // The window's end is not a closure of its own: the gateway's came first.
        assert_eq!(closed.matches('✕').count(), 1);
        assert!(
            lines.iter().any(|l| l.ends_with("· WindowEnd")),
            "{lines:?}"
        );
    }

    #[test]
    fn an_expired_window_ends_with_a_closure_and_empty_lanes_are_left_out() {
        let window = WindowSpan {
            opened: t(0),
            margin_from: t(24) - TimeDelta::minutes(1),
            ends: t(24),
            closed_by_gateway: None,
        };
        let events = [
            event(t(0), EventKind::Inbound),
            event(t(24) - TimeDelta::minutes(1), EventKind::Margin),
            event(t(24), EventKind::WindowEnd),
            event(t(30), EventKind::Now),
        ];
        let lines = draw(Some(&window), &events, t(30));
        let names: Vec<&str> = lines
            .iter()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .map(|l| l.split("  ").next().unwrap_or(""))
            .collect();
        assert_eq!(names, ["inbound", "window", "closed", "now"], "{lines:?}");
        assert!(
            lines.iter().any(|l| l.ends_with("✕ WindowEnd")),
            "{lines:?}"
        );
    }
}
