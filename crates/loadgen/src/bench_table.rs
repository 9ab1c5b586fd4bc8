//! The table `scripts/bench.sh` prints: every figure of one run of the suite with its
//! per-run values, median, the load average each value was taken at, and, for
//! boxoffice's figures, the ratio of its median to its anchor's median (ours / anchor).
//!
//! The script appends tab-separated records to a file as it measures:
//!
//! ```text
//! row     ID  LABEL  UNIT  ROLE  NOTE
//! value   ID  NUMBER-OR-EMPTY  LOAD-AVERAGE
//! ```
//!
//! A row declares a figure; its ROLE is `anchor` for an anchor, the id of the row it is
//! compared with, or empty for a figure without one. Each value adds one run. A value that is empty or not a number is a failed run: it shows as `failed` and
//! does not count towards the median. Rows keep the order they were declared in.

use std::fmt::Write;

/// One figure and its runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub label: String,
    pub unit: String,
    /// An anchor's row, shown as such.
    pub is_anchor: bool,
    /// The row this figure is compared with.
    pub anchor: Option<String>,
    pub note: String,
    /// One per run: the figure (`None` when the run failed) and the load average then.
    pub runs: Vec<(Option<f64>, String)>,
}

impl Row {
    /// The median of the runs that produced a figure.
    pub fn median(&self) -> Option<f64> {
        let mut values: Vec<f64> = self.runs.iter().filter_map(|(v, _)| *v).collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        Some(if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 })
    }
}

/// A record the table cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("line {line}: {why}")]
    Record { line: usize, why: String },
}

/// Reads the records; rows in declaration order.
pub fn parse(records: &str) -> Result<Vec<Row>, TableError> {
    let mut rows: Vec<Row> = Vec::new();
    for (i, line) in records.lines().enumerate() {
        let bad = |why: &str| TableError::Record { line: i + 1, why: why.to_owned() };
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        match fields[0] {
            "row" => {
                if fields.len() < 5 {
                    return Err(bad("a row needs ID, LABEL, UNIT and ROLE (possibly empty)"));
                }
                let id = fields[1].trim();
                if id.is_empty() {
                    return Err(bad("a row without an id"));
                }
                if rows.iter().any(|r| r.id == id) {
                    return Err(bad(&format!("row {id:?} is declared twice")));
                }
                let role = fields[4].trim();
                if role == id {
                    return Err(bad(&format!("row {id:?} is compared with itself")));
                }
                rows.push(Row {
                    id: id.to_owned(),
                    label: fields[2].trim().to_owned(),
                    unit: fields[3].trim().to_owned(),
                    is_anchor: role == "anchor",
                    anchor: (!role.is_empty() && role != "anchor").then(|| role.to_owned()),
                    note: fields.get(5).map_or("", |n| n.trim()).to_owned(),
                    runs: Vec::new(),
                });
            }
            "value" => {
                if fields.len() < 3 {
                    return Err(bad("a value needs ID and NUMBER (possibly empty)"));
                }
                let id = fields[1].trim();
                let Some(row) = rows.iter_mut().find(|r| r.id == id) else {
                    return Err(bad(&format!("a value for row {id:?}, which is not declared (yet)")));
                };
                let value = fields[2].trim().parse::<f64>().ok().filter(|v| v.is_finite());
                let load = fields.get(3).map_or("", |l| l.trim()).to_owned();
                row.runs.push((value, load));
            }
            other => return Err(bad(&format!("unknown record {other:?} (expected row or value)"))),
        }
    }
    for row in &rows {
        if let Some(anchor) = &row.anchor
            && !rows.iter().any(|r| &r.id == anchor)
        {
            return Err(TableError::Record {
                line: 0,
                why: format!("row {:?} is compared with {anchor:?}, which is not declared", row.id),
            });
        }
    }
    Ok(rows)
}

