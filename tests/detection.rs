//! Object detection end to end through the `graft` command, on a generated YOLO-layout set
//! (tests/common/detection_data.rs): the seed's `train(data=..., epochs=5)`, then eval and
//! predict on images it never saw; and every bad dataset refused before anything is trained.

mod common;
#[path = "common/detection_data.rs"]
mod detection_data;

use std::path::Path;

use common::*;

/// The overlap of two `[x0, y0, x1, y1]` boxes.
fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    w * h / (area(a) + area(b) - w * h)
}

#[test]
fn a_detector_trained_in_five_epochs_finds_held_out_objects() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = detection_data::generate(dir.path(), 240, 96, 1, image::ImageFormat::Jpeg);
    let model = dir.path().join("det.safetensors");
    let out = graft(&[
        "train",
        "--task",
        "detect",
        "--data",
        path(&yaml),
        "--epochs",
        "5",
        "--out",
        path(&model),
        "--json",
    ]);
    let report = json(&out);
    assert_eq!(report["history"].as_array().unwrap().len(), 5);

    // Scored on the 96 validation images, made of items and crops training never saw.
    let eval = json(&graft(&[
        "eval",
        "--model",
        path(&model),
        "--data",
        path(&yaml),
        "--json",
    ]));
    let map50 = eval["mAP50"].as_f64().unwrap();
    eprintln!("mAP50 {map50:.4}, mAP50-95 {}", eval["mAP50_95"]);
    assert!(map50 >= 0.85, "mAP50 {map50} on held-out images: {eval}");
    assert_eq!(eval["images"], 96);
    assert_eq!(eval["perClass"].as_array().unwrap().len(), 3);
    // Training scored its last epoch on the same images (in input pixels, where boxes may
    // reach into the letterbox's border: within 0.01).
    let trained_map50 = report["evaluation"]["mAP50"].as_f64().unwrap();
    assert!(
        (trained_map50 - map50).abs() < 0.01,
        "{trained_map50} vs {map50}"
    );

    // The same set with its classes listed in reverse (and its labels renumbered so) scores
    // the same: classes are matched by name.
    let reversed = dir.path().join("reversed");
    std::fs::create_dir_all(reversed.join("labels/val")).unwrap();
    let names: Vec<&str> = detection_data::CLASSES.iter().rev().copied().collect();
    let last = names.len() - 1;
    for entry in std::fs::read_dir(dir.path().join("labels/val")).unwrap() {
        let entry = entry.unwrap();
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let renumbered: String = text
            .lines()
            .map(|line| {
                let (class, rest) = line.split_once(' ').unwrap();
                format!("{} {rest}\n", last - class.parse::<usize>().unwrap())
            })
            .collect();
        std::fs::write(
            reversed.join("labels/val").join(entry.file_name()),
            renumbered,
        )
        .unwrap();
    }
    copy_folder(&dir.path().join("images/val"), &reversed.join("images/val"));
    let reversed_yaml = reversed.join("data.yaml");
    std::fs::write(
        &reversed_yaml,
        format!(
            "train: images/val\nval: images/val\nnames: [{}]\n",
            names.join(", ")
        ),
    )
    .unwrap();
    let reversed_eval = json(&graft(&[
        "eval",
        "--model",
        path(&model),
        "--data",
        path(&reversed_yaml),
        "--json",
    ]));
    assert_eq!(reversed_eval["mAP50"], eval["mAP50"], "{reversed_eval}");

    // Boxes come back in the image's own pixels, where the labels put the objects.
    let image = dir.path().join("images/val/val_0000.jpg");
    let drawn = dir.path().join("drawn");
    let found = json(&graft(&[
        "predict",
        "--model",
        path(&model),
        "--json",
        "--out",
        path(&drawn),
        path(&image),
    ]));
    let (width, height) = image::image_dimensions(&image).unwrap();
    let truth: Vec<(usize, [f64; 4])> =
        std::fs::read_to_string(dir.path().join("labels/val/val_0000.txt"))
            .unwrap()
            .lines()
            .map(|line| {
                let v: Vec<f64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
                let (w, h) = (width as f64, height as f64);
                let (cx, cy, bw, bh) = (v[1] * w, v[2] * h, v[3] * w, v[4] * h);
                (
                    v[0] as usize,
                    [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0],
                )
            })
            .collect();
    let detections = found[0]["detections"].as_array().unwrap();
    for (class, bbox) in &truth {
        let best = detections
            .iter()
            .filter(|d| d["label"] == detection_data::CLASSES[*class])
            .map(|d| {
                let b: Vec<f64> = d["box"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                iou([b[0], b[1], b[2], b[3]], *bbox)
            })
            .fold(0.0, f64::max);
        assert!(
            best > 0.5,
            "{class} at {bbox:?}: best IoU {best}; found {detections:?}"
        );
    }
    let picture = image::open(drawn.join("val_0000.png")).unwrap().to_rgb8();
    assert_eq!(
        picture.dimensions(),
        (width, height),
        "drawn on the image itself"
    );

    // A real photograph (a cat, none of the classes) goes through too: with every score kept,
    // the boxes it gets lie inside it.
    let photo = reference("chelsea.png");
    let found = json(&graft(&[
        "predict",
        "--model",
        path(&model),
        "--min-score",
        "0.01",
        "--json",
        path(&photo),
    ]));
    let (width, height) = image::image_dimensions(&photo).unwrap();
    let boxes = found[0]["detections"].as_array().unwrap();
    assert!(!boxes.is_empty(), "low scores are kept: {found}");
    for d in boxes {
        let b: Vec<f64> = d["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(
            b[0] >= 0.0 && b[1] >= 0.0 && b[2] <= width as f64 && b[3] <= height as f64,
            "{d}"
        );
        assert!(b[0] < b[2] && b[1] < b[3], "{d}");
    }

    // The file says what it is: a classification command refuses it by name.
    let refused = graft(&["explain", "--model", path(&model), path(&photo)]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("it is an object detection model, not an image classifier"),
        "{}",
        stderr(&refused)
    );
}

