package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mycel-net/mycel/internal/testmodels"
)

const pipStory = "Pip the gray mouse lived under the old red bridge. Every morning Pip counted the boats " +
	"that went by: one blue boat, two green boats and a yellow boat with a sleepy dog. " +
	"One day a paper boat came down the river. Pip jumped on it and sailed all the way to the sea.\n"

// writeJob writes a LoRA job on the built-in model and our story into a
// new folder and returns the job file's path.
func writeJob(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "story.txt"), []byte(pipStory), 0o644); err != nil {
		t.Fatal(err)
	}
	job := "model = \"" + testmodels.Builtin(t) + "\"\ndata = \"story.txt\"\n" +
		"lr = 0.01\neval_fraction = 0.0\n" + extra
	if !strings.Contains(extra, "seq_len") {
		job += "seq_len = 32\nbatch_tokens = 64\n"
	}
	path := filepath.Join(dir, "story.toml")
	if err := os.WriteFile(path, []byte(job), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// lastLine is the last line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// `mycel train run` learns our story; `train export` writes the merged
// model and the adapter, which `mycel run` (with --lora for the adapter)
// then runs: both continue the story from its first words.
func TestTrainRunAndExport(t *testing.T) {
	job := writeJob(t, "steps = 120\ncheckpoint_every = 60\n")
	stdout, stderr, err := mycel(t, "train", "run", job, "-t", "1")
	if err != nil {
		t.Fatalf("train run: %v\n%s", err, stderr)
	}
	ckpt := lastLine(stdout)
	if filepath.Base(ckpt) != "step-00000120.ckpt" {
		t.Fatalf("last line of stdout %q, want the final checkpoint", ckpt)
	}
	if !strings.Contains(stderr, "step 120/120") || !strings.Contains(stderr, "loss") {
		t.Errorf("progress on stderr:\n%s", stderr)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(ckpt), "step-00000060.ckpt")); err != nil {
		t.Errorf("no checkpoint at step 60: %v", err)
	}
	dir := t.TempDir()
	merged, adapter := filepath.Join(dir, "pip.gguf"), filepath.Join(dir, "pip-lora.gguf")
	if _, stderr, err := mycel(t, "train", "export", ckpt, "-o", merged); err != nil {
		t.Fatalf("export: %v\n%s", err, stderr)
	}
	if _, stderr, err := mycel(t, "train", "export", ckpt, "--adapter-only", "-o", adapter); err != nil {
		t.Fatalf("export --adapter-only: %v\n%s", err, stderr)
	}
	want := "Pip the gray mouse lived under the old red bridge"
	out, stderr, err := mycel(t, "run", "-m", merged, "--temp", "0", "-n", "16", "Pip the gray mouse")
	if err != nil || !strings.HasPrefix(out, want) {
		t.Errorf("run of the merged model: %q, %v\n%s", out, err, stderr)
	}
	out, stderr, err = mycel(t, "run", "-m", testmodels.Builtin(t), "--lora", adapter, "--temp", "0", "-n", "16", "Pip the gray mouse")
	if err != nil || !strings.HasPrefix(out, want) {
		t.Errorf("run with --lora: %q, %v\n%s", out, err, stderr)
	}
	// A model is not an adapter; an adapter does not run through the swarm.
	if _, _, err := mycel(t, "run", "-m", merged, "--lora", merged, "Pip"); err == nil || !strings.Contains(err.Error(), "general.type") {
		t.Errorf("--lora with a model: %v", err)
	}
}

func TestTrainRunBadInput(t *testing.T) {
	for _, c := range []struct {
		extra, want string
	}{
		{"stepz = 3\n", `unknown key "stepz"`},
		{"steps = 0\n", "steps"},
		{"seq_len = 4096\nbatch_tokens = 4096\n", "context"},
	} {
		_, _, err := mycel(t, "train", "run", writeJob(t, c.extra))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("job with %q: %v, want an error naming %q", c.extra, err, c.want)
		}
	}
	job := writeJob(t, "steps = 3\n")
	if err := os.WriteFile(filepath.Join(filepath.Dir(job), "story.txt"), []byte("{\"text\": 3}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := mycel(t, "train", "run", job); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a data set that does not parse: %v", err)
	}
	if _, _, err := mycel(t, "train", "run", writeJob(t, "steps = 3\n"), "--resume"); err == nil || !strings.Contains(err.Error(), "no checkpoint") {
		t.Errorf("--resume with no checkpoint: %v", err)
	}
}

