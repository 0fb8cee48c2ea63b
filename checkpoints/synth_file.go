package checkpoints

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mycel-net/mycel/kernels"
)

// SynthFile writes Synth's model to path. The file appears under its name
// only once it is complete: it is written beside it and renamed.
func SynthFile(path, shape string, dt kernels.DType, seed uint64) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".synth-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := Synth(bw, shape, dt, seed); err != nil {
		tmp.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}
