package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mycel models convert refuses a directory that is not a Hugging Face
// model, saying so, and leaves no output file behind; run -m on such a
// directory says the same.
func TestConvertRefusesNonModel(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(t.TempDir(), "m.gguf")
	if _, _, err := mycel(t, "models", "convert", dir, "-o", out); err == nil || !strings.Contains(err.Error(), "not a Hugging Face model directory") {
		t.Errorf("convert of an empty directory: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output file after a failed convert: %v", err)
	}
	if _, _, err := mycel(t, "models", "convert", dir); err == nil || !strings.Contains(err.Error(), "-o") {
		t.Errorf("convert without -o: %v", err)
	}
	if _, _, err := mycel(t, "models", "convert", dir, "-o", out, "--dtype", "q3"); err == nil || !strings.Contains(err.Error(), "--dtype") {
		t.Errorf("convert with --dtype q3: %v", err)
	}
	if _, _, err := mycel(t, "run", "-m", dir, "-n", "4", "Hello"); err == nil || !strings.Contains(err.Error(), "not a Hugging Face model directory") {
		t.Errorf("run -m on an empty directory: %v", err)
	}
}