/// `--fine-tune-blocks` trains the backbone's last blocks with the head; the file carries them
/// and `graft eval` runs on them: it agrees with training's last scoring, and the same head on
/// the pretrained blocks (the file with its blocks taken out) scores differently.
#[test]
fn a_fine_tuned_detector_is_scored_with_its_own_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = detection_data::generate(dir.path(), 48, 24, 2, image::ImageFormat::Png);
    let model = dir.path().join("tuned.safetensors");
    let report = json(&graft(&[
        "train",
        "--task",
        "detect",
        "--data",
        path(&yaml),
        "--epochs",
        "4",
        "--input-size",
        "128",
        "--fine-tune-blocks",
        "6",
        // At the head's own rate, so that the blocks move far in a short test.
        "--backbone-lr-factor",
        "1",
        "--out",
        path(&model),
        "--json",
    ]));
    assert_eq!(report["plan"]["fineTuneBlocks"], 6);
    let eval_map50 = |model: &Path| {
        let eval = json(&graft(&[
            "eval",
            "--model",
            path(model),
            "--data",
            path(&yaml),
            "--json",
        ]));
        eval["mAP50"].as_f64().unwrap()
    };
    let tuned = eval_map50(&model);
    let trained = report["evaluation"]["mAP50"].as_f64().unwrap();
    assert!((tuned - trained).abs() < 0.01, "{tuned} vs {trained}");

    let (tensors, mut metadata) = safetensors_parts(&std::fs::read(&model).unwrap());
    let mut info: serde_json::Value = serde_json::from_str(&metadata["graft.model"]).unwrap();
    assert_eq!(info["formatVersion"], 2);
    assert_eq!(info["fineTuned"]["firstBlock"], 10);
    let (blocks, head): (Vec<_>, Vec<_>) = tensors
        .into_iter()
        .partition(|(name, ..)| name.starts_with("backbone.blocks."));
    assert!(
        blocks
            .iter()
            .any(|(name, ..)| name.starts_with("backbone.blocks.5."))
    );
    info["formatVersion"] = 1.into();
    info.as_object_mut().unwrap().remove("fineTuned");
    metadata.insert("graft.model".into(), info.to_string());
    let head_only = dir.path().join("head-only.safetensors");
    std::fs::write(&head_only, build_safetensors(&head, metadata)).unwrap();
    let pretrained = eval_map50(&head_only);
    assert!(
        (pretrained - tuned).abs() > 0.03,
        "the tuned blocks change nothing: {pretrained} vs {tuned}"
    );
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A one-class set with one good image, to break one way at a time.
fn small_set(dir: &Path) -> std::path::PathBuf {
    for split in ["train", "val"] {
        std::fs::create_dir_all(dir.join("images").join(split)).unwrap();
        std::fs::create_dir_all(dir.join("labels").join(split)).unwrap();
        image::RgbImage::from_pixel(64, 48, image::Rgb([90, 120, 200]))
            .save(dir.join(format!("images/{split}/a.png")))
            .unwrap();
        std::fs::write(
            dir.join(format!("labels/{split}/a.txt")),
            "0 0.5 0.5 0.25 0.25\n",
        )
        .unwrap();
    }
    let yaml = dir.join("data.yaml");
    std::fs::write(
        &yaml,
        "train: images/train\nval: images/val\nnames: [box]\n",
    )
    .unwrap();
    yaml
}

