//! Where the overlay's text goes: a tag per person, a label on each confident pair's line, the pair
//! panel along the bottom and the untrained badge, as rectangles that never overlap each other and
//! stay on screen. Pure geometry: [`layout`] returns the rectangles, the parent module draws them.

use core::fmt::Write as _;

use embedded_graphics::mono_font::MonoFont;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use heapless::{String as HString, Vec as HVec};

use crate::labels::{COARSE_OF_FINE, FINE_LABELS};
use crate::limits::{MAX_PAIRS, MAX_PERSONS};
use crate::scene::{Person, Relation, Scene};

/// Longest text the overlay draws, e.g. "P4294967295-P4294967295 no relation 0.61" (bytes).
const TEXT_CAPACITY: usize = 48;

/// One line of overlay text.
pub type Text = HString<TEXT_CAPACITY>;

/// The text of the badge shown when the relation weights were not trained on PISC.
pub const UNTRAINED_BADGE: &str = "UNTRAINED WEIGHTS - labels are not recognition";
/// The short form of [`UNTRAINED_BADGE`] for narrow screens.
pub const UNTRAINED_BADGE_SHORT: &str = "UNTRAINED";

/// Share of the screen's height the pair panel may take at most.
const PANEL_SHARE: u32 = 4;

/// Most pairs drawn as a line (the most confident ones): more crossing lines are not readable, and
/// the panel lists every pair anyway.
pub const MAX_LINES: usize = 6;

/// The relation shown for a pair: its label and that label's score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shown {
    pub label: &'static str,
    pub score: f32,
}

impl Shown {
    /// The coarse group of the label ("intimate", "non-intimate" or "no relation").
    pub fn coarse(&self) -> &'static str {
        FINE_LABELS
            .iter()
            .position(|l| *l == self.label)
            .map_or("no relation", |i| COARSE_OF_FINE[i])
    }
}

/// The one place the overlay reads a pair's label and score.
pub fn shown(r: &Relation) -> Shown {
    Shown {
        label: r.shown_label(),
        score: r.shown_score(),
    }
}

/// The one place the overlay reads the number a person is shown with ("P3"): the track id, which
/// the JSON's `track` and `tracks` carry too.
pub fn person_tag(p: &Person) -> u32 {
    p.track
}

/// What a placed rectangle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// The untrained badge.
    Badge,
    /// The tag of the person at this index of `scene.persons`.
    Tag(u8),
    /// The label on the line of the relation at this index of `scene.relations`.
    LineLabel(u8),
    /// The panel entry of the relation at this index of `scene.relations`.
    Pair(u8),
    /// The panel's last entry: how many pairs did not fit ("+N more").
    More(u8),
}

/// A text rectangle in target pixels: the text is drawn with its top-left corner at `rect`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub item: Item,
    pub rect: Rectangle,
}

/// Most text rectangles of one frame: the badge, the tags, a line label and a panel entry per pair.
pub const MAX_ITEMS: usize = 1 + MAX_PERSONS + 2 * MAX_PAIRS;

/// The placement of one frame's overlay on one target size.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Every text rectangle; no two intersect and all are on screen.
    pub items: HVec<Placed, MAX_ITEMS>,
    /// The relations drawn as a line (shown score at least the threshold), most confident first,
    /// at most [`MAX_LINES`].
    pub lines: HVec<u8, MAX_PAIRS>,
    /// The pair panel's background along the bottom, when there are pairs.
    pub panel: Option<Rectangle>,
}

/// A person's tag, "P3".
pub fn tag_text(p: &Person) -> Text {
    let mut t = Text::new();
    let _ = write!(t, "P{}", person_tag(p));
    t
}

/// The label on a pair's line, "family 0.81".
pub fn line_text(r: &Relation) -> Text {
    let s = shown(r);
    let mut t = Text::new();
    let _ = write!(t, "{} {:.2}", s.label, s.score);
    t
}

/// A pair's panel entry, "P1-P3 family 0.81".
pub fn pair_text(scene: &Scene, r: &Relation) -> Text {
    let s = shown(r);
    let tag = |i: u8| {
        scene
            .persons
            .get(i as usize)
            .map_or(u32::from(i), person_tag)
    };
    let mut t = Text::new();
    let _ = write!(t, "P{}-P{} {} {:.2}", tag(r.a), tag(r.b), s.label, s.score);
    t
}

/// The panel's last entry when pairs do not fit, "+12 more".
pub fn more_text(n: u8) -> Text {
    let mut t = Text::new();
    let _ = write!(t, "+{n} more");
    t
}

