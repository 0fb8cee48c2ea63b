package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mycel-net/mycel/internal/logging"
	"github.com/mycel-net/mycel/node"
)

// The settings of mycel node come from four places, each overriding the
// one before: the flags' defaults, the config file mycel.toml in the data
// directory, the environment and the command line. Every flag of the
// command (its own and those it inherits from mycel, such as --api and
// --log-level) is a key of the file under the flag's name and an
// environment variable MYCEL_<NAME> (upper case, '-' as '_'), so a flag
// added to the command is a key and a variable with no further work.
// The flag's own Value parses and checks what the file or the variable
// holds, as it does the command line's. Left out: --help, the flags
// marked with notConfigKeys (--print-config), hidden and deprecated
// flags, and --data: the directory the file lives in, which only the
// command line and $MYCEL_DATA set.

// configFile is the name of the config file in the data directory.
const configFile = "mycel.toml"

// notConfigKey is the annotation that keeps a flag of mycel node out of
// the config file and the environment.
const notConfigKey = "mycel_not_a_config_key"

// notConfigKeys keeps the flags names of cmd out of the config: flags that
// only make sense on a command line.
func notConfigKeys(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		if err := cmd.Flags().SetAnnotation(n, notConfigKey, []string{"true"}); err != nil {
			panic(fmt.Sprintf("notConfigKeys: %v", err)) // a flag of the command's own definition
		}
	}
}

// envName is the environment variable of config key key.
func envName(key string) string {
	return "MYCEL_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

// configKeys are the flags of cmd that are config keys, sorted by name.
func configKeys(cmd *cobra.Command) []*pflag.Flag {
	cmd.InheritedFlags() // merges the parents' persistent flags into cmd.Flags()
	var keys []*pflag.Flag
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" || f.Name == "data" || f.Hidden || f.Deprecated != "" || len(f.Annotations[notConfigKey]) > 0 {
			return
		}
		keys = append(keys, f)
	})
	slices.SortFunc(keys, func(a, b *pflag.Flag) int { return strings.Compare(a.Name, b.Name) })
	return keys
}

// source is where a setting's value came from.
type source int

const (
	fromDefault source = iota
	fromFile
	fromEnv
	fromFlag
)

func (s source) String() string {
	return [...]string{"default", "file", "environment", "flag"}[s]
}

// setting is one key and where its value in force came from.
type setting struct {
	flag *pflag.Flag
	src  source
	line int // in the file, when src is fromFile
}

// nodeConfig is the settings of mycel node in force.
type nodeConfig struct {
	dataDir  string
	dataSrc  source
	path     string // the config file
	exists   bool   // whether the file was there
	settings []*setting
	byName   map[string]*setting
	warnings []string // unknown keys
}

// where names the place a setting came from and the setting, for
// messages: the file and line and the key, the variable, or the flag.
func (c *nodeConfig) where(s *setting) string {
	if s.src == fromFile {
		return c.origin(s) + ": " + s.flag.Name
	}
	return c.origin(s)
}

// origin is where a setting came from: the file and line, the variable,
// the flag or "default".
func (c *nodeConfig) origin(s *setting) string {
	switch s.src {
	case fromFile:
		return fmt.Sprintf("%s line %d", c.path, s.line)
	case fromEnv:
		return "$" + envName(s.flag.Name)
	case fromFlag:
		return "--" + s.flag.Name
	}
	return "default"
}

