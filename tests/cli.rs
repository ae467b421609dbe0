//! The `graft` command end to end: what a user types, on real data.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn imagenet_prediction_sees_the_cat() {
    let out = graft(&[
        "predict",
        "--imagenet",
        "--json",
        path(&reference("chelsea.png")),
    ]);
    let top = &json(&out)[0]["predictions"][0];
    let index = top["index"].as_u64().unwrap();
    assert!([281, 282, 285].contains(&index), "top class {top}");
}

#[test]
fn chest_xray_trains_and_eval_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("xray.safetensors");
    // The seed-style command: `--epochs` counts fine-tuning passes, so with the head alone it
    // changes nothing and says so.
    let out = graft(&[
        "train",
        "--data",
        path(&xray_dataset()),
        "--epochs",
        "5",
        "--out",
        path(&model),
        "--json",
    ]);
    let report = json(&out);
    assert!(
        stderr(&out).contains("the head is solved to convergence"),
        "{}",
        stderr(&out)
    );
    let head = &report["head"];
    assert_eq!(head["l2Source"], "crossValidation");
    assert_eq!(head["converged"], true);
    let val_accuracy = report["validation"]["accuracy"].as_f64().unwrap();
    assert_eq!(report["validationImages"], 120);
    assert_eq!(report["validationExamples"].as_array().unwrap().len(), 120);
    assert_eq!(head["valAccuracy"].as_f64(), Some(val_accuracy));
    assert!(val_accuracy >= 0.93, "validation accuracy {val_accuracy}");

    let out = graft(&[
        "eval",
        "--model",
        path(&model),
        "--data",
        path(&xray_dataset()),
        "--split",
        "val",
        "--json",
    ]);
    let evaluation = json(&out);
    assert_eq!(evaluation["images"], 120);
    let eval_accuracy = evaluation["accuracy"].as_f64().unwrap();
    assert!(
        (eval_accuracy - val_accuracy).abs() < 1e-9,
        "eval {eval_accuracy} vs train {val_accuracy}"
    );
    let binary = &evaluation["binary"];
    assert_eq!(binary["positive"], "PNEUMONIA");
    let auc = binary["rocAuc"].as_f64().unwrap();
    assert!(auc > 0.95, "ROC AUC {auc}");
    assert!(binary["sensitivity"].as_f64().unwrap() > 0.85);
    assert!(binary["specificity"].as_f64().unwrap() > 0.85);
    println!(
        "chest x-ray: validation accuracy {val_accuracy:.4}, eval {eval_accuracy:.4}, ROC AUC {auc:.4}"
    );

    // The held-out images are found by content: renamed and shuffled among other folders,
    // `--split val` scores exactly them.
    let moved = dir.path().join("moved");
    for (i, class) in ["NORMAL", "PNEUMONIA"].iter().enumerate() {
        std::fs::create_dir_all(moved.join(class)).unwrap();
        for (j, entry) in std::fs::read_dir(xray_dataset().join(class))
            .unwrap()
            .enumerate()
        {
            let name = format!("{:04}-{i}.jpeg", (j * 7919) % 1000);
            std::fs::copy(entry.unwrap().path(), moved.join(class).join(name)).unwrap();
        }
    }
    let out = graft(&[
        "eval",
        "--model",
        path(&model),
        "--data",
        path(&moved),
        "--split",
        "val",
        "--json",
    ]);
    let again = json(&out);
    assert_eq!(again["images"], 120);
    assert_eq!(again["accuracy"], evaluation["accuracy"]);
    // A folder missing some of them says how many.
    let gone = report["validationExamples"][0]["id"].as_str().unwrap();
    let partial = dir.path().join("partial");
    for class in ["NORMAL", "PNEUMONIA"] {
        std::fs::create_dir_all(partial.join(class)).unwrap();
        for entry in std::fs::read_dir(xray_dataset().join(class)).unwrap() {
            let file = entry.unwrap().path();
            if !file.ends_with(gone) {
                std::fs::copy(&file, partial.join(class).join(file.file_name().unwrap())).unwrap();
            }
        }
    }
    let out = graft(&[
        "eval",
        "--model",
        path(&model),
        "--data",
        path(&partial),
        "--split",
        "val",
        "--json",
    ]);
    assert_eq!(json(&out)["images"], 119);
    assert!(
        stderr(&out).contains("1 of the model's 120 held-out images are not in"),
        "{}",
        stderr(&out)
    );

    // The trained model predicts single files too.
    let xray = xray_dataset().join("PNEUMONIA");
    let first = std::fs::read_dir(&xray)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let out = graft(&["predict", "--model", path(&model), "--json", path(&first)]);
    let predictions = &json(&out)[0]["predictions"];
    assert_eq!(predictions.as_array().unwrap().len(), 2);
}

