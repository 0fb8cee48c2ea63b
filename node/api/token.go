package api

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// TokenFile is the file in a node's data directory that holds its API
// token. The node writes it at its first start (mode 0600) and keeps it
// across restarts; deleting it makes the next start write a new one.
const TokenFile = "api-token"

// EnvToken names the environment variable whose value the command line
// sends as the API token instead of the one in the data directory.
const EnvToken = "MYCEL_API_TOKEN"

// TokenPath is where the API token of the node with data directory dir is.
func TokenPath(dir string) string { return filepath.Join(dir, TokenFile) }

// ReadToken reads the API token kept in the data directory dir. An error
// wraps fs.ErrNotExist when no node has started there yet.
func ReadToken(dir string) (string, error) {
	b, err := os.ReadFile(TokenPath(dir))
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("API token file %s holds no token: delete it, and the node writes a new one at its next start", TokenPath(dir))
	}
	return tok, nil
}
