package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mycel-net/mycel/internal/units"
	"github.com/mycel-net/mycel/node"
	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/p2p"
)

// globals are the flags every subcommand sees.
type globals struct {
	// api is where the commands that talk to a running node find its
	// control API (--api; default $MYCEL_API, then api.DefaultAddr).
	api string
	// data is the node's data directory (--data; default
	// node.DefaultDataDir): where mycel node keeps its stores, and where
	// the other commands read the API token they send.
	data string
}

func (g *globals) apiAddr() string {
	if g.api != "" {
		return g.api
	}
	if a := os.Getenv(api.EnvAddr); a != "" {
		return a
	}
	return fileSetting(g.dataDir(), "api") // the node's, set in its config file
}

// client is a client of the node's control API that sends the API token:
// $MYCEL_API_TOKEN, else the one in the data directory (none where no
// node has started yet; a node on loopback needs none).
func (g *globals) client() *api.Client {
	return api.NewClient(g.apiAddr()).WithToken(g.apiToken())
}

func (g *globals) apiToken() string {
	if t := os.Getenv(api.EnvToken); t != "" {
		return t
	}
	t, _ := api.ReadToken(g.dataDir())
	return t
}

func (g *globals) dataDir() string {
	if g.data != "" {
		return g.data
	}
	return node.DefaultDataDir()
}