// loadNodeConfig reads the config file and the environment and sets
// every flag of cmd the command line left alone to what they say: the
// flags then hold the settings in force. A file that is not TOML, a value
// the flag refuses and a data directory set in the file are errors; an
// unknown key is a warning (c.warnings).
func loadNodeConfig(cmd *cobra.Command, g *globals) (*nodeConfig, error) {
	c := &nodeConfig{dataDir: g.dataDir(), byName: map[string]*setting{}}
	switch {
	case cmd.Flags().Changed("data"):
		c.dataSrc = fromFlag
	case os.Getenv(node.EnvData) != "":
		c.dataSrc = fromEnv
	}
	c.path = filepath.Join(c.dataDir, configFile)
	data, err := os.ReadFile(c.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading the config file: %w", err)
	default:
		c.exists = true
	}
	file := map[string]any{}
	if c.exists {
		if _, err := toml.Decode(string(data), &file); err != nil {
			return nil, c.parseError(data, err)
		}
	}
	lines := keyLines(data)
	keys := configKeys(cmd)
	for _, f := range keys {
		s := &setting{flag: f}
		c.settings = append(c.settings, s)
		c.byName[f.Name] = s
	}
	if err := c.checkFileKeys(file, lines, keys); err != nil {
		return nil, err
	}
	for _, s := range c.settings {
		name := s.flag.Name
		if v, ok := file[name]; ok {
			// Of the right type even where the environment or a flag
			// overrides it: the file holds no surprise for a later start.
			if _, err := fileValues(s.flag, v); err != nil {
				return nil, fmt.Errorf("%s line %d: %s: %w", c.path, lines[name], name, err)
			}
		}
		if s.flag.Changed {
			s.src = fromFlag
			continue
		}
		if v := os.Getenv(envName(name)); v != "" {
			s.src = fromEnv
			if err := setFromEnv(s.flag, v); err != nil {
				return nil, fmt.Errorf("%s: %w", c.where(s), withValue(strconv.Quote(v), err))
			}
			continue
		}
		if v, ok := file[name]; ok {
			s.src, s.line = fromFile, lines[name]
			if err := setFromFile(s.flag, v); err != nil {
				return nil, fmt.Errorf("%s: %w", c.where(s), err)
			}
		}
	}
	return c, nil
}

// checkFileKeys warns of the file's keys that are no setting, naming the
// one meant where one is close, and refuses the data directory.
func (c *nodeConfig) checkFileKeys(file map[string]any, lines map[string]int, keys []*pflag.Flag) error {
	var names []string
	for k := range file {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int { return lines[a] - lines[b] })
	for _, k := range names {
		if c.byName[k] != nil {
			continue
		}
		at := fmt.Sprintf("%s line %d", c.path, lines[k])
		if k == "data" {
			return fmt.Errorf("%s: data: the data directory is where this file lives: set it with --data or $%s", at, node.EnvData)
		}
		msg := fmt.Sprintf("%s: unknown key %q", at, k)
		if t, ok := file[k].(map[string]any); ok && slices.ContainsFunc(slices.Collect(maps.Keys(t)), func(k string) bool { return c.byName[k] != nil }) {
			msg += " (the keys go at the top of the file, under no [section])"
		} else if near := nearestKey(k, keys); near != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", near)
		}
		c.warnings = append(c.warnings, msg+": ignored")
	}
	return nil
}

// parseError says where the file is not TOML: its line and the key there.
func (c *nodeConfig) parseError(data []byte, err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", c.path, err)
	}
	line := pe.Position.Line
	key := pe.LastKey
	if key == "" && line > 0 {
		text := strings.Split(string(data), "\n")[line-1]
		if m := keyLineRE.FindStringSubmatch(text); m != nil {
			key = m[1] + m[2] + m[3]
		} else {
			key = strconv.Quote(strings.TrimSpace(text))
		}
	}
	return &namedError{msg: fmt.Sprintf("%s line %d: %s: %s", c.path, line, key, pe.Message), err: err}
}

// keyLineRE matches a line that sets a key (key = ..., "key" = ...,
// key.sub = ...) or opens a table ([key]).
var keyLineRE = regexp.MustCompile(`^\s*\[*\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*[=.\]]`)

// keyLines maps each top-level key of a TOML file to the line (from 1)
// where it first appears.
func keyLines(data []byte) map[string]int {
	lines := map[string]int{}
	for i, l := range strings.Split(string(data), "\n") {
		m := keyLineRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if k := m[1] + m[2] + m[3]; lines[k] == 0 {
			lines[k] = i + 1
		}
	}
	return lines
}

