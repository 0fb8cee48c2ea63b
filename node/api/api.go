package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/mycel-net/mycel/checkpoints/shards"
	"github.com/mycel-net/mycel/train"
)

// Prefix is the path prefix of every control API endpoint. The API is
// versioned by this prefix; docs/protocol.md lists the endpoints.
const Prefix = "/api/v0"

// DefaultAddr is where the control API listens unless told otherwise.
const DefaultAddr = "127.0.0.1:5150"

// EnvAddr names the environment variable the command line reads the API
// address from.
const EnvAddr = "MYCEL_API"

// ExportErrorTrailer is the trailer of a GGUF export that failed after its
// first bytes were sent: it carries the error.
const ExportErrorTrailer = "Mycel-Error"

// The kinds of failure the API answers with a status of their own. The
// node's functions wrap them; the server maps them to 400, 404 and 409,
// and a client's *StatusError matches them again. ErrUnauthorized (401:
// the token is missing or wrong) and ErrForbidden (403: a Host or Origin
// the API does not accept) come from the server's own checks.
var (
	ErrBadRequest   = errors.New("bad request")
	ErrNotFound     = errors.New("not found")
	ErrBusy         = errors.New("busy")
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
)

// ErrNoNode means nothing answered at the API address.
var ErrNoNode = errors.New("no Mycel node is running there")

// ErrorBody is the body of every failed API call.
type ErrorBody struct {
	Error string `json:"error"`
}

// StatusError is a failed call: the node's message, unchanged, and the
// HTTP status it came with.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string { return e.Message }

// Is matches the sentinel of the error's status.
func (e *StatusError) Is(target error) bool {
	switch e.Status {
	case http.StatusBadRequest:
		return target == ErrBadRequest
	case http.StatusNotFound:
		return target == ErrNotFound
	case http.StatusConflict:
		return target == ErrBusy
	case http.StatusUnauthorized:
		return target == ErrUnauthorized
	case http.StatusForbidden:
		return target == ErrForbidden
	}
	return false
}

// Status is a snapshot of the node, as `mycel status` shows it.
type Status struct {
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"` // with /p2p/<id>
	Peers []string `json:"peers"`
	// PrivateSwarm is the ID of the private swarm the node is a member of
	// (p2p.SwarmKeyID of its key), or empty for the public swarm.
	PrivateSwarm string `json:"private_swarm,omitempty"`
	// DHT is the mode and routing table size of the LAN and the WAN DHT.
	DHT        DHTStatus `json:"dht"`
	StoreBytes int64     `json:"store_bytes"`
	StoreCap   int64     `json:"store_cap"`
	DataDir    string    `json:"data_dir"`
	// Caps are the limits set on what the node may use, and today's
	// transfer.
	Caps Caps `json:"caps"`

	// UnreferencedBytes are the bytes of blocks that no kept model, data
	// set or unfinished pull uses, which mycel store gc removes (-1: not
	// counted while an import or pull runs).
	UnreferencedBytes int64 `json:"unreferenced_bytes"`

	// Version is the node's software version; Started when it started.
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// Reach is how other peers reach the node.
	Reach Reach `json:"reach"`
	// Serving are the spans of models the node serves to the swarm.
	Serving []Serving `json:"serving"`
	// Counters are the running totals of the node's work.
	Counters Counters `json:"counters"`

	// WorkState says whether the node works: its fields, state, reason
	// and suspensions, sit in the status object itself.
	WorkState
}

// WorkState says whether the node works for the swarm (serves layers,
// trains), and if not, why: the answer of GET /status (inside Status),
// POST /pause and POST /resume.
type WorkState struct {
	// State is "working", or the word of the first reason the node does
	// not work: "paused" (the volunteer paused it), "over-limit" (the
	// day's transfer limit is spent), "off-schedule" (outside the weekly
	// schedule), "busy" (idle-only, and other programs use the CPU), or
	// another part's word.
	State string `json:"state"`
	// Reason is a sentence for a human: why the node works or not,
	// naming every suspension in force.
	Reason string `json:"reason"`
	// Since is when the node last started or stopped working.
	Since time.Time `json:"state_since"`
	// Suspensions are all the reasons in force, the first being State's.
	Suspensions []Suspension `json:"suspensions,omitempty"`
}