func newNodeCmd(g *globals) *cobra.Command {
	var cfg node.Config
	var caps capFlags
	var models []string
	var tokPath string
	var threads int
	var serve node.ServeRequest
	port := strconv.Itoa(p2p.DefaultPort)
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run a Mycel node in the foreground",
		Long: `Run a Mycel node: a libp2p host in the Kademlia DHT, an on-disk block store
shared over block streams and bitswap, and a control API on the loopback
interface that the other commands use. Stop it with Ctrl-C (SIGINT) or
SIGTERM.

The API answers only requests whose Host is localhost, a loopback address,
its listen address or one of --allowed-hosts, and web pages only from
those hosts or --cors-origins. Given a non-loopback --api address, it
answers only requests that carry the token the node keeps in its data
directory (api-token), as "Authorization: Bearer TOKEN"; the other mycel
commands send it themselves (or $MYCEL_API_TOKEN).`,
		Example: `  mycel node
  mycel node --model stories15M=stories15M.bin -z tokenizer.bin   # and an OpenAI client at http://127.0.0.1:5150/v1
  mycel node --model tiny=stories260K.bin:tok512.bin --model llama=model.gguf   # a tokenizer per model; a GGUF has its own
  mycel node --serve bagu...model-cid --max-layers 8              # volunteer: serve the layers the swarm needs most
  mycel node --serve stories15M --layers 0:3                      # serve layers 0-2 for good
  mycel node --serve mixtral --layers 0:8 --experts 0-3           # serve experts 0-3 of layers 0-7; others hold the rest
  mycel node --train --train-memory 4GB                           # volunteer: train fine-tuning jobs that fit in 4 GB
  mycel node --api 0.0.0.0:5150 --allowed-hosts mybox.lan         # API for the LAN too: requests need ~/.mycel/api-token
  mycel node --data /srv/mycel --listen /ip4/0.0.0.0/tcp/` + port + ` --bootstrap /ip4/203.0.113.7/tcp/` + port + `/p2p/12D3Koo...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := parseCaps(&cfg, caps); err != nil {
				return err
			}
			cfg.Threads, cfg.TrainThreads = threads, threads
			if threads > 0 {
				// Everything the node runs computes on at most this many
				// cores at once: each backend's pool (node.Config.Threads)
				// and, together, the Go code of the process.
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(threads))
			}
			if a := g.apiAddr(); a != "" {
				cfg.APIAddr = strings.TrimPrefix(a, "http://")
			}
			cfg.DataDir = g.data
			n, err := node.New(cfg)
			if err != nil {
				return err
			}
			defer n.Close()
			for _, spec := range models {
				mc, err := parseModelSpec(spec)
				if err != nil {
					return fmt.Errorf("--model %s: %w", spec, err)
				}
				mc.DefaultTokenizer, mc.Threads = tokPath, threads
				lm, err := node.OpenLocalModel(mc)
				if errors.Is(err, node.ErrNoTokenizer) {
					return fmt.Errorf("--model %s: %w: give it one as NAME=FILE:TOKENIZER (for llama2.c models, the tokenizer.bin that came with it), or with -z for every model that has none", spec, err)
				}
				if err != nil {
					return fmt.Errorf("--model %s: %w", spec, err)
				}
				defer lm.Close()
				n.AddCompleter(lm)
			}
			ctx := cmd.Context()
			if err := n.Start(ctx); err != nil {
				return err
			}
			st := n.Status()
			w := cmd.ErrOrStderr()
			fmt.Fprintf(w, "mycel node %s\n", st.ID)
			for _, a := range st.Addrs {
				fmt.Fprintf(w, "  listening on %s\n", a)
			}
			if st.PrivateSwarm != "" {
				fmt.Fprintf(w, "  in private swarm %s: connecting only to nodes with the same key\n", st.PrivateSwarm)
			}
			fmt.Fprintf(w, "  control API on %s, data in %s\n", n.APIURL(), st.DataDir)
			if n.APITokenRequired() {
				fmt.Fprintf(w, "  the API answers only requests with the token in %s\n", n.APITokenFile())
				fmt.Fprintf(w, "  status page on %s/ (mycel status --page prints its address with the token)\n", n.APIURL())
			} else {
				fmt.Fprintf(w, "  status page on %s/\n", n.APIURL())
			}
			if len(models) > 0 {
				fmt.Fprintf(w, "  OpenAI-compatible API on %s/v1 serving %s\n", n.APIURL(), strings.Join(n.CompleterNames(), ", "))
			}
			if cfg.Train {
				fmt.Fprintf(w, "  volunteering for fine-tuning jobs (mycel train ls lists them)\n")
			}
			if serve.Model != "" {
				serve.Threads = threads
				fmt.Fprintf(w, "  joining the swarm of %s...\n", serve.Model)
				sv, err := n.Serve(ctx, serve)
				if err != nil {
					return fmt.Errorf("--serve %s: %w", serve.Model, err)
				}
				fmt.Fprintf(w, "  %s\n", servingLine(sv.Span().First, sv.Span().Last, serve.Model, sv.Throughput(), serve.Layers != ""))
			}
			<-ctx.Done()
			fmt.Fprintln(w, "mycel node: shutting down")
			return n.Close()
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&cfg.AllowedHosts, "allowed-hosts", nil, "further names and addresses the API answers in a request's Host, such as mybox.lan or .lan (repeatable; \"*\": any)")
	fl.StringSliceVar(&cfg.CORSOrigins, "cors-origins", nil, "web origins whose pages may call the API, such as https://app.example (repeatable; \"*\": any site)")
	fl.StringSliceVar(&cfg.Listen, "listen", nil, "libp2p listen multiaddr (repeatable; default TCP and QUIC on port "+port+")")
	fl.StringSliceVar(&cfg.Bootstrap, "bootstrap", nil, "peer to join through, as /.../p2p/ID (repeatable)")
	fl.StringVar(&cfg.SwarmKey, "swarm-key", "", "join the private swarm of this key file (mycel swarm key writes one): connect only to nodes with the same key, over TCP (default: DATA/swarm.key if there is one, else the public swarm)")
	fl.StringVar(&caps.store, "store-cap", "", "most disk the block store may use, e.g. 50GB (default: no cap)")
	fl.Var(choiceValue(&cfg.DHTMode, "auto", "server", "client"), "dht", "DHT mode: auto, server or client")
	fl.BoolVar(&cfg.NoMDNS, "no-mdns", false, "do not look for peers on the local network")
	fl.StringArrayVar(&models, "model", nil, "serve a local model file through the OpenAI-compatible API, as [NAME=]FILE[:TOKENIZER] (repeatable); TOKENIZER replaces the file's own")
	fl.StringVarP(&tokPath, "tokenizer", "z", "", "tokenizer for the --model files that have none inside (llama2.c); a GGUF keeps its own")
	threadsFlag(cmd, &threads, "compute threads of everything the node runs: --model, --serve and --train")
	fl.StringVar(&serve.Model, "serve", "", "serve layers of this model (CID or name) to the swarm")
	fl.StringVar(&serve.Layers, "layers", "", "with --serve: serve layers A:B for good (default: choose, and move as the swarm needs)")
	fl.IntVar(&serve.MaxLayers, "max-layers", 0, "with --serve: hold at most this many layers (default: all that --serve-memory allows)")
	fl.StringVar(&serve.Experts, "experts", "", `with --serve, for a mixture of experts: hold these routed experts of each layer, e.g. "0-3,8" (default: all, or as many as --serve-memory allows where it holds not one whole layer, picked where the swarm needs them)`)
	fl.StringVar(&caps.serveMem, "serve-memory", "", "with --serve: most memory for weights and KV caches, e.g. 8GB (default: no cap)")
	fl.BoolVar(&cfg.Train, "train", false, "volunteer for fine-tuning jobs on the swarm: take those that fit, one at a time")
	fl.StringVar(&caps.trainMem, "train-memory", "", "with --train: most memory a job may take, e.g. 4GB (default: no cap)")
	fl.StringVar(&caps.up, "max-upload", "", "most bandwidth the node sends with, e.g. 10MB/s or 80Mbit/s (default: no cap)")
	fl.StringVar(&caps.down, "max-download", "", "most bandwidth the node receives with, e.g. 10MB/s or 80Mbit/s (default: no cap)")
	fl.StringVar(&caps.daily, "daily-transfer", "", "most bytes sent and received in a day (local midnight to midnight), e.g. 20GB; once spent the node stops working until midnight (default: no cap)")
	fl.BoolVar(&cfg.IdleOnly, "idle-only", false, "work only while the machine is otherwise idle: stop while other programs use more than --idle-threshold of the CPU (Linux)")
	fl.Float64Var(&cfg.IdleThreshold, "idle-threshold", node.DefaultIdleThreshold, "with --idle-only: percent of the machine's CPU (all cores) other programs may use before the node stops")
	fl.DurationVar(&cfg.IdleWait, "idle-wait", node.DefaultIdleWait, "with --idle-only: how long other programs must stay below the threshold before the node works again")
	fl.StringVar(&cfg.Schedule, "schedule", "", `weekly hours to work, local time, e.g. "mon-fri 18:00-08:00, sat-sun all" (default: every hour)`)
	fl.BoolVar(&cfg.Paused, "paused", false, "start paused: serve and train nothing until mycel node resume")
	cmd.AddCommand(newNodePauseCmd(g), newNodeResumeCmd(g), newNodeCreditCmd(g))
	return withConfig(cmd, g)
}

func newNodePauseCmd(g *globals) *cobra.Command {
	var d time.Duration
	cmd := &cobra.Command{
		Use:   "pause",
		Short: "Pause the running node's work: it stops serving layers and training, and clients go elsewhere",
		Long: `Pause the running node's work for the swarm: it withdraws the layers it
serves (the clients of its open inference sessions re-route at once) and
leaves the job it trains at a round's boundary. It keeps serving blocks and
its API. Without --for it stays paused until mycel node resume; a restart
starts it working again (unless it runs with --paused).`,
		Example: `  mycel node pause
  mycel node pause --for 2h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if d < 0 {
				return fmt.Errorf("--for %s: want a positive duration such as 2h or 30m", d)
			}
			ws, err := g.client().Pause(cmd.Context(), d)
			if err != nil {
				return err
			}
			printWorkState(cmd.OutOrStdout(), ws)
			return nil
		},
	}
	cmd.Flags().DurationVar(&d, "for", 0, "resume by itself after this long, e.g. 2h or 30m (default: until mycel node resume)")
	return cmd
}

func newNodeResumeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "resume",
		Short: "End the running node's pause",
		Long: `End the pause of mycel node pause: the node serves and trains again, unless
something else holds it (outside its --schedule, other programs busy with
--idle-only, the day's transfer limit spent), which it prints.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ws, err := g.client().Resume(cmd.Context())
			if err != nil {
				return err
			}
			printWorkState(cmd.OutOrStdout(), ws)
			return nil
		},
	}
}

// printWorkState prints the node's work state: the state, and the
// reason of every suspension.
func printWorkState(w io.Writer, ws api.WorkState) {
	fmt.Fprintf(w, "%s\n", ws.State)
	for _, s := range ws.Suspensions {
		fmt.Fprintf(w, "  %s: %s\n", s.Word, s.Reason)
	}
}

// parseModelSpec reads a --model value, [NAME=]FILE[:TOKENIZER]. A FILE
// whose name holds a colon is told from FILE:TOKENIZER by which exists:
// the whole value when it is a file, else the first colon after a file.
func parseModelSpec(spec string) (node.LocalModelConfig, error) {
	var mc node.LocalModelConfig
	name, rest, ok := strings.Cut(spec, "=")
	if !ok {
		name, rest = "", spec
	}
	mc.Name, mc.Path = name, rest
	isFile := func(p string) bool {
		fi, err := os.Stat(p)
		return err == nil && !fi.IsDir()
	}
	if isFile(rest) || !strings.Contains(rest, ":") {
		return mc, nil
	}
	cut := strings.LastIndexByte(rest, ':')
	for i := range len(rest) {
		if rest[i] == ':' && isFile(rest[:i]) {
			cut = i
			break
		}
	}
	mc.Path, mc.Tokenizer = rest[:cut], rest[cut+1:]
	if mc.Tokenizer == "" {
		return mc, fmt.Errorf("nothing after the colon: give FILE:TOKENIZER, or FILE alone for a model with its own tokenizer")
	}
	return mc, nil
}

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON, page bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running node's identity, addresses, peers and DHT",
		Long: `Show the running node's identity, addresses, peers and DHT.