/// A figure as people read it: thousands separators from 100 up, three significant
/// digits below.
pub fn figure(v: f64) -> String {
    if v.abs() >= 100.0 {
        let digits = crate::report::thousands(v.abs().round() as u64);
        if v < 0.0 { format!("-{digits}") } else { digits }
    } else if v == 0.0 {
        "0".to_owned()
    } else {
        let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
        format!("{v:.digits$}")
    }
}

/// `ours / anchor` to two decimals, with an `x`; `-` when either side is missing or the
/// anchor is zero.
pub fn ratio(ours: Option<f64>, anchor: Option<f64>) -> String {
    match (ours, anchor) {
        (Some(o), Some(a)) if a != 0.0 => format!("{:.2}x", o / a),
        _ => "-".to_owned(),
    }
}

/// The markdown table, columns padded so that it also reads as plain text.
pub fn render(rows: &[Row]) -> String {
    let header = ["figure", "unit", "runs", "load", "median", "anchor", "ours / anchor", "note"];
    let mut cells: Vec<Vec<String>> = Vec::new();
    for row in rows {
        let runs = if row.runs.is_empty() {
            "not measured".to_owned()
        } else {
            row.runs
                .iter()
                .map(|(v, _)| v.map_or_else(|| "failed".to_owned(), figure))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let load =
            row.runs.iter().map(|(_, l)| if l.is_empty() { "?" } else { l.as_str() }).collect::<Vec<_>>();
        let median = row.median();
        let anchor_row = row.anchor.as_ref().and_then(|a| rows.iter().find(|r| &r.id == a));
        cells.push(vec![
            if row.is_anchor { format!("anchor: {}", row.label) } else { row.label.clone() },
            row.unit.clone(),
            runs,
            load.join(" / "),
            median.map_or_else(|| "-".to_owned(), figure),
            anchor_row.map_or_else(|| "-".to_owned(), |a| a.label.clone()),
            match anchor_row {
                Some(a) => ratio(median, a.median()),
                None => "-".to_owned(),
            },
            row.note.clone(),
        ]);
    }
    let escape = |s: &str| s.replace('|', "\\|");
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            cells.iter().map(|r| escape(&r[c]).chars().count()).chain([header[c].len()]).max().unwrap_or(0)
        })
        .collect();
    // Figures, medians and ratios align right.
    let right = [false, false, true, false, true, false, true, false];
    let mut out = String::new();
    let line = |out: &mut String, values: Vec<String>| {
        out.push('|');
        for (c, v) in values.iter().enumerate() {
            let w = widths[c];
            let _ = if right[c] { write!(out, " {v:>w$} |") } else { write!(out, " {v:<w$} |") };
        }
        out.push('\n');
    };
    line(&mut out, header.iter().map(|h| (*h).to_owned()).collect());
    line(
        &mut out,
        widths
            .iter()
            .zip(right)
            .map(|(&w, r)| if r { format!("{}:", "-".repeat(w.max(2) - 1)) } else { "-".repeat(w.max(1)) })
            .collect(),
    );
    for row in cells {
        line(&mut out, row.iter().map(|c| escape(c)).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDS: &str = "row\tredis_set\tRedis SET NX EX\tops/s\tanchor\tprivate redis-server, core 0
value\tredis_set\t80000\t0.4
value\tredis_set\t76000.4\t0.6
value\tredis_set\t90000\t0.5
row\tholds\tholds (hold + release)\treq/s\tredis_set\tfsync
value\tholds\t30000\t0.7
value\tholds\t\t0.9
value\tholds\t32000\t1.1
row\tbare\tbare bitmap\treq/s\tmissing_anchor_values\t
row\tp99\thold p99\tms\t\t
value\tp99\t1.8634\t0.7!
";

    #[test]
    fn medians_skip_failed_runs_and_average_the_middle_pair() {
        let rows = parse(&RECORDS.replace("missing_anchor_values", "")).expect("valid records");
        assert_eq!(rows[0].median(), Some(80000.0));
        assert_eq!(rows[1].runs.len(), 3);
        assert_eq!(rows[1].median(), Some(31000.0));
        let empty = Row { runs: vec![(None, String::new())], ..rows[0].clone() };
        assert_eq!(empty.median(), None);
    }

    #[test]
    fn ratios_are_ours_over_the_anchors_median() {
        assert_eq!(ratio(Some(31000.0), Some(80000.0)), "0.39x");
        assert_eq!(ratio(Some(2.0), Some(1.0)), "2.00x");
        assert_eq!(ratio(None, Some(1.0)), "-");
        assert_eq!(ratio(Some(1.0), Some(0.0)), "-");
    }

    #[test]
    fn figures_read_like_a_person_wrote_them() {
        assert_eq!(figure(76593.4), "76,593");
        assert_eq!(figure(1234567.0), "1,234,567");
        assert_eq!(figure(100.0), "100");
        assert_eq!(figure(1.8634), "1.86");
        assert_eq!(figure(19.34), "19.3");
        assert_eq!(figure(0.0123), "0.0123");
        assert_eq!(figure(0.0), "0");
        assert_eq!(figure(-2500.0), "-2,500");
    }

    #[test]
    fn the_table_shows_runs_loads_medians_and_ratios() {
        let rows = parse(&RECORDS.replace("missing_anchor_values", "redis_set")).expect("valid records");
        let table = render(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 6, "{table}");
        assert!(lines[0].starts_with("| figure"), "{table}");
        assert!(lines[1].contains("---:"), "{table}");
        let anchor: Vec<&str> = lines[2].split('|').map(str::trim).collect();
        assert_eq!(
            anchor[1..9],
            [
                "anchor: Redis SET NX EX",
                "ops/s",
                "80,000 / 76,000 / 90,000",
                "0.4 / 0.6 / 0.5",
                "80,000",
                "-",
                "-",
                "private redis-server, core 0"
            ]
        );
        let ours: Vec<&str> = lines[3].split('|').map(str::trim).collect();
        assert_eq!(ours[3], "30,000 / failed / 32,000");
        assert_eq!(ours[5], "31,000");
        assert_eq!(ours[6], "Redis SET NX EX");
        assert_eq!(ours[7], "0.39x");
        let unmeasured: Vec<&str> = lines[4].split('|').map(str::trim).collect();
        assert_eq!(unmeasured[3], "not measured");
        assert_eq!(unmeasured[7], "-");
        let unanchored: Vec<&str> = lines[5].split('|').map(str::trim).collect();
        assert_eq!(unanchored[1..8], ["hold p99", "ms", "1.86", "0.7!", "1.86", "-", "-"]);
        // Every line has the same width: the table reads as plain text too.
        assert!(lines.iter().all(|l| l.chars().count() == lines[0].chars().count()), "{table}");
    }

    #[test]
    fn records_that_make_no_sense_are_refused() {
        assert!(parse("value\tnobody\t1\t0.1\n").is_err());
        assert!(parse("row\ta\tA\tx\t\nrow\ta\tA again\tx\t\n").is_err());
        assert!(parse("row\ta\tA\tx\tb\n").is_err(), "an anchor that does not exist");
        assert!(parse("row\ta\tA\tx\ta\n").is_err(), "compared with itself");
        assert!(parse("row\ta\tA\tx\tanchor\nrow\tb\tB\tx\ta\nrow\tc\tC\tx\tb\n").is_ok());
        assert!(parse("rows\ta\n").is_err());
        assert!(parse("row\ta\tA\n").is_err());
        assert_eq!(parse("\n\n").map(|r| r.len()), Ok(0));
    }

    #[test]
    fn pipes_in_labels_do_not_break_the_table() {
        let rows = parse("row\ta\tA | B\tx\tanchor\nvalue\ta\t1\t0.1\n").expect("valid");
        let table = render(&rows);
        assert!(table.lines().nth(2).is_some_and(|l| l.contains("A \\| B")), "{table}");
    }
}
