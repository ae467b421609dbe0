# The two set-up commands of the README are `make serve` and `make test`.
CARGO ?= cargo

.PHONY: serve test weights build bench

## Serve the web app on http://127.0.0.1:8000
serve:
	@echo "The browser app arrives with the next release; serving the project page for now."
	python3 -m http.server 8000 --bind 127.0.0.1

## Fetch and convert the backbone, then run every test
test: weights
	$(CARGO) test --release

## Download the pretrained backbone and convert it (skipped when done)
weights:
	./setup.sh

build:
	$(CARGO) build --release
