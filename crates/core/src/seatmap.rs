//! Seat geometry of a venue or event, and the pure best-available picker.
//!
//! A [`SeatMap`] is immutable: an event copies its venue's map when it is created, so a
//! seat's index (its bit in the availability bitmap) never shifts. Seats are named
//! `SECTION-ROW-NUMBER`; rows are numbered from 1 (nearest the stage) and seats within a
//! row from 1 along the row, so seats `n` and `n+1` of a row are neighbours. A number a
//! row lacks is an aisle or gap: the seats on either side of it are not neighbours.
//!
//! The orphan-seat rule lives here too ([`SeatMap::strand_checks`],
//! [`SeatMap::stranded_by`]): a hold may not leave an available seat alone, with both
//! row neighbours taken (a row end or an aisle counts as taken), unless it was alone
//! before the hold.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::Bitmap;
use crate::limits::{MAX_SEATS_PER_VENUE, MAX_SECTIONS_PER_VENUE, MAX_TIERS_PER_VENUE};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LayoutError {
    #[error("a venue needs at least one seat")]
    Empty,
    #[error("a venue may have at most {MAX_SEATS_PER_VENUE} seats, this one has {0}")]
    TooManySeats(usize),
    #[error("a venue may have at most {MAX_SECTIONS_PER_VENUE} sections")]
    TooManySections,
    #[error("a venue may have between 1 and {MAX_TIERS_PER_VENUE} distinct tiers")]
    BadTiers,
    #[error("tier {0:?} is not one of the venue's tiers")]
    UnknownTier(String),
    #[error(
        "section name {0:?} must be 1-32 letters, digits or underscores (no '-', it separates label parts)"
    )]
    BadSectionName(String),
    #[error("section {0:?} is defined twice")]
    DuplicateSection(String),
    #[error("rows and seats per row must be at least 1 (section {0:?})")]
    EmptySection(String),
    #[error("seat {0} is defined twice")]
    DuplicateSeat(String),
    #[error("row and seat numbers start at 1 (seat {0})")]
    BadSeatNumber(String),
    #[error("seat coordinates must be finite numbers (seat {0})")]
    BadCoordinates(String),
}

/// A section given by shape: `rows` rows of `seats_per_row` seats.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectionSpec {
    pub name: String,
    pub rows: u32,
    pub seats_per_row: u32,
    #[serde(default)]
    pub tier: Option<String>,
}

/// One seat given explicitly.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeatSpec {
    pub section: String,
    pub row: u32,
    pub number: u32,
    pub x: f32,
    pub y: f32,
    #[serde(default)]
    pub tier: Option<String>,
}

/// A parsed seat label `SECTION-ROW-NUMBER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatLabel<'a> {
    pub section: &'a str,
    pub row: u32,
    pub number: u32,
}

impl<'a> SeatLabel<'a> {
    pub fn parse(s: &'a str) -> Option<Self> {
        let mut parts = s.rsplitn(3, '-');
        let number = parts.next()?.parse().ok()?;
        let row = parts.next()?.parse().ok()?;
        let section = parts.next()?;
        Some(SeatLabel { section, row, number })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seat {
    pub section: u16,
    pub tier: u16,
    pub row: u32,
    pub number: u32,
    pub x: f32,
    pub y: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub name: String,
    /// Best tier of the section's seats.
    pub tier: u16,
}

/// One row of one section: its seats ordered by number.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub section: u16,
    pub row: u32,
    /// Best tier among the row's seats.
    pub tier: u16,
    pub seats: Vec<u32>,
}

/// No seat: the neighbour of a seat at a row end or an aisle.
const NO_SEAT: u32 = u32::MAX;

/// One check of the orphan-seat rule (see [`SeatMap::strand_checks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrandCheck {
    /// A seat next to the hold that the hold does not take.
    pub seat: u32,
    /// Its neighbour on the far side from the hold; `None`: a row end, an aisle, or a
    /// seat of the hold.
    pub beyond: Option<u32>,
}

/// The immutable seat geometry of one venue or event.
#[derive(Debug, Clone, PartialEq)]
pub struct SeatMap {
    tiers: Vec<String>,
    sections: Vec<Section>,
    seats: Vec<Seat>,
    /// Rows in order of quality: best tier, then nearest the stage, then section order.
    rows: Vec<Row>,
    /// For each seat, its row's position in `rows` and its position within that row.
    seat_row: Vec<(u32, u32)>,
    /// For each seat, its row neighbours (see [`row_neighbours`](Self::row_neighbours)),
    /// [`NO_SEAT`] for none: one read per seat on the hold path.
    neighbours: Vec<[u32; 2]>,
    section_by_name: HashMap<String, u16>,
    by_position: HashMap<(u16, u32, u32), u32>,
}

