package node

import (
	"encoding/json"
	"errors"
	"net/http"
)

// APIPrefix is the path prefix of every control API endpoint. The API is
// versioned by this prefix; docs/protocol.md lists the endpoints.
const APIPrefix = "/api/v0"

// apiError is the body of every failed API call.
type apiError struct {
	Error string `json:"error"`
}

func (n *Node) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+APIPrefix+"/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.Status())
	})
	n.modelRoutes(mux)
	n.openAIRoutes(mux)
	n.swarmRoutes(mux)
	n.storeRoutes(mux)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, apiError{Error: err.Error()})
}

// httpStatus maps an error to a status code.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, errNotFound):
		return http.StatusNotFound
	case errors.Is(err, errBusy):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

var (
	errBadRequest = errors.New("bad request")
	errNotFound   = errors.New("not found")
)
