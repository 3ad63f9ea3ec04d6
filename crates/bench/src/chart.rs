//! The chart of a run: every figure that has a target, as a bar of how far it is along the
//! way to its target (1 = the target), green when met and red when not, written as SVG
//! text by hand (no plotting crate) for `docs/performance.md`.

use std::fmt::Write;

use serde_json::Value;

use crate::figures::{FIGURES, Target};

/// The chart's width, in SVG user units (pixels).
const WIDTH: f64 = 780.0;
/// Where the bars start, after the labels.
const PLOT_X: f64 = 330.0;
/// The bars' full length: [`MAX_SHARE`] times the target.
const PLOT_WIDTH: f64 = 300.0;
/// The longest share drawn; a bar past it is cut and marked.
const MAX_SHARE: f64 = 2.0;
/// One row's height.
const ROW: f64 = 26.0;
/// The top of the first row.
const TOP: f64 = 58.0;
/// A met target's bar.
const MET: &str = "#2e7d32";
/// A missed target's bar.
const MISSED: &str = "#c62828";

/// `text` with XML's special characters escaped.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// The x coordinate of a share of the target.
fn x_of(share: f64) -> f64 {
    PLOT_X + PLOT_WIDTH * share.clamp(0.0, MAX_SHARE) / MAX_SHARE
}

/// A target as the chart writes it (`≥ 0.9`, `≤ 120`).
fn target_text(target: Target) -> String {
    match target {
        Target::AtLeast(value) => format!("≥ {value}"),
        Target::AtMost(value) => format!("≤ {value}"),
    }
}

