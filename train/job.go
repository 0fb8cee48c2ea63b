package train

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Methods of fine-tuning a job may ask for.
const (
	// MethodLoRA trains low-rank adapters beside frozen base weights (on a
	// quantized base: QLoRA).
	MethodLoRA = "lora"
	// MethodFull trains every weight, kept in float32.
	MethodFull = "full"
)

// Ways the peers training a job together on the swarm average their work.
const (
	// AveragingSync averages the gradients of every optimizer step.
	AveragingSync = "sync"
	// AveragingDiLoCo takes InnerSteps local steps, then averages the
	// change of the parameters and applies it with an outer Nesterov
	// momentum step (OuterLR, OuterMomentum).
	AveragingDiLoCo = "diloco"
)

// Encodings of what travels in DiLoCo's averaging.
const (
	EncodingF32  = "f32"
	EncodingInt8 = "int8"
	EncodingQ4   = "q4"
)

var encodings = []string{EncodingF32, EncodingInt8, EncodingQ4}

// LoRA targets: the matrices of a block an adapter may sit beside.
var loraTargets = []string{"q", "k", "v", "o", "gate", "up", "down"}

// Job is a fine-tuning job as a job file (TOML) describes it. The same file
// runs on one machine (`mycel train run`) and, published, on the swarm.
type Job struct {
	// Model is the base model: a CID, a name the node knows, or a file.
	Model string `toml:"model"`
	// Data is the data set: a CID or a file.
	Data string `toml:"data"`
	// Method is MethodLoRA or MethodFull.
	Method string `toml:"method"`
	// LoRARank and LoRAAlpha shape the adapters: ΔW = (alpha/rank)·B·A.
	LoRARank  int     `toml:"lora_rank"`
	LoRAAlpha float64 `toml:"lora_alpha"`
	// LoRATargets names the matrices adapted in every block.
	LoRATargets []string `toml:"lora_targets"`
	// Steps is the number of optimizer steps.
	Steps int `toml:"steps"`
	// LR is the peak learning rate, reached after Warmup steps and then
	// decayed along a cosine to a tenth of it at the last step.
	LR     float64 `toml:"lr"`
	Warmup int     `toml:"warmup"`
	// WeightDecay is AdamW's decoupled weight decay.
	WeightDecay float64 `toml:"weight_decay"`
	// GradClip bounds the global gradient norm (0: no clipping).
	GradClip float64 `toml:"grad_clip"`
	// BatchTokens is the tokens of one optimizer step, a whole number of
	// sequences of SeqLen tokens; they may run as several accumulated
	// micro-batches.
	BatchTokens int `toml:"batch_tokens"`
	// SeqLen is the length of one training sequence.
	SeqLen int `toml:"seq_len"`
	// Seed drives every random choice: adapter initialisation, the order
	// of the examples and the evaluation split.
	Seed uint64 `toml:"seed"`
	// EvalFraction of the examples is held out to measure the loss on.
	EvalFraction float64 `toml:"eval_fraction"`
	// CheckpointEvery is how many steps lie between checkpoints (0: only
	// at the end).
	CheckpointEvery int `toml:"checkpoint_every"`

	// The keys below shape training together on the swarm; one machine
	// (`mycel train run`) ignores them.

	// Averaging is AveragingSync or AveragingDiLoCo.
	Averaging string `toml:"averaging"`
	// InnerSteps is DiLoCo's local steps per round.
	InnerSteps int `toml:"inner_steps"`
	// OuterLR and OuterMomentum set DiLoCo's outer Nesterov step.
	OuterLR       float64 `toml:"outer_lr"`
	OuterMomentum float64 `toml:"outer_momentum"`
	// Encoding is what travels in DiLoCo's averaging: EncodingF32,
	// EncodingInt8 or EncodingQ4 (with error feedback).
	Encoding string `toml:"encoding"`
	// Overlap runs DiLoCo's averaging of a round's change while the next
	// round's inner steps train, and applies it one round late.
	Overlap bool `toml:"overlap"`
	// MinPeers is the fewest members a round starts with.
	MinPeers int `toml:"min_peers"`
	// Verify is the share of the members' contributions that another
	// member recomputes (sync: the same share of the batch; DiLoCo: the
	// member's inner steps replayed from its announced inner state); one
	// found different gets its sender left out of the job. 0: none.
	Verify float64 `toml:"verify"`
}

