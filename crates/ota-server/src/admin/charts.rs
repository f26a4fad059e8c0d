//! Inline SVG drawn by the server: update results per day (stacked bars)
//! and a branch's version graph with its skip-list edges. Every text that
//! goes into the SVG is escaped here (the templates insert it as markup).

use ota_store::DayCount;
use std::fmt::Write;

/// Escapes text for SVG/HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

fn colour(result: &str) -> &'static str {
    match result {
        "success" | "package" => "#2e7d32",
        "failure" => "#c62828",
        "rolled-back" | "rom" => "#ef6c00",
        "up-to-date" => "#90a4ae",
        _ => "#5c6bc0",
    }
}

/// Stacked bars of reports per day and result for the `days` days ending
/// with `today` (days since 1970-01-01).
pub fn results_per_day(counts: &[DayCount], today: i64, days: i64) -> String {
    stacked_per_day(
        counts,
        today,
        days,
        "Update results per day",
        &["success", "failure", "rolled-back", "up-to-date", "skipped"],
    )
}

/// Stacked bars of downloads started per day and kind (package files,
/// ROM builds, bundles).
pub fn downloads_per_day(counts: &[DayCount], today: i64, days: i64) -> String {
    stacked_per_day(
        counts,
        today,
        days,
        "Downloads per day",
        &["package", "rom", "bundle"],
    )
}

/// Stacked bars of `counts` per day, one colour per series of `legend`.
fn stacked_per_day(
    counts: &[DayCount],
    today: i64,
    days: i64,
    title: &str,
    legend: &[&str],
) -> String {
    let (w, h, pad) = (640.0f64, 200.0f64, 24.0f64);
    let first = today - days + 1;
    let mut totals = vec![0i64; days as usize];
    for c in counts {
        if let Some(t) = usize::try_from(c.day - first)
            .ok()
            .and_then(|i| totals.get_mut(i))
        {
            *t += c.count;
        }
    }
    let max = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bar_w = (w - 2.0 * pad) / days as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = esc(title)
    );
    let mut stacked = vec![0i64; days as usize];
    for c in counts {
        let Some(i) = usize::try_from(c.day - first)
            .ok()
            .filter(|i| *i < stacked.len())
        else {
            continue;
        };
        stacked[i] += c.count;
        let x = pad + i as f64 * bar_w + 2.0;
        let top = h - pad - (stacked[i] as f64 / max) * (h - 2.0 * pad);
        let height = (c.count as f64 / max) * (h - 2.0 * pad);
        let _ = write!(
            svg,
            r#"<rect x="{x:.1}" y="{top:.1}" width="{:.1}" height="{height:.1}" fill="{}"><title>{}: {} {}</title></rect>"#,
            bar_w - 4.0,
            colour(&c.result),
            esc(&day_label(first + i as i64)),
            c.count,
            esc(&c.result)
        );
    }
    for (i, t) in totals.iter().enumerate() {
        let x = pad + i as f64 * bar_w + bar_w / 2.0;
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"#,
            h - 8.0,
            esc(&day_label(first + i as i64)[5..])
        );
        if *t > 0 {
            let top = h - pad - (*t as f64 / max) * (h - 2.0 * pad) - 3.0;
            let _ = write!(
                svg,
                r#"<text x="{x:.1}" y="{top:.1}" font-size="9" text-anchor="middle">{t}</text>"#
            );
        }
    }
    let mut lx = pad;
    for r in legend {
        let _ = write!(
            svg,
            r#"<rect x="{lx}" y="4" width="10" height="10" fill="{}"/><text x="{}" y="13" font-size="10">{r}</text>"#,
            colour(r),
            lx + 13.0
        );
        lx += 90.0;
    }
    svg.push_str("</svg>");
    svg
}

fn day_label(day: i64) -> String {
    let (y, m, d) = super::templates::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// One version on the graph.
pub struct GraphVersion {
    /// Version text.
    pub version: String,
    /// Deleted versions stay as waypoints.
    pub deleted: bool,
    /// Whether its packs are all built.
    pub ready: bool,
}

/// One skip-list edge.
pub struct GraphEdge {
    /// Index of the older version.
    pub from: usize,
    /// Index of the newer version.
    pub to: usize,
    /// Skip-list level.
    pub level: i64,
    /// Whether its packs exist (both directions).
    pub built: bool,
}

/// The version graph: versions left to right, edges as arcs above them
/// (higher levels higher), built edges solid, missing ones dashed.
pub fn version_graph(versions: &[GraphVersion], edges: &[GraphEdge]) -> String {
    if versions.is_empty() {
        return "<p>No versions on the delta map yet.</p>".to_owned();
    }
    let step = 70.0f64;
    let w = 40.0 + step * versions.len() as f64;
    let max_level = edges.iter().map(|e| e.level).max().unwrap_or(0).max(1) as f64;
    let h = 80.0 + 28.0 * max_level;
    let base = h - 34.0;
    let x = |i: usize| 30.0 + step * i as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="graph" id="version-graph" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="version graph"><title>Version graph</title>"#
    );
    for e in edges {
        let (x1, x2) = (x(e.from), x(e.to));
        let lift = 18.0 + 26.0 * e.level as f64;
        let dash = if e.built {
            ""
        } else {
            r#" stroke-dasharray="4 3""#
        };
        let colour = if e.built { "#1d3557" } else { "#b0b7c0" };
        let _ = write!(
            svg,
            r#"<path d="M {x1:.1} {base:.1} C {x1:.1} {:.1}, {x2:.1} {:.1}, {x2:.1} {base:.1}" fill="none" stroke="{colour}" stroke-width="1.5"{dash}><title>level {}: {} → {}{}</title></path>"#,
            base - lift,
            base - lift,
            e.level,
            esc(&versions[e.from].version),
            esc(&versions[e.to].version),
            if e.built {
                ", packs built"
            } else {
                ", packs missing"
            }
        );
    }
    for (i, v) in versions.iter().enumerate() {
        let fill = if v.deleted {
            "#ffffff"
        } else if v.ready {
            "#2e7d32"
        } else {
            "#f9a825"
        };
        let _ = write!(
            svg,
            r##"<circle cx="{:.1}" cy="{base:.1}" r="6" fill="{fill}" stroke="#1d3557"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"##,
            x(i),
            x(i),
            base + 20.0,
            esc(&v.version)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_and_draw() {
        let counts = vec![DayCount {
            day: 100,
            result: "<b>".into(),
            count: 3,
        }];
        let svg = results_per_day(&counts, 100, 7);
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        let g = version_graph(
            &[
                GraphVersion {
                    version: "1<".into(),
                    deleted: false,
                    ready: true,
                },
                GraphVersion {
                    version: "2".into(),
                    deleted: false,
                    ready: false,
                },
            ],
            &[GraphEdge {
                from: 0,
                to: 1,
                level: 0,
                built: true,
            }],
        );
        assert!(g.contains("1&lt;") && g.starts_with("<svg"));
    }
}