#[test]
fn embed_exports_features_labels_files_and_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    small_dataset(&data, 3);
    // A copy of an image under another name is the same image: exported once.
    let first = std::fs::read_dir(data.join("NORMAL"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&first, data.join("NORMAL/zz-copy.jpeg")).unwrap();
    let file = dir.path().join("embeddings.safetensors");
    let out = graft(&["embed", "--data", path(&data), "--out", path(&file)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("zz-copy.jpeg: the same image as NORMAL/"),
        "{}",
        stderr(&out)
    );
    let bytes = std::fs::read(&file).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(tensors.tensor("features").unwrap().shape(), [6, 1280]);
    assert_eq!(tensors.tensor("labels").unwrap().shape(), [6]);
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone().unwrap();
    assert_eq!(metadata["graft.kind"], "embeddings");
    let description: serde_json::Value =
        serde_json::from_str(&metadata["graft.embeddings"]).unwrap();
    assert_eq!(
        description["labels"],
        serde_json::json!(["NORMAL", "PNEUMONIA"])
    );
    let files = description["files"].as_array().unwrap();
    let hashes = description["hashes"].as_array().unwrap();
    for (file, hash) in files.iter().zip(hashes) {
        let bytes = std::fs::read(data.join(file.as_str().unwrap())).unwrap();
        assert_eq!(hash.as_str().unwrap(), graft::data::content_hash(&bytes));
    }
}

/// A small dataset made of copies of real X-rays, for the error paths.
fn small_dataset(root: &Path, per_class: usize) {
    for class in ["NORMAL", "PNEUMONIA"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        let source = xray_dataset().join(class);
        let mut files: Vec<_> = std::fs::read_dir(&source)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files.iter().take(per_class) {
            std::fs::copy(file, root.join(class).join(file.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn bad_images_among_good_ones_are_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    small_dataset(dir.path(), 6);
    std::fs::write(
        dir.path().join("NORMAL/corrupt.jpg"),
        b"\xff\xd8\xff\xe0 not really",
    )
    .unwrap();
    std::fs::write(dir.path().join("PNEUMONIA/empty.png"), b"").unwrap();
    let model = dir.path().join("m.safetensors");
    let out = graft(&[
        "train",
        "--data",
        path(dir.path()),
        "--epochs",
        "2",
        "--out",
        path(&model),
        "--json",
    ]);
    let report = json(&out);
    let log = stderr(&out);
    assert!(
        log.contains("skipped") && log.contains("corrupt.jpg") && log.contains("empty.png"),
        "{log}"
    );
    let skipped: Vec<&str> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["NORMAL/corrupt.jpg", "PNEUMONIA/empty.png"]);
    assert_eq!(
        report["trainImages"].as_u64().unwrap() + report["validationImages"].as_u64().unwrap(),
        12
    );
}

#[test]
fn unusable_datasets_fail_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("only/cats")).unwrap();
    std::fs::copy(
        reference("chelsea.png"),
        dir.path().join("only/cats/chelsea.png"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("empty/cats")).unwrap();
    std::fs::create_dir_all(dir.path().join("empty/dogs")).unwrap();
    std::fs::copy(
        reference("chelsea.png"),
        dir.path().join("empty/cats/chelsea.png"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("broken/cats")).unwrap();
    std::fs::create_dir_all(dir.path().join("broken/dogs")).unwrap();
    std::fs::copy(
        reference("chelsea.png"),
        dir.path().join("broken/cats/chelsea.png"),
    )
    .unwrap();
    std::fs::write(dir.path().join("broken/dogs/dog.jpg"), b"garbage").unwrap();

    let cases = [
        ("only", "only one class ('cats')"),
        ("empty", "class 'dogs'"),
        ("broken", "class 'dogs' has no usable images"),
        ("missing", "not a folder"),
    ];
    for (name, expected) in cases {
        let out = graft(&[
            "train",
            "--data",
            path(&dir.path().join(name)),
            "--out",
            path(&dir.path().join("m")),
        ]);
        assert!(!out.status.success(), "{name} was accepted");
        assert!(stderr(&out).contains(expected), "{name}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("panicked"),
            "{name}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn missing_or_wrong_weights_and_models_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let cat = reference("chelsea.png");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_graft"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let log = stderr(&out);
        assert!(!log.contains("panicked"), "{log}");
        log
    };
    let missing = dir.path().join("nope.safetensors");
    let log = run(&[
        "predict",
        "--imagenet",
        "--weights",
        path(&missing),
        path(&cat),
    ]);
    assert!(
        log.contains("nope.safetensors") && log.contains("setup.sh"),
        "{log}"
    );

    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not weights at all").unwrap();
    let log = run(&[
        "predict",
        "--imagenet",
        "--weights",
        path(&junk),
        path(&cat),
    ]);
    assert!(log.contains("junk.safetensors: not a valid"), "{log}");

    // The backbone file given as a trained model.
    let log = run(&[
        "predict",
        "--weights",
        path(&weights()),
        "--model",
        path(&weights()),
        path(&cat),
    ]);
    assert!(log.contains("not a trained model"), "{log}");

    let log = run(&[
        "predict",
        "--imagenet",
        "--weights",
        path(&weights()),
        "--device",
        "tpu",
        path(&cat),
    ]);
    assert!(log.contains("valid devices: cpu, wgpu"), "{log}");
}

#[test]
fn fine_tuning_saves_what_eval_and_predict_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    small_dataset(&data, 16);
    let model = dir.path().join("tuned.safetensors");
    // A head held near zero by a huge penalty (validation loss near ln 2, where a solved head
    // reaches ~0.1): any fine-tuning epoch that learns beats it, so the fine-tuned path is the
    // one saved and checked here.
    let out = graft(&[
        "train",
        "--data",
        path(&data),
        "--l2",
        "1000",
        "--validation-split",
        "0.25",
        "--fine-tune-blocks",
        "1",
        "--epochs",
        "2",
        "--crop",
        "--rotate",
        "--brightness",
        "--contrast",
        "--label-smoothing",
        "0.1",
        "--out",
        path(&model),
        "--json",
    ]);
    let report = json(&out);
    let log = stderr(&out);
    assert!(
        log.contains("fine-tune: last 1 block(s) + head conv, 2 epoch(s)"),
        "{log}"
    );
    assert!(
        log.contains("augmentation: crop, rotate, brightness, contrast"),
        "{log}"
    );
    let tuning = &report["fineTune"];
    assert_eq!(tuning["history"].as_array().unwrap().len(), 2, "{tuning}");
    assert_eq!(tuning["plan"]["blocks"], 1);
    assert_eq!(tuning["plan"]["augment"]["flip"], false);
    let best = tuning["bestEpoch"].as_u64().unwrap() as usize;
    assert!(
        best > 0,
        "no fine-tuning epoch beat a head held at zero: {tuning}"
    );
    let expected = tuning["history"][best - 1]["valAccuracy"].as_f64().unwrap();
    assert_eq!(report["validation"]["accuracy"].as_f64(), Some(expected));
    let baseline_loss = tuning["baseline"]["valLoss"].as_f64().unwrap();
    assert!(baseline_loss > 0.5, "baseline {baseline_loss}");
    // The head alone is ~10 KB; block 15 and the head conv add ~4 MB.
    let size = std::fs::metadata(&model).unwrap().len();
    assert!(size > 1_000_000, "{size} bytes");

    let out = graft(&[
        "eval",
        "--model",
        path(&model),
        "--data",
        path(&data),
        "--split",
        "val",
        "--json",
    ]);
    let evaluation = json(&out);
    assert_eq!(evaluation["images"], 8);
    let accuracy = evaluation["accuracy"].as_f64().unwrap();
    assert!(
        (accuracy - expected).abs() < 1e-9,
        "eval {accuracy} vs training {expected}"
    );

    let image = data
        .join("NORMAL")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let out = graft(&["predict", "--model", path(&model), "--json", path(&image)]);
    assert_eq!(json(&out)[0]["predictions"].as_array().unwrap().len(), 2);

    let out = graft(&["train", "--data", path(&data), "--fine-tune-blocks", "17"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("fineTuneBlocks"), "{}", stderr(&out));
}