/// Stored form: compact, and the only thing serialized; indexes are rebuilt on load.
#[derive(Serialize, Deserialize)]
struct StoredMap {
    tiers: Vec<String>,
    sections: Vec<String>,
    /// `[section, tier, row, number, x, y]` per seat.
    seats: Vec<(u16, u16, u32, u32, f32, f32)>,
}

fn valid_section_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn tier_table(tiers: &[String]) -> Result<HashMap<&str, u16>, LayoutError> {
    if tiers.is_empty() || tiers.len() > MAX_TIERS_PER_VENUE {
        return Err(LayoutError::BadTiers);
    }
    let table: HashMap<&str, u16> = tiers.iter().enumerate().map(|(i, t)| (t.as_str(), i as u16)).collect();
    if table.len() != tiers.len() || tiers.iter().any(|t| t.is_empty() || t.len() > 32) {
        return Err(LayoutError::BadTiers);
    }
    Ok(table)
}

fn tier_of(table: &HashMap<&str, u16>, tier: Option<&str>) -> Result<u16, LayoutError> {
    match tier {
        None => Ok(0),
        Some(t) => table.get(t).copied().ok_or_else(|| LayoutError::UnknownTier(t.to_owned())),
    }
}

impl SeatMap {
    /// Tiers used when a venue names none.
    pub fn default_tiers() -> Vec<String> {
        vec!["standard".to_owned()]
    }

    /// A map from section shapes. Sections are laid out side by side, left to right, one
    /// unit per seat and row, with a gap of two units between sections.
    pub fn from_sections(tiers: Vec<String>, specs: &[SectionSpec]) -> Result<Self, LayoutError> {
        let total: u64 = specs.iter().map(|s| u64::from(s.rows) * u64::from(s.seats_per_row)).sum();
        if total > MAX_SEATS_PER_VENUE as u64 {
            return Err(LayoutError::TooManySeats(total as usize));
        }
        let mut seats = Vec::with_capacity(total as usize);
        let mut x0 = 0f32;
        for spec in specs {
            if spec.rows == 0 || spec.seats_per_row == 0 {
                return Err(LayoutError::EmptySection(spec.name.clone()));
            }
            for row in 1..=spec.rows {
                for number in 1..=spec.seats_per_row {
                    seats.push(SeatSpec {
                        section: spec.name.clone(),
                        row,
                        number,
                        x: x0 + (number - 1) as f32,
                        y: (row - 1) as f32,
                        tier: spec.tier.clone(),
                    });
                }
            }
            x0 += spec.seats_per_row as f32 + 2.0;
        }
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        Self::build(tiers, &names, &seats)
    }

    /// A map from explicit seats; sections appear in order of first mention.
    pub fn from_seats(tiers: Vec<String>, seats: &[SeatSpec]) -> Result<Self, LayoutError> {
        let mut names: Vec<&str> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for s in seats {
            if seen.insert(s.section.as_str()) {
                names.push(&s.section);
            }
        }
        Self::build(tiers, &names, seats)
    }

