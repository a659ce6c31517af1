//! Draws a [`Scene`] over its frame on any embedded-graphics `DrawTarget`: a box per person tagged
//! with its id in the person's colour, a line per confidently related pair with its label where
//! there is room, a panel along the bottom listing the pairs by confidence, and a badge when the
//! relation weights are untrained. The frame is scaled to the target, so a 240x240 panel and a
//! 1280x800 screen both work. Where the text goes is [`layout`]; hiding faces is [`privacy`].

pub mod layout;
pub mod privacy;

use embedded_graphics::mono_font::ascii::{FONT_10X20, FONT_6X10, FONT_7X13_BOLD, FONT_9X15_BOLD};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyleBuilder};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Line, PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Alignment, Baseline, Text, TextStyleBuilder};

use crate::image::{Frame, PixelFormat};
use crate::limits::MAX_PERSONS;
use crate::scene::{Relation, Scene};
use layout::{Item, Layout};
pub use layout::{UNTRAINED_BADGE, UNTRAINED_BADGE_SHORT};
pub use privacy::Privacy;

/// Box colours, one per person id (a frame keeps at most [`MAX_PERSONS`]).
const PERSON_COLOURS: [Rgb888; MAX_PERSONS] = [
    Rgb888::new(0, 200, 255),
    Rgb888::new(255, 170, 0),
    Rgb888::new(120, 230, 60),
    Rgb888::new(255, 80, 160),
    Rgb888::new(170, 120, 255),
    Rgb888::new(255, 240, 60),
    Rgb888::new(0, 230, 170),
    Rgb888::new(255, 110, 80),
];

const INTIMATE: Rgb888 = Rgb888::new(255, 90, 170);
const NON_INTIMATE: Rgb888 = Rgb888::new(60, 200, 255);
const NO_RELATION: Rgb888 = Rgb888::new(190, 190, 190);
const LABEL_BACKGROUND: Rgb888 = Rgb888::new(0, 0, 0);
const PANEL_BACKGROUND: Rgb888 = Rgb888::new(16, 16, 16);
const BADGE_BACKGROUND: Rgb888 = Rgb888::new(255, 210, 0);
const STATUS_BACKGROUND: Rgb888 = Rgb888::new(40, 0, 0);

/// Default of [`OverlaySettings::min_line_score`].
pub const DEFAULT_MIN_LINE_SCORE: f32 = 0.5;

/// How the overlay is drawn, from the board config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverlaySettings {
    /// What is done to the person boxes before the overlay is drawn.
    pub privacy: Privacy,
    /// Pairs whose shown score is below this get no line (they are still listed in the panel).
    pub min_line_score: f32,
}

impl Default for OverlaySettings {
    fn default() -> Self {
        OverlaySettings {
            privacy: Privacy::Off,
            min_line_score: DEFAULT_MIN_LINE_SCORE,
        }
    }
}

/// Colour of a relation's line and text, by the coarse group of its shown label.
pub fn relation_colour(r: &Relation) -> Rgb888 {
    match layout::shown(r).coarse() {
        "intimate" => INTIMATE,
        "non-intimate" => NON_INTIMATE,
        _ => NO_RELATION,
    }
}

/// Colour of the person shown as `tag` (its box and tag).
pub fn person_colour(tag: u32) -> Rgb888 {
    PERSON_COLOURS[tag as usize % PERSON_COLOURS.len()]
}

/// The font for a target `width` pixels wide.
pub fn font_for(width: u32) -> &'static MonoFont<'static> {
    match width {
        0..=400 => &FONT_6X10,
        401..=900 => &FONT_7X13_BOLD,
        901..=1600 => &FONT_9X15_BOLD,
        _ => &FONT_10X20,
    }
}

/// Copies an RGB frame onto the whole target (nearest-neighbour scaling).
///
/// kith's own loop, not fast_image_resize: in `cargo bench --bench preprocess` the library's nearest
/// neighbour into a buffer, then drawn 1:1, is 0.9 to 2.2 times as fast, but it allocates on every
/// call and samples pixel centres instead of `x * src / dst`.
pub fn draw_frame<D>(target: &mut D, frame: &Frame) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888> + OriginDimensions,
{
    let size = target.size();
    let empty = frame.width == 0 || frame.height == 0 || size.width == 0 || size.height == 0;
    if frame.format != PixelFormat::Rgb || empty {
        return Ok(());
    }
    let (tw, th) = (size.width as usize, size.height as usize);
    let columns = scaled_indices(frame.width, tw);
    let colours = scaled_indices(frame.height, th).flat_map(|sy| {
        let row = sy * frame.stride;
        columns.clone().map(move |sx| {
            let i = row + sx * 3;
            frame
                .data
                .get(i..i + 3)
                .map_or(Rgb888::new(0, 0, 0), |p| Rgb888::new(p[0], p[1], p[2]))
        })
    });
    target.fill_contiguous(&Rectangle::new(Point::zero(), size), colours)
}

