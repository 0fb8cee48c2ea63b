package train

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/mycel-net/mycel/kernels"
)

// A checkpoint file holds a trainer's whole state: the job, the step, the
// data cursor, and for every trained tensor its values and AdamW moments.
//
//	magic     8 bytes "MYCELCKP"
//	version   uint32 (1)
//	hdrLen    uint32, at most MaxCheckpointHeader
//	header    hdrLen bytes of JSON (CheckpointHeader)
//	tensors   for each header.Params entry: Len float32 values, then Len
//	          first moments, then Len second moments (little-endian)
//	crc       uint32: CRC-32C of everything before it
//
// A checkpoint of a DiLoCo group at the end of an outer round (header.Outer
// set) holds instead, for each tensor, the round's parameters and the outer
// optimizer's momentum: the state every peer of the group shares. The
// inner AdamW moments are each peer's own and are not in it.
//
// A DiLoCo member's inner state (header.Residual set) is a trainer's
// checkpoint with a fourth array per tensor: the error-feedback residual
// its quantised averaging carries to the next round. A member that is
// checked offers it so that another member can replay its round.
//
// A checkpoint is written to a temporary file, synced and renamed into
// place, so a file with a checkpoint's name is always whole; the CRC
// catches one damaged later.
const (
	checkpointMagic   = "MYCELCKP"
	checkpointVersion = 1
	// MaxCheckpointHeader bounds the JSON header a reader accepts.
	MaxCheckpointHeader = 16 << 20
	// checkpointExt is the file name extension of checkpoints.
	checkpointExt = ".ckpt"
)

// CheckpointHeader describes a checkpoint's contents.
type CheckpointHeader struct {
	Job      string        `json:"job"` // the job file, every key set
	Step     int           `json:"step"`
	Cursor   Cursor        `json:"cursor"`
	AdamStep int           `json:"adam_step"`
	Params   []ParamHeader `json:"params"`
	// Outer is set in a DiLoCo group's checkpoint: the outer optimizer's
	// settings; the tensors are values and outer momentum.
	Outer *OuterHeader `json:"outer,omitempty"`
	// Residual is set in a DiLoCo member's inner state: each tensor has a
	// fourth array, the error-feedback residual.
	Residual bool `json:"residual,omitempty"`
}

// OuterHeader is the outer optimizer of a DiLoCo checkpoint.
type OuterHeader struct {
	LR       float64 `json:"lr"`
	Momentum float64 `json:"momentum"`
	// Pending is set when the averaging runs a round behind the training:
	// the round whose change is still to be averaged.
	Pending *PendingRound `json:"pending,omitempty"`
}

// PendingRound is a DiLoCo round whose change the group has not yet
// averaged (the averaging runs behind the training): its members and its
// batches, which say whose work to train again if some of it does not
// arrive.
type PendingRound struct {
	Members []string `json:"members"`
	Batches [][]int  `json:"batches"`
}

// maxPendingMembers bounds the members of a pending round a checkpoint
// may name.
const maxPendingMembers = 1 << 16

// arrays is how many arrays of Len values each tensor has in the file.
func (h *CheckpointHeader) arrays() int {
	switch {
	case h.Outer != nil:
		return 2
	case h.Residual:
		return 4
	}
	return 3
}

// ParamHeader names one trained tensor and its length.
type ParamHeader struct {
	Name string `json:"name"`
	Len  int    `json:"len"`
}

// ErrBadCheckpoint marks a checkpoint that is damaged or belongs to
// another job.
var ErrBadCheckpoint = errors.New("bad checkpoint")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WriteCheckpoint writes the trainer's state to w.
func (t *Trainer) WriteCheckpoint(w io.Writer) error { return t.writeCheckpoint(w, nil, nil) }

// WriteInnerCheckpoint writes a DiLoCo member's inner state: the
// trainer's state (parameters, AdamW moments, step, cursor) and residual,
// the error feedback of its quantised averaging (one value per trained
// value).
func (t *Trainer) WriteInnerCheckpoint(w io.Writer, residual []float32) error {
	if len(residual) != VectorLen(t.Params) {
		return fmt.Errorf("train: residual of %d values for %d parameters", len(residual), VectorLen(t.Params))
	}
	return t.writeCheckpoint(w, nil, residual)
}

