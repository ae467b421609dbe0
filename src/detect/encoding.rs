//! How boxes map to the head's cells and back: ground truth to per-cell training targets
//! ([`targets`]), per-cell predictions to boxes ([`decode`]). Both on plain slices on the CPU,
//! so decoding needs only an asynchronous read-back of the small output maps (WebGPU cannot read
//! synchronously, and burn's `topk` does not run there).

use super::boxes::{BoundingBox, Detection, nms};
use super::head::LEVELS;
use crate::model::efficientnet_lite::{Grid, PYRAMID_STRIDES, PYRAMID_TAPS};

/// A box is given to the level whose stride is at least its larger half-side over this: a
/// 64-pixel object to stride 8, a 128-pixel one to 16, larger ones to 32.
const CELLS_PER_HALF_SIDE: f32 = 4.0;
/// Cells whose centre is within this many strides of an object's centre (and inside it) learn
/// to predict it (FCOS's "centre sampling").
const CENTRE_RADIUS: f32 = 1.5;
/// Predicted distances are `exp` of the output, capped so a wild step cannot overflow.
const MAX_LOG_DISTANCE: f32 = 8.0;
/// At most this many candidates per image go into non-maximum suppression.
const MAX_CANDIDATES: usize = 1000;
/// Detections of one class overlapping more than this are one object.
pub const NMS_IOU: f32 = 0.6;
/// At most this many detections per image (COCO's evaluation limit).
pub const MAX_DETECTIONS: usize = 100;

/// One level's cells on the square input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelGrid {
    pub stride: usize,
    /// Cells per side.
    pub cells: usize,
    /// Cell `j`'s centre is at input pixel `stride * (j + 0.5) + offset` (see [`Grid`]).
    offset: f32,
}

impl LevelGrid {
    /// The levels' grids for an input of `side` pixels (a multiple of 32).
    pub fn levels(side: usize) -> [LevelGrid; LEVELS] {
        std::array::from_fn(|level| {
            let grid = Grid::after(PYRAMID_TAPS[level]);
            debug_assert_eq!(grid.stride, PYRAMID_STRIDES[level]);
            LevelGrid {
                stride: grid.stride,
                cells: side / grid.stride,
                offset: grid.offset,
            }
        })
    }

    fn centre(&self, index: usize) -> f32 {
        self.stride as f32 * (index as f32 + 0.5) + self.offset
    }

    /// Cells in the map.
    pub fn cell_count(&self) -> usize {
        self.cells * self.cells
    }
}

/// A labelled box in input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputBox {
    pub class: usize,
    pub bbox: BoundingBox,
}

/// One image's training targets for one level, channel-first like the head's outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelTargets {
    /// `[classes, cells, cells]`: 1 where a cell must find that class.
    pub classes: Vec<f32>,
    /// `[4, cells, cells]`: distances left, top, right, bottom in strides; 1 where no object.
    pub sides: Vec<f32>,
    /// `[cells, cells]`: how central the cell is in its object, 0 where none.
    pub centredness: Vec<f32>,
    /// `[cells, cells]`: 1 where the cell has an object.
    pub positive: Vec<f32>,
}

/// The level an object of this size is learnt at.
fn level_for(bbox: &BoundingBox, grids: &[LevelGrid; LEVELS]) -> usize {
    let half_side = bbox.width().max(bbox.height()) / 2.0;
    grids
        .iter()
        .position(|grid| half_side <= CELLS_PER_HALF_SIDE * grid.stride as f32)
        .unwrap_or(LEVELS - 1)
}

