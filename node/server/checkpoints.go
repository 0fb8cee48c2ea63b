package server

import (
	"net/http"
	"strconv"

	"github.com/mycel-net/mycel/node/api"
)

func checkpointRoutes(mux *http.ServeMux, b Backend) {
	p := api.Prefix
	mux.HandleFunc("POST "+p+"/checkpoints", func(w http.ResponseWriter, r *http.Request) {
		res, err := b.PutCheckpoint(r.Context(), r.URL.Query().Get("name"), r.Body)
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("GET "+p+"/checkpoints", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.ListCheckpoints(r.Context()))
	})
	mux.HandleFunc("GET "+p+"/checkpoints/{ckpt}", func(w http.ResponseWriter, r *http.Request) {
		info, err := b.InspectCheckpoint(r.Context(), r.PathValue("ckpt"))
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, info)
	})
	mux.HandleFunc("GET "+p+"/checkpoints/{ckpt}/state", func(w http.ResponseWriter, r *http.Request) {
		data, err := b.CheckpointState(r.Context(), r.PathValue("ckpt"))
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data)
	})
	mux.HandleFunc("DELETE "+p+"/checkpoints/{ckpt}", func(w http.ResponseWriter, r *http.Request) {
		n, err := b.RemoveCheckpoint(r.Context(), r.PathValue("ckpt"))
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"deleted_blocks": n})
	})
}