// RestoreInner sets the trainer's state from a DiLoCo member's inner
// state (WriteInnerCheckpoint) and returns its residual.
func (t *Trainer) RestoreInner(data []byte) ([]float32, error) {
	h, tensors, err := ReadCheckpoint(data)
	if err != nil {
		return nil, err
	}
	if !h.Residual {
		return nil, fmt.Errorf("%w: not a member's inner state (no residual)", ErrBadCheckpoint)
	}
	if err := t.restore(h, tensors); err != nil {
		return nil, err
	}
	residual := make([]float32, 0, VectorLen(t.Params))
	for _, ts := range tensors {
		residual = append(residual, ts[3]...)
	}
	return residual, nil
}

// WriteOuterCheckpoint writes the state a DiLoCo group shares at the end
// of an outer round: the job, step and cursor, the outer optimizer's
// parameters (o.Start) and momentum. The trainer's parameters must be
// o.Start, as Outer.Step leaves them.
func (t *Trainer) WriteOuterCheckpoint(w io.Writer, o *Outer) error {
	if len(o.Start) != VectorLen(t.Params) || len(o.V) != len(o.Start) {
		return fmt.Errorf("train: outer state of %d values for %d parameters", len(o.Start), VectorLen(t.Params))
	}
	return t.writeCheckpoint(w, o, nil)
}

func (t *Trainer) writeCheckpoint(w io.Writer, o *Outer, residual []float32) error {
	job, err := t.Job.Encode()
	if err != nil {
		return err
	}
	h := CheckpointHeader{Job: string(job), Step: t.Step, Cursor: t.Cursor, AdamStep: t.Opt.Step}
	if o != nil {
		h.AdamStep = 0
		h.Outer = &OuterHeader{LR: o.LR, Momentum: o.Momentum, Pending: o.Pending}
	}
	h.Residual = residual != nil
	for _, p := range t.Params {
		h.Params = append(h.Params, ParamHeader{Name: p.Name, Len: len(p.W)})
	}
	hdr, err := json.Marshal(h)
	if err != nil {
		return err
	}
	crc := crc32.New(castagnoli)
	out := io.MultiWriter(w, crc)
	var pre [16]byte
	copy(pre[:8], checkpointMagic)
	binary.LittleEndian.PutUint32(pre[8:], checkpointVersion)
	binary.LittleEndian.PutUint32(pre[12:], uint32(len(hdr)))
	if _, err := out.Write(pre[:]); err != nil {
		return err
	}
	if _, err := out.Write(hdr); err != nil {
		return err
	}
	at := 0
	for i, p := range t.Params {
		arrays := [][]float32{p.W, nil, nil}
		if o != nil {
			arrays = [][]float32{o.Start[at : at+len(p.W)], o.V[at : at+len(p.W)]}
		} else {
			arrays[1], arrays[2] = t.moments(i)
			if residual != nil {
				arrays = append(arrays, residual[at:at+len(p.W)])
			}
		}
		at += len(p.W)
		for _, s := range arrays {
			if _, err := out.Write(kernels.F32Bytes(s)); err != nil {
				return err
			}
		}
	}
	var tail [4]byte
	binary.LittleEndian.PutUint32(tail[:], crc.Sum32())
	_, err = w.Write(tail[:])
	return err
}

// moments returns parameter i's AdamW moments (zeros before the first
// update).
func (t *Trainer) moments(i int) (m, v []float32) {
	if t.Opt.M == nil {
		z := make([]float32, len(t.Params[i].W))
		return z, z
	}
	return t.Opt.M[i], t.Opt.V[i]
}

