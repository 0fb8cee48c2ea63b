package node

import "net/http"

// modelRoutes registers the model store's endpoints.
func (n *Node) modelRoutes(mux *http.ServeMux) {}
