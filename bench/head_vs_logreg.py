#!/usr/bin/env python3
"""Yardstick: Graft's classification head against a tuned logistic regression on the very same
embeddings (Graft's own `graft embed` output), on the very same training images.

    bench/setup-python.sh && python3 bench/datasets.py
    bench/.venv/bin/python bench/head_vs_logreg.py [--sets fashion,elpv,xray] [--graft PATH]
        [--extra-train-args "..."] [--tag NAME] [--epochs 5] [--jobs 1]

Protocols
  fashion, elpv (bench/data/<set>/{train,test}, built by bench/datasets.py): for each seed
    (Graft's default, 1, 2) `graft train --data <set>/train --epochs 5 [--seed S] --out M --json`
    then `graft eval --model M --data <set>/test --split all --json` gives Graft's test accuracy.
    The train and test folders are embedded once (`graft embed`). The logistic regression trains
    on the rows Graft trained on (train-folder rows whose content hash is not in the model's
    `training.split.heldOut`) and is scored on every test row.
  xray (the 600 chest X-rays in ../shared, or $GRAFT_SHARED): for seeds 0..4
    `graft train --data XRAYS --seed S --validation-split 0.2 --epochs 5 --out M --json`; Graft's
    accuracy is the report's `validation.accuracy`; the regression trains on the rows not held
    out and is scored on the held-out rows (matched by content hash).
  "Tuned" logistic regression: StandardScaler + LogisticRegression(max_iter=5000), C picked by
    GridSearchCV (5-fold StratifiedKFold, shuffled, random_state 0, scoring accuracy) over
    np.logspace(-4, 2, 13); once plain and once with class_weight='balanced'.
    `l2Equivalent` = 1 / (C * n): scikit-learn minimises mean loss + (1 / (C n)) / 2 * |w|^2,
    which is the form of Graft's head objective (mean loss + l2 / 2 * |w|^2, standardised
    features), so it compares directly with the report's `head.l2`.

Writes bench/results/head-vs-logreg[-TAG].json (after every run, so an interrupted benchmark
keeps what it measured) and a markdown table (printed, and saved next to it as .md).
Any failing graft command stops the benchmark with the command line and its stderr.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import safetensors
import sklearn
from safetensors import safe_open
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, 'bench', 'data')
RESULTS = os.path.join(REPO, 'bench', 'results')
C_GRID = np.logspace(-4, 2, 13)
CV_SEED = 0
FEATURE_DIM = 1280
TEST_FOLDER_SETS = ('fashion', 'elpv')
ALL_SETS = ('fashion', 'elpv', 'xray')
# Flags the harness sets itself; --extra-train-args may override the first two, not the rest.
OVERRIDABLE = ('--epochs', '--validation-split')
RESERVED = ('--data', '--out', '--json', '--seed', '--weights')


def log(message):
    print(message, file=sys.stderr, flush=True)


def die(message):
    raise SystemExit(f'head_vs_logreg: {message}')


def content_hash(path):
    """First 16 hex characters of the SHA-256 of a file's bytes (Graft's image hash)."""
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# The graft CLI.

def has_flag(args, flag):
    return any(a == flag or a.startswith(flag + '=') for a in args)


class Graft:
    def __init__(self, exe, weights, epochs, extra_train_args):
        self.exe, self.weights, self.epochs = exe, weights, epochs
        self.extra = extra_train_args
        for flag in RESERVED:
            if has_flag(self.extra, flag):
                die(f'--extra-train-args may not set {flag}: the benchmark sets it')

    def run(self, args, want_json=True):
        argv = [self.exe, *args]
        started = time.time()
        with tempfile.TemporaryFile(mode='w+') as stderr:
            result = subprocess.run(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True)
            seconds = time.time() - started
            stderr.seek(0)
            err = stderr.read()
        command = shlex.join(argv)
        if result.returncode != 0:
            die(f'graft failed (exit {result.returncode}) after {seconds:.1f} s:\n  {command}\n'
                f'--- stderr ---\n{err[-8000:]}\n--- stdout ---\n{result.stdout[-2000:]}')
        log(f'  {seconds:7.1f} s  {command}')
        if not want_json:
            return None, seconds
        try:
            return json.loads(result.stdout), seconds
        except json.JSONDecodeError as e:
            die(f'graft printed no JSON report ({e}):\n  {command}\n--- stdout ---\n'
                f'{result.stdout[-4000:]}\n--- stderr ---\n{err[-4000:]}')

    def train(self, data, out, seed=None, validation_split=None):
        args = ['train', '--weights', self.weights, '--data', data, '--out', out, '--json']
        if seed is not None:
            args += ['--seed', str(seed)]
        if validation_split is not None and not has_flag(self.extra, '--validation-split'):
            args += ['--validation-split', str(validation_split)]
        if not has_flag(self.extra, '--epochs'):
            args += ['--epochs', str(self.epochs)]
        return self.run(args + self.extra)

    def eval(self, model, data):
        return self.run(['eval', '--weights', self.weights, '--model', model, '--data', data,
                         '--split', 'all', '--json'])

    def embed(self, data, out):
        _, seconds = self.run(['embed', '--weights', self.weights, '--data', data, '--out', out],
                              want_json=False)
        return seconds


# ---------------------------------------------------------------------------------------------
# Graft's files.

def safetensors_metadata(path):
    """The `__metadata__` of a safetensors file's header (read without loading tensors)."""
    with open(path, 'rb') as f:
        (size,) = struct.unpack('<Q', f.read(8))
        header = json.loads(f.read(size))
    return header.get('__metadata__') or {}


