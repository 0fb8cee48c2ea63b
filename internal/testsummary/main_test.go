package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/mycel-net/mycel/internal/testmodels"
)

// The testdata files are recorded `go test -json -count=1` output of a
// small module: passing, failing, skipped and panicking tests, subtests,
// a package without tests (run.jsonl), and one that does not build
// (build.jsonl).

func summarizeFiles(t *testing.T, files ...string) string {
	t.Helper()
	var out bytes.Buffer
	s := newSummary(&out)
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.read(r); err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
	s.finish()
	return out.String()
}

func TestSummary(t *testing.T) {
	out := summarizeFiles(t, "testdata/run.jsonl", "testdata/build.jsonl")
	for _, want := range []string{
		// the package lines of go test without -v
		"FAIL\texample.com/tsdemo/a\t",
		"ok  \texample.com/tsdemo/b\t",
		"?   \texample.com/tsdemo/c\t[no test files]\n",
		"FAIL\texample.com/tsdemo/d\t",
		// failing tests in full: logs, multi-line messages, stdout
		"a_test.go:24: first line of a failure\n",
		"a_test.go:25: got 1, want 2\n        second line\n",
		"--- FAIL: TestSubs/three",
		"printed by the test\n",
		"a_test.go:31: broken\n",
		// a panic, with the test's output before it and the stack
		"d_test.go:6: before the panic\n",
		"panic: assignment to entry in nil map",
		"d_test.go:8",
		// a package that does not build
		"# example.com/tsdemo/e [example.com/tsdemo/e.test]\ne/e.go:3:12: undefined: undefined\n",
		"FAIL\texample.com/tsdemo/e [build failed]\n",
		"FAILED: TestSubs (example.com/tsdemo/a), TestFail (example.com/tsdemo/a), TestPanics (example.com/tsdemo/d)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, noise := range []string{"=== RUN", "quiet when passing", "--- PASS: TestPass"} {
		if strings.Contains(out, noise) {
			t.Errorf("output has %q, which go test without -v does not print", noise)
		}
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for _, l := range lines {
		if l == "PASS" {
			t.Error("output has a bare PASS line, which go test without -v does not print")
		}
	}
	last := lines[len(lines)-1]
	models, _ := testmodels.MissingSummary(testmodels.Missing("stories260K.bin", "/src/shared/models"))
	want := `5 tests skipped. 2: ` + models + `; 2: short; 1: no AVX2`
	if last != want {
		t.Errorf("last line\n got %s\nwant %s", last, want)
	}
	if !strings.Contains(last, "2: cross-checks against models trained elsewhere, whose files are not in /src/shared/models (docs/testing.md") {
		t.Errorf("last line %s does not say what the skipped tests are and how to get their models", last)
	}
}

// TestSkipsCountOnce: the same tests skipped in two runs (make test runs
// packages again under -race) count once.
func TestSkipsCountOnce(t *testing.T) {
	out := summarizeFiles(t, "testdata/run.jsonl", "testdata/run.jsonl")
	if !strings.Contains(out, "\n5 tests skipped. ") {
		t.Errorf("two runs of the same tests:\n%s", out)
	}
}

func TestNoSkips(t *testing.T) {
	var out bytes.Buffer
	s := newSummary(&out)
	s.read(strings.NewReader(`{"Action":"pass","Package":"p","Test":"TestA"}` + "\n" + `{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}` + "\n"))
	s.finish()
	if out.String() != "ok  \tp\t0.1s\nno test skipped\n" {
		t.Errorf("output %q", out.String())
	}
}

// TestRunExitStatus: a command's exit status is passed on, and its output
// summarized whether it failed or not.
func TestRunExitStatus(t *testing.T) {
	var out bytes.Buffer
	s := newSummary(&out)
	if code := s.run("cat testdata/run.jsonl"); code != 0 {
		t.Errorf("a command that succeeds: status %d", code)
	}
	if code := s.run("cat testdata/build.jsonl; exit 3"); code != 3 {
		t.Errorf("a command that exits 3: status %d", code)
	}
	if !strings.Contains(out.String(), "[build failed]") {
		t.Errorf("the failing command's output was not summarized:\n%s", out.String())
	}
}
