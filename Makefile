# Two entry points for a fresh machine: `make demo` (set up + run the default study) and `make test`.
VENV ?= .venv
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
FASHION_MNIST := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz

.PHONY: setup demo test lint benchmark benchmark-minilm benchmark-quick benchmark-targets benchmark-proxy benchmark-warm-start benchmark-calibration benchmark-samplers benchmark-samplers-budget benchmark-samplers-repeats benchmark-fidelity benchmark-latency-fidelity benchmark-cycle benchmark-recovery-precision benchmark-recovery-learning-rate benchmark-recovery-steps benchmark-onnxruntime-reduce-range benchmark-latency-correction benchmark-latency-zoo benchmark-timing-protocol benchmark-table-stability dashboard

setup: $(VENV)/.installed $(FASHION_MNIST)

# torch first and pinned: the CPU build on local disk; an unpinned torch would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

$(FASHION_MNIST):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq dataset-fashion-mnist

demo: setup
	$(VENV)/bin/autotune run studies/fashion-cnn.toml
	$(VENV)/bin/autotune front fashion-cnn

test: setup
	$(VENV)/bin/ruff check autotune tests
	$(VENV)/bin/pytest -q

# Writes docs/benchmarks.md: autotune vs FP32, INT8, NNCF accuracy control, random search, the uniform sweep and a
# reference front, measured side by side (an estimated 3.5 h on 2 cores from an empty cache, about 30 min when cached);
# benchmark-quick checks the pipeline in minutes.
benchmark: setup
	$(VENV)/bin/python -m benchmarks.run $(ARGS)

# The same comparison on the MiniLM sentence encoder (no reference front), written as a section of docs/benchmarks.md
# (about 1.5 h on 2 cores).
benchmark-minilm: setup
	$(VENV)/bin/python -m benchmarks.run --study minilm --seeds 3 --rounds 3 --round-seconds 0.3 --reference-evaluations 0

benchmark-quick: setup
	$(VENV)/bin/python -m benchmarks.run --quick --out .autotune/benchmarks/quick.md

# Writes docs/targets.md: FP32 vs INT8 vs pruned INT8 on every CPU target, ratios from one run.
benchmark-targets: setup
	$(VENV)/bin/python benchmarks/targets.py

# Writes docs/proxy-cost.md: one proxy trial's cost by phase on EfficientNet-B0, and the ranking kept by cheaper re-calibration.
benchmark-proxy: setup
	$(VENV)/bin/pip install --quiet efficientnet-pytorch
	$(VENV)/bin/python benchmarks/proxy_cost.py

# Writes docs/warm-start.md: trials a warm cycle needs vs a cold one after two real revisions of fashion-cnn (10 seeds).
benchmark-warm-start: setup
	$(VENV)/bin/python benchmarks/warm_start.py --seeds 10 --trials 48 --samplers nsga2,tpe

# Writes docs/calibration.md: ECE before/after compression and after temperature scaling on fashion-cnn.
benchmark-calibration: setup
	$(VENV)/bin/python benchmarks/calibration.py

# Writes docs/samplers.md: NSGA-II, TPE, GPSampler and random search by proxy hypervolume over 48 trials (10 seeds).
benchmark-samplers: setup
	$(VENV)/bin/python benchmarks/samplers.py --seeds 10 --trials 48 --samplers nsga2,tpe,gp,random

# Writes docs/samplers-budget.md: TPE against GPSampler-then-TPE (and TPE after a short start-up) over 200 trials (10 seeds).
benchmark-samplers-budget: setup
	$(VENV)/bin/python benchmarks/samplers.py --seeds 10 --trials 200 --samplers tpe,gp-tpe,tpe:short-start --out docs/samplers-budget.md

# Writes docs/samplers-repeats.md: TPE proposing untried plans against TPE alone over the study's 200 trials (10 seeds).
benchmark-samplers-repeats: setup
	$(VENV)/bin/python benchmarks/samplers.py --seeds 10 --trials 200 --samplers tpe,tpe:repeats --out docs/samplers-repeats.md

# Writes docs/proxy-fidelity.md: proxy variants (W8A8, latency bases, a fitted latency) on the plans `make benchmark` measured.
benchmark-fidelity: setup
	$(VENV)/bin/python -m benchmarks.fidelity --folder .autotune/benchmarks/fashion-cnn --results docs/benchmarks.json

# Writes docs/latency-fidelity.md: every latency table variant against 160 plans of the whole space timed in rounds (no
# full evaluation; about 30 min on 2 cores).
benchmark-latency-fidelity: setup
	$(VENV)/bin/python -m benchmarks.latency_fidelity

# Writes docs/timing-protocol.md: how reproducibly each way of cutting a plan's timing into rounds ranks plans.
benchmark-timing-protocol: setup
	$(VENV)/bin/python -m benchmarks.timing_protocol

# Writes docs/table-stability.md: latency tables measured cold again and again, the INT8 base timed in every chunk or not.
benchmark-table-stability: setup
	$(VENV)/bin/python -m benchmarks.table_stability

# Writes docs/cycle-time.md: one whole cycle (200 proxy trials, 16 full evaluations) per study from cold caches.
benchmark-cycle: setup
	$(VENV)/bin/python -m benchmarks.cycle --study fashion-cnn
	$(VENV)/bin/python -m benchmarks.cycle --study minilm

# Writes docs/recovery-precision.md: the same pruned plans recovered in bf16 autocast and in f32, built and scored.
benchmark-recovery-precision: setup
	$(VENV)/bin/python -m benchmarks.recovery_precision --study fashion-cnn --plans 16
	$(VENV)/bin/python -m benchmarks.recovery_precision --study minilm --plans 12

# Writes docs/recovery-learning-rate.md: the same pruned plans recovered at two learning rates, built and scored.
benchmark-recovery-learning-rate: setup
	$(VENV)/bin/python -m benchmarks.recovery_recipe --study fashion-cnn --field learning_rate --values 0.001 0.003 --plans 16

# Writes docs/recovery-full-steps.md: the same pruned plans recovered with 600 and 300 distillation steps, built and scored.
benchmark-recovery-steps: setup
	$(VENV)/bin/python -m benchmarks.recovery_recipe --study fashion-cnn --field full_steps --values 600 300 --plans 12

# Writes docs/onnxruntime-reduce-range.md: ONNX Runtime INT8 with 8-bit and 7-bit weights, the same models scored and timed.
benchmark-onnxruntime-reduce-range: setup
	$(VENV)/bin/python -m benchmarks.onnxruntime_reduce_range --study fashion-cnn --plans 12

# Writes docs/latency-correction.md: the default latency table, alone and corrected from N measured plans, against 160
# plans of the whole space timed in rounds (about 15 min on 2 cores). ARGS="--observed DIR" also learns from the records
# of an earlier run (a workspace's cache/latency-observed).
benchmark-latency-correction: setup
	$(VENV)/bin/python -m benchmarks.latency_fidelity --variants default-rounds --out docs/latency-correction.md $(ARGS)

benchmark-latency-zoo: setup
	$(VENV)/bin/python -m benchmarks.zoo_latency $(ARGS)

dashboard: setup
	$(VENV)/bin/autotune dashboard