/// The badge text that fits a target `width` wide.
pub fn badge_text(width: u32, font: &MonoFont) -> &'static str {
    if (UNTRAINED_BADGE.len() as u32 + 2) * char_width(font) <= width {
        UNTRAINED_BADGE
    } else {
        UNTRAINED_BADGE_SHORT
    }
}

fn char_width(font: &MonoFont) -> u32 {
    font.character_size.width + font.character_spacing
}

/// The size `text` takes in `font`.
fn text_size(text: &str, font: &MonoFont) -> Size {
    Size::new(
        text.len() as u32 * char_width(font),
        font.character_size.height,
    )
}

/// The rectangle of person `p`'s box in target pixels, for a scene scaled by (`sx`, `sy`).
pub fn box_on_target(p: &Person, sx: f32, sy: f32) -> Rectangle {
    let at = |x: f32, y: f32| Point::new((x * sx).round() as i32, (y * sy).round() as i32);
    Rectangle::with_corners(at(p.bbox[0], p.bbox[1]), at(p.bbox[2], p.bbox[3]))
}

/// Where a pair's line starts and ends: a point a third down each box (about the face or chest).
pub fn anchor(p: &Person, sx: f32, sy: f32) -> Point {
    let b = p.bbox;
    let (x, y) = ((b[0] + b[2]) / 2.0, b[1] + (b[3] - b[1]) / 3.0);
    Point::new((x * sx).round() as i32, (y * sy).round() as i32)
}

/// The relation indices of `scene`, most confident shown label first (ties: index order).
fn by_confidence(scene: &Scene) -> HVec<u8, MAX_PAIRS> {
    let mut order: HVec<u8, MAX_PAIRS> = (0..scene.relations.len() as u8).collect();
    order.sort_unstable_by(|&i, &j| {
        let (si, sj) = (
            shown(&scene.relations[i as usize]).score,
            shown(&scene.relations[j as usize]).score,
        );
        sj.total_cmp(&si).then(i.cmp(&j))
    });
    order
}

/// Places the overlay of `scene` on a target of `size` in `font`: the badge (when `untrained`) in
/// the top-right corner, the pair panel along the bottom (pairs by confidence in columns, "+N
/// more" for those that do not fit in a quarter of the height), then a tag per person near its
/// box, then a line for each of the (at most [`MAX_LINES`]) most confident pairs whose shown score
/// is at least `min_line_score`, labelled where there is room. Deterministic: the same scene and size give the same rectangles.
pub fn layout(
    scene: &Scene,
    size: Size,
    font: &MonoFont,
    min_line_score: f32,
    untrained: bool,
) -> Layout {
    let mut out = Layout::default();
    if scene.width == 0 || scene.height == 0 || size.width == 0 || size.height == 0 {
        return out;
    }
    let (cw, ch) = (char_width(font), font.character_size.height);
    if untrained {
        let text = size_of_badge(size.width, font);
        let x = (size.width as i32 - cw as i32 - text.width as i32).max(0);
        let rect = Rectangle::new(Point::new(x, ch as i32 / 2), text);
        if fits_in(&rect, &Rectangle::new(Point::zero(), size)) {
            push(&mut out, Item::Badge, rect);
        }
    }
    let order = by_confidence(scene);
    let free_height = place_panel(scene, size, font, &order, &mut out);
    let area = Rectangle::new(Point::zero(), Size::new(size.width, free_height));
    let sx = size.width as f32 / scene.width as f32;
    let sy = size.height as f32 / scene.height as f32;
    for (i, p) in scene.persons.iter().enumerate() {
        let text = text_size(&tag_text(p), font);
        let b = box_on_target(p, sx, sy);
        if let Some(rect) = first_free(tag_candidates(b, text, size), text, &area, &out.items) {
            push(&mut out, Item::Tag(i as u8), rect);
        }
    }
    for &i in &order {
        let r = &scene.relations[i as usize];
        if shown(r).score < min_line_score || out.lines.len() == MAX_LINES {
            continue;
        }
        let (Some(pa), Some(pb)) = (
            scene.persons.get(r.a as usize),
            scene.persons.get(r.b as usize),
        ) else {
            continue;
        };
        // Cannot fail: one entry per relation, and there are at most MAX_PAIRS.
        let _ = out.lines.push(i);
        let (a, b) = (anchor(pa, sx, sy), anchor(pb, sx, sy));
        let text = text_size(&line_text(r), font);
        if let Some((_, rect)) = label_place(a, b, text, &area, &out.items) {
            push(&mut out, Item::LineLabel(i), rect);
        }
    }
    out
}