/// Every bad dataset is refused before any image is cached, naming the file and line, and the
/// model file already at `--out` is left as it was.
#[test]
fn bad_datasets_are_refused_by_file_and_line_and_lose_nothing() {
    let cases: [(&str, &str, &str); 5] = [
        ("labels/train/a.txt", "0 0.5 0.5 0.25\n", "a.txt: line 1"),
        (
            "labels/train/a.txt",
            "0 0.5 0.5 0.25 0.25\n3 0.5 0.5 0.1 0.1\n",
            "a.txt: line 2",
        ),
        ("labels/train/a.txt", "0 0.9 0.5 0.4 0.2\n", "a.txt: line 1"),
        (
            "labels/train/a.txt",
            "0 0.5 0.5 zero 0.2\n",
            "a.txt: line 1",
        ),
        ("images/train/a.png", "", "split 'train': no images"),
    ];
    for (file, contents, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let yaml = small_set(dir.path());
        let target = dir.path().join(file);
        if contents.is_empty() {
            std::fs::remove_file(&target).unwrap();
        } else {
            std::fs::write(&target, contents).unwrap();
        }
        let model = dir.path().join("kept.safetensors");
        std::fs::write(&model, b"the user's earlier model").unwrap();
        let out = graft(&[
            "train",
            "--task",
            "detect",
            "--data",
            path(&yaml),
            "--epochs",
            "1",
            "--out",
            path(&model),
        ]);
        let message = stderr(&out);
        assert!(!out.status.success(), "{file}: {contents:?} was accepted");
        assert!(
            message.contains(expected),
            "{file}: {contents:?}: {message}"
        );
        assert!(!message.contains("panicked"), "{message}");
        assert_eq!(std::fs::read(&model).unwrap(), b"the user's earlier model");
    }
}

/// An image without a label file is a picture of background, not an error (the YOLO layout).
#[test]
fn an_image_without_labels_trains_as_background() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = small_set(dir.path());
    image::RgbImage::from_pixel(40, 40, image::Rgb([10, 10, 10]))
        .save(dir.path().join("images/train/empty.png"))
        .unwrap();
    let model = dir.path().join("det.safetensors");
    let out = graft(&[
        "train",
        "--task",
        "detect",
        "--data",
        path(&yaml),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--input-size",
        "128",
        "--out",
        path(&model),
        "--json",
    ]);
    let report = json(&out);
    assert!(
        stderr(&out).contains("2 training and 1 validation images"),
        "{}",
        stderr(&out)
    );
    assert!(report["history"][0]["loss"].as_f64().unwrap().is_finite());
    assert!(model.exists());
}
