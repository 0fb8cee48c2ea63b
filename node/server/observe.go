package server

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/mycel-net/mycel/node/api"
)

// observeRoutes serves what a volunteer watches a node by: its last log
// records and its metrics. /metrics sits at the root, where Prometheus
// looks by default, behind the same guard as the APIs: off loopback a
// scraper sends the API token.
func observeRoutes(mux *http.ServeMux, b Backend) {
	mux.HandleFunc("GET "+api.Prefix+"/logs", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var since uint64
		if s := q.Get("since"); s != "" {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				writeError(w, http.StatusBadRequest, fmt.Errorf("since %q: want the seq of the last record seen (0 for all)", s))
				return
			}
			since = n
		}
		recs, err := b.Logs(since, q.Get("level"))
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		if recs == nil {
			recs = []api.LogRecord{}
		}
		writeJSON(w, http.StatusOK, recs)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		b.Metrics().ServeHTTP(w, r)
	})
}
