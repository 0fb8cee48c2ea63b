package blocks

import "github.com/mycel-net/mycel/internal/logging"

// log is the package's logger; --log-level info,blocks=debug turns it up.
var log = logging.Logger("blocks")