// ReadCheckpoint reads a checkpoint's header and tensors, checking its
// magic, version, lengths (against what is left of the data before any
// allocation) and CRC. Each tensor is its values and AdamW moments, or,
// in a DiLoCo checkpoint (h.Outer set), its values and outer momentum
// (the others nil); a member's inner state (h.Residual) adds the
// residual as the fourth.
func ReadCheckpoint(data []byte) (*CheckpointHeader, [][4][]float32, error) {
	h, rest, err := parseCheckpoint(data)
	if err != nil {
		return nil, nil, err
	}
	tensors := make([][4][]float32, 0, len(h.Params))
	for _, p := range h.Params {
		var ts [4][]float32
		for k := range h.arrays() {
			ts[k] = make([]float32, p.Len)
			copy(kernels.F32Bytes(ts[k]), rest[:4*p.Len])
			rest = rest[4*p.Len:]
		}
		tensors = append(tensors, ts)
	}
	return h, tensors, nil
}

// CheckCheckpoint checks a checkpoint as ReadCheckpoint does, without
// copying its tensors, and returns its header.
func CheckCheckpoint(data []byte) (*CheckpointHeader, error) {
	h, _, err := parseCheckpoint(data)
	return h, err
}

// parseCheckpoint checks a checkpoint and returns its header and its
// tensors' bytes, whose lengths match the header's.
func parseCheckpoint(data []byte) (*CheckpointHeader, []byte, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadCheckpoint, fmt.Sprintf(format, args...))
	}
	if len(data) < 20 {
		return nil, nil, bad("%d bytes, too short", len(data))
	}
	if string(data[:8]) != checkpointMagic {
		return nil, nil, bad("not a Mycel checkpoint (magic %q)", data[:8])
	}
	if v := binary.LittleEndian.Uint32(data[8:]); v != checkpointVersion {
		return nil, nil, bad("version %d, this build reads %d", v, checkpointVersion)
	}
	body, tail := data[:len(data)-4], data[len(data)-4:]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(tail); got != want {
		return nil, nil, bad("CRC %08x, file says %08x: the file is damaged or truncated", got, want)
	}
	hl := binary.LittleEndian.Uint32(data[12:])
	rest := body[16:]
	if hl > MaxCheckpointHeader || int(hl) > len(rest) {
		return nil, nil, bad("header of %d bytes in a file of %d", hl, len(data))
	}
	var h CheckpointHeader
	dec := json.NewDecoder(bytes.NewReader(rest[:hl]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, nil, bad("header: %v", err)
	}
	rest = rest[hl:]
	if h.Step < 0 || h.AdamStep < 0 || h.Cursor.Epoch < 0 || h.Cursor.Next < 0 || slices.ContainsFunc(h.Cursor.Redo, func(k int) bool { return k < 0 }) {
		return nil, nil, bad("negative step or cursor")
	}
	if h.Outer != nil && h.Residual {
		return nil, nil, bad("both an outer optimizer and a residual")
	}
	if o := h.Outer; o != nil && (!finite(o.LR) || !finite(o.Momentum) || h.AdamStep != 0) {
		return nil, nil, bad("outer optimizer lr %v, momentum %v, adam step %d", o.LR, o.Momentum, h.AdamStep)
	}
	left, stride := len(rest), 4*h.arrays()
	for _, p := range h.Params {
		if p.Len < 0 || p.Len > left/stride {
			return nil, nil, bad("tensor %s of %d values, %d bytes left", p.Name, p.Len, left)
		}
		left -= stride * p.Len
	}
	if left != 0 {
		return nil, nil, bad("%d bytes after the last tensor", left)
	}
	return &h, rest, nil
}

// Restore sets the trainer's state from a checkpoint of the same job (its
// job file must match, key for key) and the same trained tensors. From a
// DiLoCo checkpoint it takes the parameters and starts AdamW afresh.
func (t *Trainer) Restore(data []byte) error {
	_, err := t.RestoreOuter(data)
	return err
}

// RestoreOuter is Restore that also returns the outer optimizer of a
// DiLoCo checkpoint (nil for another), starting from the checkpoint's
// parameters and momentum.
func (t *Trainer) RestoreOuter(data []byte) (*Outer, error) {
	h, tensors, err := ReadCheckpoint(data)
	if err != nil {
		return nil, err
	}
	if err := t.restore(h, tensors); err != nil {
		return nil, err
	}
	if h.Outer == nil {
		return nil, nil
	}
	o := NewOuter(t.Params, h.Outer.LR, h.Outer.Momentum)
	o.Pending = h.Outer.Pending
	at := 0
	for _, ts := range tensors {
		at += copy(o.V[at:], ts[1])
	}
	return o, nil
}