/// The source index `x * src / dst` of each of `dst` target positions (nearest-neighbour scaling),
/// stepped without a division per pixel.
fn scaled_indices(src: usize, dst: usize) -> impl Iterator<Item = usize> + Clone {
    let (step, rem) = (src / dst, src % dst);
    let (mut index, mut carry) = (0, 0);
    (0..dst).map(move |_| {
        let at = index;
        index += step;
        carry += rem;
        if carry >= dst {
            carry -= dst;
            index += 1;
        }
        at
    })
}

/// Draws `scene` (in the coordinates of its `width` x `height` frame) over the whole target, laid
/// out by [`layout::layout`].
pub fn draw_scene<D>(
    target: &mut D,
    scene: &Scene,
    untrained: bool,
    settings: &OverlaySettings,
) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888> + OriginDimensions,
{
    let size = target.size();
    if scene.width == 0 || scene.height == 0 {
        return Ok(());
    }
    let font = font_for(size.width);
    let placed = layout::layout(scene, size, font, settings.min_line_score, untrained);
    let sx = size.width as f32 / scene.width as f32;
    let sy = size.height as f32 / scene.height as f32;
    let stroke = (size.width / 320).max(2);
    for &i in &placed.lines {
        let r = &scene.relations[i as usize];
        let (Some(a), Some(b)) = (
            scene.persons.get(r.a as usize),
            scene.persons.get(r.b as usize),
        ) else {
            continue;
        };
        Line::new(layout::anchor(a, sx, sy), layout::anchor(b, sx, sy))
            .into_styled(PrimitiveStyle::with_stroke(relation_colour(r), stroke))
            .draw(target)?;
    }
    for p in &scene.persons {
        let colour = person_colour(layout::person_tag(p));
        layout::box_on_target(p, sx, sy)
            .into_styled(PrimitiveStyle::with_stroke(colour, stroke))
            .draw(target)?;
    }
    draw_text(target, scene, &placed, font)
}

/// Draws the panel background and every placed text of `placed`.
fn draw_text<D>(
    target: &mut D,
    scene: &Scene,
    placed: &Layout,
    font: &MonoFont,
) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888> + OriginDimensions,
{
    if let Some(panel) = placed.panel {
        target.fill_solid(&panel, PANEL_BACKGROUND)?;
    }
    let width = target.size().width;
    for item in &placed.items {
        let (text, colour, background) = match item.item {
            Item::Badge => {
                let text = layout::Text::try_from(layout::badge_text(width, font));
                (text.unwrap_or_default(), LABEL_BACKGROUND, BADGE_BACKGROUND)
            }
            Item::Tag(i) => {
                let p = &scene.persons[i as usize];
                let colour = person_colour(layout::person_tag(p));
                (layout::tag_text(p), LABEL_BACKGROUND, colour)
            }
            Item::LineLabel(i) => {
                let r = &scene.relations[i as usize];
                (layout::line_text(r), relation_colour(r), LABEL_BACKGROUND)
            }
            Item::Pair(i) => {
                let r = &scene.relations[i as usize];
                (
                    layout::pair_text(scene, r),
                    relation_colour(r),
                    PANEL_BACKGROUND,
                )
            }
            Item::More(n) => (layout::more_text(n), Rgb888::WHITE, PANEL_BACKGROUND),
        };
        let style = MonoTextStyleBuilder::new()
            .font(font)
            .text_color(colour)
            .background_color(background)
            .build();
        Text::with_baseline(&text, item.rect.top_left, style, Baseline::Top).draw(target)?;
    }
    Ok(())
}