    fn build(tiers: Vec<String>, names: &[&str], specs: &[SeatSpec]) -> Result<Self, LayoutError> {
        if specs.is_empty() {
            return Err(LayoutError::Empty);
        }
        if specs.len() > MAX_SEATS_PER_VENUE {
            return Err(LayoutError::TooManySeats(specs.len()));
        }
        if names.len() > MAX_SECTIONS_PER_VENUE {
            return Err(LayoutError::TooManySections);
        }
        let tier_index = tier_table(&tiers)?;
        let mut section_by_name = HashMap::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if !valid_section_name(name) {
                return Err(LayoutError::BadSectionName((*name).to_owned()));
            }
            if section_by_name.insert((*name).to_owned(), i as u16).is_some() {
                return Err(LayoutError::DuplicateSection((*name).to_owned()));
            }
        }
        let mut seats = Vec::with_capacity(specs.len());
        for spec in specs {
            let label = || format!("{}-{}-{}", spec.section, spec.row, spec.number);
            if spec.row == 0 || spec.number == 0 {
                return Err(LayoutError::BadSeatNumber(label()));
            }
            if !spec.x.is_finite() || !spec.y.is_finite() {
                return Err(LayoutError::BadCoordinates(label()));
            }
            seats.push(Seat {
                section: section_by_name[spec.section.as_str()],
                tier: tier_of(&tier_index, spec.tier.as_deref())?,
                row: spec.row,
                number: spec.number,
                x: spec.x,
                y: spec.y,
            });
        }
        let sections = names.iter().map(|n| Section { name: (*n).to_owned(), tier: u16::MAX }).collect();
        let mut map = SeatMap {
            tiers,
            sections,
            seats,
            rows: Vec::new(),
            seat_row: Vec::new(),
            neighbours: Vec::new(),
            section_by_name,
            by_position: HashMap::new(),
        };
        map.index()?;
        Ok(map)
    }

    /// Builds the derived indexes; rejects duplicate seats.
    fn index(&mut self) -> Result<(), LayoutError> {
        self.by_position = HashMap::with_capacity(self.seats.len());
        let mut rows: HashMap<(u16, u32), Vec<u32>> = HashMap::new();
        for (i, seat) in self.seats.iter().enumerate() {
            if self.by_position.insert((seat.section, seat.row, seat.number), i as u32).is_some() {
                return Err(LayoutError::DuplicateSeat(self.label(i as u32)));
            }
            rows.entry((seat.section, seat.row)).or_default().push(i as u32);
            let section = &mut self.sections[seat.section as usize];
            section.tier = section.tier.min(seat.tier);
        }
        let mut rows: Vec<Row> = rows
            .into_iter()
            .map(|((section, row), mut seats)| {
                seats.sort_by_key(|&s| self.seats[s as usize].number);
                let tier = seats.iter().map(|&s| self.seats[s as usize].tier).min().unwrap_or(0);
                Row { section, row, tier, seats }
            })
            .collect();
        rows.sort_by_key(|r| (r.tier, r.row, r.section));
        self.seat_row = vec![(0, 0); self.seats.len()];
        for (r, row) in rows.iter().enumerate() {
            for (p, &s) in row.seats.iter().enumerate() {
                self.seat_row[s as usize] = (r as u32, p as u32);
            }
        }
        self.neighbours = vec![[NO_SEAT; 2]; self.seats.len()];
        for row in &rows {
            for pair in row.seats.windows(2) {
                if self.seats[pair[0] as usize].number + 1 == self.seats[pair[1] as usize].number {
                    self.neighbours[pair[0] as usize][1] = pair[1];
                    self.neighbours[pair[1] as usize][0] = pair[0];
                }
            }
        }
        self.rows = rows;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seats.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seats.is_empty()
    }

    pub fn tiers(&self) -> &[String] {
        &self.tiers
    }

    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    pub fn seats(&self) -> &[Seat] {
        &self.seats
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn seat(&self, index: u32) -> &Seat {
        &self.seats[index as usize]
    }

    pub fn section_index(&self, name: &str) -> Option<u16> {
        self.section_by_name.get(name).copied()
    }

    pub fn label(&self, index: u32) -> String {
        let seat = &self.seats[index as usize];
        format!("{}-{}-{}", self.sections[seat.section as usize].name, seat.row, seat.number)
    }

    pub fn tier_name(&self, index: u32) -> &str {
        &self.tiers[self.seats[index as usize].tier as usize]
    }

    /// The index of the seat a label names, if the map has it.
    pub fn resolve(&self, label: &str) -> Option<u32> {
        let label = SeatLabel::parse(label)?;
        let section = self.section_index(label.section)?;
        self.by_position.get(&(section, label.row, label.number)).copied()
    }

    /// The seat's row (position in [`rows`](Self::rows)) and its position in that row.
    pub fn row_position(&self, index: u32) -> (u32, u32) {
        self.seat_row[index as usize]
    }

    /// Picks `count` available seats: a run of adjacent seats in one row, best tier and
    /// nearest the stage first, placed so that it never leaves a single seat stranded
    /// between taken seats; failing that, the best available seat of a section and the
    /// seats nearest it. `None` when the section (or the map) lacks `count` seats.
    pub fn best_available(&self, available: &Bitmap, count: u32, section: Option<u16>) -> Option<Vec<u32>> {
        self.pick(available, count, section, false)
    }

    /// [`best_available`](Self::best_available) under the orphan-seat rule: the nearest
    /// seats of the fallback are also chosen so that they strand no seat (see
    /// [`stranded_by`](Self::stranded_by)); `None` when no such choice was found.
    pub fn best_available_strict(
        &self,
        available: &Bitmap,
        count: u32,
        section: Option<u16>,
    ) -> Option<Vec<u32>> {
        self.pick(available, count, section, true)
    }

    fn pick(&self, available: &Bitmap, count: u32, section: Option<u16>, strict: bool) -> Option<Vec<u32>> {
        let count = count as usize;
        if count == 0 {
            return None;
        }
        let in_scope = |row: &Row| section.is_none_or(|s| s == row.section);
        for row in self.rows.iter().filter(|r| in_scope(r) && r.seats.len() >= count) {
            if let Some(run) = self.run_in_row(row, available, count) {
                return Some(run);
            }
        }
        let nearest = self.nearest_in_section(available, count, section)?;
        if !strict {
            return Some(nearest.into_iter().take(count).map(|(_, i)| i).collect());
        }
        self.nearest_without_stranding(available, count, &nearest)
    }

    /// The seat's neighbours in its row: the seats numbered one less and one more. A
    /// number the row lacks (an aisle or gap) and the row's ends have no neighbour.
    pub fn row_neighbours(&self, index: u32) -> (Option<u32>, Option<u32>) {
        let [left, right] = self.neighbours[index as usize];
        ((left != NO_SEAT).then_some(left), (right != NO_SEAT).then_some(right))
    }

    /// Whether a hold of `seats` would leave a seat alone: [`stranded_by`](Self::stranded_by)
    /// is not empty. Allocates nothing for holds of up to 16 seats (the hot path).
    pub fn strands_any(&self, available: &Bitmap, seats: &[u32]) -> bool {
        if seats.len() > 16 {
            return !self.stranded_by(available, seats).is_empty();
        }
        let taken_after = |s: u32| s == NO_SEAT || seats.contains(&s) || !available.is_available(s);
        seats.iter().any(|&s| {
            let around = self.neighbours[s as usize];
            (0..2).any(|side| {
                let n = around[side];
                n != NO_SEAT
                    && !seats.contains(&n)
                    && available.is_available(n)
                    && taken_after(self.neighbours[n as usize][side])
            })
        })
    }

    /// The orphan-seat rule's checks for a hold of `seats` (distinct indexes of this map),
    /// ascending by seat: each names a neighbour of a held seat that the hold does not
    /// take, and the seat beyond it in the same direction. The hold strands
    /// `check.seat` when that seat is available and `check.beyond` is taken, or is `None`
    /// (a row end, an aisle, or a seat of the hold itself). Evaluated against the
    /// availability before the hold by [`stranded_by`](Self::stranded_by), and inside
    /// the distributed inventory's hold script against its bitmap.
    pub fn strand_checks(&self, seats: &[u32]) -> Vec<StrandCheck> {
        let sorted: Vec<u32>;
        let held: &[u32] = if seats.len() <= 16 {
            seats
        } else {
            let mut copy = seats.to_vec();
            copy.sort_unstable();
            sorted = copy;
            &sorted
        };
        let in_hold =
            |s: u32| if seats.len() <= 16 { held.contains(&s) } else { held.binary_search(&s).is_ok() };
        let mut checks = Vec::new();
        for &s in seats {
            let (left, right) = self.row_neighbours(s);
            if let Some(n) = left.filter(|&n| !in_hold(n)) {
                let beyond = self.row_neighbours(n).0.filter(|&b| !in_hold(b));
                checks.push(StrandCheck { seat: n, beyond });
            }
            if let Some(n) = right.filter(|&n| !in_hold(n)) {
                let beyond = self.row_neighbours(n).1.filter(|&b| !in_hold(b));
                checks.push(StrandCheck { seat: n, beyond });
            }
        }
        // A seat between two held seats comes twice, both times with `beyond: None`.
        checks.sort_unstable_by_key(|c| c.seat);
        checks.dedup_by_key(|c| c.seat);
        checks
    }

    /// The seats, ascending, that a hold of `seats` would leave alone: available, not
    /// held, with both row neighbours taken afterwards (a row end or an aisle counts as
    /// taken). `available` is the availability before the hold. A seat that was alone
    /// already is not the hold's doing and is never named.
    pub fn stranded_by(&self, available: &Bitmap, seats: &[u32]) -> Vec<u32> {
        self.strand_checks(seats)
            .into_iter()
            .filter(|c| available.is_available(c.seat) && c.beyond.is_none_or(|b| !available.is_available(b)))
            .map(|c| c.seat)
            .collect()
    }

    fn run_in_row(&self, row: &Row, available: &Bitmap, count: usize) -> Option<Vec<u32>> {
        let seats = &row.seats;
        let mut start = 0;
        while start < seats.len() {
            if !available.is_available(seats[start]) {
                start += 1;
                continue;
            }
            // Extend a segment of available seats with consecutive numbers.
            let mut end = start + 1;
            while end < seats.len()
                && available.is_available(seats[end])
                && self.seats[seats[end] as usize].number == self.seats[seats[end - 1] as usize].number + 1
            {
                end += 1;
            }
            let len = end - start;
            // A run at the segment's start leaves `len - count` seats after it; exactly
            // one would be stranded.
            if len == count || len >= count + 2 {
                return Some(seats[start..start + count].to_vec());
            }
            start = end;
        }
        None
    }

    /// The available seats of the home section by distance from its anchor (the first
    /// available seat in quality order of a section that can fit the group), nearest first.
    fn nearest_in_section(
        &self,
        available: &Bitmap,
        count: usize,
        section: Option<u16>,
    ) -> Option<Vec<(f32, u32)>> {
        let mut per_section = vec![0usize; self.sections.len()];
        for i in available.iter_available() {
            per_section[self.seats[i as usize].section as usize] += 1;
        }
        // The first available seat in quality order of a section that can fit the group.
        let anchor = self.rows.iter().filter(|r| section.is_none_or(|s| s == r.section)).find_map(|row| {
            if per_section[row.section as usize] < count {
                return None;
            }
            row.seats.iter().copied().find(|&s| available.is_available(s))
        })?;
        let home = self.seats[anchor as usize];
        let mut candidates: Vec<(f32, u32)> = available
            .iter_available()
            .filter(|&i| self.seats[i as usize].section == home.section)
            .map(|i| {
                let s = &self.seats[i as usize];
                ((s.x - home.x).powi(2) + (s.y - home.y).powi(2), i)
            })
            .collect();
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        Some(candidates)
    }

    /// `count` of `candidates` (the home section's available seats, nearest first) that
    /// strand no seat. Taken segment by segment (a segment: adjacent available seats of
    /// a row between taken seats, aisles and row ends), the segment of the nearest seat
    /// first, each from its end nearer the anchor and never all but one of it: what is
    /// left of a segment is empty or two seats or more, so no seat is left alone.
    fn nearest_without_stranding(
        &self,
        available: &Bitmap,
        count: usize,
        candidates: &[(f32, u32)],
    ) -> Option<Vec<u32>> {
        let mut seen = std::collections::HashSet::new();
        let mut picked: Vec<u32> = Vec::with_capacity(count);
        for &(_, seat) in candidates {
            if picked.len() == count {
                break;
            }
            if seen.contains(&seat) {
                continue;
            }
            let segment = self.segment(available, seat);
            seen.extend(segment.iter().copied());
            let len = segment.len();
            let mut take = (count - picked.len()).min(len);
            if len - take == 1 {
                take -= 1;
            }
            let at = segment.iter().position(|&s| s == seat).expect("a seat is in its own segment");
            if at < len - 1 - at {
                picked.extend_from_slice(&segment[..take]);
            } else {
                picked.extend_from_slice(&segment[len - take..]);
            }
        }
        (picked.len() == count).then_some(picked)
    }

    /// The available seats adjacent to `seat` (itself included) in its row, in row order.
    fn segment(&self, available: &Bitmap, seat: u32) -> Vec<u32> {
        let mut start = seat;
        while let Some(left) = self.row_neighbours(start).0.filter(|&l| available.is_available(l)) {
            start = left;
        }
        let mut segment = vec![start];
        let mut at = start;
        while let Some(right) = self.row_neighbours(at).1.filter(|&r| available.is_available(r)) {
            segment.push(right);
            at = right;
        }
        segment
    }
}