fn size_of_badge(width: u32, font: &MonoFont) -> Size {
    text_size(badge_text(width, font), font)
}

fn push(out: &mut Layout, item: Item, rect: Rectangle) {
    // Cannot fail: at most one badge, one tag per person and two rectangles per pair.
    let _ = out.items.push(Placed { item, rect });
}

/// Lays out the pair panel along the bottom of the target and returns the height left above it.
fn place_panel(scene: &Scene, size: Size, font: &MonoFont, order: &[u8], out: &mut Layout) -> u32 {
    if order.is_empty() {
        return size.height;
    }
    let (cw, ch) = (char_width(font), font.character_size.height);
    let row_h = ch + 2;
    let widest = order
        .iter()
        .map(|&i| pair_text(scene, &scene.relations[i as usize]).len() as u32)
        .max()
        .unwrap_or(0);
    let column_w = (widest + 1) * cw;
    let columns = ((size.width.saturating_sub(2)) / column_w).max(1);
    let max_rows = (size.height / PANEL_SHARE / row_h).max(1);
    let capacity = (columns * max_rows) as usize;
    let (listed, more) = if order.len() <= capacity {
        (order.len(), 0)
    } else {
        (capacity - 1, order.len() - (capacity - 1))
    };
    let entries = (listed + usize::from(more > 0)) as u32;
    let rows = entries.div_ceil(columns).min(max_rows);
    let top = size.height.saturating_sub(rows * row_h + 2);
    out.panel = Some(Rectangle::new(
        Point::new(0, top as i32),
        Size::new(size.width, size.height - top),
    ));
    let screen = Rectangle::new(Point::zero(), size);
    let slot = |k: u32, len: u32| {
        let (column, row) = (k / rows, k % rows);
        let at = Point::new(
            (1 + column * column_w) as i32,
            (top + 1 + row * row_h) as i32,
        );
        Rectangle::new(at, Size::new(len * cw, ch))
    };
    for (k, &i) in order.iter().take(listed).enumerate() {
        let len = pair_text(scene, &scene.relations[i as usize]).len() as u32;
        let rect = slot(k as u32, len);
        if fits_in(&rect, &screen) {
            push(out, Item::Pair(i), rect);
        }
    }
    if more > 0 {
        let n = more as u8;
        let rect = slot(listed as u32, more_text(n).len() as u32);
        if fits_in(&rect, &screen) {
            push(out, Item::More(n), rect);
        }
    }
    top
}

/// Where a person's tag may go, best first: on the box's top-left corner (just above it, then
/// inside), the top-right corner, the bottom corners, down the box's left edge, then anywhere on
/// the screen, row by row.
fn tag_candidates(b: Rectangle, text: Size, screen: Size) -> impl Iterator<Item = Point> {
    let (x1, y1) = (b.top_left.x, b.top_left.y);
    let (x2, y2) = (x1 + b.size.width as i32, y1 + b.size.height as i32);
    let (tw, th) = (text.width as i32, text.height as i32);
    let corners = [
        Point::new(x1, y1 - th),
        Point::new(x1, y1),
        Point::new(x2 - tw, y1 - th),
        Point::new(x2 - tw, y1),
        Point::new(x1, y2 - th),
        Point::new(x1, y2),
    ];
    let step = th + 2;
    let edge = (1..)
        .map(move |k| Point::new(x1, y1 + k * step))
        .take_while(move |p| p.y < y2);
    let column_step = (tw / 2).max(1);
    let columns = screen.width as i32 / column_step + 1;
    let anywhere = (0..screen.height as i32 / step + 1)
        .flat_map(move |row| (0..columns).map(move |c| Point::new(c * column_step, row * step)));
    corners.into_iter().chain(edge).chain(anywhere)
}

/// The first candidate top-left corner, moved inside `area`, whose rectangle of `size` overlaps
/// nothing placed.
fn first_free(
    candidates: impl Iterator<Item = Point>,
    size: Size,
    area: &Rectangle,
    placed: &[Placed],
) -> Option<Rectangle> {
    if size.width > area.size.width || size.height > area.size.height {
        return None;
    }
    let max_x = area.top_left.x + (area.size.width - size.width) as i32;
    let max_y = area.top_left.y + (area.size.height - size.height) as i32;
    candidates
        .map(|p| {
            let p = Point::new(
                p.x.clamp(area.top_left.x, max_x),
                p.y.clamp(area.top_left.y, max_y),
            );
            Rectangle::new(p, size)
        })
        .find(|rect| is_free(rect, placed))
}