// Defaults of DiLoCo's outer step: the DiLoCo papers' learning rate and
// Nesterov momentum, and a lower momentum when the averaging overlaps the
// next round (the change lands a round late, and high momentum then
// overshoots: docs/performance.md).
const (
	DefaultOuterLR         = 0.7
	DefaultOuterMomentum   = 0.9
	DefaultOverlapMomentum = 0.7
)

// Key documents one job file key: its default and its range. Keys is the
// one source of both, for the code and the documentation.
type Key struct {
	Name    string
	Default string
	Doc     string
}

// Keys lists every job file key in the order the documentation shows them.
var Keys = []Key{
	{"model", "(required)", "base model: a CID, a model name the node knows, or a GGUF / llama2.c file"},
	{"data", "(required)", "data set: a CID or a file (plain text, or JSON lines with `text`, or with `prompt` and `completion`)"},
	{"method", `"lora"`, `"lora" (adapters beside frozen weights; QLoRA on a quantized base) or "full" (every weight, in f32)`},
	{"lora_rank", "8", "rank of each adapter, 1 to 256"},
	{"lora_alpha", "16", "adapter scale numerator: ΔW = (alpha/rank)·B·A; above 0, at most 10000"},
	{"lora_targets", `["q", "k", "v", "o"]`, `matrices adapted in every block: any of "q", "k", "v", "o" (attention) and "gate", "up", "down" (feed-forward)`},
	{"steps", "1000", "optimizer steps, 1 to 10000000"},
	{"lr", "0.001 (lora), 0.0001 (full)", "peak learning rate, above 0, at most 1"},
	{"warmup", "steps/20", "steps of linear warmup, then a cosine down to lr/10 at the last step; 0 to steps"},
	{"weight_decay", "0.01", "AdamW decoupled weight decay, 0 to 1"},
	{"grad_clip", "1.0", "largest global gradient norm (0: no clipping)"},
	{"batch_tokens", "4096", "tokens per optimizer step: a whole number of sequences of seq_len tokens"},
	{"seq_len", "256", "tokens per training sequence, 2 to 1048576 and at most the model's context"},
	{"seed", "1", "seed of every random choice (adapter init, example order, evaluation split)"},
	{"eval_fraction", "0.05", "share of the examples held out for the evaluation loss, 0 to 0.5"},
	{"checkpoint_every", "100 (at most steps)", "steps between checkpoints (0: only at the end)"},
	{"averaging", `"sync"`, `on the swarm: "sync" (average every step's gradients) or "diloco" (average the change after inner_steps local steps); one machine ignores it`},
	{"inner_steps", "100", "DiLoCo's local steps per round, 1 to 100000"},
	{"outer_lr", "0.7", "DiLoCo's outer learning rate, above 0, at most 10"},
	{"outer_momentum", "0.9 (0.7 with overlap)", "DiLoCo's outer Nesterov momentum, 0 to below 1"},
	{"encoding", `"int8"`, `what travels in DiLoCo's averaging: "f32", "int8" or "q4" (4-bit), the quantized ones with error feedback`},
	{"overlap", "false", "DiLoCo: average each round's change while the next round trains (from where the member's own change takes the parameters) and apply it a round late, so that the link's time hides behind compute"},
	{"min_peers", "1", "fewest members a round on the swarm starts with, 1 to 1000"},
	{"verify", "0.05", "share of the members' contributions another member recomputes (sync, or DiLoCo by replaying its inner steps; a peer whose work differs is left out of the job), 0 (none) to 1"},
}

// ParseJob reads a job file. Unknown keys and values out of range are
// refused, naming the key; keys left out take their defaults.
func ParseJob(data []byte) (*Job, error) {
	var j Job
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&j)
	if err != nil {
		return nil, fmt.Errorf("job file: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		names := make([]string, len(und))
		for i, k := range und {
			names[i] = k.String()
		}
		sort.Strings(names)
		return nil, fmt.Errorf("job file: unknown key %q (known keys: %s)", names[0], keyNames())
	}
	j.fill(func(k string) bool { return md.IsDefined(k) })
	if err := j.Validate(); err != nil {
		return nil, err
	}
	return &j, nil
}