impl Serialize for SeatMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        StoredMap {
            tiers: self.tiers.clone(),
            sections: self.sections.iter().map(|s| s.name.clone()).collect(),
            seats: self.seats.iter().map(|s| (s.section, s.tier, s.row, s.number, s.x, s.y)).collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SeatMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let stored = StoredMap::deserialize(d)?;
        let names: Vec<&str> = stored.sections.iter().map(String::as_str).collect();
        let specs: Vec<SeatSpec> = stored
            .seats
            .iter()
            .map(|&(section, tier, row, number, x, y)| {
                let section = names
                    .get(section as usize)
                    .ok_or_else(|| D::Error::custom("seat names an unknown section"))?;
                let tier = stored
                    .tiers
                    .get(tier as usize)
                    .ok_or_else(|| D::Error::custom("seat names an unknown tier"))?;
                Ok(SeatSpec { section: (*section).to_owned(), row, number, x, y, tier: Some(tier.clone()) })
            })
            .collect::<Result<_, D::Error>>()?;
        SeatMap::build(stored.tiers.clone(), &names, &specs).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(name: &str, rows: u32, seats_per_row: u32, tier: Option<&str>) -> SectionSpec {
        SectionSpec { name: name.into(), rows, seats_per_row, tier: tier.map(Into::into) }
    }

