package blocks

import "github.com/libp2p/go-libp2p/gologshim"

// log is the package's logger; GOLOG_LOG_LEVEL="blocks=debug" turns it up.
var log = gologshim.Logger("blocks")
