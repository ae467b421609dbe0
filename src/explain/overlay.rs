//! Drawing a map: its colours (one colour map for the CLI's PNGs and the browser's canvas),
//! and the CLI's picture of an image with its map laid over the region the network saw.

use image::{Rgba, RgbaImage};

use super::ClassMap;
use crate::data::Region;

/// Viridis, sampled at nine evenly spaced points: perceptually uniform (equal steps in value
/// look like equal steps in colour), readable by colour-blind people and in greyscale.
const VIRIDIS: [[f32; 3]; 9] = [
    [68.0, 1.0, 84.0],
    [71.0, 44.0, 122.0],
    [59.0, 81.0, 139.0],
    [44.0, 113.0, 142.0],
    [33.0, 144.0, 141.0],
    [39.0, 173.0, 129.0],
    [92.0, 200.0, 99.0],
    [170.0, 220.0, 50.0],
    [253.0, 231.0, 37.0],
];

/// The map's opacity in the pictures `graft explain --out` writes unless told otherwise (the
/// browser's `drawExplanation` and the app's slider start there too).
pub const DEFAULT_OPACITY: f32 = 0.6;

/// The opacity a value is drawn with, before the user's own opacity: weak evidence lets the
/// image show through, so the map points at places instead of painting over everything.
fn value_alpha(value: f32) -> f32 {
    0.15 + 0.85 * value
}

/// The colour of a value in [0, 1] (clamped).
pub fn colour(value: f32) -> [u8; 3] {
    let position = value.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f32;
    let low = (position.floor() as usize).min(VIRIDIS.len() - 2);
    let t = position - low as f32;
    let mix = |c: usize| (VIRIDIS[low][c] * (1.0 - t) + VIRIDIS[low + 1][c] * t).round() as u8;
    [mix(0), mix(1), mix(2)]
}

/// The map's cells as RGBA pixels (`rows x cols`, row-major), alpha included: what the browser
/// scales onto the image.
pub fn heat_rgba(map: &ClassMap) -> Vec<u8> {
    map.heatmap
        .iter()
        .flat_map(|&v| {
            let [r, g, b] = colour(v);
            [r, g, b, (value_alpha(v) * 255.0).round() as u8]
        })
        .collect()
}

/// The map's value at a point of the region, `(u, v)` in [0, 1] across and down: bilinear
/// between cell centres, clamped at the edges (what a canvas does when it scales the cells).
fn sample(map: &ClassMap, u: f32, v: f32) -> f32 {
    let at = |position: f32, cells: usize| {
        let p = (position * cells as f32 - 0.5).clamp(0.0, (cells - 1) as f32);
        let low = (p.floor() as usize).min(cells.saturating_sub(2));
        (low, (low + 1).min(cells - 1), p - low as f32)
    };
    let (c0, c1, tx) = at(u, map.cols);
    let (r0, r1, ty) = at(v, map.rows);
    let value = |r: usize, c: usize| map.heatmap[r * map.cols + c];
    let top = value(r0, c0) * (1.0 - tx) + value(r0, c1) * tx;
    let bottom = value(r1, c0) * (1.0 - tx) + value(r1, c1) * tx;
    top * (1.0 - ty) + bottom * ty
}

/// The image at its own size with the map over `region` (drawn with `opacity` in [0, 1]),
/// what lies outside the region dimmed (the network did not see it), and a legend.
pub fn overlay(image: &RgbaImage, map: &ClassMap, region: Region, opacity: f32) -> RgbaImage {
    let mut out = image.clone();
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        let (u, v) = (
            (x as f32 + 0.5 - region.x) / region.width,
            (y as f32 + 0.5 - region.y) / region.height,
        );
        let [r, g, b, a] = pixel.0;
        if !(0.0..=1.0).contains(&u) || !(0.0..=1.0).contains(&v) {
            *pixel = Rgba([r / 2, g / 2, b / 2, a]);
            continue;
        }
        let value = sample(map, u, v);
        let alpha = opacity * value_alpha(value);
        let heat = colour(value);
        let blend =
            |base: u8, over: u8| (base as f32 * (1.0 - alpha) + over as f32 * alpha).round() as u8;
        *pixel = Rgba([blend(r, heat[0]), blend(g, heat[1]), blend(b, heat[2]), a]);
    }
    draw_legend(&mut out);
    out
}

