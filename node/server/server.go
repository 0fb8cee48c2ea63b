// Package server is the node's HTTP front: the control API under
// api.Prefix, which the mycel command line calls through api.Client, the
// OpenAI-compatible API of package openai, the node's metrics for
// Prometheus at /metrics and its status page at / (page.go), on one
// handler. It only
// translates between HTTP and a Backend (the daemon, package node):
// decoding requests, streaming answers, and mapping errors to statuses
// (api.ErrBadRequest to 400, api.ErrNotFound to 404, api.ErrBusy to 409,
// anything else to 500), with the error's message as the body's "error".
// A Guard (guard.go) stands in front of them all: it refuses requests
// whose Host is not a name of the node (DNS rebinding), whose Origin is
// another site's, and, off loopback, those without the API token.
//
// docs/protocol.md specifies every endpoint.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/node/api"
	"github.com/mycel-net/mycel/node/openai"
)

// Backend is the daemon as the HTTP APIs see it. Models are named by CID
// where a method takes a cid.Cid (the handler resolves names through
// Resolve first); data sets by CID or name.
type Backend interface {
	openai.Backend

	Status() api.Status
	// Pause suspends the node's work for d (0: until Resume), Resume
	// ends that pause; both return the work state then (other reasons
	// may hold the node still).
	Pause(d time.Duration) api.WorkState
	Resume() api.WorkState
	// Resolve turns a model's CID or name into its entry.
	Resolve(ref string) (api.ModelEntry, error)
	Import(ctx context.Context, req api.ImportRequest) (api.ImportResult, error)
	Pull(ctx context.Context, req api.PullRequest, progress func(api.PullProgress)) error
	ListModels(ctx context.Context) []api.ModelInfo
	Inspect(ctx context.Context, c cid.Cid) (api.ModelInfo, error)
	// ExportModel writes the model as GGUF into w. It checks that every
	// block is here before it writes anything: an error with nothing
	// written is answered with its status, one after the first bytes in
	// the api.ExportErrorTrailer.
	ExportModel(ctx context.Context, c cid.Cid, w io.Writer) error
	RemoveModel(ctx context.Context, c cid.Cid) (int, error)
	// Block reads a block from the local store only.
	Block(ctx context.Context, c cid.Cid) ([]byte, error)
	GC(ctx context.Context, req api.GCRequest) (api.GCResult, error)

	SwarmStatus(ctx context.Context, ref string) (api.SwarmStatus, error)
	// Generate checks a generation through the swarm and loads what it
	// needs; its errors come before any answer. The function it returns
	// runs the generation, sending text and route events, and returns
	// the stream's last line: done with the counts, or the error.
	Generate(ctx context.Context, req api.GenerateRequest) (func(send func(api.GenerateEvent) error) api.GenerateEvent, error)

	ImportData(ctx context.Context, name string, file io.Reader) (api.DataImportResult, error)
	PullData(ctx context.Context, req api.DataPullRequest, progress func(api.PullProgress)) error
	ListData(ctx context.Context) []api.DataInfo
	InspectData(ctx context.Context, ref string, o api.DataInspectOptions) (api.DataInfo, error)
	// DataBytes returns a data set's file, fetching what is not here.
	DataBytes(ctx context.Context, ref string) ([]byte, error)
	RemoveData(ctx context.Context, ref string) (int, error)

	PutCheckpoint(ctx context.Context, name string, state io.Reader) (api.CheckpointInfo, error)
	ListCheckpoints(ctx context.Context) []api.CheckpointInfo
	InspectCheckpoint(ctx context.Context, ref string) (api.CheckpointInfo, error)
	// CheckpointState returns a checkpoint's state file, fetching what
	// is not here.
	CheckpointState(ctx context.Context, ref string) ([]byte, error)
	RemoveCheckpoint(ctx context.Context, ref string) (int, error)

	// SubmitJob checks a job file and publishes it, signed by the node.
	SubmitJob(ctx context.Context, spec string) (api.TrainJob, error)
	// Jobs lists the jobs known on the swarm.
	Jobs(ctx context.Context) []api.TrainJob
	// JobStatus describes a job's progress, asking its members.
	JobStatus(ctx context.Context, id string) (api.TrainStatus, error)
	// StopJob stops a job this node submitted.
	StopJob(ctx context.Context, id string) (api.TrainJob, error)

	// Logs returns the node's last log records after since, at level or
	// above ("" for all), oldest first; a level it does not know is an
	// api.ErrBadRequest.
	Logs(since uint64, level string) ([]api.LogRecord, error)
	// Metrics serves the node's metrics in Prometheus's text format.
	Metrics() http.Handler

	// Credit adds up the node's ledger of signed receipts; CreditLedger
	// is the ledger file itself.
	Credit() api.Credit
	CreditLedger() ([]byte, error)
}

// Handler serves the control API and the OpenAI-compatible API over b.
func Handler(b Backend) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.Prefix+"/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Status())
	})
	modelRoutes(mux, b)
	openai.Register(mux, b)
	swarmRoutes(mux, b)
	storeRoutes(mux, b)
	dataRoutes(mux, b)
	checkpointRoutes(mux, b)
	trainRoutes(mux, b)
	observeRoutes(mux, b)
	pageRoutes(mux)
	workRoutes(mux, b)
	creditRoutes(mux, b)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, api.ErrorBody{Error: err.Error()})
}

// httpStatus maps an error to a status code.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, api.ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, api.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, api.ErrBusy):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// progressStream answers with JSON lines, flushed one by one; send writes
// a line.
func progressStream[T any](w http.ResponseWriter) (send func(T) error) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	return func(v T) error {
		if err := enc.Encode(v); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	}
}
