package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/mycel-net/mycel/internal/logging"
	"github.com/mycel-net/mycel/node"
	"github.com/mycel-net/mycel/node/api"
)

var update = flag.Bool("update", false, "rewrite docs/operations.md's table of settings from mycel node --config-table")

func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, configFile)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// printConfig runs mycel node --print-config --json with args.
func printConfig(t *testing.T, args ...string) (printedConfig, string) {
	t.Helper()
	out, stderr, err := mycel(t, append([]string{"node", "--print-config", "--json"}, args...)...)
	if err != nil {
		t.Fatalf("mycel node --print-config %s: %v", strings.Join(args, " "), err)
	}
	var p printedConfig
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("--print-config --json: %v\n%s", err, out)
	}
	return p, stderr
}

func (p printedConfig) get(t *testing.T, key string) printedSetting {
	t.Helper()
	for _, s := range p.Settings {
		if s.Key == key {
			return s
		}
	}
	t.Fatalf("--print-config has no %s", key)
	return printedSetting{}
}

// nodeRun is mycel node running in process, started by runNode.
type nodeRun struct {
	cancel context.CancelFunc
	done   chan error
	stderr bytes.Buffer // read only after stop
}

// runNode runs mycel node with args until the test ends or stop.
func runNode(t *testing.T, args ...string) *nodeRun {
	t.Helper()
	keepLogging(t) // a node whose file sets the log level sets it for the process
	ctx, cancel := context.WithCancel(context.Background())
	r := &nodeRun{cancel: cancel, done: make(chan error, 1)}
	cmd := newRootCmd()
	cmd.SetArgs(append([]string{"node"}, args...))
	cmd.SetErr(&r.stderr)
	cmd.SetOut(&bytes.Buffer{})
	go func() { r.done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop ends the node and returns what it said on stderr.
func (r *nodeRun) stop() string {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
	return r.stderr.String()
}

// waitUp waits until a mycel status with args answers.
func waitUp(t *testing.T, r *nodeRun, args ...string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-r.done:
			r.cancel = nil
			t.Fatalf("mycel node ended: %v\n%s", err, r.stderr.String())
		default:
		}
		if _, _, err := mycel(t, append(args, "status")...); err == nil {
			return
		}
	}
	t.Fatal("node did not start")
}

