//! The self-contained HTML report: one file, inline CSS, hand-built inline SVG charts
//! (throughput per second per operation, latency percentile curves per operation on a
//! log scale, p99 per second from the progress samples), the percentile and status
//! tables, and the oversell audit's checks. No scripts, fonts or other external assets.

use std::fmt::Write;

use crate::report::{Report, thousands};
use crate::stats::human_us;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 46.0;
const COLORS: [&str; 6] = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2"];

/// Escapes text for HTML and SVG.
pub fn esc(text: &str) -> String {
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

/// One line of a chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Clone, Copy, PartialEq)]
pub enum Scale {
    Linear,
    /// Log10; values below 1 are drawn at 1.
    Log,
}

/// A line chart as an `<svg>` element.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    x_ticks: &[(f64, String)],
    y_scale: Scale,
    y_format: &dyn Fn(f64) -> String,
) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = esc(title)
    );
    let _ = write!(svg, r##"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>"##);
    let _ = write!(
        svg,
        r##"<text x="{LEFT}" y="20" font-size="14" font-weight="600" fill="#111">{}</text>"##,
        esc(title)
    );
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max, mut y_max, mut y_min) = (f64::MAX, f64::MIN, f64::MIN, f64::MAX);
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_max = y_max.max(y);
        y_min = y_min.min(y);
    }
    for (x, _) in x_ticks {
        x_min = x_min.min(*x);
        x_max = x_max.max(*x);
    }
    if x_min > x_max {
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" font-size="13" fill="#666">no data</text></svg>"##,
            WIDTH / 2.0 - 30.0,
            HEIGHT / 2.0
        );
        return svg;
    }
    if x_max <= x_min {
        x_max = x_min + 1.0;
    }
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x - x_min) / (x_max - x_min) * plot_w;
    // Y ticks and mapping.
    let (y_lo, y_hi, y_ticks): (f64, f64, Vec<f64>) = match y_scale {
        Scale::Linear => {
            let top = if y_max > 0.0 { y_max } else { 1.0 };
            let step = nice_step(top / 5.0);
            let hi = (top / step).ceil() * step;
            let ticks = (0..=((hi / step).round() as usize)).map(|i| i as f64 * step).collect();
            (0.0, hi, ticks)
        }
        Scale::Log => {
            let lo = y_min.max(1.0).log10().floor();
            let hi = y_max.max(1.0).log10().ceil().max(lo + 1.0);
            let ticks = (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect();
            (lo, hi, ticks)
        }
    };
    let sy = |y: f64| {
        let v = match y_scale {
            Scale::Linear => y,
            Scale::Log => y.max(1.0).log10(),
        };
        TOP + plot_h - (v - y_lo) / (y_hi - y_lo).max(f64::MIN_POSITIVE) * plot_h
    };
    // Grid and axes.
    for &t in &y_ticks {
        let y = sy(t);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e7eb"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#444">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            esc(&y_format(t))
        );
    }
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{b:.1}" stroke="#9ca3af"/><line x1="{LEFT}" y1="{b:.1}" x2="{r:.1}" y2="{b:.1}" stroke="#9ca3af"/>"##,
        b = TOP + plot_h,
        r = LEFT + plot_w
    );
    for (x, label) in x_ticks {
        let px = sx(*x);
        let _ = write!(
            svg,
            r##"<line x1="{px:.1}" y1="{b:.1}" x2="{px:.1}" y2="{b2:.1}" stroke="#9ca3af"/><text x="{px:.1}" y="{ty:.1}" font-size="11" text-anchor="middle" fill="#444">{}</text>"##,
            esc(label),
            b = TOP + plot_h,
            b2 = TOP + plot_h + 4.0,
            ty = TOP + plot_h + 17.0
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle" fill="#333">{}</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 8.0,
        esc(x_label)
    );
    let _ = write!(
        svg,
        r##"<text x="14" y="{:.1}" font-size="12" text-anchor="middle" fill="#333" transform="rotate(-90 14 {:.1})">{}</text>"##,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        esc(y_label)
    );
    // Lines, points and legend.
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        if path.len() > 1 {
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
        }
        if s.points.len() <= 40 {
            for &(x, y) in &s.points {
                let _ =
                    write!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"/>"#, sx(x), sy(y));
            }
        }
        // Legend: one row above the plot, left to right.
        let lx = LEFT + i as f64 * 130.0;
        let ly = TOP - 12.0;
        let _ = write!(
            svg,
            r##"<rect x="{lx:.1}" y="{:.1}" width="12" height="4" fill="{color}"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#222">{}</text>"##,
            ly - 4.0,
            lx + 18.0,
            ly + 1.0,
            esc(&s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * magnitude >= raw {
            return m * magnitude;
        }
    }
    10.0 * magnitude
}

/// Horizontal position of a percentile on a "nines" axis: 90 -> 1, 99 -> 2, 100 -> 5.
fn nines(p: f64) -> f64 {
    if p >= 100.0 { 5.0 } else { (-(1.0 - p / 100.0).log10()).min(4.5) }
}

fn rate_format(v: f64) -> String {
    thousands(v.round() as u64)
}

/// Axis labels for latencies: `100 µs`, `1 ms`, `2.5 ms`, `1 s`.
fn latency_format(v: f64) -> String {
    let trim = |x: f64| {
        let s = format!("{x:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    };
    if v < 1_000.0 {
        format!("{} µs", trim(v))
    } else if v < 1_000_000.0 {
        format!("{} ms", trim(v / 1e3))
    } else {
        format!("{} s", trim(v / 1e6))
    }
}

/// The whole report page.
pub fn render(report: &Report) -> String {
    let mut h = String::new();
    let title = format!("boxoffice loadtest: {}", report.scenario.name());
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{}</title><style>
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:980px;color:#111;padding:0 16px}}
h1{{font-size:22px;margin-bottom:4px}}h2{{font-size:17px;margin-top:28px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}}
table{{border-collapse:collapse;margin:8px 0;font-size:13px}}th,td{{border:1px solid #e5e7eb;padding:4px 8px;text-align:right}}
th{{background:#f9fafb}}td.l,th.l{{text-align:left}}.pass{{color:#047857;font-weight:600}}.fail{{color:#b91c1c;font-weight:600}}
.muted{{color:#555;font-size:13px}}svg{{max-width:100%;height:auto;border:1px solid #e5e7eb;margin:6px 0}}code{{background:#f3f4f6;padding:1px 4px}}
</style></head><body>"#,
        esc(&title)
    );
    let _ = write!(
        h,
        "<h1>{}</h1><p class=\"muted\">{}<br>started {} · seed {}</p>",
        esc(&title),
        esc(&report.headline()),
        esc(&report.started_at),
        report.seed
    );
    if let Some(why) = &report.skipped {
        let _ = write!(h, "<p>Skipped: {}</p></body></html>", esc(why));
        return h;
    }
    let verdict = match report.verdict() {
        Ok(()) => "<span class=\"pass\">clean run</span>".to_owned(),
        Err(why) => format!("<span class=\"fail\">{}</span>", esc(&why)),
    };
    let _ = write!(
        h,
        "<table><tr><th class=\"l\">requests</th><td>{}</td><th class=\"l\">answers/s</th><td>{}</td><th class=\"l\">errors</th><td>{}</td><th class=\"l\">elapsed</th><td>{:.2} s</td></tr></table><p>{verdict}</p>",
        thousands(report.requests),
        thousands(report.throughput.round() as u64),
        thousands(report.errors),
        report.elapsed_s
    );

    // Throughput over time.
    let mut series: Vec<Series> = report
        .timeline
        .operations
        .iter()
        .map(|(name, counts)| Series {
            name: name.clone(),
            points: counts.iter().enumerate().map(|(s, &n)| (s as f64 + 1.0, n as f64)).collect(),
        })
        .collect();
    if report.timeline.errors.iter().any(|&e| e > 0) {
        series.push(Series {
            name: "errors".into(),
            points: report
                .timeline
                .errors
                .iter()
                .enumerate()
                .map(|(s, &n)| (s as f64 + 1.0, n as f64))
                .collect(),
        });
    }
    let seconds = report.timeline.seconds.max(1);
    let every = (seconds / 10).max(1);
    let x_ticks: Vec<(f64, String)> = (1..=seconds)
        .filter(|s| s.is_multiple_of(every) || *s == 1)
        .map(|s| (s as f64, format!("{s}")))
        .collect();
    h.push_str("<h2>Throughput</h2>");
    h.push_str(&line_chart(
        "Answers per second, per operation",
        "second of the run (answers completed in that second)",
        "answers/s",
        &series,
        &x_ticks,
        Scale::Linear,
        &rate_format,
    ));

    // Latency percentiles.
    let curves: Vec<Series> = report
        .operations
        .iter()
        .filter(|o| !o.curve.is_empty())
        .map(|o| Series {
            name: o.name.clone(),
            points: o.curve.iter().map(|&(p, us)| (nines(p), us as f64)).collect(),
        })
        .collect();
    let p_ticks: Vec<(f64, String)> =
        [(0.0, "0%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%"), (4.0, "99.99%"), (5.0, "max")]
            .iter()
            .map(|&(x, l)| (x, l.to_owned()))
            .collect();
    h.push_str("<h2>Latency</h2>");
    let _ = write!(
        h,
        "<p class=\"muted\">{}</p>",
        if report.model == "open" {
            "Open model: latency from each request's intended start (queueing included, no coordinated omission)."
        } else {
            "Closed model: latency from each request's send; at saturation these are not latency targets."
        }
    );
    h.push_str(&line_chart(
        "Latency by percentile, per operation (log scale)",
        "percentile",
        "latency",
        &curves,
        &p_ticks,
        Scale::Log,
        &latency_format,
    ));
    h.push_str("<table><tr><th class=\"l\">operation</th><th>answers</th><th>per s</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>mean</th><th>errors</th></tr>");
    for o in &report.operations {
        let l = &o.latency_us;
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&o.name),
            thousands(o.responses),
            thousands(o.rate.round() as u64),
            human_us(l.p50),
            human_us(l.p90),
            human_us(l.p99),
            human_us(l.p999),
            human_us(l.max),
            human_us(l.mean.round() as u64),
            thousands(o.errors)
        );
    }
    h.push_str("</table>");

    // p99 over time.
    if report.progress.len() > 1 {
        let p99 = vec![Series {
            name: "p99, all operations".into(),
            points: report.progress.iter().map(|s| (s.second, s.p99_us as f64)).collect(),
        }];
        let last = report.progress.last().map_or(1.0, |s| s.second.ceil());
        let every = ((last / 10.0).ceil()).max(1.0);
        let ticks: Vec<(f64, String)> = (0..=(last / every) as usize)
            .map(|i| i as f64 * every)
            .filter(|&x| x > 0.0)
            .map(|x| (x, format!("{x}")))
            .collect();
        h.push_str(&line_chart(
            "p99 latency per second, all operations",
            "second of the run",
            "p99",
            &p99,
            &ticks,
            Scale::Linear,
            &latency_format,
        ));
    }

    // Status codes.
    h.push_str("<h2>Status codes</h2><table><tr><th class=\"l\">operation</th><th class=\"l\">status</th><th>count</th></tr>");
    for o in &report.operations {
        for (status, n) in &o.statuses {
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td></tr>",
                esc(&o.name),
                esc(status),
                thousands(*n)
            );
        }
    }
    h.push_str("</table>");

    if let Some(v) = &report.viewers {
        viewers_section(&mut h, v, &p_ticks);
    }
    if let Some(o) = &report.onsale {
        onsale_section(&mut h, o);
    }

    // Audit.
    if let Some(audit) = &report.audit {
        let f = &audit.facts;
        let _ = write!(
            h,
            "<h2>Oversell audit: <span class=\"{}\">{}</span></h2><p class=\"muted\">{} holds answered 201: {} released, {} bought, {} expired, {} left open ({} still held at the end). {} orders with {} valid tickets. {} of {} seats available at the end; {} seats uncertain (their hold request got no answer).</p>",
            if audit.passed { "pass" } else { "fail" },
            if audit.passed { "passed" } else { "FAILED" },
            thousands(f.holds_created),
            thousands(f.holds_released),
            thousands(f.holds_bought),
            thousands(f.holds_expired),
            thousands(f.holds_open),
            thousands(f.open_holds_still_held),
            thousands(f.orders),
            thousands(f.valid_tickets),
            thousands(f.available_seats),
            thousands(u64::from(f.seat_count)),
            thousands(f.uncertain_seats)
        );
        h.push_str(
            "<table><tr><th class=\"l\">check</th><th>result</th><th>checked</th><th>anomalies</th></tr>",
        );
        for c in &audit.checks {
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(c.name),
                if c.passed { "pass" } else { "fail" },
                if c.passed { "ok" } else { "FAIL" },
                thousands(c.checked),
                thousands(c.anomalies)
            );
            for example in &c.examples {
                let _ =
                    write!(h, "<tr><td class=\"l\" colspan=\"4\"><code>{}</code></td></tr>", esc(example));
            }
        }
        h.push_str("</table>");
    }
    if !report.notes.is_empty() {
        h.push_str("<h2>Notes</h2><ul>");
        for note in &report.notes {
            let _ = write!(h, "<li>{}</li>", esc(note));
        }
        h.push_str("</ul>");
    }
    h.push_str("</body></html>\n");
    h
}

/// The live map's fleet, staleness percentiles and distribution.
fn viewers_section(h: &mut String, v: &crate::viewers::ViewersReport, p_ticks: &[(f64, String)]) {
    let l = &v.staleness_us;
    let _ = write!(
        h,
        "<h2>Live map: {} viewers</h2><p class=\"muted\">Staleness: from the writer's 201/204 answer for a change to \
         the first frame a viewer received at or past the change's version bound; {} samples (each viewer scored 1 in \
         {} changes).</p>",
        thousands(v.connected),
        thousands(v.samples),
        v.sample_stride
    );
    let _ = write!(
        h,
        "<table><tr><th class=\"l\">staleness</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>\
         <tr><td class=\"l\">all viewers, all changes</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        human_us(l.p50),
        human_us(l.p90),
        human_us(l.p99),
        human_us(l.p999),
        human_us(l.max)
    );
    let curve = vec![Series {
        name: "staleness".into(),
        points: v.staleness_curve.iter().map(|&(p, us)| (nines(p), us as f64)).collect(),
    }];
    h.push_str(&line_chart(
        "Staleness by percentile (log scale)",
        "percentile",
        "staleness",
        &curve,
        p_ticks,
        Scale::Log,
        &latency_format,
    ));
    let buckets = vec![Series {
        name: "samples".into(),
        points: v.staleness_buckets.iter().enumerate().map(|(i, &(_, n))| (i as f64, n as f64)).collect(),
    }];
    let every = (v.staleness_buckets.len() / 8).max(1);
    let ticks: Vec<(f64, String)> = v
        .staleness_buckets
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(i, &(upper, _))| (i as f64, format!("<{}", latency_format(upper as f64))))
        .collect();
    h.push_str(&line_chart(
        "Staleness distribution (doubling buckets)",
        "staleness, upper bound of the bucket",
        "samples",
        &buckets,
        &ticks,
        Scale::Linear,
        &rate_format,
    ));
    let rows: Vec<(&str, String)> = vec![
        (
            "viewers asked / started / connected",
            format!(
                "{} / {} / {}",
                thousands(u64::from(v.asked)),
                thousands(u64::from(v.fleet)),
                thousands(v.connected)
            ),
        ),
        ("never connected", thousands(v.never_connected)),
        (
            "dropped / reconnects / resnapshots",
            format!("{} / {} / {}", thousands(v.dropped), thousands(v.reconnects), thousands(v.resnapshots)),
        ),
        ("gaps (delta not from the viewer's version)", thousands(v.gaps)),
        (
            "frames (snapshots, deltas, keep-alives)",
            format!(
                "{} ({}, {}, {})",
                thousands(v.frames),
                thousands(v.snapshots),
                thousands(v.deltas),
                thousands(v.keep_alives)
            ),
        ),
        ("bytes received", thousands(v.bytes)),
        (
            "changes made / failed / unknown",
            format!(
                "{} / {} / {}",
                thousands(v.changes),
                thousands(v.changes_failed),
                thousands(v.changes_unknown)
            ),
        ),
        ("versions", format!("{} -> {}", v.first_version, v.last_version)),
        ("missed at the end", thousands(v.missed)),
        (
            "open-file limit / source addresses",
            format!("{} / {}", thousands(v.file_limit), v.source_addresses),
        ),
    ];
    h.push_str("<table>");
    for (name, value) in rows {
        let _ = write!(h, "<tr><td class=\"l\">{}</td><td>{}</td></tr>", esc(name), esc(&value));
    }
    if let Some(m) = &v.server_memory {
        let _ = write!(
            h,
            "<tr><td class=\"l\">server RSS before / idle fleet / end (pid {})</td><td>{} / {} / {} MiB</td></tr>\
             <tr><td class=\"l\">server RSS per idle viewer</td><td>{} bytes</td></tr>",
            m.pid,
            m.before_bytes / (1 << 20),
            m.idle_bytes / (1 << 20),
            m.after_bytes / (1 << 20),
            thousands(m.per_idle_viewer_bytes)
        );
    }
    for (failure, n) in &v.open_failures {
        let _ = write!(
            h,
            "<tr><td class=\"l\">stream opens failed: {}</td><td>{}</td></tr>",
            esc(failure),
            thousands(*n)
        );
    }
    h.push_str("</table>");
}

/// The onsale's conversion funnel.
fn onsale_section(h: &mut String, o: &crate::onsale::OnsaleReport) {
    let _ = write!(
        h,
        "<h2>Onsale: conversion {:.1}%</h2><p class=\"muted\">{} fans/s, {} seats each, pick {:?}, abandon rate {}; \
         queue {}{}.</p><table>",
        o.conversion * 100.0,
        o.arrival_rate,
        o.seats_per_user,
        o.pick,
        o.abandon_rate,
        if o.queue_enabled { "on" } else { "off" },
        if o.proof_of_work_bits > 0 {
            format!(", proof of work {} bits", o.proof_of_work_bits)
        } else {
            String::new()
        }
    );
    for (name, n) in [
        ("arrived", o.arrived),
        ("joined the queue", o.joined),
        ("admitted", o.admitted),
        ("held", o.held),
        ("paid", o.paid),
        ("declined", o.declined),
        ("abandoned", o.abandoned),
        ("sold out", o.sold_out),
        ("failed", o.failed),
        ("queue expired", o.queue_expired),
        ("unfinished", o.unfinished),
        ("arrivals delayed by --connections", o.delayed_arrivals),
    ] {
        let _ = write!(h, "<tr><td class=\"l\">{}</td><td>{}</td></tr>", esc(name), thousands(n));
    }
    let _ = write!(
        h,
        "<tr><td class=\"l\">queue wait p50 / p99</td><td>{} / {}</td></tr><tr><td class=\"l\">arrival to order p50 / p99</td><td>{} / {}</td></tr></table>",
        human_us(o.queue_wait_us.p50),
        human_us(o.queue_wait_us.p99),
        human_us(o.time_to_order_us.p50),
        human_us(o.time_to_order_us.p99)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(13.0), 20.0);
        assert_eq!(nice_step(4_200.0), 5_000.0);
        assert_eq!(nice_step(0.0), 1.0);
    }

    #[test]
    fn latency_axis_labels() {
        assert_eq!(latency_format(100.0), "100 µs");
        assert_eq!(latency_format(1_000.0), "1 ms");
        assert_eq!(latency_format(2_500.0), "2.5 ms");
        assert_eq!(latency_format(10_000_000.0), "10 s");
    }

    #[test]
    fn percentiles_sit_on_a_nines_axis() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines(100.0), 5.0);
    }

    #[test]
    fn a_chart_is_one_well_formed_svg_element() {
        let series = vec![
            Series { name: "hold <1>".into(), points: vec![(1.0, 10.0), (2.0, 30.0), (3.0, 20.0)] },
            Series { name: "release".into(), points: vec![(1.0, 5.0), (2.0, 0.0), (3.0, 25.0)] },
        ];
        let svg = line_chart("T", "x", "y", &series, &[(1.0, "1".into())], Scale::Linear, &rate_format);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("hold &lt;1&gt;"), "legend names are escaped");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        let log = line_chart("L", "x", "y", &series, &[], Scale::Log, &latency_format);
        assert!(!log.contains("NaN") && !log.contains("inf"), "{log}");
        let empty = line_chart("E", "x", "y", &[], &[], Scale::Linear, &rate_format);
        assert!(empty.contains("no data") && empty.ends_with("</svg>"));
    }
}