/// Whether `rect` keeps at least one pixel from every placed rectangle.
fn is_free(rect: &Rectangle, placed: &[Placed]) -> bool {
    let grown = Rectangle::new(
        rect.top_left - Point::new(1, 1),
        rect.size + Size::new(2, 2),
    );
    placed.iter().all(|q| {
        let i = q.rect.intersection(&grown);
        i.size.width == 0 || i.size.height == 0
    })
}

/// Whether `rect` lies wholly inside `area`.
pub fn fits_in(rect: &Rectangle, area: &Rectangle) -> bool {
    let (a, r) = (area.top_left, rect.top_left);
    r.x >= a.x
        && r.y >= a.y
        && r.x + rect.size.width as i32 <= a.x + area.size.width as i32
        && r.y + rect.size.height as i32 <= a.y + area.size.height as i32
}

/// Where a label of `size` goes for the line a..b: centred on the line's middle, or on the first
/// of a few other points along it (or just above or below them) whose label box is inside `area`
/// and keeps clear of everything placed; `None` when there is no such point (the pair is still
/// listed in the panel).
pub fn label_place(
    a: Point,
    b: Point,
    size: Size,
    area: &Rectangle,
    placed: &[Placed],
) -> Option<(Point, Rectangle)> {
    let at = |t: f32, dy: i32| {
        Point::new(
            a.x + ((b.x - a.x) as f32 * t) as i32,
            a.y + ((b.y - a.y) as f32 * t) as i32 + dy,
        )
    };
    let step = size.height as i32 + 2;
    [0, step, -step]
        .into_iter()
        .flat_map(|dy| [0.5, 0.35, 0.65, 0.2, 0.8].map(|t| (t, dy)))
        .map(|(t, dy)| (at(t, dy), Rectangle::with_center(at(t, dy), size)))
        .find(|(_, rect)| fits_in(rect, area) && is_free(rect, placed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::font_for;

    /// Every display size of the shipped boards: the Pi 4's 240x240 panel, the Zero 2 W's ILI9341
    /// (240x320, shown 320x240 at rotation 90), the demo's PNG at the camera's 640x480, the HDMI
    /// screens of the Pi 5 and the ROCK 5B (1280x800 and 1920x1080).
    const SIZES: [(u32, u32); 6] = [
        (240, 240),
        (240, 320),
        (320, 240),
        (640, 480),
        (1280, 800),
        (1920, 1080),
    ];

    /// A deterministic generator (xorshift), so each seed is one reproducible scene.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 40) as f32 / (1u64 << 24) as f32
        }
    }

    /// `n` persons in a 640x480 frame, every pair related with random scores. `crowded` puts all
    /// boxes in one corner, overlapping.
    fn scene(n: usize, seed: u64, crowded: bool) -> Scene {
        let mut rng = Rng(seed * 2654435761 + 1);
        let mut s = Scene {
            width: 640,
            height: 480,
            ..Default::default()
        };
        for id in 0..n {
            let (w, h) = if crowded {
                (40.0 + 60.0 * rng.next(), 80.0 + 100.0 * rng.next())
            } else {
                (40.0 + 200.0 * rng.next(), 80.0 + 300.0 * rng.next())
            };
            let (x, y) = if crowded {
                (rng.next() * 60.0, rng.next() * 40.0)
            } else {
                (rng.next() * (640.0 - w), rng.next() * (480.0 - h))
            };
            s.persons
                .push(Person {
                    track: id as u32,
                    ..Person::new(id as u8, [x, y, x + w, y + h], 0.3 + 0.7 * rng.next())
                })
                .unwrap();
        }
        for a in 0..n as u8 {
            for b in a + 1..n as u8 {
                let mut probs = [0.0; 6];
                for p in &mut probs {
                    *p = rng.next().powi(3);
                }
                let sum: f32 = probs.iter().sum();
                s.relations
                    .push(Relation::new(a, b, probs.map(|p| p / sum)))
                    .unwrap();
            }
        }
        s
    }

    fn check(scene: &Scene, (w, h): (u32, u32), untrained: bool) -> Layout {
        let size = Size::new(w, h);
        let screen = Rectangle::new(Point::zero(), size);
        let font = font_for(w);
        let l = layout(scene, size, font, DEFAULT_LINE, untrained);
        let what = format!("{} persons on {w}x{h}", scene.persons.len());
        for (k, a) in l.items.iter().enumerate() {
            assert!(fits_in(&a.rect, &screen), "{what}: {a:?} off screen");
            for b in &l.items[k + 1..] {
                let i = a.rect.intersection(&b.rect);
                assert!(
                    i.size.width == 0 || i.size.height == 0,
                    "{what}: {a:?} overlaps {b:?}"
                );
            }
            if let Some(panel) = l.panel {
                let in_panel = matches!(a.item, Item::Pair(_) | Item::More(_));
                let i = a.rect.intersection(&panel);
                let overlaps_panel = i.size.width > 0 && i.size.height > 0;
                assert_eq!(in_panel, overlaps_panel, "{what}: {a:?} and the panel");
            }
        }
        // Every person is tagged, every pair is listed or counted in "+N more", the badge is there.
        for i in 0..scene.persons.len() as u8 {
            assert!(
                l.items.iter().any(|p| p.item == Item::Tag(i)),
                "{what}: tag {i}"
            );
        }
        let listed = l
            .items
            .iter()
            .filter(|p| matches!(p.item, Item::Pair(_)))
            .count();
        let more: usize = l
            .items
            .iter()
            .map(|p| match p.item {
                Item::More(n) => n as usize,
                _ => 0,
            })
            .sum();
        assert_eq!(listed + more, scene.relations.len(), "{what}: panel");
        assert_eq!(
            l.items.iter().any(|p| p.item == Item::Badge),
            untrained,
            "{what}: badge"
        );
        // Lines are the most confident pairs, and a line label only labels a line.
        let confident = scene
            .relations
            .iter()
            .filter(|r| shown(r).score >= DEFAULT_LINE)
            .count();
        assert_eq!(l.lines.len(), confident.min(MAX_LINES), "{what}: lines");
        let line_scores = l
            .lines
            .iter()
            .map(|&i| shown(&scene.relations[i as usize]).score);
        let other_scores = (0..scene.relations.len() as u8)
            .filter(|i| !l.lines.contains(i))
            .map(|i| shown(&scene.relations[i as usize]).score);
        let weakest_line = line_scores.fold(1.0, f32::min);
        assert!(
            other_scores.fold(0.0, f32::max) <= weakest_line,
            "{what}: lines are the most confident pairs"
        );
        for p in &l.items {
            if let Item::LineLabel(i) = p.item {
                assert!(
                    l.lines.contains(&i),
                    "{what}: label of a pair without a line"
                );
            }
        }
        l
    }

    const DEFAULT_LINE: f32 = crate::overlay::DEFAULT_MIN_LINE_SCORE;

    #[test]
    fn labels_never_overlap_and_stay_on_screen_for_2_to_8_persons_at_every_board_size() {
        let mut scenes = 0;
        for size in SIZES {
            for n in 2..=8 {
                for seed in 0..12 {
                    for crowded in [false, true] {
                        check(&scene(n, seed, crowded), size, seed % 3 != 2);
                        scenes += 1;
                    }
                }
            }
        }
        println!("{scenes} generated scenes laid out without an overlap");
    }

    #[test]
    fn the_panel_lists_pairs_by_confidence_and_counts_the_rest() {
        let s = scene(8, 7, false);
        let small = check(&s, (240, 240), true);
        let more = small.items.iter().find_map(|p| match p.item {
            Item::More(n) => Some(n),
            _ => None,
        });
        assert!(
            more.is_some_and(|n| n > 0),
            "28 pairs do not fit on 240x240"
        );
        let scores: Vec<f32> = small
            .items
            .iter()
            .filter_map(|p| match p.item {
                Item::Pair(i) => Some(shown(&s.relations[i as usize]).score),
                _ => None,
            })
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        let best = s
            .relations
            .iter()
            .map(|r| shown(r).score)
            .fold(0.0, f32::max);
        assert_eq!(scores[0], best);
        // A 1280x800 screen lists all 28.
        let large = check(&s, (1280, 800), true);
        let listed = large
            .items
            .iter()
            .filter(|p| matches!(p.item, Item::Pair(_)))
            .count();
        assert_eq!(listed, 28);
    }

    #[test]
    fn the_same_scene_gives_the_same_layout() {
        let s = scene(6, 3, true);
        let a = check(&s, (320, 240), true);
        let b = check(&s, (320, 240), true);
        assert_eq!(a.items, b.items);
        assert_eq!(a.lines, b.lines);
    }

    #[test]
    fn pair_texts_read_as_in_the_issue() {
        let mut s = scene(3, 1, false);
        let mut probs = [0.0; 6];
        probs[1] = 0.81;
        probs[0] = 0.19;
        s.relations[1] = Relation::new(0, 2, probs);
        assert_eq!(pair_text(&s, &s.relations[1]).as_str(), "P0-P2 family 0.81");
        assert_eq!(tag_text(&s.persons[2]).as_str(), "P2");
        assert_eq!(more_text(12).as_str(), "+12 more");
    }
}