    fn tiers() -> Vec<String> {
        vec!["premium".into(), "standard".into()]
    }

    fn small() -> SeatMap {
        SeatMap::from_sections(
            tiers(),
            &[section("B", 3, 6, Some("standard")), section("A", 2, 5, Some("premium"))],
        )
        .unwrap()
    }

    #[test]
    fn labels_resolve_to_indexes_and_back() {
        let map = small();
        assert_eq!(map.len(), 3 * 6 + 2 * 5);
        for i in 0..map.len() as u32 {
            assert_eq!(map.resolve(&map.label(i)), Some(i));
        }
        assert_eq!(map.label(0), "B-1-1");
        assert_eq!(map.resolve("A-2-5"), Some(18 + 9));
        for bad in ["A-3-1", "A-1-6", "C-1-1", "A-1", "A--1-1", "", "A-x-1"] {
            assert_eq!(map.resolve(bad), None, "{bad}");
        }
        assert_eq!(map.tier_name(0), "standard");
        assert_eq!(map.tier_name(18), "premium");
    }

    #[test]
    fn layouts_are_validated() {
        let t = tiers;
        assert_eq!(SeatMap::from_sections(t(), &[]), Err(LayoutError::Empty));
        assert!(matches!(
            SeatMap::from_sections(t(), &[section("A-1", 1, 1, None)]),
            Err(LayoutError::BadSectionName(_))
        ));
        assert!(matches!(
            SeatMap::from_sections(t(), &[section("A", 1, 1, None), section("A", 1, 1, None)]),
            Err(LayoutError::DuplicateSection(_))
        ));
        assert!(matches!(
            SeatMap::from_sections(t(), &[section("A", 1, 1, Some("vip"))]),
            Err(LayoutError::UnknownTier(_))
        ));
        assert!(matches!(
            SeatMap::from_sections(t(), &[section("A", 1000, 1000, None)]),
            Err(LayoutError::TooManySeats(1_000_000))
        ));
        assert_eq!(
            SeatMap::from_sections(vec!["a".into(), "a".into()], &[section("A", 1, 1, None)]),
            Err(LayoutError::BadTiers)
        );
        let seat = |row, number| SeatSpec { section: "A".into(), row, number, x: 0.0, y: 0.0, tier: None };
        assert!(matches!(
            SeatMap::from_seats(t(), &[seat(1, 1), seat(1, 1)]),
            Err(LayoutError::DuplicateSeat(l)) if l == "A-1-1"
        ));
        assert!(matches!(SeatMap::from_seats(t(), &[seat(0, 1)]), Err(LayoutError::BadSeatNumber(_))));
    }