def json_entry(metadata, key, path):
    if key not in metadata:
        die(f'{path}: no {key!r} in its metadata (keys: {sorted(metadata)})')
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as e:
        die(f'{path}: metadata {key!r} is not JSON: {e}')


def load_embeddings(path, data_dir, check_hashes=True):
    """features [N, 1280] float32, labels [N] int64, class names, files and hashes of a
    `graft embed` file, checked for consistency (and the hashes against the files' bytes)."""
    with safe_open(path, framework='numpy') as f:
        metadata = f.metadata() or {}
        names = set(f.keys())
        if not {'features', 'labels'} <= names:
            die(f'{path}: tensors {sorted(names)}, expected features and labels')
        features = f.get_tensor('features')
        labels = f.get_tensor('labels')
    if metadata.get('graft.kind') != 'embeddings':
        die(f'{path}: graft.kind is {metadata.get("graft.kind")!r}, expected "embeddings"')
    info = json_entry(metadata, 'graft.embeddings', path)
    classes, files, hashes = info.get('labels'), info.get('files'), info.get('hashes')
    n = features.shape[0]
    if features.dtype != np.float32 or features.ndim != 2 or features.shape[1] != FEATURE_DIM:
        die(f'{path}: features {features.dtype} {list(features.shape)}, expected F32 [N, {FEATURE_DIM}]')
    if labels.dtype != np.int64 or labels.shape != (n,):
        die(f'{path}: labels {labels.dtype} {list(labels.shape)}, expected I64 [{n}]')
    if not (isinstance(classes, list) and isinstance(files, list) and isinstance(hashes, list)):
        die(f'{path}: graft.embeddings lacks labels, files or hashes (keys: {sorted(info)})')
    if len(files) != n or len(hashes) != n:
        die(f'{path}: {n} rows but {len(files)} files and {len(hashes)} hashes')
    if n and (labels.min() < 0 or labels.max() >= len(classes)):
        die(f'{path}: labels outside 0..{len(classes) - 1}')
    if not np.isfinite(features).all():
        die(f'{path}: features hold NaN or infinite values')
    if check_hashes:
        for file, h in zip(files, hashes):
            actual = content_hash(os.path.join(data_dir, file))
            if actual != h:
                die(f'{path}: hash of {file} is {h}, but its bytes hash to {actual} '
                    '(first 16 hex of SHA-256)')
    duplicates = n - len(set(hashes))
    if duplicates:
        log(f'  warning: {path}: {duplicates} rows repeat another row\'s content hash')
    return {'features': features, 'labels': labels, 'classes': classes, 'files': files,
            'hashes': hashes, 'duplicateHashes': duplicates}


