package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/mycel-net/mycel/node/api"
)

// workRoutes serves the volunteer's pause and resume.
func workRoutes(mux *http.ServeMux, b Backend) {
	mux.HandleFunc("POST "+api.Prefix+"/pause", func(w http.ResponseWriter, r *http.Request) {
		var req api.PauseRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, fmt.Errorf("pause: want no body or {\"for\": \"2h\"}: %w", err))
			return
		}
		var d time.Duration
		if req.For != "" {
			var err error
			if d, err = time.ParseDuration(req.For); err != nil || d <= 0 {
				writeError(w, http.StatusBadRequest, fmt.Errorf("pause: for %q: want a positive duration such as 2h, 30m or 1h30m", req.For))
				return
			}
		}
		writeJSON(w, http.StatusOK, b.Pause(d))
	})
	mux.HandleFunc("POST "+api.Prefix+"/resume", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Resume())
	})
}