    #[test]
    fn stored_form_round_trips() {
        let map = small();
        let json = serde_json::to_string(&map).unwrap();
        let back: SeatMap = serde_json::from_str(&json).unwrap();
        assert_eq!(back, map);
    }

    #[test]
    fn best_available_prefers_best_tier_then_front_row() {
        let map = small();
        let all = Bitmap::all_available(map.len());
        let picked = map.best_available(&all, 3, None).unwrap();
        let labels: Vec<_> = picked.iter().map(|&i| map.label(i)).collect();
        assert_eq!(labels, ["A-1-1", "A-1-2", "A-1-3"]);
        let in_b = map.best_available(&all, 2, map.section_index("B")).unwrap();
        assert_eq!(map.label(in_b[0]), "B-1-1");
    }

    #[test]
    fn best_available_never_strands_a_single_seat() {
        let map = small();
        let mut bits = Bitmap::all_available(map.len());
        // Row A-1 has 5 seats; taking 4 from its start would strand A-1-5.
        let picked = map.best_available(&bits, 4, None).unwrap();
        assert_eq!(map.label(picked[0]), "B-1-1", "rows of 5 skipped: each would strand a seat");
        // A segment of exactly the requested size is fine.
        bits.set_available(map.resolve("A-1-1").unwrap(), false);
        let picked = map.best_available(&bits, 4, None).unwrap();
        let labels: Vec<_> = picked.iter().map(|&i| map.label(i)).collect();
        assert_eq!(labels, ["A-1-2", "A-1-3", "A-1-4", "A-1-5"]);
    }