def relabel(emb, classes):
    """emb's labels as indices into `classes` (the training embedding's class order)."""
    index = {name: i for i, name in enumerate(classes)}
    missing = sorted(set(emb['classes']) - set(index))
    if missing:
        die(f'test classes {missing} are not among the training classes {classes}')
    mapping = np.array([index[name] for name in emb['classes']], dtype=np.int64)
    return mapping[emb['labels']]


def held_out(model_path):
    """The model's recorded validation split: the `training.split` object of `graft.model`."""
    info = json_entry(safetensors_metadata(model_path), 'graft.model', model_path)
    split = (info.get('training') or {}).get('split')
    if split is None:  # no validation split drawn from the folder: nothing held out
        return {'heldOut': []}
    if not isinstance(split, dict) or not isinstance(split.get('heldOut'), list):
        die(f'{model_path}: graft.model has no training.split.heldOut '
            f'(training: {json.dumps(info.get("training"))[:500]})')
    return split


def rows_graft_trained_on(train_emb, split, report, where):
    """Masks (trained, heldOut) over the training embedding's rows, checked against the report."""
    held = set(split['heldOut'])
    hashes = train_emb['hashes']
    unknown = held - set(hashes)
    if unknown:
        die(f'{where}: {len(unknown)} held-out hashes match no embedded image '
            f'(e.g. {sorted(unknown)[:3]}); the two hash schemes disagree')
    mask_held = np.array([h in held for h in hashes])
    trained, n_held = int((~mask_held).sum()), int(mask_held.sum())
    if report.get('trainImages') != trained or report.get('validationImages') != n_held:
        die(f'{where}: graft reports {report.get("trainImages")} training and '
            f'{report.get("validationImages")} validation images, the model file\'s heldOut '
            f'gives {trained} and {n_held}')
    return ~mask_held, mask_held


# ---------------------------------------------------------------------------------------------
# The yardstick.

def tuned_logreg(x_train, y_train, x_test, y_test, balanced, jobs):
    started = time.time()
    pipeline = make_pipeline(
        StandardScaler(),
        LogisticRegression(max_iter=5000, class_weight='balanced' if balanced else None))
    search = GridSearchCV(
        pipeline, {'logisticregression__C': C_GRID}, scoring='accuracy', n_jobs=jobs,
        cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=CV_SEED), refit=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', ConvergenceWarning)
        search.fit(x_train, y_train)
        predicted = search.predict(x_test)
    c = float(search.best_params_['logisticregression__C'])
    n = len(y_train)
    return {
        'accuracy': float(accuracy_score(y_test, predicted)),
        'balancedAccuracy': float(balanced_accuracy_score(y_test, predicted)),
        'C': c,
        'cAtGridEdge': bool(np.isclose(c, C_GRID[0]) or np.isclose(c, C_GRID[-1])),
        'l2Equivalent': 1.0 / (c * n),
        'cvAccuracy': float(search.best_score_),
        'cvAccuracyByC': [round(float(s), 5) for s in search.cv_results_['mean_test_score']],
        'convergenceWarnings': sum(issubclass(w.category, ConvergenceWarning) for w in caught),
        'trainRows': n,
        'testRows': len(y_test),
        'seconds': round(time.time() - started, 2),
    }


def compare(run, x_train, y_train, x_test, y_test, jobs):
    """Adds the plain and balanced regressions and the differences to a run record."""
    graft_accuracy = run['graft']['accuracy']
    for key, balanced in (('logreg', False), ('logregBalanced', True)):
        run[key] = tuned_logreg(x_train, y_train, x_test, y_test, balanced, jobs)
    run['diffPoints'] = {k: round(100 * (graft_accuracy - run[k]['accuracy']), 2)
                         for k in ('logreg', 'logregBalanced')}
    return run


