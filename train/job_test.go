package train

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseJobDefaults(t *testing.T) {
	j, err := ParseJob([]byte("model = \"stories260K\"\ndata = \"story.txt\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Job{Model: "stories260K", Data: "story.txt", Method: MethodLoRA, LoRARank: 8, LoRAAlpha: 16,
		LoRATargets: []string{"q", "k", "v", "o"}, Steps: 1000, LR: 1e-3, Warmup: 50, WeightDecay: 0.01, GradClip: 1,
		BatchTokens: 4096, SeqLen: 256, Seed: 1, EvalFraction: 0.05, CheckpointEvery: 100,
		Averaging: AveragingSync, InnerSteps: 100, OuterLR: 0.7, OuterMomentum: 0.9, Encoding: EncodingInt8, MinPeers: 1, Verify: 0.05}
	if !reflect.DeepEqual(j, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", j, want)
	}
	if !reflect.DeepEqual(DefaultJob("stories260K", "story.txt"), want) {
		t.Error("DefaultJob differs from a file with only model and data")
	}
	full, err := ParseJob([]byte("model = \"m\"\ndata = \"d\"\nmethod = \"full\"\nsteps = 40\n"))
	if err != nil {
		t.Fatal(err)
	}
	if full.LR != 1e-4 || full.Warmup != 2 {
		t.Errorf("full fine-tuning defaults: lr %v warmup %d", full.LR, full.Warmup)
	}
	// A key set to its zero value is kept, not replaced by the default.
	z, err := ParseJob([]byte("model = \"m\"\ndata = \"d\"\nwarmup = 0\ngrad_clip = 0.0\ncheckpoint_every = 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if z.Warmup != 0 || z.GradClip != 0 || z.CheckpointEvery != 0 {
		t.Errorf("explicit zeros replaced: %+v", z)
	}
	m, err := ParseJob([]byte("model = \"m\"\ndata = \"d\"\nouter_momentum = 0.0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.OuterMomentum != 0 || m.OuterLR != 0.7 {
		t.Errorf("explicit zero momentum: %+v", m)
	}
}

func TestParseJobRefuses(t *testing.T) {
	base := "model = \"m\"\ndata = \"d\"\n"
	for _, c := range []struct{ file, key string }{
		{"data = \"d\"\n", "model"},
		{"model = \"m\"\n", "data"},
		{base + "lerning_rate = 0.1\n", "lerning_rate"},
		{base + "method = \"qlora\"\n", "method"},
		{base + "lora_rank = 0\n", "lora_rank"},
		{base + "lora_rank = 1000\n", "lora_rank"},
		{base + "lora_alpha = -1.0\n", "lora_alpha"},
		{base + "lora_alpha = nan\n", "lora_alpha"},
		{base + "lora_targets = []\n", "lora_targets"},
		{base + "lora_targets = [\"q\", \"wq\"]\n", "lora_targets"},
		{base + "lora_targets = [\"q\", \"q\"]\n", "lora_targets"},
		{base + "steps = 0\n", "steps"},
		{base + "lr = 0.0\n", "lr"},
		{base + "lr = 2.0\n", "lr"},
		{base + "lr = inf\n", "lr"},
		{base + "steps = 10\nwarmup = 11\n", "warmup"},
		{base + "warmup = -1\n", "warmup"},
		{base + "weight_decay = 1.5\n", "weight_decay"},
		{base + "grad_clip = -1.0\n", "grad_clip"},
		{base + "seq_len = 1\n", "seq_len"},
		{base + "seq_len = 256\nbatch_tokens = 300\n", "batch_tokens"},
		{base + "seq_len = 256\nbatch_tokens = 128\n", "batch_tokens"},
		{base + "eval_fraction = 0.9\n", "eval_fraction"},
		{base + "steps = 10\ncheckpoint_every = 20\n", "checkpoint_every"},
		{base + "steps = \"many\"\n", "steps"},
		{base + "averaging = \"async\"\n", "averaging"},
		{base + "averaging = \"\"\n", "averaging"},
		{base + "inner_steps = 0\n", "inner_steps"},
		{base + "inner_steps = 100001\n", "inner_steps"},
		{base + "outer_lr = 0.0\n", "outer_lr"},
		{base + "outer_lr = 10.5\n", "outer_lr"},
		{base + "outer_lr = nan\n", "outer_lr"},
		{base + "outer_momentum = 1.0\n", "outer_momentum"},
		{base + "outer_momentum = -0.1\n", "outer_momentum"},
		{base + "encoding = \"int4\"\n", "encoding"},
		{base + "min_peers = 0\n", "min_peers"},
		{base + "min_peers = 1001\n", "min_peers"},
		{base + "verify = -0.1\n", "verify"},
		{base + "overlap = true\n", "overlap"},
		{base + "verify = 1.5\n", "verify"},
		{base + "[section]\nx = 1\n", "section"},
	} {
		_, err := ParseJob([]byte(c.file))
		if err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("job file %q: error %v, want one naming %q", c.file, err, c.key)
		}
	}
}

// With overlap the outer momentum defaults lower; one the file sets is
// kept.
func TestJobOverlapMomentum(t *testing.T) {
	base := "model = \"m\"\ndata = \"d\"\naveraging = \"diloco\"\noverlap = true\n"
	j, err := ParseJob([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if !j.Overlap || j.OuterMomentum != DefaultOverlapMomentum || j.OuterLR != DefaultOuterLR {
		t.Errorf("overlap %v, outer lr %v, momentum %v", j.Overlap, j.OuterLR, j.OuterMomentum)
	}
	if j, err = ParseJob([]byte(base + "outer_momentum = 0.95\n")); err != nil || j.OuterMomentum != 0.95 {
		t.Errorf("momentum set to 0.95: %v, %v", j.OuterMomentum, err)
	}
}

func TestJobEncodeRoundTrip(t *testing.T) {
	j := DefaultJob("bafy-model", "bafy-data")
	j.Method, j.Steps, j.CheckpointEvery, j.LR, j.LoRATargets, j.Seed = MethodLoRA, 77, 7, 0.0025, []string{"q", "v", "down"}, 1<<40
	j.Averaging, j.InnerSteps, j.OuterLR, j.OuterMomentum, j.Encoding, j.MinPeers = AveragingDiLoCo, 25, 0.5, 0, EncodingQ4, 3
	j.Overlap = true
	j.Verify = 0
	b, err := j.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseJob(b)
	if err != nil {
		t.Fatalf("encoded job does not parse: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(back, j) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, j)
	}
}

// The documentation's table of keys is the one Keys makes, and every
// field of Job is a documented key.
func TestJobKeysDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/training.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), KeysTable()) {
		t.Errorf("docs/training.md does not hold the table of job keys; put this in it:\n%s", KeysTable())
	}
	typ := reflect.TypeFor[Job]()
	if typ.NumField() != len(Keys) {
		t.Fatalf("Job has %d fields, Keys documents %d", typ.NumField(), len(Keys))
	}
	for i := range typ.NumField() {
		if tag := typ.Field(i).Tag.Get("toml"); tag != Keys[i].Name {
			t.Errorf("field %s has key %q, Keys[%d] documents %q", typ.Field(i).Name, tag, i, Keys[i].Name)
		}
	}
}

func FuzzJob(f *testing.F) {
	f.Add([]byte("model = \"m\"\ndata = \"d\"\n"))
	f.Add([]byte("model = \"m\"\ndata = \"d\"\nmethod = \"full\"\nsteps = 3\nwarmup = 1\nlora_targets = [\"q\"]\n"))
	f.Add([]byte("model = 1\n[x]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := ParseJob(b)
		if err != nil {
			return
		}
		// What parses is valid, and survives a round trip unchanged.
		if err := j.Validate(); err != nil {
			t.Fatalf("parsed job invalid: %v", err)
		}
		enc, err := j.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseJob(enc)
		if err != nil {
			t.Fatalf("re-encoded job does not parse: %v\n%s", err, enc)
		}
		if !reflect.DeepEqual(back, j) {
			t.Fatalf("round trip changed the job:\n%+v\n%+v", j, back)
		}
	})
}