/// A full-screen status message (e.g. "camera lost"): a dark screen with `text` centred, for the
/// times there is no frame to show.
pub fn draw_status<D>(target: &mut D, text: &str) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888> + OriginDimensions,
{
    let size = target.size();
    target.clear(STATUS_BACKGROUND)?;
    let style = MonoTextStyleBuilder::new()
        .font(font_for(size.width))
        .text_color(Rgb888::WHITE)
        .background_color(STATUS_BACKGROUND)
        .build();
    let centred = TextStyleBuilder::new()
        .alignment(Alignment::Center)
        .baseline(Baseline::Middle)
        .build();
    let centre = Point::new(size.width as i32 / 2, size.height as i32 / 2);
    Text::with_text_style(text, centre, style, centred).draw(target)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::RgbImage;
    use crate::scene::Person;
    use embedded_graphics::pixelcolor::RgbColor;

    fn scene() -> Scene {
        let mut s = Scene {
            width: 320,
            height: 240,
            ..Default::default()
        };
        // Tagged and coloured by their track ids, 0 and 1 here.
        s.persons
            .push(Person::new(0, [20.0, 40.0, 100.0, 220.0], 0.9))
            .unwrap();
        s.persons
            .push(Person {
                track: 1,
                ..Person::new(1, [200.0, 30.0, 300.0, 230.0], 0.8)
            })
            .unwrap();
        s.relations
            .push(Relation::new(0, 1, [0.7, 0.1, 0.05, 0.05, 0.05, 0.05]))
            .unwrap();
        s
    }

    fn colour(c: Rgb888) -> [u8; 3] {
        [c.r(), c.g(), c.b()]
    }

    #[test]
    fn scaled_indices_are_the_nearest_neighbours() {
        for (src, dst) in [
            (7, 16),
            (16, 7),
            (640, 1280),
            (640, 800),
            (480, 800),
            (5, 5),
            (1, 9),
        ] {
            let want: Vec<usize> = (0..dst).map(|x| x * src / dst).collect();
            assert_eq!(
                scaled_indices(src, dst).collect::<Vec<_>>(),
                want,
                "{src} -> {dst}"
            );
        }
    }

    #[test]
    fn frames_are_drawn_by_nearest_neighbour() {
        let (w, h) = (32, 24);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let frame = Frame::packed(w, h, PixelFormat::Rgb, &data);
        for (dw, dh) in [(64, 48), (20, 13), (32, 24), (45, 70)] {
            let mut canvas = RgbImage::new(dw, dh);
            draw_frame(&mut canvas, &frame).unwrap();
            for y in 0..dh {
                for x in 0..dw {
                    let i = ((y * h / dh) * w + x * w / dw) * 3;
                    let want = [data[i], data[i + 1], data[i + 2]];
                    assert_eq!(canvas.pixel(x, y), Some(want), "{dw}x{dh} at {x},{y}");
                }
            }
        }
    }

    #[test]
    fn boxes_lines_and_badge_land_where_expected() {
        let grey = vec![90u8; 320 * 240 * 3];
        let frame = Frame::packed(320, 240, PixelFormat::Rgb, &grey);
        let mut canvas = RgbImage::new(640, 480);
        draw_frame(&mut canvas, &frame).unwrap();
        assert_eq!(canvas.pixel(5, 470), Some([90, 90, 90]));
        draw_scene(&mut canvas, &scene(), true, &OverlaySettings::default()).unwrap();
        // Person 0's box: left edge at x = 40 on a canvas scaled 2x; its bottom edge at y = 440.
        assert_eq!(canvas.pixel(40, 300), Some(colour(person_colour(0))));
        assert_eq!(canvas.pixel(100, 440), Some(colour(person_colour(0))));
        assert_eq!(canvas.pixel(600, 300), Some(colour(person_colour(1))));
        // The pair line passes a quarter of the way between the two anchors.
        let (a, b) = ((120.0f32, 200.0f32), (500.0f32, 193.3f32));
        let q = (a.0 + (b.0 - a.0) / 4.0, a.1 + (b.1 - a.1) / 4.0);
        let near: Vec<_> = (-2..=2)
            .filter_map(|d| canvas.pixel(q.0 as usize, (q.1 as i32 + d) as usize))
            .collect();
        assert!(near.contains(&colour(INTIMATE)), "{near:?}");
        // The label's black background sits at the middle of the line.
        let black = (285..335)
            .flat_map(|x| (192..202).map(move |y| (x, y)))
            .filter(|&(x, y)| canvas.pixel(x, y) == Some([0, 0, 0]))
            .count();
        assert!(
            black > 200,
            "{black} label background pixels around the line's middle"
        );
        // The untrained badge is drawn in the top-right corner.
        let badge = (400..630)
            .filter(|&x| canvas.pixel(x, 8) == Some(colour(BADGE_BACKGROUND)))
            .count();
        assert!(badge > 100, "{badge} badge pixels");
    }

    #[test]
    fn crossing_labels_are_moved_apart() {
        use layout::{label_place, Placed};
        let size = Size::new(60, 10);
        let area = Rectangle::new(Point::zero(), Size::new(400, 400));
        let (first, r1) =
            label_place(Point::new(0, 100), Point::new(200, 100), size, &area, &[]).unwrap();
        assert_eq!(first, Point::new(100, 100));
        let placed = [Placed {
            item: Item::LineLabel(0),
            rect: r1,
        }];
        let (second, r2) = label_place(
            Point::new(100, 0),
            Point::new(100, 200),
            size,
            &area,
            &placed,
        )
        .unwrap();
        assert_ne!(second, first);
        assert_eq!(r1.intersection(&r2).size.height, 0);
    }

    #[test]
    fn no_badge_for_trained_weights() {
        let mut canvas = RgbImage::new(640, 480);
        draw_scene(&mut canvas, &scene(), false, &OverlaySettings::default()).unwrap();
        let badge = (0..640)
            .filter(|&x| canvas.pixel(x, 8) == Some(colour(BADGE_BACKGROUND)))
            .count();
        assert_eq!(badge, 0);
    }

    #[test]
    fn status_screen_is_dark_with_white_text_in_the_middle() {
        let mut canvas = RgbImage::new(240, 240);
        draw_status(&mut canvas, "camera lost").unwrap();
        assert_eq!(canvas.pixel(2, 2), Some(colour(STATUS_BACKGROUND)));
        let white = (100..140)
            .flat_map(|y| (0..240).map(move |x| (x, y)))
            .filter(|&(x, y)| canvas.pixel(x, y) == Some([255, 255, 255]))
            .count();
        assert!(white > 50, "{white} white pixels");
    }
}
