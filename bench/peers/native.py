"""onnxruntime's side of the native peer benchmark, on the pixels Graft's example wrote.

Reads bench/peers/build/pixels.f32 ([48,3,224,224], Graft's own preprocessing) and
graft-features.f32 ([48,1280]), runs bench/peers/build/efficientnet_lite0_features.onnx on the
CPU execution provider with 1 intra-op thread and then every core (inter-op 1, all graph
optimisations, batches of 8, one warm-up batch), and writes the wall and CPU seconds of the
timed rounds (this process's user + system time, worker threads included) and the lowest
cosine of its features against Graft's.
  bench/peers/.venv/bin/python bench/peers/native.py --out FILE [--rounds N]
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

BUILD = Path(__file__).resolve().parent / "build"
BATCH = 8
FEATURES = 1280
# Below this, onnxruntime is not computing Graft's network on Graft's pixels.
MIN_COSINE = 0.999


def lowest_cosine(a, b):
    cosines = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return float(cosines.min())


def measure(pixels, graft_features, threads, rounds):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(BUILD / "efficientnet_lite0_features.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    batches = [pixels[i:i + BATCH] for i in range(0, len(pixels), BATCH)]
    features = np.concatenate([session.run(["features"], {"pixels": b})[0] for b in batches])
    session.run(["features"], {"pixels": batches[0]})  # warm-up
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        for batch in batches:
            session.run(["features"], {"pixels": batch})
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    count = rounds * len(pixels)
    print(f"onnxruntime, {threads} thread(s): {count / wall:.1f} images/s, "
          f"{count / cpu:.1f} images per CPU-second")
    return dict(threads=threads, images=count, wallSeconds=wall, cpuSeconds=cpu,
                lowestCosineVsGraft=lowest_cosine(features, graft_features))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pixels = np.fromfile(BUILD / "pixels.f32", dtype="<f4").reshape(-1, 3, 224, 224)
    graft_features = np.fromfile(BUILD / "graft-features.f32", dtype="<f4").reshape(-1, FEATURES)
    if len(pixels) != len(graft_features):
        raise SystemExit("pixels.f32 and graft-features.f32 hold different numbers of images")
    runs = [measure(pixels, graft_features, threads, args.rounds) for threads in (1, os.cpu_count())]
    report = dict(onnxruntime=ort.__version__, batch=BATCH, runs=runs)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    lowest = min(r["lowestCosineVsGraft"] for r in runs)
    print(f"lowest cosine vs Graft: {lowest:.7f}; written to {args.out}")
    if lowest < MIN_COSINE:
        raise SystemExit("onnxruntime's features are not Graft's: not the same network or pixels")


if __name__ == "__main__":
    main()
