package testmodels

import (
	"os"
	"path/filepath"
	"testing"
)

// BuiltinFile is the built-in model's path in the repository: a small
// model trained from scratch on generated stories, with its vocabulary
// inside (docs/ourmodel.md; rebuilt by make tales).
const BuiltinFile = "models/tales.gguf"

// BuiltinPrompt is the prompt the built-in model's tests and demo start
// from.
const BuiltinPrompt = "Once upon a time"

// Builtin returns the path of the built-in model. It is part of the
// repository, so it never skips: a missing file fails the test.
func Builtin(tb testing.TB) string {
	tb.Helper()
	root, err := repoRoot()
	if err != nil {
		tb.Fatalf("built-in model: %v", err)
	}
	p := filepath.Join(root, BuiltinFile)
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("built-in model %s: %v (it is part of the repository; make tales rebuilds it)", BuiltinFile, err)
	}
	return p
}

// repoRoot is the folder of go.mod above the working directory.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", os.ErrNotExist
		}
	}
}
