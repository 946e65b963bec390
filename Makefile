# Two commands do everything on a fresh machine: `make demo` and `make test`.
# .venv is the ROS 2 prefix (the ros-* wheels install share/, lib/, include/ into it), so
# nothing has to be sourced by hand: the exports below are all the environment needed.
SHELL := /bin/bash
PYTHON_SYS ?= python3
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamps

export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
export AMENT_PREFIX_PATH := $(VENV)
export CMAKE_PREFIX_PATH := $(VENV)
export RMW_IMPLEMENTATION := rmw_fastrtps_cpp
export PYTHONDONTWRITEBYTECODE := 1

PKG_SOURCES := CMakeLists.txt package.xml $(wildcard msg/*.msg scripts/*) \
	$(shell find aura_mem_ros launch config -type f -not -path '*/__pycache__/*' 2>/dev/null)

.PHONY: setup test test-fast lint demo demo-no-reset colcon-check clean train-default \
	bench-synthetic bench-closed-loop bench-perf bench-faults bench-soak bench-recorder \
	bench-never-reset bench-scale bench-serving-latency train-arm train-arm-never-reset bench-arm demo-arm \
	bench-gate-cost bench-retrain

setup: $(STAMP)/package $(STAMP)/dev

$(STAMP)/venv:
	$(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	mkdir -p $(STAMP) && touch $@

$(STAMP)/deps: requirements.txt $(STAMP)/venv
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) tools/fix_ros_cmake_paths.py $(VENV)
	touch $@

# Messages + Python package, built by CMake straight into the venv prefix (incremental: only
# what changed is rebuilt or copied). Not `pip install .` here: CMake refuses to export the
# venv's numpy include dir when the venv lies inside the source tree, unless the install
# prefix is that venv (see README, "Why CMake").
$(STAMP)/package: $(STAMP)/deps $(PKG_SOURCES)
	cmake -S . -B build/cmake -DCMAKE_INSTALL_PREFIX=$(VENV) -DPython3_EXECUTABLE=$(PY) \
		-DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release --log-level=WARNING > /dev/null
	cmake --build build/cmake -j 2 > /dev/null
	@# Uninstall the previous install first: a module moved or deleted in the sources must
	@# not live on in .venv (the tests would import the stale copy).
	if [ -f build/cmake/install_manifest.txt ]; then xargs -d '\n' rm -f < build/cmake/install_manifest.txt; fi
	site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
		rm -rf "$$site/aura_mem_ros"
	cmake --install build/cmake > /dev/null
	cd /tmp && $(PY) -c "from aura_mem_ros.msg import AuraAction, MemoryStats, EpisodeResult"
	touch $@

# The development package (benchmarks, fault injection, training recipes) is not installed:
# a link makes this checkout's aura_mem_dev importable in .venv, and aura-mem-bench runs it.
# .venv/setup.sh: `source .venv/setup.sh` gives a shell where every installed tool works.
$(STAMP)/dev: $(STAMP)/venv scripts/aura-mem-bench tools/venv_setup.sh
	site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
		ln -sfn $(CURDIR)/aura_mem_dev "$$site/aura_mem_dev"
	sed '1s|.*|#!$(PY)|' scripts/aura-mem-bench > $(VENV)/bin/aura-mem-bench
	chmod +x $(VENV)/bin/aura-mem-bench
	sed 's|@VENV@|$(VENV)|g' tools/venv_setup.sh > $(VENV)/setup.sh
	touch $@

test: setup
	$(PY) -m pytest -q test

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not multiprocess" test

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check aura_mem_ros aura_mem_dev test tools scripts

demo: setup
	$(PY) -m aura_mem_ros.demo $(ARGS)

# The same demo with memory never reset between episodes (reset_policy never, no reset calls).
demo-no-reset: setup
	$(PY) -m aura_mem_ros.demo --no-reset $(ARGS)

# colcon builds the same package the way a ROS 2 workspace does (CMake install, no pip),
# then a clean Python loads the messages and the node entry from that install space.
colcon-check: setup
	rm -rf build/colcon && mkdir -p build/colcon/src
	ln -sfn $(CURDIR) build/colcon/src/aura_mem_ros
	cd build/colcon && $(VENV)/bin/colcon build --base-paths src \
		--cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE=$(PY) > colcon.log
	cd /tmp && . $(CURDIR)/build/colcon/install/setup.sh && \
		AMENT_PREFIX_PATH=$$AMENT_PREFIX_PATH:$(VENV) $(PY) -c "import aura_mem_ros.msg as m, \
		rclpy.serialization as s; s.serialize_message(m.AuraAction()); \
		assert 'build/colcon/install' in m.__file__, m.__file__; print('colcon build OK:', m.__file__)"
	test -x build/colcon/install/aura_mem_ros/lib/aura_mem_ros/aura_mem_node

clean:
	rm -rf build _skbuild *.egg-info

train-default: setup
	nice -n 10 $(PY) -m aura_mem_dev.training.train_default

# Seconds per 1,000 steps of the counterfactual gate objective (the figures core/train.py states).
bench-gate-cost: setup
	nice -n 10 $(VENV)/bin/aura-mem-bench gate-cost

# Bags at 50 and 200 episodes -> aura-mem-train from a fresh layer -> closed loop on S13, S11,
# S17Random: its defaults at both sizes (ARGS: more options for that run), then the recipe
# for a few dozen episodes on the 50 (README, "A few dozen episodes"), 4 training seeds ->
# docs/results/retrain.md (+ .json). Long (~1.5 h on 2 cores): a quiet machine.
RETRAIN_WORK ?= out/retrain
RETRAIN_50_RECIPE := --head-hidden 128 --head-bilinear 64 --refit --refit-iterations 1200 \
	--backbone-args '{\"seen_objects\": true}' --value-reads seen_objects
bench-retrain: setup
	nice -n 10 $(VENV)/bin/aura-mem-bench retrain --work $(RETRAIN_WORK) \
		--out $(RETRAIN_WORK)/defaults.json $(ARGS)
	nice -n 10 $(VENV)/bin/aura-mem-bench retrain --episodes 50 --seeds 0 1 2 3 \
		--work $(RETRAIN_WORK) --train-args "$(RETRAIN_50_RECIPE)" \
		--out $(RETRAIN_WORK)/recipe_50.json
	$(VENV)/bin/aura-mem-bench retrain --merge $(RETRAIN_WORK)/defaults.json \
		$(RETRAIN_WORK)/recipe_50.json --out docs/results/retrain.json

bench-synthetic: setup
	$(PY) scripts/bench_synthetic.py

bench-closed-loop: setup
	nice -n 10 $(PY) scripts/closed_loop_report.py

# The never-reset panels (S13, S11, mixed; reset vs never, 500 episodes) and the 100k-step
# soak -> docs/results/never_reset.md (+ .json). ARGS="--resume" continues a stopped run;
# ARGS="--aura-checkpoint DIR" measures another AURA layer.
bench-never-reset: setup
	nice -n 10 $(PY) scripts/never_reset_report.py $(ARGS)

bench-perf: setup
	$(PY) scripts/bench_perf.py

bench-soak: setup
	$(PY) scripts/bench_perf.py --soak-steps 100000 --out docs/results/perf_soak.json \
		--md docs/results/perf_soak.md

bench-faults: setup
	$(PY) scripts/bench_faults.py

# Needs a quiet machine (issue 13 targets: 224x224 e2e p95 <= 25 ms, <= 1 % dropped).
bench-serving-latency: setup
	$(PY) scripts/bench_serving_latency.py

bench-recorder: setup
	nice -n 10 $(PY) scripts/bench_recorder.py

# Local Ray clusters of 1 and 2 CPUs; wants a quiet machine (the 2-worker speed-up).
bench-scale: setup
	$(PY) scripts/bench_scale.py

# The MuJoCo arm task (issue 15): weights in aura_mem_ros/models/arm_mini, report in
# docs/results/arm.{md,json}; the demo runs arm_sim and aura_mem as two processes.
train-arm: setup
	nice -n 10 $(PY) -m aura_mem_dev.arm.train

# step 6 of train-arm alone: the layer reset_policy: never serves on arm_mini, on the
# shipped backbone and per-episode layer (~25 min)
train-arm-never-reset: setup
	nice -n 10 $(PY) -m aura_mem_dev.arm.train --only-never-reset

bench-arm: setup
	nice -n 10 $(PY) -m aura_mem_dev.arm.bench

demo-arm: setup
	$(PY) -m aura_mem_ros.demo --env arm
