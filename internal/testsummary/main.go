// Command testsummary runs `go test -json` command lines one after another
// and prints what `go test` prints without -v: a line per package (ok,
// FAIL, no test files), build errors, and the whole output of every test
// that failed. At the end it prints one line counting the tests that
// skipped, grouped by reason, so that a run short of the test models says
// so. It stops at the first command that fails and exits with its status.
//
// make test runs it:
//
//	testsummary 'go test -json -count=1 ./...' 'go test -json -race ./node/...'
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"

	"github.com/mycel-net/mycel/internal/testmodels"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testsummary 'go test -json ...' ['go test -json ...' ...]")
		os.Exit(2)
	}
	s := newSummary(os.Stdout)
	code := 0
	for _, line := range os.Args[1:] {
		if code = s.run(line); code != 0 {
			break
		}
	}
	s.finish()
	os.Exit(code)
}

// run runs one command line through sh and summarizes its JSON output;
// it returns the command's exit status.
func (s *summary) run(line string) int {
	fmt.Fprintln(s.w, line)
	cmd := exec.Command("sh", "-c", line)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		return 1
	}
	readErr := s.read(out)
	err = cmd.Wait()
	if readErr != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", readErr)
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode()
	case err != nil:
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		return 1
	case readErr != nil:
		return 1
	}
	return 0
}

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output events
	Test       string
	Output     string
}

// summary follows the events of one or more runs.
type summary struct {
	w io.Writer
	// out is the output so far of each running test, by package and
	// top-level test (subtests' output goes with their parent's).
	out map[string]*strings.Builder
	// skipped maps each skipped test (package and name) to its reason;
	// a test skipped in several runs counts once.
	skipped map[string]string
	failed  []string
}

func newSummary(w io.Writer) *summary {
	return &summary{w: w, out: map[string]*strings.Builder{}, skipped: map[string]string{}}
}

// read reads JSON events until r ends. A line that is not JSON (go test
// printing before the test binary starts) is printed as it is.
func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Fprintln(s.w, sc.Text())
			continue
		}
		s.event(e)
	}
	return sc.Err()
}

func (s *summary) event(e event) {
	switch {
	case e.Action == "build-output":
		io.WriteString(s.w, e.Output)
	case e.Test == "":
		s.packageEvent(e)
	default:
		s.testEvent(e)
	}
}

// packageEvent prints a package's own lines, as go test without -v does:
// all but the bare PASS before its ok line. A package that ends with
// tests still running (a panic, a timeout) has their output printed.
func (s *summary) packageEvent(e event) {
	switch e.Action {
	case "output":
		if e.Output != "PASS\n" {
			io.WriteString(s.w, e.Output)
		}
	case "fail":
		prefix := e.Package + "\x00"
		var running []string
		for k := range s.out {
			if strings.HasPrefix(k, prefix) {
				running = append(running, k)
			}
		}
		sort.Strings(running)
		for _, k := range running {
			s.failed = append(s.failed, strings.TrimPrefix(k, prefix)+" ("+e.Package+", did not finish)")
			io.WriteString(s.w, s.out[k].String())
			delete(s.out, k)
		}
	}
}

func (s *summary) testEvent(e event) {
	top, _, sub := strings.Cut(e.Test, "/")
	key := e.Package + "\x00" + top
	b := s.out[key]
	if b == nil {
		b = &strings.Builder{}
		s.out[key] = b
	}
	switch e.Action {
	case "output":
		if !strings.HasPrefix(e.Output, "=== ") {
			b.WriteString(e.Output)
		}
	case "skip":
		s.skipped[e.Package+" "+e.Test] = skipReason(b.String(), e.Test)
	case "fail":
		if !sub {
			s.failed = append(s.failed, e.Test+" ("+e.Package+")")
			io.WriteString(s.w, b.String())
		}
	}
	if (e.Action == "pass" || e.Action == "fail" || e.Action == "skip") && !sub {
		delete(s.out, key)
	}
}

// logPrefix is what t.Log puts before a message: indentation and file:line.
var logPrefix = regexp.MustCompile(`^\s*[\w.-]+\.go:\d+: `)

// skipReason is the message a skipped test gave: the last logged line
// before its --- SKIP line.
func skipReason(out, test string) string {
	header := "--- SKIP: " + test + " "
	var reason string
	for _, l := range strings.Split(out, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, header) {
			break
		}
		if strings.HasPrefix(t, "--- ") || t == "" {
			continue
		}
		if logPrefix.MatchString(l) {
			reason = logPrefix.ReplaceAllString(l, "")
		}
	}
	if reason == "" {
		return "no reason given"
	}
	return reason
}

// reasonGroup is the reason a skip is counted under: the skips of
// internal/testmodels for a shared test model that is not there are one.
func reasonGroup(reason string) string {
	if g, ok := testmodels.MissingSummary(reason); ok {
		return g
	}
	return reason
}

// finish prints the failed tests and the skip summary line.
func (s *summary) finish() {
	if len(s.failed) > 0 {
		fmt.Fprintf(s.w, "FAILED: %s\n", strings.Join(s.failed, ", "))
	}
	fmt.Fprintln(s.w, s.skipLine())
}

// skipLine is one line: how many tests skipped, by reason, most first.
// A test skipped in several runs counts once.
func (s *summary) skipLine() string {
	if len(s.skipped) == 0 {
		return "no test skipped"
	}
	counts := map[string]int{}
	for _, r := range s.skipped {
		counts[reasonGroup(r)]++
	}
	reasons := make([]string, 0, len(counts))
	for r := range counts {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool {
		if counts[reasons[i]] != counts[reasons[j]] {
			return counts[reasons[i]] > counts[reasons[j]]
		}
		return reasons[i] < reasons[j]
	})
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%d: %s", counts[r], r)
	}
	noun := "tests"
	if len(s.skipped) == 1 {
		noun = "test"
	}
	return fmt.Sprintf("%d %s skipped. %s", len(s.skipped), noun, strings.Join(parts, "; "))
}
