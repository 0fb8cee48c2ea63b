# Mycel: make run (the main job on a built-in default), make test, make bench.

GO      ?= go
BIN     := bin/mycel
BUILD   := build
# make run MODEL=FILE [TOKENIZER=FILE] runs on a real model instead.
MODEL   ?=
TOKENIZER ?=
PROMPT  ?= Once upon a time
# The built-in model: trained from scratch on generated stories, in the
# repository (docs/ourmodel.md); make tales rebuilds it from its seed.
BUILTIN := models/tales.gguf

.PHONY: all build run tales test fuzz cross bench bench-go bench-models bench-swarm bench-train vet docs clean

all: build

# One line before every build: a first build compiles the dependencies
# (libp2p and the rest) and takes minutes with nothing else on screen.
build:
	@echo "building mycel (the first build takes a few minutes)..."
	@$(GO) build -o $(BIN) ./cmd/mycel

# The main job: a local swarm of three nodes on loopback that choose and
# serve spans of the model's layers, found by a client through the DHT and
# pubsub, and a generation through the pipeline; half way, a node of the
# route stops and the client fails over to a spare.
ifeq ($(MODEL),)
run: build
	@echo "== No model given: the built-in $(BUILTIN), a 3M-parameter model trained from scratch on simple stories (docs/ourmodel.md)."
	@echo "== Another model: make run MODEL=stories15M.bin TOKENIZER=tokenizer.bin"
	./$(BIN) swarm demo -m $(BUILTIN) --nodes 3 -n 200 --kill-after 48 "$(PROMPT)"
else
run: build
	./$(BIN) swarm demo -m $(MODEL) $(if $(TOKENIZER),-z $(TOKENIZER)) --nodes 3 -n 128 --kill-after 64 "$(PROMPT)"
endif

# Rebuild the built-in model from its seed: stories from internal/tales, a
# vocabulary learned from them, training from scratch with package train
# (about 22 minutes on two cores), the GGUF with the vocabulary inside.
# The same seed and thread count give the same file on the same machine;
# an interrupted build resumes from build/tales-ckpt.
tales:
	$(GO) run ./tools/tales -o $(BUILTIN)

# The full suite: every package once, the networked ones (RACE) under the
# race detector; the kernels and the model again with the assembly's
# pure-Go twin and with the AVX2 path forced (on a CPU that has AVX-512
# the default takes it; the kernels' conformance suite already runs every
# path the CPU has in process, so the AVX2 run leaves it out).
# Each run goes through internal/testsummary (go test -json): it prints
# what go test prints without -v, stops at the first run that fails with
# its exit status, and ends with one line counting the skipped tests by
# reason (without the shared models of docs/testing.md, the cross-checks
# against models trained elsewhere skip; the rest run the built-in model).
TESTSUMMARY := $(BUILD)/testsummary
# RACE are the packages built on libp2p (their tests included): the
# networked ones, whose own code is concurrent, and those that use them
# (the command, the shards' fetches, jobs' records, the emulated links,
# the log's bridge to libp2p's). They run only under -race, and go vet
# runs under it too, so that libp2p and the rest of its world, most of
# what the suite compiles, are compiled once, for the race detector; the
# rest (PLAIN) need only the standard library and a few small modules
# without it. Each list starts with its longest tests, which go test
# starts first, so that two test binaries run side by side to the end.
RACE := ./train/collab/ ./node/ ./cmd/mycel/ ./train/allreduce/ ./p2p/blocks/ ./swarm/... \
	./p2p/... ./node/... ./train/jobs/ ./checkpoints/shards/ ./internal/netem/ ./internal/logging/
PLAIN = ./kernels/cpu/ $(filter-out $(shell $(GO) list $(RACE)),$(shell $(GO) list ./...))
# ALONE are the tests that read the whole machine's CPU (idle-only mode
# counts what other processes use): they run last, by themselves, while
# no other test binary runs beside them.
ALONE := ^TestIdleOnly$$
test: vet
	$(if $(PLAIN),,$(error go list found no packages to test))
	@mkdir -p $(BUILD)
	@$(GO) build -o $(TESTSUMMARY) ./internal/testsummary
	@./$(TESTSUMMARY) \
	  '$(GO) test -json -count=1 $(PLAIN)' \
	  '$(GO) test -json -count=1 -race -skip "$(ALONE)" $(RACE)' \
	  '$(GO) test -json -count=1 -tags noasm ./kernels/cpu/ ./kernels/... ./model/...' \
	  'MYCEL_ISA=avx2 $(GO) test -json -count=1 -skip ^TestConformance$$ ./kernels/cpu/ ./kernels/... ./model/' \
	  '$(GO) test -json -count=1 -race -run $(ALONE) ./node/'

# go vet type-checks each package against its dependencies compiled: under
# -race, those that the RACE tests use, so that they are compiled once.
vet:
	$(GO) vet -race ./...
	$(GO) vet -tags noasm ./kernels/...