// nearestKey is the key an unknown one probably meant: the same but for
// case and '_' for '-', or within two edits of it; "" where none is.
func nearestKey(k string, keys []*pflag.Flag) string {
	norm := strings.ToLower(strings.ReplaceAll(k, "_", "-"))
	best, bestD := "", 3
	for _, f := range keys {
		if f.Name == norm {
			return f.Name
		}
		if d := editDistance(norm, f.Name); d < bestD && d < len(f.Name) {
			best, bestD = f.Name, d
		}
	}
	return best
}

// editDistance is the number of edits (a letter added, removed, changed,
// or two neighbours swapped) that make a into b.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// The kinds of value a flag takes, by its Value's Type.
type valueKind int

const (
	kindString valueKind = iota
	kindBool
	kindNumber
	kindList
)

func kindOf(f *pflag.Flag) valueKind {
	if _, ok := f.Value.(pflag.SliceValue); ok {
		return kindList
	}
	switch t := f.Value.Type(); {
	case t == "bool":
		return kindBool
	case t == "count" || strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint") || strings.HasPrefix(t, "float"):
		return kindNumber
	}
	return kindString
}

// want says what a flag's value should look like, for errors.
func want(f *pflag.Flag) string {
	switch kindOf(f) {
	case kindBool:
		return "want true or false"
	case kindNumber:
		return "want a number"
	case kindList:
		return `want a list such as ["a", "b"]`
	}
	return `want a string in quotes`
}

// setFromEnv sets f to an environment variable's value: as the command
// line's for one value; for a list, comma-separated values (a value with
// a comma in double quotes).
func setFromEnv(f *pflag.Flag, v string) error {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		vals, err := csv.NewReader(strings.NewReader(v)).Read()
		if err != nil {
			return fmt.Errorf("not a comma-separated list: %w", err)
		}
		return setList(f, sv, vals)
	}
	return setOne(f, v)
}

// setFromFile sets f to a value of the TOML file.
func setFromFile(f *pflag.Flag, v any) error {
	vals, err := fileValues(f, v)
	if err != nil {
		return err
	}
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return withValue(tomlLiteral(v), setList(f, sv, vals))
	}
	return withValue(tomlLiteral(v), setOne(f, vals[0]))
}

// fileValues are the values a flag is given by the TOML value v, as the
// command line would give them. A list takes an array or a single value;
// a bool only true or false; the rest a string or a number, which the
// flag's own parser then reads.
func fileValues(f *pflag.Flag, v any) ([]string, error) {
	bad := fmt.Errorf("%s: %s", tomlLiteral(v), want(f))
	scalar := func(v any) (string, bool) {
		switch v := v.(type) {
		case string:
			return v, true
		case int64:
			return strconv.FormatInt(v, 10), true
		case float64:
			return strconv.FormatFloat(v, 'g', -1, 64), true
		}
		return "", false
	}
	switch kindOf(f) {
	case kindList:
		items, ok := v.([]any)
		if !ok {
			items = []any{v}
		}
		vals := make([]string, len(items))
		for i, it := range items {
			if vals[i], ok = scalar(it); !ok {
				return nil, bad
			}
		}
		return vals, nil
	case kindBool:
		b, ok := v.(bool)
		if !ok {
			return nil, bad
		}
		return []string{strconv.FormatBool(b)}, nil
	}
	s, ok := scalar(v)
	if !ok {
		return nil, bad
	}
	return []string{s}, nil
}

// withValue puts the value a flag refused before its error, unless the
// error quotes it already.
func withValue(v string, err error) error {
	if err == nil || strings.Contains(err.Error(), v) {
		return err
	}
	return fmt.Errorf("%s: %w", v, err)
}

func setOne(f *pflag.Flag, v string) error {
	if err := f.Value.Set(v); err != nil {
		if ne := (*strconv.NumError)(nil); errors.As(err, &ne) {
			return errors.New(want(f))
		}
		return err
	}
	f.Changed = true // set, as if on the command line: the command's code asks Changed
	return nil
}

func setList(f *pflag.Flag, sv pflag.SliceValue, vals []string) error {
	if err := sv.Replace(vals); err != nil {
		return err
	}
	f.Changed = true
	return nil
}

