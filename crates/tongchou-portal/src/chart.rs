//! Charts drawn on the server as SVG: no script, no font files, text left to the browser's
//! own CJK fonts. Each chart carries its figures as an accessible label.

use maud::{Markup, html};

use crate::page::grouped;

const WIDTH: f64 = 700.0;
const LABEL: f64 = 250.0;
const ROW: f64 = 18.0;

/// Horizontal bars, one per (label, value), longest first as given.
pub fn bars(title: &str, items: &[(String, i64)]) -> Markup {
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f64;
    let height = ROW * items.len() as f64 + 4.0;
    let span = WIDTH - LABEL - 70.0;
    html! {
        figure.chart {
            figcaption { (title) }
            svg role="img" aria-label=(title) viewBox={ "0 0 " (WIDTH) " " (height) } width="100%" xmlns="http://www.w3.org/2000/svg" {
                @for (i, (label, value)) in items.iter().enumerate() {
                    @let y = ROW * i as f64 + 2.0;
                    text.label x=(LABEL - 6.0) y=(y + 12.0) text-anchor="end" { (label) }
                    rect.bar x=(LABEL) y=(y + 2.0) height=(ROW - 5.0) width=(format!("{:.1}", span * *value as f64 / max)) {
                        title { (label) ": " (grouped(*value)) }
                    }
                    text.value x=(format!("{:.1}", LABEL + 4.0 + span * *value as f64 / max)) y=(y + 12.0) { (grouped(*value)) }
                }
            }
        }
    }
}

/// Columns over time: one per (day, value), in the order given.
pub fn columns(title: &str, items: &[(String, i64)]) -> Markup {
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f64;
    let plot = 160.0;
    let gap = (WIDTH - 60.0) / items.len().max(1) as f64;
    let width = (gap * 0.7).max(1.0);
    if items.is_empty() {
        return html! { figure.chart { figcaption { (title) } p.hint { "暂无数据 No data yet" } } };
    }
    html! {
        figure.chart {
            figcaption { (title) }
            svg role="img" aria-label=(title) viewBox={ "0 0 " (WIDTH) " " (plot + 40.0) } width="100%" xmlns="http://www.w3.org/2000/svg" {
                text.value x="0" y="12" { (grouped(max as i64)) }
                line.axis x1="56" y1=(plot + 2.0) x2=(WIDTH) y2=(plot + 2.0) {}
                @for (i, (day, value)) in items.iter().enumerate() {
                    @let h = plot * *value as f64 / max;
                    @let x = 60.0 + gap * i as f64;
                    rect.bar x=(format!("{x:.1}")) y=(format!("{:.1}", plot + 2.0 - h)) width=(format!("{width:.1}")) height=(format!("{h:.1}")) {
                        title { (day) ": " (grouped(*value)) }
                    }
                }
                @if let (Some(first), Some(last)) = (items.first(), items.last()) {
                    text.label x="60" y=(plot + 20.0) { (first.0) }
                    text.label x=(WIDTH) y=(plot + 20.0) text-anchor="end" { (last.0) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value_and_escape_labels() {
        let svg = bars("t", &[("税务局".into(), 100), ("<b>".into(), 50)]).into_string();
        assert!(svg.contains(r#"width="380.0""#), "{svg}");
        assert!(svg.contains(r#"width="190.0""#), "{svg}");
        assert!(svg.contains(r#"viewBox="0 0 700 40""#), "{svg}");
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"), "{svg}");
    }

    #[test]
    fn columns_say_when_there_is_no_data() {
        let html = columns("空", &[]).into_string();
        assert!(
            html.contains("暂无数据") && !html.contains("<svg"),
            "{html}"
        );
        let svg =
            columns("t", &[("2026-11-01".into(), 5), ("2026-11-02".into(), 10)]).into_string();
        assert!(
            svg.contains(r#"height="160.0""#) && svg.contains(r#"height="80.0""#),
            "{svg}"
        );
    }
}