# Short fuzzing runs of every parser and wire message (go test -fuzz runs
# one target at a time).
FUZZTIME ?= 20s
FUZZ_TARGETS := \
	./checkpoints:FuzzGGUF ./checkpoints:FuzzLlama2C \
	./checkpoints:FuzzParseSafeTensors ./checkpoints:FuzzHFConfig ./checkpoints:FuzzHFTokenizer ./p2p:FuzzParseSwarmKey \
	./checkpoints/shards:FuzzManifest ./checkpoints/shards:FuzzManifestV2 ./checkpoints/shards:FuzzPart \
	./checkpoints/datasets:FuzzManifest ./checkpoints/trainstate:FuzzManifest \
	./model/chat:FuzzRender \
	./model/tokenizer:FuzzParseLlama2C ./model/tokenizer:FuzzEncodeDecode ./model/tokenizer:FuzzPreTokenizers \
	./p2p/wire:FuzzReadFrame ./p2p/wire:FuzzDecodeTensor ./p2p/records:FuzzOpen \
	./p2p/blocks:FuzzBlocksRequest ./p2p/blocks:FuzzBlocksAnswer \
	./swarm:FuzzDecodeMessage ./swarm:FuzzOpenRecord ./swarm:FuzzExpertsRequest \
	./train:FuzzJob ./train:FuzzData ./train:FuzzCheckpoint \
	./train/allreduce:FuzzMessage ./train/allreduce:FuzzDequantize ./train/allreduce:FuzzPieces \
	./train/collab:FuzzMemberRecord ./train/jobs:FuzzOpen ./train/jobs:FuzzNodeRecord \
	./node/credit:FuzzMessage ./node/credit:FuzzRecord
fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; fn=$${t##*:}; echo "== $$pkg $$fn"; \
	  $(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s || exit 1; \
	done

# The 32-bit targets volunteers' small boards run (Raspberry Pi OS on
# armv7, 386): the binary must build there too.
cross:
	GOARCH=arm GOARM=7 $(GO) build -o /dev/null ./cmd/mycel
	GOARCH=386 $(GO) build -o /dev/null ./cmd/mycel

# Benchmarks: kernel microbenchmarks, model import and pull between two
# nodes next to a raw stream, then whole-model decode on synthetic
# stories110M-shaped models in each weight type with 1 and 2 threads.
bench: bench-go bench-models

bench-go:
	$(GO) test -run '^$$' -bench . -benchtime 1s ./kernels/...
	$(GO) test -run '^$$' -bench ImportPull -benchtime 1x ./node

# The swarm on loopback: per-hop cost of a 3-hop pipeline against one
# process, aggregate decode with 1, 4 and 16 streams, and failover time.
bench-swarm:
	$(GO) test -run '^$$' -bench 'PipelineDecode/stories110M' -benchtime 1x -count 3 ./swarm
	$(GO) test -run '^$$' -bench 'PipelineThroughput/threads=1' -benchtime 3x -count 3 ./swarm
	$(GO) test -run '^$$' -bench Failover -benchtime 5x -count 2 ./swarm

# Training: tokens/s and model-FLOPs utilisation of full fine-tuning and of
# LoRA on a Q4_0 base, stories15M-shaped, 1 and 2 threads (each run its own
# process, so that its peak memory is its own); then 4 peers on loopback
# training one job in sync and DiLoCo modes (bytes per step, final loss),
# and a peer joining a running group (docs/performance.md).
bench-train: build
	@for t in 1 2; do \
	  ./$(BIN) bench train --shape stories15M --method full --dtype f32 -t $$t || exit 1; \
	  ./$(BIN) bench train --shape stories15M --method lora --dtype q4_0 -t $$t || exit 1; \
	done
	$(GO) test -run '^$$' -bench Averaging -benchtime 1x -timeout 20m ./train/collab
	$(GO) test -run '^$$' -bench LateJoiner -benchtime 1x -count 3 ./train/collab

BENCH_SHAPE ?= stories110M
bench-models: build
	@mkdir -p $(BUILD)
	./$(BIN) bench kernels
	@for dt in f32 q8_0 q4_0; do \
	  f=$(BUILD)/synth-$(BENCH_SHAPE)-$$dt.gguf; \
	  [ -f $$f ] || ./$(BIN) models synth --shape $(BENCH_SHAPE) --dtype $$dt -o $$f || exit 1; \
	  for t in 1 2; do ./$(BIN) bench decode -m $$f --threads $$t || exit 1; done; \
	done

# The tables of docs/operations.md that come from the code: the settings
# of mycel node (its flags) and the node's metrics. The tests
# TestConfigDocumented and TestMetricsDocumented fail while they differ.
docs:
	$(GO) test ./cmd/mycel -run '^TestConfigDocumented$$' -count=1 -update
	$(GO) test ./node -run '^TestMetricsDocumented$$' -count=1 -update

clean:
	rm -rf bin $(BUILD)