/// 3x5 glyphs of the legend's two labels, one row per byte (bit 2 is the left column).
const GLYPH_ZERO: [u8; 5] = [0b111, 0b101, 0b101, 0b101, 0b111];
const GLYPH_ONE: [u8; 5] = [0b010, 0b110, 0b010, 0b010, 0b111];

/// A colour bar from 0 to 1 in the bottom-right corner, on a dark plate, labelled at both ends.
fn draw_legend(image: &mut RgbaImage) {
    let (width, height) = image.dimensions();
    let unit = (width.min(height) / 120).max(1); // one glyph pixel
    let bar_width = (width / 4).max(16 * unit);
    let bar_height = 3 * unit;
    let glyph_width = 3 * unit;
    let plate_width = bar_width + 2 * glyph_width + 6 * unit;
    let plate_height = 7 * unit;
    if plate_width + 2 * unit > width || plate_height + 2 * unit > height {
        return; // too small an image for a legend to be readable
    }
    let left = width - plate_width - 2 * unit;
    let top = height - plate_height - 2 * unit;
    let mut fill = |x0: u32, y0: u32, w: u32, h: u32, rgb: [u8; 3]| {
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                image.put_pixel(x, y, Rgba([rgb[0], rgb[1], rgb[2], 255]));
            }
        }
    };
    fill(left, top, plate_width, plate_height, [24, 24, 24]);
    let glyph = |fill: &mut dyn FnMut(u32, u32, u32, u32, [u8; 3]), x0: u32, rows: &[u8; 5]| {
        for (row, bits) in rows.iter().enumerate() {
            for column in 0..3 {
                if bits & (0b100 >> column) != 0 {
                    fill(
                        x0 + column * unit,
                        top + unit + row as u32 * unit,
                        unit,
                        unit,
                        [255; 3],
                    );
                }
            }
        }
    };
    glyph(&mut fill, left + unit, &GLYPH_ZERO);
    let bar_left = left + glyph_width + 2 * unit;
    for i in 0..bar_width {
        let value = i as f32 / (bar_width - 1) as f32;
        fill(bar_left + i, top + 2 * unit, 1, bar_height, colour(value));
    }
    glyph(&mut fill, bar_left + bar_width + unit, &GLYPH_ONE);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(heatmap: Vec<f32>, rows: usize, cols: usize) -> ClassMap {
        ClassMap {
            label: "a".into(),
            index: 0,
            score: 1.0,
            heatmap,
            rows,
            cols,
        }
    }

    #[test]
    fn colour_map_runs_from_dark_purple_to_yellow_getting_lighter() {
        assert_eq!(colour(0.0), [68, 1, 84]);
        assert_eq!(colour(1.0), [253, 231, 37]);
        assert_eq!(colour(7.0), colour(1.0));
        let lightness = |[r, g, b]: [u8; 3]| 0.3 * r as f32 + 0.59 * g as f32 + 0.11 * b as f32;
        let steps: Vec<f32> = (0..=20)
            .map(|i| lightness(colour(i as f32 / 20.0)))
            .collect();
        assert!(steps.windows(2).all(|w| w[1] > w[0]), "{steps:?}");
    }

    #[test]
    fn overlay_puts_the_hot_cell_where_the_map_says() {
        // A 2x2 map hot at the bottom right, over a grey 200x100 image whose middle 100x100 is
        // the region: the bottom right of the region turns yellow, its top left purple, and
        // the margins are only dimmed.
        let image = RgbaImage::from_pixel(200, 100, Rgba([128, 128, 128, 255]));
        let region = Region {
            x: 50.0,
            y: 0.0,
            width: 100.0,
            height: 100.0,
        };
        let out = overlay(&image, &map(vec![0.0, 0.0, 0.0, 1.0], 2, 2), region, 1.0);
        assert_eq!(out.dimensions(), (200, 100));
        assert_eq!(out.get_pixel(140, 80).0, [253, 231, 37, 255]);
        let cold = out.get_pixel(55, 5).0;
        assert!(cold[2] > cold[1], "purple expected, got {cold:?}");
        assert_eq!(out.get_pixel(10, 10).0, [64, 64, 64, 255]);
    }

    #[test]
    fn cells_carry_colour_and_opacity() {
        let rgba = heat_rgba(&map(vec![0.0, 1.0], 1, 2));
        assert_eq!(rgba, [68, 1, 84, 38, 253, 231, 37, 255]);
    }
}