/// Per-level targets for one image's boxes (input pixels) on an input of `side` pixels.
pub fn targets(boxes: &[InputBox], classes: usize, side: usize) -> [LevelTargets; LEVELS] {
    let grids = LevelGrid::levels(side);
    std::array::from_fn(|level| {
        let grid = grids[level];
        let cells = grid.cell_count();
        let mut out = LevelTargets {
            classes: vec![0.0; classes * cells],
            sides: vec![1.0; 4 * cells],
            centredness: vec![0.0; cells],
            positive: vec![0.0; cells],
        };
        // The area of the object each cell was given, so a smaller one can take it over.
        let mut owner_area = vec![f32::INFINITY; cells];
        for object in boxes.iter().filter(|b| level_for(&b.bbox, &grids) == level) {
            let b = object.bbox;
            let (cx, cy) = ((b.x0 + b.x1) / 2.0, (b.y0 + b.y1) / 2.0);
            let radius = CENTRE_RADIUS * grid.stride as f32;
            let inside = |x: f32, y: f32| {
                x > b.x0
                    && x < b.x1
                    && y > b.y0
                    && y < b.y1
                    && (x - cx).abs() < radius
                    && (y - cy).abs() < radius
            };
            let mut chosen: Vec<(usize, usize)> = (0..grid.cells)
                .flat_map(|row| (0..grid.cells).map(move |col| (row, col)))
                .filter(|&(row, col)| inside(grid.centre(col), grid.centre(row)))
                .collect();
            if chosen.is_empty() {
                // A sliver between cell centres: the cell nearest its centre learns it.
                let nearest = |v: f32| {
                    ((v - grid.offset) / grid.stride as f32 - 0.5)
                        .round()
                        .clamp(0.0, grid.cells as f32 - 1.0) as usize
                };
                chosen.push((nearest(cy), nearest(cx)));
            }
            for (row, col) in chosen {
                let cell = row * grid.cells + col;
                if b.area() >= owner_area[cell] {
                    continue;
                }
                owner_area[cell] = b.area();
                let (x, y) = (grid.centre(col), grid.centre(row));
                let stride = grid.stride as f32;
                // At least a tenth of a stride: the nearest cell may lie just outside a sliver.
                let distances =
                    [x - b.x0, y - b.y0, b.x1 - x, b.y1 - y].map(|d| (d / stride).max(0.1));
                for (k, d) in distances.iter().enumerate() {
                    out.sides[k * cells + cell] = *d;
                }
                let [l, t, r, bottom] = distances;
                out.centredness[cell] =
                    ((l.min(r) / l.max(r)) * (t.min(bottom) / t.max(bottom))).sqrt();
                out.positive[cell] = 1.0;
                for k in 0..classes {
                    out.classes[k * cells + cell] = (k == object.class) as u8 as f32;
                }
            }
        }
        out
    })
}

