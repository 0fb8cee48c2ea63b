package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/mycel-net/mycel/node/api"
)

// maxSpecBody bounds a job submission's body.
const maxSpecBody = 1 << 20

func trainRoutes(mux *http.ServeMux, b Backend) {
	p := api.Prefix
	mux.HandleFunc("POST "+p+"/train/jobs", func(w http.ResponseWriter, r *http.Request) {
		var req api.TrainSubmitRequest
		body, err := io.ReadAll(io.LimitReader(r.Body, maxSpecBody+1))
		if err == nil && len(body) > maxSpecBody {
			err = fmt.Errorf("a job submission of more than %d bytes", maxSpecBody)
		}
		if err == nil {
			err = json.Unmarshal(body, &req)
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("job submission: %w", err))
			return
		}
		job, err := b.SubmitJob(r.Context(), req.Spec)
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, job)
	})
	mux.HandleFunc("GET "+p+"/train/jobs", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Jobs(r.Context()))
	})
	mux.HandleFunc("GET "+p+"/train/jobs/{job}", func(w http.ResponseWriter, r *http.Request) {
		st, err := b.JobStatus(r.Context(), r.PathValue("job"))
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("POST "+p+"/train/jobs/{job}/stop", func(w http.ResponseWriter, r *http.Request) {
		job, err := b.StopJob(r.Context(), r.PathValue("job"))
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, job)
	})
}
