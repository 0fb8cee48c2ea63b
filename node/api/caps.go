package api

import "time"

// Caps are the limits the volunteer set on what the node may use, as the
// status reports them (0: no cap; the block store's is Status.StoreCap).
type Caps struct {
	// Threads bounds the compute threads of everything the node runs
	// (0: every one of Cores).
	Threads int `json:"threads"`
	Cores   int `json:"cores"`
	// ServeMemory bounds the weights and KV caches of a served span;
	// TrainMemory the memory of a training job (bytes).
	ServeMemory int64 `json:"serve_memory"`
	TrainMemory int64 `json:"train_memory"`
	// MaxUpload and MaxDownload are bytes a second.
	MaxUpload   int64 `json:"max_upload"`
	MaxDownload int64 `json:"max_download"`
	// DailyTransfer caps the bytes sent and received from local midnight
	// to the next; TransferToday are those of today so far (counted with
	// or without a cap), and TransferResets is the next midnight.
	DailyTransfer  int64     `json:"daily_transfer"`
	TransferToday  int64     `json:"transfer_today"`
	TransferResets time.Time `json:"transfer_resets"`
}
