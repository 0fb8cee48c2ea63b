package node

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDataDirLock: a second node on a data directory in use is refused
// with the holder's process ID and what to do; once the first closes, the
// directory is free again.
func TestDataDirLock(t *testing.T) {
	cfg := testConfig(t)
	a := startNode(t, cfg)
	second := testConfig(t)
	second.DataDir = cfg.DataDir
	_, err := New(second)
	want := fmt.Sprintf("another mycel node (pid %d) is using the data directory %s; stop it or pick another with --data", os.Getpid(), cfg.DataDir)
	if err == nil || err.Error() != want {
		t.Fatalf("second node on one data directory: %v, want %q", err, want)
	}
	// The refused node took nothing down with it: the first still works.
	if st := a.Status(); st.DataDir != cfg.DataDir {
		t.Errorf("first node's status after the refusal: %+v", st)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := startNode(t, second)
	if b.Status().ID != a.Status().ID {
		t.Error("the node after the first closed has another identity")
	}
}

// TestDataDirLockAfterCrash: a node killed without closing leaves its
// lock file behind, with its process ID, but not its lock: the next node
// starts.
func TestDataDirLockAfterCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	cfg := testConfig(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHolder$", "-test.count=1")
	// The holder is killed, so its own temporary directories would stay
	// behind: it makes them under this test's, which the test removes.
	cmd.Env = append(os.Environ(), "MYCEL_TEST_LOCK_HOLDER="+cfg.DataDir, "TMPDIR="+t.TempDir())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	held := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "holding" {
				held <- true
			}
		}
		close(held)
	}()
	select {
	case ok := <-held:
		if !ok {
			t.Fatal("the holder process ended before it held the directory")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the holder process did not start a node")
	}
	_, err = New(cfg)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("(pid %d)", cmd.Process.Pid)) {
		t.Fatalf("node beside a live holder: %v, want its pid %d named", err, cmd.Process.Pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if pid := readLockPID(filepath.Join(cfg.DataDir, lockFile)); pid != cmd.Process.Pid {
		t.Errorf("lock file after the crash holds pid %d, want the dead %d (the test shows a stale file)", pid, cmd.Process.Pid)
	}
	startNode(t, cfg)
}

// TestLockHolder is the process TestDataDirLockAfterCrash kills: it starts
// a node on the directory it is given and waits.
func TestLockHolder(t *testing.T) {
	dir := os.Getenv("MYCEL_TEST_LOCK_HOLDER")
	if dir == "" {
		return // only as TestDataDirLockAfterCrash's process
	}
	cfg := testConfig(t)
	cfg.DataDir = dir
	startNode(t, cfg)
	fmt.Println("holding")
	time.Sleep(time.Minute)
}