/// One image's raw outputs for one level, read back: the [`super::head::LevelOutput`] maps
/// of that image, flattened channel-first.
#[derive(Debug, Clone, Copy)]
pub struct LevelMaps<'a> {
    pub classes: &'a [f32],
    pub sides: &'a [f32],
    pub centredness: &'a [f32],
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Detections in input pixels: every cell and class scoring at least `min_score` (the
/// geometric mean of class probability and centredness, as FCOS ranks), the best
/// [`MAX_CANDIDATES`], then class-wise non-maximum suppression.
pub fn decode(
    levels: &[LevelMaps<'_>; LEVELS],
    classes: usize,
    side: usize,
    min_score: f32,
) -> Vec<Detection> {
    let grids = LevelGrid::levels(side);
    let mut candidates = Vec::new();
    for (maps, grid) in levels.iter().zip(&grids) {
        let cells = grid.cell_count();
        for cell in 0..cells {
            let centred = sigmoid(maps.centredness[cell]);
            let (row, col) = (cell / grid.cells, cell % grid.cells);
            for class in 0..classes {
                let score = (sigmoid(maps.classes[class * cells + cell]) * centred).sqrt();
                // NaN scores (from a broken model) are dropped too.
                if score.is_nan() || score < min_score {
                    continue;
                }
                let distance = |k: usize| {
                    maps.sides[k * cells + cell].min(MAX_LOG_DISTANCE).exp() * grid.stride as f32
                };
                let (x, y) = (grid.centre(col), grid.centre(row));
                candidates.push(Detection {
                    class,
                    score,
                    bbox: BoundingBox {
                        x0: x - distance(0),
                        y0: y - distance(1),
                        x1: x + distance(2),
                        y1: y + distance(3),
                    },
                });
            }
        }
    }
    // The best first, without sorting every cell of every class (a low `min_score` keeps many).
    if candidates.len() > MAX_CANDIDATES {
        candidates.select_nth_unstable_by(MAX_CANDIDATES, |a, b| b.score.total_cmp(&a.score));
        candidates.truncate(MAX_CANDIDATES);
    }
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    nms(&candidates, NMS_IOU, MAX_DETECTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(class: usize, x0: f32, y0: f32, side: f32) -> InputBox {
        InputBox {
            class,
            bbox: BoundingBox {
                x0,
                y0,
                x1: x0 + side,
                y1: y0 + side,
            },
        }
    }

    #[test]
    fn objects_go_to_the_level_of_their_size() {
        let side = 320;
        let boxes = [square(0, 10.0, 10.0, 50.0), square(1, 150.0, 150.0, 160.0)];
        let [fine, middle, coarse] = targets(&boxes, 2, side);
        let count = |t: &LevelTargets| t.positive.iter().filter(|&&p| p == 1.0).count();
        assert!(
            count(&fine) >= 1 && count(&coarse) >= 1,
            "each box has cells"
        );
        assert_eq!(count(&middle), 0, "neither box is middle-sized");
        // The large box's cells predict class 1, never class 0.
        let cells = LevelGrid::levels(side)[2].cell_count();
        for cell in 0..cells {
            assert_eq!(coarse.classes[cells + cell], coarse.positive[cell]);
            assert_eq!(coarse.classes[cell], 0.0);
        }
    }

    /// Targets decoded as if predicted perfectly give back the boxes.
    #[test]
    fn perfect_predictions_decode_to_the_boxes() {
        let side = 320;
        let boxes = [
            square(0, 20.0, 30.0, 60.0),
            square(1, 100.0, 40.0, 100.0),
            square(2, 150.0, 150.0, 150.0),
            // A sliver between cell centres: it still gets a cell, and a box that overlaps it
            // (the cell's centre lies outside it, so one side is approximate).
            InputBox {
                class: 0,
                bbox: BoundingBox {
                    x0: 10.0,
                    y0: 250.0,
                    x1: 13.0,
                    y1: 290.0,
                },
            },
        ];
        let levels = targets(&boxes, 3, side);
        let logit = |p: f32| if p > 0.5 { 20.0 } else { -20.0 };
        let owned: Vec<[Vec<f32>; 3]> = levels
            .iter()
            .map(|t| {
                [
                    t.classes.iter().map(|&p| logit(p)).collect(),
                    t.sides.iter().map(|d| d.ln()).collect(),
                    t.positive.iter().map(|&p| logit(p)).collect(),
                ]
            })
            .collect();
        let maps: [LevelMaps; LEVELS] = std::array::from_fn(|l| LevelMaps {
            classes: &owned[l][0],
            sides: &owned[l][1],
            centredness: &owned[l][2],
        });
        let mut found = decode(&maps, 3, side, 0.5);
        found.sort_by(|a, b| a.bbox.x0.total_cmp(&b.bbox.x0));
        assert_eq!(found.len(), boxes.len(), "{found:?}");
        let mut expected = boxes.to_vec();
        expected.sort_by(|a, b| a.bbox.x0.total_cmp(&b.bbox.x0));
        for (d, b) in found.iter().zip(&expected) {
            assert_eq!(d.class, b.class);
            let iou = super::super::boxes::iou(&d.bbox, &b.bbox);
            let sliver = b.bbox.width() < 4.0;
            assert!(iou > 0.99 || sliver && iou > 0.4, "{d:?} vs {b:?}");
        }
    }
}