// value is a flag's value (its default with def) as the TOML type of its
// kind: []string, bool, int64 or float64, or string.
func value(f *pflag.Flag, def bool) any {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		if !def {
			return append([]string{}, sv.GetSlice()...)
		}
		inner := strings.TrimSuffix(strings.TrimPrefix(f.DefValue, "["), "]")
		if inner == "" {
			return []string{}
		}
		vals, err := csv.NewReader(strings.NewReader(inner)).Read()
		if err != nil {
			return []string{inner}
		}
		return vals
	}
	s := f.Value.String()
	if def {
		s = f.DefValue
	}
	switch kindOf(f) {
	case kindBool:
		if b, err := strconv.ParseBool(s); err == nil {
			return b
		}
	case kindString:
		// A value of its own type (--threads) that reads a number as
		// the number: the file takes either.
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && f.Value.Type() != "string" {
			return n
		}
	case kindNumber:
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
		if x, err := strconv.ParseFloat(s, 64); err == nil {
			return x
		}
	}
	return s
}

// tomlLiteral writes v, a value of the file or of value, as TOML.
func tomlLiteral(v any) string {
	switch v := v.(type) {
	case bool:
		return strconv.FormatBool(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case string:
		return tomlString(v)
	case []string:
		parts := make([]string, len(v))
		for i, s := range v {
			parts[i] = tomlString(s)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case []any:
		parts := make([]string, len(v))
		for i, s := range v {
			parts[i] = tomlLiteral(s)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprint(v)
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// named gives an error of the command that begins with the name of a
// flag (as "--store-cap: ..."), where that setting came from the file or
// the environment, the name of its place instead: "PATH line 3:
// store-cap: ..." or "$MYCEL_STORE_CAP: ...". Another error that names
// such settings (as "node: schedule ...") gets where they came from at
// its end.
func (c *nodeConfig) named(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	isName := func(b byte) bool { return b == '-' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' }
	if strings.HasPrefix(msg, "--") {
		end := 2
		for end < len(msg) && isName(msg[end]) {
			end++
		}
		if s := c.byName[msg[2:end]]; s != nil {
			if s.src == fromFile || s.src == fromEnv {
				return &namedError{msg: c.where(s) + msg[end:], err: err}
			}
			return err
		}
	}
	var from []string
	for _, s := range c.settings {
		if s.src != fromFile && s.src != fromEnv {
			continue
		}
		for i := 0; ; {
			k := strings.Index(msg[i:], s.flag.Name)
			if k < 0 {
				break
			}
			at, end := i+k, i+k+len(s.flag.Name)
			if (at == 0 || !isName(msg[at-1])) && (end == len(msg) || !isName(msg[end])) {
				from = append(from, s.flag.Name+" from "+c.origin(s))
				break
			}
			i = end
		}
	}
	if len(from) == 0 {
		return err
	}
	return &namedError{msg: msg + " (" + strings.Join(from, "; ") + ")", err: err}
}

type namedError struct {
	msg string
	err error
}

func (e *namedError) Error() string { return e.msg }
func (e *namedError) Unwrap() error { return e.err }

// applyLogging sets the log level and format again where the file set
// them: the command line's and the environment's were set before.
func (c *nodeConfig) applyLogging(cmd *cobra.Command) error {
	for _, k := range []string{"log-level", "log-format"} {
		if s := c.byName[k]; s != nil && s.src == fromFile {
			return c.named(setupLogging(cmd))
		}
	}
	return nil
}

// warn prints the warnings on w and logs them.
func (c *nodeConfig) warn(w io.Writer, log bool) {
	for _, m := range c.warnings {
		fmt.Fprintf(w, "mycel node: warning: %s\n", m)
		if log {
			logging.Logger("node").Warn("config: " + m)
		}
	}
}

// printedSetting is a setting as --print-config --json prints it.
type printedSetting struct {
	Key    string `json:"key"`
	Value  any    `json:"value"`
	Source string `json:"source"`          // default, file, environment or flag
	Where  string `json:"where,omitempty"` // the file's path and line, $VARIABLE or --flag
	Env    string `json:"env"`
}

type printedConfig struct {
	DataDir    string           `json:"data_dir"`
	DataSource string           `json:"data_source"`
	File       string           `json:"file"`
	FileExists bool             `json:"file_exists"`
	Settings   []printedSetting `json:"settings"`
}

func (c *nodeConfig) printed() printedConfig {
	p := printedConfig{DataDir: c.dataDir, DataSource: c.dataSrc.String(), File: c.path, FileExists: c.exists}
	for _, s := range c.settings {
		ps := printedSetting{Key: s.flag.Name, Value: value(s.flag, false), Source: s.src.String(), Env: envName(s.flag.Name)}
		if s.src != fromDefault {
			ps.Where = c.origin(s)
		}
		p.Settings = append(p.Settings, ps)
	}
	return p
}

// print writes the settings in force, as TOML with where each came from,
// or as JSON.
func (c *nodeConfig) print(w io.Writer, asJSON bool) error {
	p := c.printed()
	if asJSON {
		return writeJSONOut(w, p)
	}
	dataFrom := map[source]string{fromDefault: "default", fromEnv: "$" + node.EnvData, fromFlag: "--data"}[c.dataSrc]
	state := "read"
	if !c.exists {
		state = "absent: every setting below is its default, the environment's or a flag's"
	}
	fmt.Fprintf(w, "# mycel node: the settings in force, and where each came from\n")
	fmt.Fprintf(w, "# data directory %s (%s)\n# config file %s (%s)\n", c.dataDir, dataFrom, c.path, state)
	lines := make([]string, len(p.Settings))
	width := 0
	for i, s := range p.Settings {
		lines[i] = s.Key + " = " + tomlLiteral(s.Value)
		width = max(width, len(lines[i]))
	}
	width = min(width, 48)
	for i, s := range p.Settings {
		where := s.Where
		if where == "" {
			where = "default"
		}
		fmt.Fprintf(w, "%-*s  # %s\n", width, lines[i], where)
	}
	return nil
}

// configTemplate is the config file the node writes on its first start:
// every key commented out with its default, its help, its flag and its
// variable. A line "#key = value" is a setting: taking away the '#' sets
// it; a line "# ..." is help.
func configTemplate(cmd *cobra.Command) string {
	var b strings.Builder
	b.WriteString(`# mycel.toml: the settings of mycel node on this machine.
#
# Each key is a flag of mycel node (mycel node --help) and an environment
# variable MYCEL_<KEY> (upper case, '-' as '_'). A flag wins over the
# variable, and the variable over this file. Every key below is commented
# out, at its default: take away the '#' before a key and change its value
# to set it. A list takes ["a", "b"]. The node reads this file when it
# starts: restart it after an edit. mycel node --print-config shows the
# settings in force and where each came from.
#
# The data directory (--data or $MYCEL_DATA, default ~/.mycel) is the
# directory this file is in.
`)
	for _, f := range configKeys(cmd) {
		b.WriteString("\n")
		_, usage := pflag.UnquoteUsage(f)
		for _, l := range wrap(usage, 76) {
			b.WriteString("# " + l + "\n")
		}
		fmt.Fprintf(&b, "# (%s, $%s)\n", flagNames(f), envName(f.Name))
		fmt.Fprintf(&b, "#%s = %s\n", f.Name, tomlLiteral(value(f, true)))
	}
	return b.String()
}

// flagNames is "--name" or "-n, --name".
func flagNames(f *pflag.Flag) string {
	if f.Shorthand != "" {
		return "-" + f.Shorthand + ", --" + f.Name
	}
	return "--" + f.Name
}

// wrap cuts text into lines of at most width bytes at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}

// writeTemplate writes the config file where there is none yet.
func (c *nodeConfig) writeTemplate(cmd *cobra.Command) error {
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(c.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := f.WriteString(configTemplate(cmd)); err != nil {
		f.Close()
		os.Remove(c.path)
		return err
	}
	return f.Close()
}

// configTable is the table of settings of docs/operations.md.
func configTable(cmd *cobra.Command) string {
	var b strings.Builder
	b.WriteString("| key | flag | environment | default | meaning |\n|---|---|---|---|---|\n")
	row := func(key, flag, env, def, usage string) {
		fmt.Fprintf(&b, "| %s | %s | `%s` | %s | %s |\n", key, flag, env, def, strings.ReplaceAll(usage, "|", `\|`))
	}
	cmd.InheritedFlags()
	if f := cmd.Flags().Lookup("data"); f != nil {
		_, usage := pflag.UnquoteUsage(f)
		row("(none)", "`--data`", node.EnvData, "`~/.mycel`", usage+"; not a key: the file is in it")
	}
	for _, f := range configKeys(cmd) {
		_, usage := pflag.UnquoteUsage(f)
		flag := "`--" + f.Name + "`"
		if f.Shorthand != "" {
			flag = "`-" + f.Shorthand + "`, " + flag
		}
		row("`"+f.Name+"`", flag, envName(f.Name), "`"+tomlLiteral(value(f, true))+"`", usage)
	}
	return b.String()
}

// fileSetting is the string a config file in dataDir gives key, or ""
// (no file, no such key, not a string, a file that is not TOML): how the
// other commands find the node's --api when the file sets it.
func fileSetting(dataDir, key string) string {
	data, err := os.ReadFile(filepath.Join(dataDir, configFile))
	if err != nil {
		return ""
	}
	var file map[string]any
	if _, err := toml.Decode(string(data), &file); err != nil {
		return ""
	}
	s, _ := file[key].(string)
	return s
}

// withConfig gives mycel node its config: the file and the environment
// set the flags the command line left alone before the command runs;
// --print-config prints them; the command's errors name where a setting
// came from; the first start writes the file's template.
func withConfig(cmd *cobra.Command, g *globals) *cobra.Command {
	var printConfig, asJSON, table bool
	fl := cmd.Flags()
	fl.BoolVar(&printConfig, "print-config", false, "print the settings in force, each with where it came from (default, "+configFile+" in the data directory, environment, flag), and exit")
	fl.BoolVar(&asJSON, "json", false, "with --print-config: print a JSON object")
	fl.BoolVar(&table, "config-table", false, "print the table of settings of docs/operations.md and exit")
	fl.MarkHidden("config-table")
	notConfigKeys(cmd, "print-config", "json", "config-table")
	run := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if table {
			_, err := io.WriteString(cmd.OutOrStdout(), configTable(cmd))
			return err
		}
		if asJSON && !printConfig {
			return errors.New("--json goes with --print-config")
		}
		c, err := loadNodeConfig(cmd, g)
		if err != nil {
			return err
		}
		if printConfig {
			c.warn(cmd.ErrOrStderr(), false)
			return c.print(cmd.OutOrStdout(), asJSON)
		}
		if err := c.applyLogging(cmd); err != nil {
			return err
		}
		c.warn(cmd.ErrOrStderr(), true)
		if !c.exists {
			if err := c.writeTemplate(cmd); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "mycel node: warning: writing the config file: %v\n", err)
			} else {
				fmt.Fprintf(cmd.ErrOrStderr(), "mycel node: wrote %s, every setting in it commented out at its default\n", c.path)
			}
		}
		return c.named(run(cmd, args))
	}
	return cmd
}

// choice is a flag value that takes one of a few words, checked as the
// flag (or the config) is read.
type choice struct {
	p     *string
	words []string
}

// choiceValue is a flag value for *p that takes one of words; it starts
// at the first.
func choiceValue(p *string, words ...string) pflag.Value {
	*p = words[0]
	return &choice{p: p, words: words}
}

func (c *choice) Set(s string) error {
	if !slices.Contains(c.words, s) {
		return fmt.Errorf("want %s or %s", strings.Join(c.words[:len(c.words)-1], ", "), c.words[len(c.words)-1])
	}
	*c.p = s
	return nil
}

func (c *choice) String() string { return *c.p }
func (c *choice) Type() string   { return "string" }