/// The chart of `figures` (the benchmark's JSON object): one row per figure with a
/// target, named by its key, in the table's order; a figure this run did not measure
/// reads "not measured".
pub fn svg(figures: &Value) -> String {
    let rows: Vec<(&str, Target, Option<f64>, String)> = FIGURES
        .iter()
        .filter_map(|figure| {
            let target = figure.target?;
            let value = &figures[figure.key];
            Some((figure.key, target, value.as_f64(), value.to_string()))
        })
        .collect();
    let bottom = TOP + ROW * rows.len() as f64;
    let height = bottom + 64.0;
    let mut out = String::new();
    let title = match figures["conversations"].as_u64() {
        Some(n) => format!("lipachat-bench: figures against their targets (N = {n})"),
        None => "lipachat-bench: figures against their targets".to_owned(),
    };
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, "<title>{}</title>", escape(&title));
    let _ = writeln!(
        out,
        r##"<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="10" y="24" font-size="15" font-weight="bold">{}</text>"#,
        escape(&title)
    );
    let _ = writeln!(
        out,
        r##"<text x="10" y="44" fill="#555555">bar: figure ÷ target (for a ≤ target: target ÷ figure); the dashed line at 1 is the target; green met, red not met</text>"##
    );
    for (index, (key, target, value, shown)) in rows.iter().enumerate() {
        let y = TOP + ROW * index as f64;
        let middle = y + ROW / 2.0 + 4.0;
        let _ = writeln!(
            out,
            r#"<text x="10" y="{middle}" font-family="monospace">{}</text>"#,
            escape(key)
        );
        let Some(value) = value else {
            let _ = writeln!(
                out,
                r##"<text x="{PLOT_X}" y="{middle}" fill="#888888">not measured in this run (target {})</text>"##,
                escape(&target_text(*target))
            );
            continue;
        };
        let share = target.share(*value);
        let color = if target.is_met(*value) { MET } else { MISSED };
        let end = x_of(share);
        let _ = writeln!(
            out,
            r#"<rect class="bar" x="{PLOT_X}" y="{}" width="{:.1}" height="{}" fill="{color}"/>"#,
            y + 5.0,
            end - PLOT_X,
            ROW - 10.0
        );
        if share > MAX_SHARE {
            // Cut at twice the target: a notch says the bar goes on.
            let _ = writeln!(
                out,
                r##"<path d="M {:.1} {} l 6 {} l -6 {} z" fill="#ffffff"/>"##,
                end - 6.0,
                y + 5.0,
                (ROW - 10.0) / 2.0,
                (ROW - 10.0) / 2.0
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{middle}">{} (target {})</text>"#,
            PLOT_X + PLOT_WIDTH + 12.0,
            escape(shown),
            escape(&target_text(*target))
        );
    }
    // The axis: the target line across the rows, and ticks under them.
    let target_x = x_of(1.0);
    let _ = writeln!(
        out,
        r##"<line x1="{target_x}" y1="{}" x2="{target_x}" y2="{}" stroke="#222222" stroke-width="1.5" stroke-dasharray="4 3"/>"##,
        TOP - 4.0,
        bottom + 4.0
    );
    let _ = writeln!(
        out,
        r##"<line x1="{PLOT_X}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#888888"/>"##,
        PLOT_X + PLOT_WIDTH
    );
    for (share, text) in [
        (0.0, "0"),
        (0.5, "0.5"),
        (1.0, "1 = target"),
        (1.5, "1.5"),
        (2.0, "2"),
    ] {
        let x = x_of(share);
        let _ = writeln!(
            out,
            r##"<line x1="{x}" y1="{bottom}" x2="{x}" y2="{}" stroke="#888888"/>"##,
            bottom + 5.0
        );
        let _ = writeln!(
            out,
            r##"<text x="{x}" y="{}" text-anchor="middle" fill="#555555">{text}</text>"##,
            bottom + 20.0
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The bars drawn: (width, colour), in order.
    fn bars(svg: &str) -> Vec<(f64, String)> {
        svg.lines()
            .filter(|line| line.starts_with(r#"<rect class="bar""#))
            .map(|line| {
                let attribute = |name: &str| {
                    let start = line.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
                    let end = start + line[start..].find('"').unwrap();
                    line[start..end].to_owned()
                };
                (attribute("width").parse().unwrap(), attribute("fill"))
            })
            .collect()
    }

    #[test]
    fn bars_measure_the_share_of_each_target_and_colour_it() {
        let figures = json!({
            "conversations": 1000,
            "check_vs_hashmap": 0.425,         // half the 0.85 target: missed
            "group_commit_speedup": 7.5,       // 1.5 times the target of 5: met
            "disk_bytes_per_conversation": 240.0, // twice the 120 limit: half, missed
            "rss_bytes_per_conversation": 100.0,  // half the 200 limit: twice, met
            "send_vs_raw": 0.9,                // exactly the target: met
            "send_with_message_id_vs_raw": null,
            "check_vs_redis": 50.0,            // five times the target: cut at two
            "redis_engine_vs_naive": 0.8,
            "bsuid_tenth_phone_check_vs_all_phone": 0.95,
        });
        let svg = svg(&figures);
        let drawn = bars(&svg);
        let full = PLOT_WIDTH;
        let expected = [
            (full * 0.25, MISSED),
            (full * 0.75, MET),
            (full * 0.25, MISSED),
            (full, MET),
            (full * 0.5, MET),
            (full, MET),
            (full * 0.5, MET),
            (full * 0.5, MET),
        ];
        assert_eq!(drawn.len(), expected.len(), "{svg}");
        for ((width, colour), (want, want_colour)) in drawn.iter().zip(expected) {
            assert!((width - want).abs() < 0.06, "{width} against {want}\n{svg}");
            assert_eq!(colour, want_colour, "{svg}");
        }
        // The unmeasured figure is named, without a bar; the cut bar is notched.
        assert!(
            svg.contains("not measured in this run (target ≥ 0.8)"),
            "{svg}"
        );
        assert_eq!(svg.matches("<path ").count(), 1, "{svg}");
        assert!(svg.contains("0.425 (target ≥ 0.85)"), "{svg}");
        assert!(svg.contains("240.0 (target ≤ 120)"), "{svg}");
        assert!(svg.contains("(N = 1000)"), "{svg}");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        // Every element that opens closes: the file is one well-formed element.
        let opened = svg.matches("<text").count() + svg.matches("<title").count();
        let closed = svg.matches("</text>").count() + svg.matches("</title>").count();
        assert_eq!(opened, closed);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape(r#"a < b & "c" > d"#),
            "a &lt; b &amp; &quot;c&quot; &gt; d"
        );
    }
}
