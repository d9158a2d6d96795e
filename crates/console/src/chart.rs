//! A pair's backup lag and estimated RPO over the last minutes, drawn as an inline SVG
//! line chart on the server: no chart library in the browser, nothing to fetch, and the
//! same figures are in a table beside it for those who do not see the chart.

use std::collections::VecDeque;
use std::fmt::Write as _;

/// How far back a chart looks.
pub const WINDOW_MS: i64 = 5 * 60 * 1000;

/// One reading of a pair's figures (the worst module of either direction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Wall-clock milliseconds.
    pub at_ms: i64,
    pub lag_secs: f64,
    pub rpo_secs: f64,
    pub pending: i64,
}

/// The samples of one pair, oldest first, none older than [`WINDOW_MS`] before the newest.
#[derive(Debug, Clone, Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

impl History {
    /// Adds a reading and forgets what fell out of the window (and any reading from a
    /// clock that went back, so the line never folds on itself).
    pub fn push(&mut self, sample: Sample) {
        while self.samples.back().is_some_and(|s| s.at_ms >= sample.at_ms) {
            self.samples.pop_back();
        }
        self.samples.push_back(sample);
        while self
            .samples
            .front()
            .is_some_and(|s| s.at_ms < sample.at_ms - WINDOW_MS)
        {
            self.samples.pop_front();
        }
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.iter().copied().collect()
    }
}

const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 120.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 20.0;

/// The chart of `samples` over the window ending at the newest: lag as a solid line, RPO
/// as a dashed one, the vertical scale from zero to the largest value (at least one
/// second). `label` is the chart's text alternative.
pub fn svg(samples: &[Sample], label: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        escape(label)
    );
    let _ = write!(out, "<title>{}</title>", escape(label));
    let top = samples
        .iter()
        .map(|s| s.lag_secs.max(s.rpo_secs))
        .fold(1.0_f64, f64::max);
    let plot_w = WIDTH - LEFT - 4.0;
    let plot_h = HEIGHT - BOTTOM - 6.0;
    // Axes and their figures.
    let _ = write!(
        out,
        r#"<line class="axis" x1="{LEFT}" y1="6" x2="{LEFT}" y2="{y0}"/><line class="axis" x1="{LEFT}" y1="{y0}" x2="{x1}" y2="{y0}"/>"#,
        y0 = 6.0 + plot_h,
        x1 = LEFT + plot_w
    );
    let _ = write!(
        out,
        r#"<text class="tick" x="{}" y="14" text-anchor="end">{} s</text><text class="tick" x="{}" y="{}" text-anchor="end">0</text>"#,
        LEFT - 4.0,
        figure(top),
        LEFT - 4.0,
        6.0 + plot_h
    );
    let _ = write!(
        out,
        r#"<text class="tick" x="{LEFT}" y="{y}">-{} min</text><text class="tick" x="{x}" y="{y}" text-anchor="end">now</text>"#,
        WINDOW_MS / 60_000,
        y = HEIGHT - 4.0,
        x = LEFT + plot_w
    );
    if let Some(newest) = samples.last() {
        let start = newest.at_ms - WINDOW_MS;
        let point = |s: &Sample, v: f64| {
            let x = LEFT + plot_w * ((s.at_ms - start) as f64 / WINDOW_MS as f64).clamp(0.0, 1.0);
            let y = 6.0 + plot_h * (1.0 - (v / top).clamp(0.0, 1.0));
            format!("{x:.1},{y:.1}")
        };
        for (class, value) in [
            ("line-rpo", (|s: &Sample| s.rpo_secs) as fn(&Sample) -> f64),
            ("line-lag", |s: &Sample| s.lag_secs),
        ] {
            let points: Vec<String> = samples.iter().map(|s| point(s, value(s))).collect();
            let _ = write!(
                out,
                r#"<polyline class="{class}" fill="none" points="{}"/>"#,
                points.join(" ")
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// A figure for the axis: whole seconds from ten up, one decimal below.
fn figure(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Text safe inside an attribute or an element (of the SVG, and of the page around it).
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64, lag: f64) -> Sample {
        Sample {
            at_ms: ms,
            lag_secs: lag,
            rpo_secs: lag + 0.05,
            pending: 0,
        }
    }

    #[test]
    fn the_history_keeps_the_window_and_never_goes_back_in_time() {
        let mut h = History::default();
        for i in 0..400 {
            h.push(at(i * 1000, 0.0));
        }
        let s = h.samples();
        assert_eq!(s.first().unwrap().at_ms, 399_000 - WINDOW_MS);
        assert_eq!(s.len(), 301);
        // A clock that went back replaces what it claims came later.
        h.push(at(398_500, 1.0));
        let s = h.samples();
        assert_eq!(s.last().unwrap().at_ms, 398_500);
        assert!(s.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
    }

    #[test]
    fn the_chart_scales_to_the_largest_figure_and_says_what_it_shows() {
        let samples = [at(0, 0.0), at(60_000, 4.0), at(120_000, 1.0)];
        let svg = svg(&samples, "lag <pool1> & RPO");
        assert!(
            svg.contains(r#"aria-label="lag &lt;pool1&gt; &amp; RPO""#),
            "{svg}"
        );
        assert!(svg.contains("<title>lag &lt;pool1&gt; &amp; RPO</title>"));
        // The top of the scale is the largest RPO (4.05 s).
        assert!(
            svg.contains(">4.0 s</text>") || svg.contains(">4.1 s</text>"),
            "{svg}"
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        // The newest sample is at the right edge, at the height of its value.
        assert!(svg.contains(&format!("{:.1},", WIDTH - 4.0)), "{svg}");
    }

    #[test]
    fn an_empty_chart_has_axes_and_no_line() {
        let svg = svg(&[], "no figures yet");
        assert!(svg.contains("<line"));
        assert!(!svg.contains("<polyline"));
    }
}