The node also serves a status page, live in a browser, at its API's
address (http://127.0.0.1:5150/ by default); --page prints that address,
with the API token in it where the node wants one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if page {
				u, err := g.client().PageURL(cmd.Context())
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), u)
				return nil
			}
			st, err := g.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSONOut(out, st)
			}
			fmt.Fprintf(out, "id        %s\n", st.ID)
			for i, a := range st.Addrs {
				label := ""
				if i == 0 {
					label = "addrs"
				}
				fmt.Fprintf(out, "%-9s %s\n", label, a)
			}
			if st.PrivateSwarm != "" {
				fmt.Fprintf(out, "swarm     private %s (only nodes with the same key)\n", st.PrivateSwarm)
			}
			fmt.Fprintf(out, "peers     %d connected\n", len(st.Peers))
			fmt.Fprintf(out, "work      %s: %s\n", st.State, st.Reason)
			d := st.DHT
			fmt.Fprintf(out, "dht       lan %s, %d peers; wan %s, %d peers (--dht %s)\n", d.LAN.Mode, d.LAN.Peers, d.WAN.Mode, d.WAN.Peers, d.Setting)
			capStr := "no cap"
			if st.StoreCap > 0 {
				capStr = "cap " + units.FormatBytes(st.StoreCap)
			}
			fmt.Fprintf(out, "store     %s (%s) in %s\n", units.FormatBytes(st.StoreBytes), capStr, st.DataDir)
			printCaps(out, st)
			switch {
			case st.UnreferencedBytes > 0:
				fmt.Fprintf(out, "unused    %s in blocks no kept model uses (mycel store gc removes them)\n", units.FormatBytes(st.UnreferencedBytes))
			case st.UnreferencedBytes < 0:
				fmt.Fprintln(out, "unused    not counted while an import or pull runs")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object")
	cmd.Flags().BoolVar(&page, "page", false, "print the address of the node's status page, to open in a browser")
	return cmd
}