    #[test]
    fn best_available_falls_back_to_nearest_seats_in_a_section() {
        let map = small();
        let mut bits = Bitmap::all_available(map.len());
        // Leave section A with seats scattered so that no row has a run of 3.
        for label in ["A-1-2", "A-1-4", "A-2-2", "A-2-4"] {
            bits.set_available(map.resolve(label).unwrap(), false);
        }
        let picked = map.best_available(&bits, 3, map.section_index("A")).unwrap();
        assert_eq!(picked.len(), 3);
        assert!(picked.iter().all(|&i| bits.is_available(i) && map.seat(i).section == 1));
        assert_eq!(map.label(picked[0]), "A-1-1", "anchored at the best available seat");
        assert_eq!(map.best_available(&bits, 7, map.section_index("A")), None);
    }

    fn taken(map: &SeatMap, labels: &[&str]) -> Bitmap {
        let mut bits = Bitmap::all_available(map.len());
        for label in labels {
            bits.set_available(map.resolve(label).unwrap(), false);
        }
        bits
    }

    fn stranded(map: &SeatMap, bits: &Bitmap, hold: &[&str]) -> Vec<String> {
        let seats: Vec<u32> = hold.iter().map(|l| map.resolve(l).unwrap()).collect();
        map.stranded_by(bits, &seats).into_iter().map(|i| map.label(i)).collect()
    }

    /// Row 1 of section `A`: seats 1-4, an aisle (no seat 5), seats 6-9.
    fn aisle_row() -> SeatMap {
        let seats: Vec<SeatSpec> = [1, 2, 3, 4, 6, 7, 8, 9]
            .into_iter()
            .map(|number| SeatSpec {
                section: "A".into(),
                row: 1,
                number,
                x: number as f32,
                y: 0.0,
                tier: None,
            })
            .collect();
        SeatMap::from_seats(tiers(), &seats).unwrap()
    }

    #[test]
    fn row_neighbours_stop_at_row_ends_and_aisles() {
        let map = aisle_row();
        let at = |l: &str| map.resolve(l).unwrap();
        assert_eq!(map.row_neighbours(at("A-1-1")), (None, Some(at("A-1-2"))));
        assert_eq!(map.row_neighbours(at("A-1-4")), (Some(at("A-1-3")), None), "seat 5 is an aisle");
        assert_eq!(map.row_neighbours(at("A-1-6")), (None, Some(at("A-1-7"))));
        assert_eq!(map.row_neighbours(at("A-1-9")), (Some(at("A-1-8")), None));
    }

    #[test]
    fn a_hold_may_not_strand_a_seat_at_a_row_end_an_aisle_or_between_taken_seats() {
        let map = aisle_row();
        let free = Bitmap::all_available(map.len());
        assert_eq!(stranded(&map, &free, &["A-1-2"]), ["A-1-1"], "row end");
        assert_eq!(stranded(&map, &free, &["A-1-3"]), ["A-1-4"], "aisle");
        assert_eq!(stranded(&map, &free, &["A-1-7"]), ["A-1-6"], "aisle on the left");
        assert_eq!(stranded(&map, &free, &["A-1-2", "A-1-3"]), ["A-1-1", "A-1-4"], "both sides");
        assert_eq!(stranded(&map, &free, &["A-1-6", "A-1-8"]), ["A-1-7", "A-1-9"], "between its own seats");
        assert!(stranded(&map, &free, &["A-1-1"]).is_empty(), "leaves a run of 3");
        assert!(stranded(&map, &free, &["A-1-1", "A-1-2", "A-1-3", "A-1-4"]).is_empty(), "a whole block");
        assert!(stranded(&map, &free, &["A-1-4", "A-1-6"]).is_empty(), "across the aisle, runs of 3 stay");

        let bits = taken(&map, &["A-1-1"]);
        assert_eq!(
            stranded(&map, &bits, &["A-1-3"]),
            ["A-1-2", "A-1-4"],
            "between taken seats, by the aisle"
        );
        assert!(stranded(&map, &bits, &["A-1-2"]).is_empty(), "next to the taken seat");
        assert_eq!(stranded(&map, &bits, &["A-1-2", "A-1-3"]), ["A-1-4"], "alone by the aisle");
        assert!(
            stranded(&map, &bits, &["A-1-2", "A-1-3", "A-1-4"]).is_empty(),
            "fills the gap up to the aisle"
        );
        let gap = taken(&map, &["A-1-1", "A-1-3"]);
        assert!(stranded(&map, &gap, &["A-1-2"]).is_empty(), "a hold that fills a single gap exactly");
        assert!(stranded(&map, &gap, &["A-1-4"]).is_empty(), "A-1-2 was alone before the hold");
        let pair = taken(&map, &["A-1-6", "A-1-9"]);
        assert_eq!(stranded(&map, &pair, &["A-1-7"]), ["A-1-8"]);
        assert!(stranded(&map, &pair, &["A-1-7", "A-1-8"]).is_empty(), "fills the gap of two exactly");
    }