def graft_summary(report, seconds):
    head = report.get('head') or {}
    return {'trainImages': report.get('trainImages'),
            'validationImages': report.get('validationImages'),
            'validation': report.get('validation'),
            'head': head,
            'trainSeconds': round(seconds, 1)}


def test_folder_set(graft, name, seeds, work, jobs, record):
    root = os.path.join(DATA, name)
    train_dir, test_dir = os.path.join(root, 'train'), os.path.join(root, 'test')
    if not os.path.exists(os.path.join(root, '.done')):
        die(f'{root} is not built; run: python3 bench/datasets.py {name}')
    entry = record(name, {'protocol': 'train folder -> test folder', 'data': root, 'runs': []})
    train_file, test_file = os.path.join(work, f'{name}-train.safetensors'), os.path.join(work, f'{name}-test.safetensors')
    entry['embedSeconds'] = {'train': round(graft.embed(train_dir, train_file), 1),
                             'test': round(graft.embed(test_dir, test_file), 1)}
    train_emb = load_embeddings(train_file, train_dir)
    test_emb = load_embeddings(test_file, test_dir)
    y_test = relabel(test_emb, train_emb['classes'])
    entry['classes'] = train_emb['classes']
    entry['trainFolderImages'], entry['testImages'] = len(train_emb['labels']), len(y_test)
    record(name, entry)
    for seed in seeds:
        model = os.path.join(work, f'{name}-seed-{seed}.safetensors')
        report, train_seconds = graft.train(train_dir, model, seed=None if seed == 'default' else seed)
        evaluation, eval_seconds = graft.eval(model, test_dir)
        split = held_out(model)
        trained, _ = rows_graft_trained_on(train_emb, split, report, f'{name} seed {seed}')
        if evaluation.get('images') != len(y_test):
            die(f'{name} seed {seed}: graft eval saw {evaluation.get("images")} test images, '
                f'the embedding has {len(y_test)}')
        run = {'seed': seed, 'recordedSplitSeed': split.get('seed'),
               'validationFraction': split.get('validationFraction'),
               'graft': {'accuracy': evaluation['accuracy'], 'testImages': evaluation['images'],
                         'evalSeconds': round(eval_seconds, 1), 'eval': evaluation,
                         **graft_summary(report, train_seconds)}}
        compare(run, train_emb['features'][trained], train_emb['labels'][trained],
                test_emb['features'], y_test, jobs)
        entry['runs'].append(run)
        record(name, entry)


def xray_set(graft, xrays, seeds, work, jobs, record):
    if not os.path.isdir(xrays):
        die(f'no chest X-rays at {xrays} (set GRAFT_SHARED or pass --xray DIR)')
    entry = record('xray', {'protocol': 'validation split 0.2 of one folder', 'data': xrays, 'runs': []})
    file = os.path.join(work, 'xray.safetensors')
    entry['embedSeconds'] = {'all': round(graft.embed(xrays, file), 1)}
    emb = load_embeddings(file, xrays)
    entry['classes'], entry['images'] = emb['classes'], len(emb['labels'])
    record('xray', entry)
    for seed in seeds:
        model = os.path.join(work, f'xray-seed-{seed}.safetensors')
        report, train_seconds = graft.train(xrays, model, seed=seed, validation_split=0.2)
        split = held_out(model)
        trained, held = rows_graft_trained_on(emb, split, report, f'xray seed {seed}')
        validation = report.get('validation')
        if not validation or validation.get('accuracy') is None:
            die(f'xray seed {seed}: the training report has no validation.accuracy')
        if validation.get('images') != int(held.sum()):
            die(f'xray seed {seed}: validation.images is {validation.get("images")}, '
                f'heldOut has {int(held.sum())}')
        run = {'seed': seed, 'recordedSplitSeed': split.get('seed'),
               'validationFraction': split.get('validationFraction'),
               'graft': {'accuracy': validation['accuracy'], 'testImages': validation['images'],
                         **graft_summary(report, train_seconds)}}
        compare(run, emb['features'][trained], emb['labels'][trained],
                emb['features'][held], emb['labels'][held], jobs)
        entry['runs'].append(run)
        record('xray', entry)