// LoadJob reads and parses the job file at path.
func LoadJob(path string) (*Job, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("job file: %w", err)
	}
	j, err := ParseJob(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return j, nil
}

func keyNames() string {
	names := make([]string, len(Keys))
	for i, k := range Keys {
		names[i] = k.Name
	}
	return strings.Join(names, ", ")
}

// fill sets the defaults of the keys the file left out (defined says
// whether the file set a key).
func (j *Job) fill(defined func(string) bool) {
	if !defined("method") {
		j.Method = MethodLoRA
	}
	if !defined("lora_rank") {
		j.LoRARank = 8
	}
	if !defined("lora_alpha") {
		j.LoRAAlpha = 16
	}
	if !defined("lora_targets") {
		j.LoRATargets = []string{"q", "k", "v", "o"}
	}
	if !defined("steps") {
		j.Steps = 1000
	}
	if !defined("lr") {
		j.LR = 1e-3
		if j.Method == MethodFull {
			j.LR = 1e-4
		}
	}
	if !defined("warmup") {
		j.Warmup = j.Steps / 20
	}
	if !defined("weight_decay") {
		j.WeightDecay = 0.01
	}
	if !defined("grad_clip") {
		j.GradClip = 1
	}
	if !defined("batch_tokens") {
		j.BatchTokens = 4096
	}
	if !defined("seq_len") {
		j.SeqLen = 256
	}
	if !defined("seed") {
		j.Seed = 1
	}
	if !defined("eval_fraction") {
		j.EvalFraction = 0.05
	}
	if !defined("checkpoint_every") {
		j.CheckpointEvery = min(100, j.Steps)
	}
	if !defined("averaging") {
		j.Averaging = AveragingSync
	}
	if !defined("inner_steps") {
		j.InnerSteps = 100
	}
	if !defined("outer_lr") {
		j.OuterLR = DefaultOuterLR
	}
	if !defined("outer_momentum") {
		j.OuterMomentum = DefaultOuterMomentum
		if j.Overlap {
			j.OuterMomentum = DefaultOverlapMomentum
		}
	}
	if !defined("encoding") {
		j.Encoding = EncodingInt8
	}
	if !defined("min_peers") {
		j.MinPeers = 1
	}
	if !defined("verify") {
		j.Verify = 0.05
	}
}

// DefaultJob is a job with every default, for model and data.
func DefaultJob(model, data string) *Job {
	j := &Job{Model: model, Data: data}
	j.fill(func(string) bool { return false })
	return j
}