// refusedNode runs mycel node with args and returns its error; one that
// starts is stopped after a while and fails the test.
func refusedNode(t *testing.T, args ...string) error {
	t.Helper()
	keepLogging(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := newRootCmd()
	cmd.SetArgs(append([]string{"node", "--api", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"}, args...))
	var errb bytes.Buffer
	cmd.SetErr(&errb)
	cmd.SetOut(&bytes.Buffer{})
	err := cmd.ExecuteContext(ctx)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("mycel node %s: started (%v)\n%s", strings.Join(args, " "), err, errb.String())
	}
	return err
}

// TestConfigPrecedence: a setting comes from the flag, else the
// environment, else the file, else the default, and --print-config says
// which, in TOML and in JSON.
func TestConfigPrecedence(t *testing.T) {
	data := t.TempDir()
	path := writeConfig(t, data, `# the volunteer's settings
store-cap = "1GB"
dht = "client"
threads = 1
max-layers = 3
listen = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"]
bootstrap = "/ip4/203.0.113.7/tcp/4747/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
`)
	t.Setenv("MYCEL_DHT", "server")
	t.Setenv("MYCEL_THREADS", "2")
	t.Setenv("MYCEL_MAX_LAYERS", "") // empty counts as unset
	t.Setenv("MYCEL_TRAIN", "true")
	t.Setenv("MYCEL_CORS_ORIGINS", `https://a.example,"https://b.example"`)
	p, stderr := printConfig(t, "--data", data, "--threads", "3")
	if stderr != "" {
		t.Errorf("stderr: %q", stderr)
	}
	if p.DataDir != data || p.DataSource != "flag" || p.File != path || !p.FileExists {
		t.Errorf("data %q from %s, file %q (exists %v)", p.DataDir, p.DataSource, p.File, p.FileExists)
	}
	for _, w := range []struct {
		key, source, where string
		value              any
	}{
		{"store-cap", "file", path + " line 2", "1GB"},
		{"dht", "environment", "$MYCEL_DHT", "server"},
		{"threads", "flag", "--threads", float64(3)},
		{"max-layers", "file", path + " line 5", float64(3)},
		{"train", "environment", "$MYCEL_TRAIN", true},
		{"no-mdns", "default", "", false},
		{"listen", "file", path + " line 6", []any{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}},
		{"bootstrap", "file", path + " line 7", []any{"/ip4/203.0.113.7/tcp/4747/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"}},
		{"cors-origins", "environment", "$MYCEL_CORS_ORIGINS", []any{"https://a.example", "https://b.example"}},
	} {
		s := p.get(t, w.key)
		if s.Source != w.source || s.Where != w.where || !reflect.DeepEqual(s.Value, w.value) {
			t.Errorf("%s = %#v from %s (%s), want %#v from %s (%s)", w.key, s.Value, s.Source, s.Where, w.value, w.source, w.where)
		}
		if s.Env != envName(w.key) {
			t.Errorf("%s: env %s", w.key, s.Env)
		}
	}

	// The text form is TOML, each line saying where its value came from.
	out, _, err := mycel(t, "node", "--data", data, "--threads", "3", "--print-config")
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`(?m)^store-cap = "1GB" +# ` + regexp.QuoteMeta(path) + ` line 2$`,
		`(?m)^dht = "server" +# \$MYCEL_DHT$`,
		`(?m)^threads = 3 +# --threads$`,
		`(?m)^no-mdns = false +# default$`,
		`(?m)^# data directory ` + regexp.QuoteMeta(data) + ` \(--data\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("--print-config has no line %s:\n%s", re, out)
		}
	}
	var asTOML map[string]any
	body := strings.Join(slices.DeleteFunc(strings.Split(out, "\n"), func(l string) bool { return strings.HasPrefix(l, "#") }), "\n")
	if _, err := toml.Decode(body, &asTOML); err != nil || asTOML["dht"] != "server" {
		t.Errorf("--print-config is not TOML: %v\n%s", err, out)
	}

	// The data directory from the environment; --print-config writes no
	// file where there is none.
	fresh := t.TempDir()
	t.Setenv(node.EnvData, fresh)
	p, _ = printConfig(t)
	if p.DataDir != fresh || p.DataSource != "environment" || p.FileExists || p.get(t, "dht").Source != "environment" {
		t.Errorf("with $%s: %+v", node.EnvData, p)
	}
	if _, err := os.Stat(filepath.Join(fresh, configFile)); err == nil {
		t.Error("--print-config wrote a config file")
	}
	if _, _, err := mycel(t, "node", "--json"); err == nil || !strings.Contains(err.Error(), "--print-config") {
		t.Errorf("--json alone: %v", err)
	}
}

// TestConfigRunningNode: a node started with no flag but --data takes
// its settings from the file and the environment (the environment's
// over the file's), warns of an unknown key with the key it probably
// meant on stderr and in its log, and starts; the other commands find
// its API through the file.
func TestConfigRunningNode(t *testing.T) {
	data := t.TempDir()
	addr := freeAddr(t)
	writeConfig(t, data, `api = "`+addr+`"
listen = ["/ip4/127.0.0.1/tcp/0"]
no-mdns = true
stor-cap = "5GB"
store-cap = "1GB"
log-level = "info,swarm=debug"
`)
	t.Setenv(api.EnvAddr, "")
	t.Setenv("MYCEL_STORE_CAP", "2GB")
	r := runNode(t, "--data", data)
	waitUp(t, r, "--data", data) // no --api: the file's
	out, _, err := mycel(t, "--data", data, "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if st.StoreCap != 2e9 {
		t.Errorf("store cap %d, want 2 GB ($MYCEL_STORE_CAP over the file's 1GB)", st.StoreCap)
	}
	if len(st.Addrs) == 0 || !strings.HasPrefix(st.Addrs[0], "/ip4/127.0.0.1/tcp/") {
		t.Errorf("addresses %v, want the file's loopback TCP", st.Addrs)
	}
	if l := logging.Current().Levels.String(); l != "info,swarm=debug" {
		t.Errorf("log levels %q, want the file's", l)
	}
	const warning = `line 4: unknown key "stor-cap" (did you mean "store-cap"?)`
	logs, _, err := mycel(t, "--data", data, "logs")
	if err != nil || !slices.ContainsFunc(strings.Split(logs, "\n"), func(l string) bool {
		return strings.Contains(l, "WARN") && strings.Contains(l, "unknown key") && strings.Contains(l, "stor-cap") && strings.Contains(l, "store-cap")
	}) {
		t.Errorf("the node's log does not warn of stor-cap (%v):\n%s", err, logs)
	}
	stderr := r.stop()
	if !strings.Contains(stderr, "mycel node: warning: "+filepath.Join(data, configFile)+" "+warning) {
		t.Errorf("stderr does not warn of stor-cap:\n%s", stderr)
	}
	if strings.Contains(stderr, "wrote ") {
		t.Errorf("the node wrote over its config file:\n%s", stderr)
	}
}

// TestConfigTemplate: a node's first start writes the config file, every
// key commented out at its default; the file parses, and taking the '#'
// off any one of its keys (then off all of them) gives a config the node
// takes, that key coming from the file at its default.
func TestConfigTemplate(t *testing.T) {
	data := t.TempDir()
	addr := freeAddr(t)
	r := runNode(t, "--data", data, "--api", addr, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns")
	waitUp(t, r, "--api", addr)
	path := filepath.Join(data, configFile)
	stderr := r.stop()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no config file after the first start: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "wrote "+path) {
		t.Errorf("the first start does not say it wrote %s:\n%s", path, stderr)
	}
	var m map[string]any
	if _, err := toml.Decode(string(text), &m); err != nil || len(m) != 0 {
		t.Fatalf("the file does not parse to nothing set: %v, %v", err, m)
	}

	def, _ := printConfig(t, "--data", t.TempDir())
	lines := strings.Split(string(text), "\n")
	var seen []string
	for i, l := range lines {
		if !strings.HasPrefix(l, "#") || strings.HasPrefix(l, "# ") || l == "#" {
			continue
		}
		key, _, ok := strings.Cut(l[1:], " = ")
		if !ok {
			t.Errorf("line %d %q is neither help (\"# \") nor a setting (\"#key = value\")", i+1, l)
			continue
		}
		seen = append(seen, key)
		one := slices.Clone(lines)
		one[i] = l[1:]
		dir := t.TempDir()
		writeConfig(t, dir, strings.Join(one, "\n"))
		p, stderr := printConfig(t, "--data", dir)
		if stderr != "" {
			t.Errorf("%s uncommented: %s", key, stderr)
		}
		s := p.get(t, key)
		if s.Source != "file" || s.Where != filepath.Join(dir, configFile)+" line "+strconv.Itoa(i+1) || !reflect.DeepEqual(s.Value, def.get(t, key).Value) {
			t.Errorf("%s uncommented: %+v, want the default %v from line %d", key, s, def.get(t, key).Value, i+1)
		}
	}
	var keys []string
	for _, s := range def.Settings {
		keys = append(keys, s.Key)
	}
	if !slices.Equal(seen, keys) {
		t.Errorf("the file's settings %v, want each key once: %v", seen, keys)
	}

	// Every line uncommented at once: the node starts (the flags below
	// override what would clash with the other tests).
	all := strings.Join(slices.Collect(func(yield func(string) bool) {
		for _, l := range lines {
			if strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "# ") && l != "#" {
				l = l[1:]
			}
			if !yield(l) {
				return
			}
		}
	}), "\n")
	writeConfig(t, data, all)
	addr = freeAddr(t)
	r = runNode(t, "--data", data, "--api", addr, "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns")
	waitUp(t, r, "--api", addr)
	if stderr := r.stop(); strings.Contains(stderr, "warning") {
		t.Errorf("every setting at its default:\n%s", stderr)
	}
}

// TestConfigMalformedFile: a file that is not TOML stops the node, with
// its line and the key there named.
func TestConfigMalformedFile(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"two equals", "store-cap = \"1GB\"\n\nthreads = = 3\n", []string{"line 3: threads: "}},
		{"no value", "# a comment\ngarbage\n", []string{`line 2: "garbage": `}},
		{"a key twice", "dht = \"client\"\ndht = \"server\"\n", []string{"line 2: dht: ", "already been defined"}},
		{"an open string", "serve = \"stories15M\ntrain = true\n", []string{"line 1: serve: "}},
		{"a bare word", "dht = client\n", []string{"line 1: dht: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			path := writeConfig(t, data, tc.text)
			err := refusedNode(t, "--data", data)
			msg := err.Error()
			if !strings.HasPrefix(msg, path+" ") || strings.Contains(msg, "\n") {
				t.Errorf("error %q, want one line that begins with %s", msg, path)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
		})
	}
}

// TestConfigBadValue: a value of the wrong type or out of range, in the
// file or the environment, stops the node, naming the key and where the
// value came from.
func TestConfigBadValue(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		env        [2]string
		want       []string
	}{
		{name: "threads out of range", file: "threads = 100000\n", want: []string{"mycel.toml line 1: threads: ", "give 0 for all"}},
		{name: "not a bool", file: "# volunteer\ntrain = \"yes\"\n", want: []string{"mycel.toml line 2: train: ", "true or false"}},
		{name: "not a size", file: "dht = \"auto\"\nstore-cap = \"lots\"\n", want: []string{"mycel.toml line 2: store-cap: ", `"lots" is not a size`}},
		{name: "a memory cap not a size", file: "train-memory = \"4 gigs\"\n", want: []string{"mycel.toml line 1: train-memory: ", "not a size"}},
		{name: "a table for a list a flag overrides", file: "listen = { tcp = 4747 }\n", want: []string{"mycel.toml line 1: listen: ", "want a list"}},
		{name: "a table for a list", file: "bootstrap = { tcp = 4747 }\n", want: []string{"mycel.toml line 1: bootstrap: ", "want a list"}},
		{name: "a list for a string", file: "serve = [\"a\"]\n", want: []string{"mycel.toml line 1: serve: ", "want a string"}},
		{name: "not a number", file: "max-layers = 2.5\n", want: []string{"mycel.toml line 1: max-layers: 2.5: ", "want a number"}},
		{name: "no such DHT mode", file: "dht = \"sideways\"\n", want: []string{"mycel.toml line 1: dht: ", "want auto, server or client"}},
		{name: "no such log level", file: "log-level = \"loud\"\n", want: []string{"mycel.toml line 1: log-level: "}},
		{name: "no such log format", file: "log-format = \"xml\"\n", want: []string{"mycel.toml line 1: log-format", "text or json"}},
		{name: "a schedule the node refuses", file: "# hours\nschedule = \"whenever\"\n", want: []string{"schedule", "(schedule from ", "mycel.toml line 2)"}},
		{name: "env schedule", env: [2]string{"MYCEL_SCHEDULE", "whenever"}, want: []string{"schedule", "(schedule from $MYCEL_SCHEDULE)"}},
		{name: "the data directory", file: "data = \"/srv/mycel\"\n", want: []string{"mycel.toml line 1: data: ", "--data or $MYCEL_DATA"}},
		{name: "env not a size", env: [2]string{"MYCEL_STORE_CAP", "lots"}, want: []string{"$MYCEL_STORE_CAP: ", `"lots"`}},
		{name: "env threads", env: [2]string{"MYCEL_THREADS", "two"}, want: []string{"$MYCEL_THREADS: ", `"two"`}},
		{name: "env bool", env: [2]string{"MYCEL_TRAIN", "maybe"}, want: []string{"$MYCEL_TRAIN: ", `"maybe"`, "true or false"}},
		{name: "env DHT mode", env: [2]string{"MYCEL_DHT", "sideways"}, want: []string{`$MYCEL_DHT: "sideways": want auto, server or client`}},
		{name: "env list", env: [2]string{"MYCEL_BOOTSTRAP", `"/ip4/1.2.3.4`}, want: []string{"$MYCEL_BOOTSTRAP: ", "comma-separated"}},
		{name: "the environment over a bad file", file: "store-cap = \"lots\"\n", env: [2]string{"MYCEL_STORE_CAP", "worse"}, want: []string{"$MYCEL_STORE_CAP: ", `"worse"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			if tc.file != "" {
				writeConfig(t, data, tc.file)
			}
			if tc.env[0] != "" {
				t.Setenv(tc.env[0], tc.env[1])
			}
			msg := refusedNode(t, "--data", data).Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
		})
	}
	// On the command line, the flag's own name.
	err := refusedNode(t, "--data", t.TempDir(), "--store-cap", "lots")
	if !strings.HasPrefix(err.Error(), `--store-cap: "lots"`) {
		t.Errorf("--store-cap lots: %v", err)
	}
}

// TestConfigKeys: the keys are the flags of mycel node, global ones
// included, less those that make no sense in a file; each has help, and
// no key's variable is one the project reads for something else.
func TestConfigKeys(t *testing.T) {
	p, _ := printConfig(t, "--data", t.TempDir())
	keys := map[string]bool{}
	for _, s := range p.Settings {
		keys[s.Key] = true
	}
	for _, k := range []string{"api", "log-level", "log-format", "store-cap", "threads", "listen"} {
		if !keys[k] {
			t.Errorf("%s is not a key", k)
		}
	}
	for _, k := range []string{"data", "help", "print-config", "json", "config-table"} {
		if keys[k] {
			t.Errorf("%s is a key", k)
		}
	}
	root := newRootCmd()
	nodeCmd, _, err := root.Find([]string{"node"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range configKeys(nodeCmd) {
		if strings.TrimSpace(f.Usage) == "" {
			t.Errorf("--%s has no help", f.Name)
		}
		if e := envName(f.Name); slices.Contains([]string{api.EnvToken, node.EnvData, "MYCEL_ISA", "MYCEL_TEST_MODELS"}, e) {
			t.Errorf("--%s's variable %s means something else", f.Name, e)
		}
	}
	for k, want := range map[string]string{"store_cap": "store-cap", "Threads": "threads", "thread": "threads", "stor-cap": "store-cap", "listn": "listen", "sheduel": "schedule", "zzz": "", "volume": ""} {
		if got := nearestKey(k, configKeys(nodeCmd)); got != want {
			t.Errorf("nearestKey(%q) = %q, want %q", k, got, want)
		}
	}
}

// The table of settings in docs/operations.md is what mycel node
// --config-table prints; with -update the test writes it there.
func TestConfigDocumented(t *testing.T) {
	const path = "../../docs/operations.md"
	const begin, end = "<!-- settings: make docs -->\n", "<!-- end of settings -->\n"
	table, _, err := mycel(t, "node", "--config-table")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no %q ... %q around its table of settings", path, strings.TrimSpace(begin), strings.TrimSpace(end))
	}
	want := s[:i+len(begin)] + table + s[j:]
	if want == s {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s's table of settings is not what mycel node --config-table prints; make docs rewrites it:\n%s", path, table)
}
