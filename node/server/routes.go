package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/node/api"
)

// countingWriter counts the bytes written through it. An empty write is
// not passed on: it would send the status before there is anything to
// send.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	k, err := c.w.Write(p)
	c.n += int64(k)
	return k, err
}

func modelRoutes(mux *http.ServeMux, b Backend) {
	p := api.Prefix
	mux.HandleFunc("POST "+p+"/models/import", func(w http.ResponseWriter, r *http.Request) {
		var req api.ImportRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil || req.Path == "" {
			writeError(w, http.StatusBadRequest, fmt.Errorf("import: want {\"path\": ...}: %v", err))
			return
		}
		res, err := b.Import(r.Context(), req)
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST "+p+"/models/pull", func(w http.ResponseWriter, r *http.Request) {
		var req api.PullRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("pull: bad request: %w", err))
			return
		}
		// Progress streams as JSON lines; the last one says done or
		// carries the error.
		send := progressStream[api.PullProgress](w)
		if err := b.Pull(r.Context(), req, func(p api.PullProgress) { send(p) }); err != nil {
			send(api.PullProgress{Error: err.Error()})
		}
	})
	mux.HandleFunc("GET "+p+"/models", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.ListModels(r.Context()))
	})
	withCID := func(f func(w http.ResponseWriter, r *http.Request, c cid.Cid)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			c, err := cid.Decode(r.PathValue("cid"))
			if err != nil {
				writeError(w, http.StatusBadRequest, fmt.Errorf("%q is not a CID: %w", r.PathValue("cid"), err))
				return
			}
			f(w, r, c)
		}
	}
	// A model is named by CID or by name; the node resolves it.
	withModel := func(f func(w http.ResponseWriter, r *http.Request, c cid.Cid)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			e, err := b.Resolve(r.PathValue("model"))
			if err != nil {
				writeError(w, httpStatus(err), err)
				return
			}
			c, err := cid.Decode(e.CID)
			if err != nil {
				writeError(w, http.StatusInternalServerError, err)
				return
			}
			f(w, r, c)
		}
	}
	mux.HandleFunc("GET "+p+"/resolve/{model}", func(w http.ResponseWriter, r *http.Request) {
		e, err := b.Resolve(r.PathValue("model"))
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, e)
	})
	mux.HandleFunc("GET "+p+"/models/{model}", withModel(func(w http.ResponseWriter, r *http.Request, c cid.Cid) {
		info, err := b.Inspect(r.Context(), c)
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, info)
	}))
	mux.HandleFunc("GET "+p+"/models/{model}/gguf", withModel(func(w http.ResponseWriter, r *http.Request, c cid.Cid) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Trailer", api.ExportErrorTrailer)
		cw := &countingWriter{w: w}
		if err := b.ExportModel(r.Context(), c, cw); err != nil {
			if cw.n == 0 {
				// Nothing sent yet (a model not all here fails so):
				// a status and the reason.
				w.Header().Del("Trailer")
				writeError(w, httpStatus(err), err)
				return
			}
			// The status is sent: the error goes in the trailer.
			w.Header().Set(api.ExportErrorTrailer, err.Error())
		}
	}))
	mux.HandleFunc("DELETE "+p+"/models/{model}", withModel(func(w http.ResponseWriter, r *http.Request, c cid.Cid) {
		n, err := b.RemoveModel(r.Context(), c)
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"deleted_blocks": n})
	}))
	mux.HandleFunc("GET "+p+"/blocks/{cid}", withCID(func(w http.ResponseWriter, r *http.Request, c cid.Cid) {
		data, err := b.Block(r.Context(), c)
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(data)
	}))
}

func storeRoutes(mux *http.ServeMux, b Backend) {
	mux.HandleFunc("POST "+api.Prefix+"/store/gc", func(w http.ResponseWriter, r *http.Request) {
		var req api.GCRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, fmt.Errorf("store gc: want {\"dry_run\": true|false}: %w", err))
			return
		}
		res, err := b.GC(r.Context(), req)
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
}

func swarmRoutes(mux *http.ServeMux, b Backend) {
	mux.HandleFunc("GET "+api.Prefix+"/swarm/{model}", func(w http.ResponseWriter, r *http.Request) {
		st, err := b.SwarmStatus(r.Context(), r.PathValue("model"))
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("POST "+api.Prefix+"/generate", func(w http.ResponseWriter, r *http.Request) {
		var req api.GenerateRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("generate: bad request: %w", err))
			return
		}
		run, err := b.Generate(r.Context(), req)
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		// The stream is JSON lines: text and route events as they come,
		// then one line that says done or carries the error. Route events
		// may come from other goroutines than the text.
		stream := progressStream[api.GenerateEvent](w)
		var mu sync.Mutex
		send := func(ev api.GenerateEvent) error {
			mu.Lock()
			defer mu.Unlock()
			return stream(ev)
		}
		send(run(send))
	})
}

// sampleDefault is how many examples inspecting a data set shows unless
// asked; sampleMax the most it shows.
const (
	sampleDefault = 3
	sampleMax     = 1000
)

func dataRoutes(mux *http.ServeMux, b Backend) {
	p := api.Prefix
	mux.HandleFunc("POST "+p+"/data/import", func(w http.ResponseWriter, r *http.Request) {
		res, err := b.ImportData(r.Context(), r.URL.Query().Get("name"), r.Body)
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST "+p+"/data/pull", func(w http.ResponseWriter, r *http.Request) {
		var req api.DataPullRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("data pull: bad request: %w", err))
			return
		}
		send := progressStream[api.PullProgress](w)
		if err := b.PullData(r.Context(), req, func(p api.PullProgress) { send(p) }); err != nil {
			send(api.PullProgress{Error: err.Error()})
		}
	})
	mux.HandleFunc("GET "+p+"/data", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.ListData(r.Context()))
	})
	mux.HandleFunc("GET "+p+"/data/{data}", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		o := api.DataInspectOptions{Sample: sampleDefault, Model: q.Get("model")}
		if s := q.Get("sample"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 || n > sampleMax {
				writeError(w, http.StatusBadRequest, fmt.Errorf("sample %q: want a number of examples from 0 to %d", s, sampleMax))
				return
			}
			o.Sample = n
		}
		info, err := b.InspectData(r.Context(), r.PathValue("data"), o)
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, info)
	})
	mux.HandleFunc("GET "+p+"/data/{data}/file", func(w http.ResponseWriter, r *http.Request) {
		data, err := b.DataBytes(r.Context(), r.PathValue("data"))
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data)
	})
	mux.HandleFunc("DELETE "+p+"/data/{data}", func(w http.ResponseWriter, r *http.Request) {
		n, err := b.RemoveData(r.Context(), r.PathValue("data"))
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"deleted_blocks": n})
	})
}