// Validate checks every key's range, naming the first key out of range.
func (j *Job) Validate() error {
	bad := func(key string, format string, args ...any) error {
		return fmt.Errorf("job file: %s: %s", key, fmt.Sprintf(format, args...))
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case strings.TrimSpace(j.Model) == "":
		return bad("model", "missing: name the base model (a CID, a name or a file)")
	case strings.TrimSpace(j.Data) == "":
		return bad("data", "missing: name the data set (a CID or a file)")
	case j.Method != MethodLoRA && j.Method != MethodFull:
		return bad("method", "%q: want %q or %q", j.Method, MethodLoRA, MethodFull)
	case j.LoRARank < 1 || j.LoRARank > 256:
		return bad("lora_rank", "%d: want 1 to 256", j.LoRARank)
	case !finite(j.LoRAAlpha) || j.LoRAAlpha <= 0 || j.LoRAAlpha > 1e4:
		return bad("lora_alpha", "%v: want above 0 and at most 10000", j.LoRAAlpha)
	case j.Steps < 1 || j.Steps > 1e7:
		return bad("steps", "%d: want 1 to 10000000", j.Steps)
	case !finite(j.LR) || j.LR <= 0 || j.LR > 1:
		return bad("lr", "%v: want above 0 and at most 1", j.LR)
	case j.Warmup < 0 || j.Warmup > j.Steps:
		return bad("warmup", "%d: want 0 to steps (%d)", j.Warmup, j.Steps)
	case !finite(j.WeightDecay) || j.WeightDecay < 0 || j.WeightDecay > 1:
		return bad("weight_decay", "%v: want 0 to 1", j.WeightDecay)
	case !finite(j.GradClip) || j.GradClip < 0:
		return bad("grad_clip", "%v: want 0 (off) or a positive norm", j.GradClip)
	case j.SeqLen < 2 || j.SeqLen > 1<<20:
		return bad("seq_len", "%d: want 2 to 1048576", j.SeqLen)
	case j.BatchTokens < j.SeqLen || j.BatchTokens%j.SeqLen != 0 || j.BatchTokens > 1<<26:
		return bad("batch_tokens", "%d: want a whole number of sequences of seq_len (%d) tokens, at most 67108864", j.BatchTokens, j.SeqLen)
	case !finite(j.EvalFraction) || j.EvalFraction < 0 || j.EvalFraction > 0.5:
		return bad("eval_fraction", "%v: want 0 to 0.5", j.EvalFraction)
	case j.CheckpointEvery < 0 || j.CheckpointEvery > j.Steps:
		return bad("checkpoint_every", "%d: want 0 (only at the end) to steps (%d)", j.CheckpointEvery, j.Steps)
	case j.Averaging != AveragingSync && j.Averaging != AveragingDiLoCo:
		return bad("averaging", "%q: want %q or %q", j.Averaging, AveragingSync, AveragingDiLoCo)
	case j.Overlap && j.Averaging != AveragingDiLoCo:
		return bad("overlap", "true with averaging %q: only DiLoCo's rounds overlap their averaging", j.Averaging)
	case j.InnerSteps < 1 || j.InnerSteps > 100000:
		return bad("inner_steps", "%d: want 1 to 100000", j.InnerSteps)
	case !finite(j.OuterLR) || j.OuterLR <= 0 || j.OuterLR > 10:
		return bad("outer_lr", "%v: want above 0 and at most 10", j.OuterLR)
	case !finite(j.OuterMomentum) || j.OuterMomentum < 0 || j.OuterMomentum >= 1:
		return bad("outer_momentum", "%v: want 0 to below 1", j.OuterMomentum)
	case !slices.Contains(encodings, j.Encoding):
		return bad("encoding", "%q: want any of %s", j.Encoding, strings.Join(encodings, ", "))
	case j.MinPeers < 1 || j.MinPeers > 1000:
		return bad("min_peers", "%d: want 1 to 1000", j.MinPeers)
	case !finite(j.Verify) || j.Verify < 0 || j.Verify > 1:
		return bad("verify", "%v: want 0 to 1", j.Verify)
	}
	if j.Method == MethodLoRA {
		if len(j.LoRATargets) == 0 {
			return bad("lora_targets", "empty: name at least one of %s", strings.Join(loraTargets, ", "))
		}
		seen := map[string]bool{}
		for _, t := range j.LoRATargets {
			if !slices.Contains(loraTargets, t) {
				return bad("lora_targets", "%q: want any of %s", t, strings.Join(loraTargets, ", "))
			}
			if seen[t] {
				return bad("lora_targets", "%q given twice", t)
			}
			seen[t] = true
		}
	}
	return nil
}

// Sequences is the number of sequences of one optimizer step.
func (j *Job) Sequences() int { return j.BatchTokens / j.SeqLen }

// KeysTable is the documentation's table of job file keys, made from Keys.
func KeysTable() string {
	var b strings.Builder
	b.WriteString("| key | default | meaning |\n| --- | --- | --- |\n")
	for _, k := range Keys {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", k.Name, k.Default, k.Doc)
	}
	return b.String()
}

// Encode writes the job as a job file with every key set, in Keys order:
// the form a job is published and checkpointed in.
func (j *Job) Encode() ([]byte, error) {
	var b bytes.Buffer
	enc := toml.NewEncoder(&b)
	if err := enc.Encode(j); err != nil {
		return nil, fmt.Errorf("encode job: %w", err)
	}
	return b.Bytes(), nil
}
