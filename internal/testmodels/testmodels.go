// Package testmodels finds the real model files that tests run against.
//
// The files live outside the repository: in ../shared/models next to the
// checkout by default, or wherever MYCEL_TEST_MODELS points. Where they are
// absent a test skips with a line saying how to get them, except under
// CI=true, where absence is a failure.
package testmodels

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// EnvVar names the environment variable that overrides the models folder.
const EnvVar = "MYCEL_TEST_MODELS"

var (
	dirOnce sync.Once
	dir     string
)

// Dir returns the models folder, whether or not it exists.
func Dir() string {
	dirOnce.Do(func() {
		if d := os.Getenv(EnvVar); d != "" {
			dir = d
			return
		}
		wd, err := os.Getwd()
		if err != nil {
			dir = filepath.Join("..", "shared", "models")
			return
		}
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dir = filepath.Join(filepath.Dir(d), "shared", "models")
				return
			}
			if filepath.Dir(d) == d {
				dir = filepath.Join(wd, "..", "shared", "models")
				return
			}
		}
	})
	return dir
}

// Path returns the path of the named model file (relative to the models
// folder, e.g. "stories260K.bin" or "tokenizers/qwen3-tokenizer-random.gguf").
// If the file is missing the test is skipped, or fails when CI=true.
func Path(tb testing.TB, name string) string {
	tb.Helper()
	p := filepath.Join(Dir(), name)
	if _, err := os.Stat(p); err != nil {
		msg := "test model " + name + " not found in " + Dir() +
			": put the Mycel test models there (see docs/testing.md) or set " + EnvVar + " to their folder"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return p
}