# ---------------------------------------------------------------------------------------------
# Results.

def mean_std(values):
    values = np.asarray(values, dtype=float)
    return {'mean': float(values.mean()), 'std': float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            'n': len(values)}


def summarise(entry):
    runs = entry['runs']
    if not runs:
        return None
    return {
        'graft': mean_std([r['graft']['accuracy'] for r in runs]),
        'logreg': mean_std([r['logreg']['accuracy'] for r in runs]),
        'logregBalanced': mean_std([r['logregBalanced']['accuracy'] for r in runs]),
        'diffPoints': mean_std([r['diffPoints']['logreg'] for r in runs]),
        'diffPointsBalanced': mean_std([r['diffPoints']['logregBalanced'] for r in runs]),
        'stdIs': 'sample standard deviation (ddof 1) over seeds',
    }


def pct(x):
    return f'{100 * x:.1f}'


def table(results):
    lines = ['| set | seed | train | test | Graft % | head l2 | LR % (C) | LR balanced % (C) | '
             'Graft - LR (pts) | Graft - LR bal. (pts) |',
             '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for name, entry in results['sets'].items():
        for r in entry['runs']:
            l2 = (r['graft'].get('head') or {}).get('l2')
            lines.append(
                f'| {name} | {r["seed"]} | {r["logreg"]["trainRows"]} | {r["logreg"]["testRows"]} | '
                f'{pct(r["graft"]["accuracy"])} | {"-" if l2 is None else f"{l2:.3g}"} | '
                f'{pct(r["logreg"]["accuracy"])} ({r["logreg"]["C"]:.3g}) | '
                f'{pct(r["logregBalanced"]["accuracy"])} ({r["logregBalanced"]["C"]:.3g}) | '
                f'{r["diffPoints"]["logreg"]:+.1f} | {r["diffPoints"]["logregBalanced"]:+.1f} |')
        s = entry.get('summary')
        if s and s['graft']['n'] > 1:
            ms = lambda k: f'{100 * s[k]["mean"]:.1f} ± {100 * s[k]["std"]:.1f}'
            pts = lambda k: f'{s[k]["mean"]:+.1f} ± {s[k]["std"]:.1f}'
            lines.append(f'| **{name}** | mean ± std | | | {ms("graft")} | | {ms("logreg")} | '
                         f'{ms("logregBalanced")} | {pts("diffPoints")} | {pts("diffPointsBalanced")} |')
    return '\n'.join(lines)


def git_commit():
    try:
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip() != ''
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return None, None


def main():
    default_graft = os.path.join(os.environ.get('CARGO_TARGET_DIR', os.path.join(REPO, 'target')),
                                 'release', 'graft')
    shared = os.environ.get('GRAFT_SHARED', os.path.join(REPO, '..', 'shared'))
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--sets', default=','.join(ALL_SETS), help='comma-separated: fashion,elpv,xray')
    p.add_argument('--graft', default=default_graft, help='the graft binary (default: %(default)s)')
    p.add_argument('--weights', default='weights/efficientnet_lite0.safetensors',
                   help='backbone weights, passed to every graft command (default: %(default)s)')
    p.add_argument('--extra-train-args', default='',
                   help='extra flags appended to every graft train (may override --epochs and '
                        '--validation-split)')
    p.add_argument('--tag', default='', help='results file suffix: head-vs-logreg-TAG.json')
    p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--seeds', default='default,1,2', help='fashion/elpv seeds; "default" = no --seed')
    p.add_argument('--xray-seeds', default='0,1,2,3,4')
    p.add_argument('--xray', default=os.path.abspath(os.path.join(shared, 'datasets', 'chest_xray_pneumonia')))
    p.add_argument('--jobs', type=int, default=1, help='GridSearchCV n_jobs (default 1)')
    p.add_argument('--keep-work', action='store_true', help='keep the models and embeddings')
    args = p.parse_args()

    sets = [s.strip() for s in args.sets.split(',') if s.strip()]
    if not sets or any(s not in ALL_SETS for s in sets):
        die(f'--sets {args.sets!r}: choose from {",".join(ALL_SETS)}')
    graft_exe = os.path.abspath(args.graft)
    if not os.access(graft_exe, os.X_OK):
        die(f'no graft binary at {graft_exe} (cargo build --release, or --graft PATH)')
    if not os.path.exists(os.path.join(REPO, args.weights)):
        die(f'no backbone weights at {args.weights} (run ./setup.sh)')
    parse_seed = lambda s: s if s == 'default' else int(s)
    seeds = [parse_seed(s.strip()) for s in args.seeds.split(',') if s.strip()]
    xray_seeds = [int(s) for s in args.xray_seeds.split(',') if s.strip()]
    graft = Graft(graft_exe, args.weights, args.epochs, shlex.split(args.extra_train_args))

    commit, dirty = git_commit()
    results = {
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'graftCommit': commit,
        'graftWorkingTreeDirty': dirty,
        'graft': graft_exe,
        'weights': args.weights,
        'epochs': args.epochs,
        'extraTrainArgs': graft.extra,
        'tag': args.tag,
        'complete': False,
        'logreg': {
            'model': 'StandardScaler + LogisticRegression(max_iter=5000), lbfgs, L2',
            'cGrid': [float(c) for c in C_GRID],
            'search': f'GridSearchCV, StratifiedKFold(5, shuffle=True, random_state={CV_SEED}), scoring accuracy',
            'variants': {'logreg': 'class_weight=None', 'logregBalanced': "class_weight='balanced'"},
        },
        'environment': {'python': platform.python_version(), 'numpy': np.__version__,
                        'scikitLearn': sklearn.__version__, 'safetensors': safetensors.__version__,
                        'machine': f'{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs'},
        'sets': {},
    }
    os.makedirs(RESULTS, exist_ok=True)
    out = os.path.join(RESULTS, f'head-vs-logreg{"-" + args.tag if args.tag else ""}.json')

    def save():
        with open(out + '.partial', 'w') as f:
            json.dump(results, f, indent=2)
            f.write('\n')
        os.replace(out + '.partial', out)

    def record(name, entry):
        entry['summary'] = summarise(entry)
        results['sets'][name] = entry
        save()
        return entry

    work = tempfile.mkdtemp(prefix='graft-head-vs-logreg-')
    started = time.time()
    try:
        for name in sets:
            log(f'{name}:')
            if name in TEST_FOLDER_SETS:
                test_folder_set(graft, name, seeds, work, args.jobs, record)
            else:
                xray_set(graft, args.xray, xray_seeds, work, args.jobs, record)
    finally:
        if args.keep_work:
            log(f'models and embeddings kept in {work}')
        else:
            shutil.rmtree(work, ignore_errors=True)
    results['complete'] = True
    results['seconds'] = round(time.time() - started, 1)
    save()
    markdown = table(results)
    with open(out[:-len('.json')] + '.md', 'w') as f:
        f.write(f'Graft head vs tuned logistic regression, graft {commit}'
                f'{" (dirty)" if dirty else ""}, {results["date"]}'
                f'{", extra train args: " + shlex.join(graft.extra) if graft.extra else ""}\n\n'
                f'{markdown}\n')
    print(markdown)
    log(f'wrote {os.path.relpath(out, REPO)}')


if __name__ == '__main__':
    main()
