package server

import (
	"net/http"

	"github.com/mycel-net/mycel/node/api"
)

// creditRoutes serves the node's credit and its ledger.
func creditRoutes(mux *http.ServeMux, b Backend) {
	mux.HandleFunc("GET "+api.Prefix+"/credit", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Credit())
	})
	mux.HandleFunc("GET "+api.Prefix+"/credit/ledger", func(w http.ResponseWriter, r *http.Request) {
		data, err := b.CreditLedger()
		if err != nil {
			writeError(w, httpStatus(err), err)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="credit.ledger"`)
		w.WriteHeader(http.StatusOK)
		w.Write(data)
	})
}
