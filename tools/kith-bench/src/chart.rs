//! chart.svg: per-stage latency over the frames (left) and each stage's distribution (right), so a
//! person can look rather than read.

use std::fmt::Write as _;

use crate::report::StageStats;

const COLOURS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#333333",
];
const WIDTH: f64 = 1040.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 60.0;
const TOP: f64 = 40.0;
const PLOT_W: f64 = 560.0;
const PLOT_H: f64 = 320.0;
const DIST_X: f64 = 700.0;
const DIST_W: f64 = 250.0;

/// Draws the chart. `series[s][f]` is stage `s`'s time in frame `f`, microseconds; `stats[s]` its
/// distribution; `names[s]` its name.
pub fn svg(title: &str, names: &[&str], series: &[Vec<u64>], stats: &[StageStats]) -> String {
    let mut s = String::new();
    let max_us = series.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let frames = series.first().map_or(0, Vec::len).max(2);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15">{}</text>"#,
        escape(title)
    );
    // Axes and grid of the left panel.
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="grey"/>"#
    );
    for i in 0..=4 {
        let v = max_us * i as f64 / 4.0;
        let y = TOP + PLOT_H - PLOT_H * i as f64 / 4.0;
        let _ = writeln!(
            s,
            r#"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="gainsboro"/><text x="{}" y="{:.1}" text-anchor="end">{:.0}</text>"#,
            LEFT + PLOT_W,
            LEFT - 6.0,
            y + 4.0,
            v / 1e3
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">ms per frame</text>"#,
        TOP + PLOT_H / 2.0,
        TOP + PLOT_H / 2.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">frame</text>"#,
        LEFT + PLOT_W / 2.0,
        TOP + PLOT_H + 30.0
    );
    for (i, values) in series.iter().enumerate() {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(f, &v)| {
                let x = LEFT + PLOT_W * f as f64 / (frames - 1) as f64;
                let y = TOP + PLOT_H - PLOT_H * v as f64 / max_us;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
            COLOURS[i % COLOURS.len()],
            points.join(" ")
        );
    }
    // Distribution panel: box p50..p90, whisker to max, tick at p99, dot at the mean.
    let _ = writeln!(
        s,
        r#"<text x="{DIST_X}" y="{}">ms: box p50-p90, | p99, line to max, o mean</text>"#,
        TOP - 8.0
    );
    let row_h = PLOT_H / names.len().max(1) as f64;
    let scale = |us: f64| DIST_X + 80.0 + (DIST_W - 80.0) * us / max_us;
    for (i, (name, st)) in names.iter().zip(stats).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let y = TOP + row_h * (i as f64 + 0.5);
        let _ = writeln!(
            s,
            r#"<text x="{DIST_X}" y="{:.1}" fill="{colour}">{name}</text>"#,
            y + 4.0
        );
        let (p50, p90, p99, max) = (
            scale(st.p50_us as f64),
            scale(st.p90_us as f64),
            scale(st.p99_us as f64),
            scale(st.max_us as f64),
        );
        let _ = writeln!(
            s,
            r#"<line x1="{p50:.1}" x2="{max:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{colour}"/>"#
        );
        let _ = writeln!(
            s,
            r#"<rect x="{p50:.1}" y="{:.1}" width="{:.1}" height="12" fill="{colour}" fill-opacity="0.35" stroke="{colour}"/>"#,
            y - 6.0,
            (p90 - p50).max(1.0)
        );
        let _ = writeln!(
            s,
            r#"<line x1="{p99:.1}" x2="{p99:.1}" y1="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2"/>"#,
            y - 8.0,
            y + 8.0
        );
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{y:.1}" r="3" fill="white" stroke="{colour}"/>"#,
            scale(st.mean_us)
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="10">{:.1}</text>"#,
            max + 4.0,
            y + 4.0,
            st.p50_us as f64 / 1e3
        );
    }
    // Legend under the left panel.
    for (i, name) in names.iter().enumerate() {
        let x = LEFT + 95.0 * i as f64;
        let y = HEIGHT - 14.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{:.1}" width="14" height="4" fill="{}"/><text x="{:.1}" y="{y:.1}">{name}</text>"#,
            y - 6.0,
            COLOURS[i % COLOURS.len()],
            x + 18.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_a_line_and_a_box_per_stage() {
        let stats = StageStats {
            mean_us: 1500.0,
            p50_us: 1400,
            p90_us: 2000,
            p99_us: 2500,
            max_us: 3000,
        };
        let out = svg(
            "t <1>",
            &["a", "b"],
            &[vec![1000, 2000, 3000], vec![10, 20, 30]],
            &[stats, stats],
        );
        assert!(out.starts_with("<svg") && out.ends_with("</svg>\n"));
        assert_eq!(out.matches("<polyline").count(), 2);
        assert_eq!(out.matches("fill-opacity").count(), 2);
        assert!(out.contains("t &lt;1&gt;"));
    }
}