    #[test]
    fn strict_best_available_never_strands_a_seat_even_in_its_fallback() {
        let map = SeatMap::from_sections(tiers(), &[section("A", 4, 7, None)]).unwrap();
        // A deterministic scatter of taken seats: no run of 4 anywhere, many gaps of 1-3.
        let mut state = 0x2545_f491_u64;
        for round in 0..200 {
            let mut bits = Bitmap::all_available(map.len());
            for i in 0..map.len() as u32 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if state % 100 < 45 {
                    bits.set_available(i, false);
                }
            }
            for count in 1..=5 {
                let Some(picked) = map.best_available_strict(&bits, count, None) else { continue };
                assert_eq!(picked.len(), count as usize, "round {round}");
                assert!(picked.iter().all(|&i| bits.is_available(i)), "round {round}: picks available seats");
                assert!(map.stranded_by(&bits, &picked).is_empty(), "round {round}: {count} strands a seat");
                assert!(!map.strands_any(&bits, &picked));
            }
            for seat in 0..map.len() as u32 - 2 {
                let hold = [seat, seat + 2];
                if hold.iter().all(|&s| bits.is_available(s)) {
                    let named = !map.stranded_by(&bits, &hold).is_empty();
                    assert_eq!(map.strands_any(&bits, &hold), named, "round {round}: {hold:?}");
                }
            }
        }
        // Only row A-1 has seats: 1-2, 4-5 and 7 (3 and 6 taken), no run of 3. The plain
        // fallback takes the three nearest the anchor A-1-1 (1, 2 and 4), stranding A-1-5.
        let mut rest: Vec<String> = vec!["A-1-3".into(), "A-1-6".into()];
        rest.extend((2..=4).flat_map(|r| (1..=7).map(move |n| format!("A-{r}-{n}"))));
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        let bits = taken(&map, &rest);
        let plain = map.best_available(&bits, 3, None).unwrap();
        assert_eq!(stranded_labels(&map, &bits, &plain), ["A-1-5"]);
        let strict = map.best_available_strict(&bits, 3, None).unwrap();
        let labels: Vec<String> = strict.iter().map(|&i| map.label(i)).collect();
        assert_eq!(labels, ["A-1-1", "A-1-2", "A-1-7"], "whole segments of 2, then the lone seat");
        assert!(map.stranded_by(&bits, &strict).is_empty());
        let four = map.best_available_strict(&bits, 4, None).unwrap();
        let labels: Vec<String> = four.iter().map(|&i| map.label(i)).collect();
        assert_eq!(labels, ["A-1-1", "A-1-2", "A-1-4", "A-1-5"]);
        // Two seats left as 1-2: one seat can only come from a pair, which strands the other.
        let pair = taken(&map, &[&rest[..], &["A-1-4", "A-1-5", "A-1-7"]].concat());
        assert_eq!(map.best_available(&pair, 1, None).map(|p| p.len()), Some(1));
        assert_eq!(map.best_available_strict(&pair, 1, None), None, "either seat strands the other");
    }

    fn stranded_labels(map: &SeatMap, bits: &Bitmap, seats: &[u32]) -> Vec<String> {
        map.stranded_by(bits, seats).into_iter().map(|i| map.label(i)).collect()
    }

    #[test]
    fn best_available_of_more_than_remain_is_none() {
        let map = SeatMap::from_sections(tiers(), &[section("A", 1, 2, None)]).unwrap();
        let mut bits = Bitmap::all_available(2);
        bits.set_available(0, false);
        assert_eq!(map.best_available(&bits, 2, None), None);
        assert_eq!(map.best_available(&bits, 1, None), Some(vec![1]));
    }
}