var (
	buildOnce sync.Once
	builtExe  string
	buildErr  error
)

// TestMain removes the command mycelBinary built, once every test is done.
func TestMain(m *testing.M) {
	code := m.Run()
	if builtExe != "" {
		os.RemoveAll(filepath.Dir(builtExe))
	}
	os.Exit(code)
}

// mycelBinary builds the command once per test binary, with the race
// detector when the tests run under it: the build then reuses the packages
// compiled for the tests instead of compiling every dependency again.
func mycelBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mycel-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtExe = filepath.Join(dir, "mycel")
		args := []string{"build", "-o", builtExe}
		if raceEnabled {
			args = append(args, "-race")
		}
		if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtExe
}

// Ctrl-C stops `mycel train run` at a step boundary with a checkpoint
// (exit status 130); `--resume` goes on from it and ends with a final
// checkpoint byte for byte equal to a run that never stopped.
func TestTrainInterruptAndResume(t *testing.T) {
	exe := mycelBinary(t)
	job := writeJob(t, "steps = 80\ncheckpoint_every = 0\n")
	straight := filepath.Join(t.TempDir(), "straight")
	out, err := exec.Command(exe, "train", "run", job, "-t", "1", "--checkpoints", straight).Output()
	if err != nil {
		t.Fatalf("straight run: %v", err)
	}
	want, err := os.ReadFile(lastLine(string(out)))
	if err != nil {
		t.Fatal(err)
	}

	stopped := filepath.Join(t.TempDir(), "stopped")
	cmd := exec.Command(exe, "train", "run", job, "-t", "1", "--checkpoints", stopped)
	var stdout bytes.Buffer
	stderr := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(stderr.String(), "step 1/80"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no progress:\n%s", stderr)
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("interrupted run: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr.String(), "--resume") {
		t.Errorf("the interrupted run does not say how to go on:\n%s", stderr)
	}
	mid := lastLine(stdout.String())
	if strings.HasSuffix(mid, "step-00000080.ckpt") {
		t.Fatal("the run ended before the interrupt arrived")
	}
	out, err = exec.Command(exe, "train", "run", job, "-t", "1", "--checkpoints", stopped, "--resume").Output()
	if err != nil {
		t.Fatalf("resumed run: %v", err)
	}
	got, err := os.ReadFile(lastLine(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("stopped at %s and resumed, the final checkpoint differs from a straight run's", filepath.Base(mid))
	}
}

// A job's data set may be a data set of the running node, by name or CID.
func TestTrainOnNodeData(t *testing.T) {
	api := startNodeCmd(t)
	job := writeJob(t, "steps = 4\n")
	story := filepath.Join(filepath.Dir(job), "story.txt")
	out, stderr, err := mycel(t, "--api", api, "data", "import", story, "--name", "pip-story")
	if err != nil {
		t.Fatalf("data import: %v\n%s", err, stderr)
	}
	c := lastLine(out)
	if err := os.Remove(story); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"pip-story", c} {
		b, _ := os.ReadFile(job)
		nj := filepath.Join(t.TempDir(), "job.toml")
		text := strings.Replace(string(b), `data = "story.txt"`, `data = "`+ref+`"`, 1)
		if err := os.WriteFile(nj, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, stderr, err := mycel(t, "--api", api, "train", "run", nj, "-t", "1")
		if err != nil {
			t.Fatalf("train run on data %s: %v\n%s\n%s", ref, err, out, stderr)
		}
		checkCheckpointInNode(t, api, lastLine(out), filepath.Join(filepath.Dir(nj), "job-checkpoints", "step-00000004.ckpt"))
	}
	if _, _, err := mycel(t, "--api", api, "train", "run", writeJobData(t, "no-such-set")); err == nil || !strings.Contains(err.Error(), "no-such-set") {
		t.Errorf("an unknown data set: %v", err)
	}
}

// writeJobData is writeJob with data naming ref.
func writeJobData(t *testing.T, ref string) string {
	t.Helper()
	job := writeJob(t, "steps = 2\n")
	b, _ := os.ReadFile(job)
	if err := os.WriteFile(job, []byte(strings.Replace(string(b), `data = "story.txt"`, `data = "`+ref+`"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return job
}
