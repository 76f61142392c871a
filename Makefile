# berth: `make run` and `make test` are the whole set-up on a fresh Debian 12 machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := crun conmon runc skopeo docker-registry busybox-static debootstrap nftables \
	catatonit uidmap zstd postgresql iproute2 tmux openssl ca-certificates docker-compose
DATA_ROOT ?= /var/lib/berth
EXEC_ROOT ?= /run/berth
PYTEST := $(BIN)/python -m pytest

.PHONY: install apt venv run test lint unit e2e images bench conformance protos check-protos clean

install: apt venv

apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	@# Both import roots on sys.path, so packages added later import without a reinstall.
	@printf '%s\n' "$(CURDIR)/libs" "$(CURDIR)/services" > \
		"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/berth-src.pth"
	@touch $@

run: install
	@mkdir -p $(EXEC_ROOT)
	@echo "berthd starting; in another shell run:  export DOCKER_HOST=unix://$(EXEC_ROOT)/berth.sock"
	exec $(BIN)/berthd --data-root $(DATA_ROOT) --exec-root $(EXEC_ROOT) -H unix://$(EXEC_ROOT)/berth.sock

lint: install
	$(BIN)/ruff check libs services tests bench scripts
	$(BIN)/mypy libs services

unit: install
	$(PYTEST) tests/unit tests/service -q

e2e: install
	bash scripts/build-fixtures.sh
	$(PYTEST) tests/e2e -q

# The fixture build (debootstrap) and the unit suites are independent: run them side by side.
test: install
	@set -o pipefail; \
	( bash scripts/build-fixtures.sh > /tmp/berth-fixtures.log 2>&1 ) & fx=$$!; \
	$(MAKE) --no-print-directory lint check-protos || { kill $$fx 2>/dev/null; exit 1; }; \
	$(PYTEST) tests/unit tests/service -q; rc=$$?; \
	wait $$fx || { echo "fixture build failed:"; tail -50 /tmp/berth-fixtures.log; exit 1; }; \
	[ $$rc -eq 0 ] || exit $$rc; \
	$(PYTEST) tests/e2e -q

images: install
	bash scripts/load-images.sh

# berth beside dockerd and podman, one table (bench/README.md); BENCH_ARGS e.g. "--runs 20 --quick".
bench: install
	bash scripts/bench-deps.sh
	bash scripts/build-fixtures.sh
	$(BIN)/python bench/side_by_side.py $(BENCH_ARGS)

# docker-py 7.0.0's integration suite against a fresh berthd (API 1.41, then auto); prints totals.
conformance: install
	bash scripts/conformance-deps.sh
	bash scripts/build-fixtures.sh busybox
	$(BIN)/python tests/conformance/run_dockerpy.py $(CONFORMANCE_ARGS)

protos: venv
	bash scripts/protos.sh

check-protos: venv
	bash scripts/check-protos.sh

clean:
	rm -rf build *.egg-info .mypy_cache .ruff_cache .pytest_cache
