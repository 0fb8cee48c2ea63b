package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/internal/testmodels"
	"github.com/mycel-net/mycel/node"
	"github.com/mycel-net/mycel/node/api"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startNodeCmd runs `mycel node` in the background until the test ends and
// returns its API address.
func startNodeCmd(t *testing.T, extra ...string) string {
	t.Helper()
	api, _ := startNodeOn(t, freeAddr(t), extra...)
	return api
}

// startNodeOn runs `mycel node --api api` in the background until the test
// ends and returns the address its API answers on and its data directory.
func startNodeOn(t *testing.T, api string, extra ...string) (string, string) {
	t.Helper()
	data := t.TempDir() // before the cleanup below, so removed after the node stops
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		cmd := newRootCmd()
		cmd.SetArgs(append([]string{"node", "--api", api, "--data", data, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"}, extra...))
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetOut(&bytes.Buffer{})
		done <- cmd.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	reach := api // a node on every address is reached on loopback
	if host, port, err := net.SplitHostPort(api); err == nil && net.ParseIP(host).IsUnspecified() {
		reach = net.JoinHostPort("127.0.0.1", port)
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, _, err := mycel(t, "--api", reach, "--data", data, "status"); err == nil {
			return reach, data
		}
	}
	t.Fatal("node did not start")
	return "", ""
}

// TestNodeOffLoopback runs a node whose API listens on every address: the
// commands reach it with the token they read from the data directory
// (--data, or $MYCEL_DATA) or from $MYCEL_API_TOKEN, and are refused
// without it, told where it is.
func TestNodeOffLoopback(t *testing.T) {
	_, port, _ := net.SplitHostPort(freeAddr(t))
	addr, data := startNodeOn(t, "0.0.0.0:"+port)
	t.Setenv(api.EnvToken, "")
	t.Setenv(node.EnvData, t.TempDir()) // no token there
	tokFile := filepath.Join(data, api.TokenFile)
	if _, _, err := mycel(t, "--api", addr, "status"); err == nil || !strings.Contains(err.Error(), tokFile) {
		t.Errorf("status without the token: %v, want a refusal naming %s", err, tokFile)
	}
	t.Setenv(api.EnvToken, "not-the-token")
	if _, _, err := mycel(t, "--api", addr, "--data", data, "status"); err == nil || !strings.Contains(err.Error(), "wrong API token") {
		t.Errorf("status with a wrong $%s: %v", api.EnvToken, err)
	}
	t.Setenv(api.EnvToken, "")
	for _, args := range [][]string{{"--api", addr, "--data", data, "status"}, {"status", "--api", addr, "--data", data}} {
		if out, _, err := mycel(t, args...); err != nil || !strings.Contains(out, "store ") {
			t.Errorf("mycel %s: %q, %v", strings.Join(args, " "), out, err)
		}
	}
	t.Setenv(node.EnvData, data)
	if out, _, err := mycel(t, "--api", addr, "models", "ls"); err != nil {
		t.Errorf("models ls with $%s: %q, %v", node.EnvData, out, err)
	}
	tok, err := os.ReadFile(tokFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(node.EnvData, t.TempDir())
	t.Setenv(api.EnvToken, strings.TrimSpace(string(tok)))
	if _, _, err := mycel(t, "--api", "http://"+addr, "status", "--json"); err != nil {
		t.Errorf("status with $%s: %v", api.EnvToken, err)
	}
}

// TestModelsThroughTheNode imports a model (the built-in GGUF; a llama2.c
// checkpoint with its tokenizer), runs it by CID, lists, inspects, exports
// and removes it.
func TestModelsThroughTheNode(t *testing.T) {
	t.Run("builtin", func(t *testing.T) {
		want, _ := localRun(t, "-n", "60")
		modelsThroughTheNode(t, []string{testmodels.Builtin(t), "--name", "tales"}, want, builtinLayers)
	})
	t.Run("llama2.c", func(t *testing.T) {
		bin := testmodels.Path(t, "stories260K.bin")
		tok := testmodels.Path(t, "tok512.bin")
		modelsThroughTheNode(t, []string{bin, "-z", tok, "--name", "stories260K"}, refFromBOS+"\n", 5)
	})
}

// modelsThroughTheNode imports with importArgs, and wants want from a
// greedy run of 60 tokens from BOS, of the node's model and of its
// export, and layers layers.
func modelsThroughTheNode(t *testing.T, importArgs []string, want string, layers int) {
	api := startNodeCmd(t)
	out, stderr, err := mycel(t, append([]string{"--api", api, "models", "import"}, importArgs...)...)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	c := lines[len(lines)-1]
	if _, err := cid.Decode(c); err != nil {
		t.Fatalf("import printed %q, want a CID last: %v", out, err)
	}
	out2, _, err := mycel(t, append([]string{"--api", api, "models", "import"}, importArgs...)...)
	if err != nil || strings.TrimSpace(out2) != c {
		t.Errorf("second import gave %q (%v), first %s", out2, err, c)
	}
	out, stderr, err = mycel(t, "--api", api, "run", "-m", c, "--temp", "0", "-n", "60")
	if err != nil {
		t.Fatalf("run -m CID: %v\n%s", err, stderr)
	}
	if out != want {
		t.Errorf("run -m CID:\n got %q\nwant %q", out, want)
	}
	parts := fmt.Sprintf("%d/%d", layers+2, layers+2)
	out, _, err = mycel(t, "--api", api, "models", "ls")
	if err != nil || !strings.Contains(out, c) || !strings.Contains(out, parts) {
		t.Errorf("ls: %q (%v), want %s parts", out, err, parts)
	}
	out, _, err = mycel(t, "--api", api, "models", "inspect", c)
	if err != nil || !strings.Contains(out, fmt.Sprintf("layer %d", layers-1)) || !strings.Contains(out, fmt.Sprintf("%d layers", layers)) {
		t.Errorf("inspect: %q (%v)", out, err)
	}
	gguf := filepath.Join(t.TempDir(), "out.gguf")
	if _, stderr, err := mycel(t, "--api", api, "models", "export", c, "-o", gguf); err != nil {
		t.Fatalf("export: %v\n%s", err, stderr)
	}
	out, _, err = mycel(t, "run", "-m", gguf, "--temp", "0", "-n", "60")
	if err != nil || out != want {
		t.Errorf("run of the exported GGUF: %q (%v)", out, err)
	}
	if _, _, err := mycel(t, "--api", api, "models", "rm", c); err != nil {
		t.Errorf("rm: %v", err)
	}
	if _, _, err := mycel(t, "--api", api, "run", "-m", c, "-n", "5"); err == nil || !strings.Contains(err.Error(), "not on the node") {
		t.Errorf("run of a removed model: %v", err)
	}
}

// TestNodeAndStatus runs `mycel node` until cancelled and asks it for its
// status, as JSON and as text, through --api.
func TestNodeAndStatus(t *testing.T) {
	api := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var nodeErr bytes.Buffer
	data := t.TempDir()
	go func() {
		cmd := newRootCmd()
		cmd.SetArgs([]string{"node", "--api", api, "--data", data, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"})
		cmd.SetErr(&nodeErr)
		cmd.SetOut(&bytes.Buffer{})
		done <- cmd.ExecuteContext(ctx)
	}()
	var out string
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if out, _, err = mycel(t, "--api", api, "status", "--json"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var st struct {
		ID    string   `json:"id"`
		Addrs []string `json:"addrs"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.ID == "" || len(st.Addrs) == 0 {
		t.Fatalf("status --json: %q (%v)", out, err)
	}
	if !strings.HasSuffix(st.Addrs[0], "/p2p/"+st.ID) {
		t.Errorf("address %q does not end in /p2p/%s", st.Addrs[0], st.ID)
	}
	text, _, err := mycel(t, "--api", api, "status")
	if err != nil || !strings.Contains(text, st.ID) || !strings.Contains(text, "lan server, 0 peers; wan client, 0 peers (--dht auto)") {
		t.Errorf("status: %q (%v)", text, err)
	}
	// On loopback the status page's address needs no token.
	if page, _, err := mycel(t, "--api", api, "status", "--page"); err != nil || page != "http://"+api+"/\n" {
		t.Errorf("status --page: %q (%v)", page, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("node exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("node did not stop after its context was cancelled")
	}
	// Read once the node is gone: it writes to its stderr until then.
	if !strings.Contains(nodeErr.String(), "shutting down") || !strings.Contains(nodeErr.String(), "status page on http://"+api+"/") {
		t.Errorf("node output: %q", nodeErr.String())
	}
	// With the node gone, status says how to start one.
	if _, _, err := mycel(t, "--api", api, "status"); err == nil || !strings.Contains(err.Error(), "mycel node") {
		t.Errorf("status without a node: %v", err)
	}
}