// Suspension is one reason the node does not work.
type Suspension struct {
	Word   string    `json:"word"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	// Until is when it ends by itself (a pause with a duration).
	Until *time.Time `json:"until,omitempty"`
}

// PauseRequest is the optional body of POST /pause: For is a duration
// such as "2h" or "30m" after which the node resumes by itself; empty:
// until POST /resume.
type PauseRequest struct {
	For string `json:"for,omitempty"`
}

// DHTStatus is what the node's two DHTs look like now (p2p.DHTStatus).
type DHTStatus struct {
	// Setting is the mode the node was started with: "auto", "server" or
	// "client".
	Setting string   `json:"setting"`
	LAN     DHTTable `json:"lan"`
	WAN     DHTTable `json:"wan"`
}

// DHTTable is one DHT's mode and routing table size (p2p.DHTTable).
type DHTTable struct {
	// Mode is "server" while the node answers this DHT's queries, else
	// "client".
	Mode string `json:"mode"`
	// Peers is the number of peers in its routing table.
	Peers int `json:"peers"`
}

// ModelEntry is one model the node keeps (or one data set: the lists
// share the shape).
type ModelEntry struct {
	CID   string    `json:"cid"`
	Name  string    `json:"name,omitempty"`
	Added time.Time `json:"added"`
}

// ImportRequest asks the node to import a model file on its disk.
type ImportRequest struct {
	Path      string `json:"path"`
	Name      string `json:"name,omitempty"`
	DType     string `json:"dtype,omitempty"`     // quantize on import: f16, q8_0, q4_0...
	Tokenizer string `json:"tokenizer,omitempty"` // for files without one inside
}

// ImportResult reports an import.
type ImportResult struct {
	CID    string  `json:"cid"`
	Name   string  `json:"name,omitempty"`
	Bytes  int64   `json:"bytes"`
	Blocks int     `json:"blocks"`
	MBps   float64 `json:"mb_per_s"`
}

// PullRequest asks the node to fetch a model, or a span of its layers.
type PullRequest struct {
	CID    string `json:"cid"`              // or the name of a model the node knows
	Layers string `json:"layers,omitempty"` // "A:B"; empty: all, with embedding and head
	// Experts, for a mixture of experts, is the routed experts of the
	// layers to fetch, as ranges ("0-3,8"); empty: every one.
	Experts string `json:"experts,omitempty"`
	// Timeout bounds the whole pull (default 10 minutes).
	Timeout string `json:"timeout,omitempty"`
}

// PullProgress is one line of a pull's progress.
type PullProgress struct {
	DoneBlocks  int    `json:"done_blocks"`
	TotalBlocks int    `json:"total_blocks"`
	DoneBytes   int64  `json:"done_bytes"`
	TotalBytes  int64  `json:"total_bytes"`
	Done        bool   `json:"done,omitempty"`
	CID         string `json:"cid,omitempty"`
	Error       string `json:"error,omitempty"`
}

// ModelInfo describes a model the node keeps, and how much of it is here.
type ModelInfo struct {
	ModelEntry
	Manifest *shards.Manifest `json:"manifest,omitempty"`
	Parts    []PartInfo       `json:"parts,omitempty"`
	// LocalParts of TotalParts parts have every block here.
	LocalParts int   `json:"local_parts"`
	TotalParts int   `json:"total_parts"`
	Bytes      int64 `json:"bytes"`
	// Whole: every block of the model is here, its tokenizer's included.
	Whole bool `json:"whole"`
}

// PartInfo is one part of a model.
type PartInfo struct {
	Name    string `json:"name"` // "embedding", "layer 3", "head"
	CID     string `json:"cid"`
	Bytes   int64  `json:"bytes"`
	Tensors int    `json:"tensors"`
	Local   bool   `json:"local"`
}

// GCRequest asks the node to collect its block store.
type GCRequest struct {
	DryRun bool `json:"dry_run,omitempty"`
}

// GCResult reports a collection of the block store.
type GCResult struct {
	// Blocks and Bytes are the unreferenced blocks removed; with DryRun,
	// those that would be.
	Blocks int   `json:"blocks"`
	Bytes  int64 `json:"bytes"`
	DryRun bool  `json:"dry_run,omitempty"`
	// Unfinished are the CIDs of pulls begun and not completed, whose
	// blocks are kept for the pull to resume.
	Unfinished []string `json:"unfinished,omitempty"`
}

// SwarmStatus is the swarm's coverage of one model, as the node sees it.
type SwarmStatus struct {
	Model  string `json:"model"`
	Name   string `json:"name,omitempty"`
	Layers int    `json:"layers"`
	// Servers are the live records, sorted by first layer.
	Servers []ServerInfo `json:"servers"`
	// Coverage is each layer's throughput (tokens/s) summed over its
	// servers; Missing the runs of layers nobody serves; Weak the layers
	// whose coverage is under a third of the median.
	Coverage []float64   `json:"coverage"`
	Missing  []LayerSpan `json:"missing"`
	Weak     []int       `json:"weak"`
}

// ServerInfo is one server of a model.
type ServerInfo struct {
	Peer          string    `json:"peer"`
	First         int       `json:"first"`
	Last          int       `json:"last"`
	Throughput    float64   `json:"throughput"`
	FreePositions int       `json:"free_positions"`
	State         string    `json:"state"`
	Latency       string    `json:"latency,omitempty"`
	Expires       time.Time `json:"expires"`
	Self          bool      `json:"self,omitempty"`
	Software      string    `json:"software,omitempty"`
	// Experts is the routed experts of its layers it holds, as ranges
	// ("0-3,8"); empty: every one.
	Experts string `json:"experts,omitempty"`
}

// LayerSpan is layers [First, Last).
type LayerSpan struct {
	First int `json:"first"`
	Last  int `json:"last"`
}

// GenerateRequest asks the node to generate through the swarm (POST
// /api/v0/generate); the answer is a stream of GenerateEvent lines.
type GenerateRequest struct {
	Model     string  `json:"model"`
	Prompt    string  `json:"prompt"`
	MaxTokens int     `json:"max_tokens"`
	Temp      float32 `json:"temperature"`
	TopK      int     `json:"top_k,omitempty"`
	TopP      float32 `json:"top_p,omitempty"`
	Seed      uint64  `json:"seed"`
	// Verify checks every step against a second server of the same span.
	Verify bool `json:"verify,omitempty"`
	// IgnoreEOS generates past the model's end of text up to MaxTokens.
	IgnoreEOS bool `json:"ignore_eos,omitempty"`
}

// FinishReason says why a completion ended, in OpenAI's words.
type FinishReason string

const (
	FinishStop   FinishReason = "stop"   // end of sequence or a stop string
	FinishLength FinishReason = "length" // MaxTokens reached
)

// GenerateEvent is one line of a generation's stream: text, a route
// change, or the end (Done, with the counts, or Error).
type GenerateEvent struct {
	Text  string     `json:"text,omitempty"`
	Route *RouteInfo `json:"route,omitempty"`
	Done  bool       `json:"done,omitempty"`
	Error string     `json:"error,omitempty"`
	// At the end:
	PromptTokens     int     `json:"prompt_tokens,omitempty"`
	CompletionTokens int     `json:"completion_tokens,omitempty"`
	Seconds          float64 `json:"seconds,omitempty"`
	// Finish is why the generation ended: "stop" (the end of text) or
	// "length" (max_tokens).
	Finish FinishReason `json:"finish_reason,omitempty"`
}

// RouteInfo is a route event: kind is "route", "hop failed", "re-route",
// "left" (the server replaced went away; first:last moved to chain, and
// to peer when one server took it all; a shadow has no chain), "banned",
// or with verification "shadow", "unverified" or "mismatch".
type RouteInfo struct {
	Kind     string `json:"kind"`
	Peer     string `json:"peer"`
	First    int    `json:"first"`
	Last     int    `json:"last"`
	Replaced string `json:"replaced,omitempty"`
	Other    string `json:"other,omitempty"` // the second server of a shadow or mismatch, or the primary a shadow that left followed
	Replayed int    `json:"replayed,omitempty"`
	Error    string `json:"error,omitempty"`
	// Chain is the servers that took over the layers of a server that left.
	Chain []RouteHop `json:"chain,omitempty"`
}

// RouteHop is a server of a route and the layers it runs.
type RouteHop struct {
	Peer  string `json:"peer"`
	First int    `json:"first"`
	Last  int    `json:"last"`
}

// DataImportResult reports a data set import (POST /api/v0/data/import).
type DataImportResult struct {
	CID  string `json:"cid"`
	Name string `json:"name,omitempty"`
	// Format is train.FormatText, FormatJSONText or FormatJSONPair.
	Format   string `json:"format"`
	Examples int    `json:"examples"`
	// Bytes is the file's size; Blocks counts the blocks stored, the
	// manifest's included.
	Bytes  int64 `json:"bytes"`
	Blocks int   `json:"blocks"`
}

// DataPullRequest asks the node to fetch a data set.
type DataPullRequest struct {
	CID string `json:"cid"` // or the name of a data set the node knows
	// Timeout bounds the whole pull (default 10 minutes).
	Timeout string `json:"timeout,omitempty"`
}

// DataInfo describes a data set the node keeps.
type DataInfo struct {
	ModelEntry
	Format   string `json:"format"`
	Examples int    `json:"examples"`
	Bytes    int64  `json:"bytes"`
	// LocalBlocks of TotalBlocks blocks of the file are here; Whole: all
	// of them, and the manifest.
	LocalBlocks int  `json:"local_blocks"`
	TotalBlocks int  `json:"total_blocks"`
	Whole       bool `json:"whole"`

	// Inspecting one data set adds the first examples (each text cut at
	// SampleChars characters) and, when a model was named, the token
	// counts with its tokenizer.
	Sample []DataSample `json:"sample,omitempty"`
	Tokens *DataTokens  `json:"tokens,omitempty"`
}

// SampleChars is how much of each text of a sample the node sends.
const SampleChars = 2000

// DataSample is one example of a data set as inspected.
type DataSample struct {
	train.Record
	// Cut: a text was longer than SampleChars and is cut short here.
	Cut bool `json:"cut,omitempty"`
	// Tokens and Trained count the example's tokens with the model's
	// tokenizer (the beginning and end of sequence included), and those
	// of them that count in the loss.
	Tokens  int `json:"tokens,omitempty"`
	Trained int `json:"trained,omitempty"`
}

// DataTokens counts a whole data set's tokens with a model's tokenizer,
// as training tokenizes it (train.Tokenize).
type DataTokens struct {
	Model string `json:"model"` // the model's CID
	// Tokens of every example, the beginning and end of sequence
	// included; Trained, those that count in the loss; Longest, the
	// tokens of the longest example.
	Tokens  int64 `json:"tokens"`
	Trained int64 `json:"trained"`
	Longest int   `json:"longest"`
}
