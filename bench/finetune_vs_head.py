#!/usr/bin/env python3
"""Does fine-tuning pay? Head alone vs fine-tuned, scored on a separate test folder.

For a dataset built by bench/datasets.py (`<set>/train`, `<set>/test`), trains the head alone and
then each fine-tuning configuration with `graft train`, all with the same seed and split, and
scores every model with `graft eval` on the test folder (never seen in training, never used to
pick an epoch). Writes bench/results/finetune-vs-head-<set>[-TAG].json.

    python3 bench/finetune_vs_head.py --set fashion --config "defaults K=4:--fine-tune-blocks 4"
"""

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(command):
    started = time.time()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {shlex.join(command)}\n{result.stderr}")
    seconds = time.time() - started
    print(f"  {seconds:7.1f} s  {shlex.join(command)}", flush=True)
    return result.stdout, result.stderr, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", default="fashion")
    parser.add_argument("--config", action="append", default=[], help="NAME:FLAGS for graft train (repeatable)")
    parser.add_argument("--graft", default=os.path.join(ROOT, "target", "release", "graft"))
    parser.add_argument("--seed", default="42")
    parser.add_argument("--tag", default="")
    parser.add_argument("--head-from", help="reuse the head-only run of this earlier results file (same set and seed)")
    args = parser.parse_args()

    data = os.path.join(ROOT, "bench", "data", args.set)
    work = tempfile.mkdtemp(prefix="graft-finetune-bench-")
    configs = [("head only", "")] + [tuple(c.split(":", 1)) for c in args.config]
    out = os.path.join(ROOT, "bench", "results", f"finetune-vs-head-{args.set}{'-' + args.tag if args.tag else ''}.json")
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "graftCommit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "set": args.set,
        "protocol": "graft train on <set>/train (seeded 80/20 split inside it for the head's report and fine-tuning's epoch choice), graft eval on <set>/test",
        "seed": args.seed,
        "runs": [],
    }
    if args.head_from:
        earlier = json.load(open(args.head_from))
        if (earlier["set"], earlier["seed"]) != (args.set, args.seed):
            sys.exit(f"{args.head_from} is for set {earlier['set']}, seed {earlier['seed']}")
        results["runs"].append(dict(earlier["runs"][0], reusedFrom=f"{os.path.basename(args.head_from)} ({earlier['graftCommit']})"))
        configs = configs[1:]
    for name, flags in configs:
        print(f"{name}:", flush=True)
        model = os.path.join(work, f"{len(results['runs'])}.safetensors")
        train = [args.graft, "train", "--data", os.path.join(data, "train"), "--seed", args.seed, "--out", model, "--json", *shlex.split(flags)]
        stdout, _, train_seconds = run(train)
        report = json.loads(stdout)
        stdout, _, _ = run([args.graft, "eval", "--model", model, "--data", os.path.join(data, "test"), "--json"])
        evaluation = json.loads(stdout)
        tune = report.get("fineTune")
        results["runs"].append({
            "name": name,
            "flags": flags,
            "testAccuracy": evaluation["accuracy"],
            "testImages": evaluation["images"],
            "validationAccuracy": report["validation"]["accuracy"] if report["validation"] else None,
            "headValidationAccuracy": report["head"]["valAccuracy"],
            "headL2": report["head"]["l2"],
            "fineTune": tune and {
                "plan": tune["plan"],
                "baseline": tune["baseline"],
                "history": tune["history"],
                "bestEpoch": tune["bestEpoch"],
                "stoppedEarly": tune["stoppedEarly"],
                "secondsPerEpoch": tune["secondsPerEpoch"],
            },
            "trainSeconds": round(train_seconds, 1),
        })
        print(f"  test accuracy {evaluation['accuracy']:.4f} ({evaluation['images']} images)", flush=True)
        with open(out, "w") as f:
            json.dump(results, f, indent=2)
    base = results["runs"][0]["testAccuracy"]
    print(f"\n| configuration | test accuracy | vs head only |\n|---|---|---|")
    for r in results["runs"]:
        print(f"| {r['name']} | {r['testAccuracy'] * 100:.2f}% | {(r['testAccuracy'] - base) * 100:+.2f} |")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
