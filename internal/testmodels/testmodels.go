// Package testmodels finds the model files that tests run against.
//
// Most tests run the built-in model, which is part of the repository
// (Builtin). The others are cross-checks against models trained and files
// written elsewhere: stories260K's reference outputs, llama2.c's and
// llama.cpp's files, the Llama 2 and Qwen3 vocabularies with their
// reference encodings. Those files live outside the repository: in
// ../shared/models next to the checkout by default, or wherever
// MYCEL_TEST_MODELS points (Path). Where they are absent a test skips with
// a line saying so and how to get them (Missing), except under CI=true,
// where absence is a failure; internal/testsummary counts those skips as
// one reason (MissingSummary).
package testmodels

import (
	"os"
	"path/filepath"
	"regexp"
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
		msg := Missing(name, Dir())
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return p
}

// getThem says where the shared test models come from.
const getThem = `docs/testing.md, "Real model files", says where to get them, or set ` + EnvVar + ` to their folder`

// Missing is the message of a test that skips because the shared test
// model name is not in dir.
func Missing(name, dir string) string {
	return "test model " + name + " not found in " + dir + ": a cross-check against models trained elsewhere; " + getThem
}

// missingRE matches Missing's messages.
var missingRE = regexp.MustCompile(`^test model \S+ not found in (\S+): a cross-check against models trained elsewhere; `)

// MissingSummary is the reason under which a summary counts a skip whose
// message is Missing's (ok true), all the files in one folder together.
func MissingSummary(reason string) (summary string, ok bool) {
	m := missingRE.FindStringSubmatch(reason)
	if m == nil {
		return "", false
	}
	return "cross-checks against models trained elsewhere, whose files are not in " + m[1] + " (" + getThem + ")", true
}