func (t *Trainer) restore(h *CheckpointHeader, tensors [][4][]float32) error {
	seqs := slices.Clone(h.Cursor.Redo)
	if h.Outer != nil && h.Outer.Pending != nil {
		pr := h.Outer.Pending
		if len(pr.Members) == 0 || len(pr.Members) > maxPendingMembers {
			return fmt.Errorf("%w: a pending round of %d members", ErrBadCheckpoint, len(pr.Members))
		}
		for _, b := range pr.Batches {
			seqs = append(seqs, b...)
		}
	}
	for _, k := range seqs {
		if k < 0 || len(t.trainSet) > 0 && k >= len(t.trainSet) {
			return fmt.Errorf("%w: sequence %d to redo, of a training set of %d", ErrBadCheckpoint, k, len(t.trainSet))
		}
	}
	job, err := t.Job.Encode()
	if err != nil {
		return err
	}
	// Compared as parsed, so that a checkpoint written before a key was
	// added (which takes its default) still restores.
	if h.Job != string(job) {
		hj, err := ParseJob([]byte(h.Job))
		if err != nil {
			return fmt.Errorf("%w: its job file: %w", ErrBadCheckpoint, err)
		}
		if again, err := hj.Encode(); err != nil || string(again) != string(job) {
			return fmt.Errorf("%w: it belongs to another job (job files differ)", ErrBadCheckpoint)
		}
	}
	if len(h.Params) != len(t.Params) {
		return fmt.Errorf("%w: %d tensors, this job trains %d", ErrBadCheckpoint, len(h.Params), len(t.Params))
	}
	for i, p := range t.Params {
		if h.Params[i].Name != p.Name || h.Params[i].Len != len(p.W) {
			return fmt.Errorf("%w: tensor %d is %s of %d values, this job trains %s of %d", ErrBadCheckpoint, i, h.Params[i].Name, h.Params[i].Len, p.Name, len(p.W))
		}
	}
	for i, ts := range tensors {
		for _, s := range ts {
			for _, v := range s {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					return fmt.Errorf("%w: tensor %s holds %v", ErrBadCheckpoint, h.Params[i].Name, v)
				}
			}
		}
	}
	t.Opt.M, t.Opt.V = make([][]float32, len(t.Params)), make([][]float32, len(t.Params))
	for i, p := range t.Params {
		copy(p.W, tensors[i][0])
		t.Opt.M[i], t.Opt.V[i] = tensors[i][1], tensors[i][2]
	}
	if h.AdamStep == 0 || h.Outer != nil {
		t.Opt.M, t.Opt.V = nil, nil
	}
	t.Opt.Step, t.Step, t.Cursor = h.AdamStep, h.Step, h.Cursor
	t.shuffle()
	return nil
}

// CheckpointName is the file name of the checkpoint after step.
func CheckpointName(step int) string { return fmt.Sprintf("step-%08d%s", step, checkpointExt) }

// SaveCheckpoint writes the trainer's state into dir as
// CheckpointName(t.Step): to a temporary file first, synced, then renamed,
// so that no half-written file ever carries a checkpoint's name. It
// returns the path.
func (t *Trainer) SaveCheckpoint(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	final := filepath.Join(dir, CheckpointName(t.Step))
	f, err := os.CreateTemp(dir, ".tmp-*"+checkpointExt)
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	if err := t.WriteCheckpoint(f); err != nil {
		f.Close()
		return "", fmt.Errorf("checkpoint: write %s: %w", final, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", fmt.Errorf("checkpoint: sync %s: %w", final, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return final, nil
}

// LatestCheckpoint is the path of the checkpoint of the highest step in
// dir ("" if none). Temporary files are never taken.
func LatestCheckpoint(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("checkpoints in %s: %w", dir, err)
	}
	var names []string
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, "step-") && strings.HasSuffix(n, checkpointExt) && !e.IsDir() {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "", nil
	}
	sort.Strings(names)
	return filepath.Join(dir, names[len(names)-1]), nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
