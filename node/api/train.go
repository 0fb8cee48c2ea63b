package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// TrainSubmitRequest publishes a fine-tuning job to the swarm: Spec is the
// job file (TOML, docs/training.md), whose model and data the node turns
// into CIDs when they name a model or a data set it keeps.
type TrainSubmitRequest struct {
	Spec string `json:"spec"`
}

// TrainJob is a job known on the swarm, as the job records and the
// members' records describe it.
type TrainJob struct {
	ID        string    `json:"id"`
	Submitter string    `json:"submitter"`
	Created   time.Time `json:"created"`
	// Stopped is set once the submitter stopped the job.
	Stopped *time.Time `json:"stopped,omitempty"`
	Model   string     `json:"model"`
	Data    string     `json:"data"`
	Method  string     `json:"method"`
	// Averaging is "sync" or "diloco".
	Averaging string `json:"averaging"`
	Steps     int    `json:"steps"`
	// Step is the furthest step the members announce; Peers how many
	// members announce the job.
	Step  int `json:"step"`
	Peers int `json:"peers"`
	// State is "waiting" (no member yet), "training", "done" or
	// "stopped".
	State string `json:"state"`
	// Spec is the job file.
	Spec string `json:"spec,omitempty"`
}

// TrainMember is one member of a job's group.
type TrainMember struct {
	Peer string `json:"peer"`
	// Step is the optimizer steps it has done; Round the round it stands
	// at.
	Step  int `json:"step"`
	Round int `json:"round"`
	// Rate is its training rate, tokens per second; Share its part of
	// the group's rate.
	Rate  float64 `json:"rate"`
	Share float64 `json:"share"`
	// Joining: it asked to join and waits for a checkpoint.
	Joining bool `json:"joining,omitempty"`
	// Checkpoint is the newest checkpoint it serves.
	Checkpoint string `json:"checkpoint,omitempty"`
}

// TrainStatus is a job's progress.
type TrainStatus struct {
	TrainJob
	Members []TrainMember `json:"members"`
	// Loss is the group's training loss as [step, loss] pairs, oldest
	// first (a member's record carries the recent ones).
	Loss [][2]float64 `json:"loss"`
	// TokensPerSecond is the group's rate, the members' summed.
	TokensPerSecond float64 `json:"tokens_per_second"`
	// Bytes is what this node sent and received averaging for the job
	// (0 where it does not train it).
	Bytes int64 `json:"bytes"`
	// Utilisation is the share of this node's time in the job's rounds
	// that went to training (forward, backward, optimizer) rather than to
	// averaging and waiting for the others (0 where it does not train it).
	Utilisation float64 `json:"utilisation,omitempty"`
	// Checkpoint is the latest checkpoint a member serves, made at the
	// start of CheckpointStep.
	Checkpoint     string `json:"checkpoint,omitempty"`
	CheckpointStep int    `json:"checkpoint_step,omitempty"`
	// Here says what this node does for the job: "" (nothing),
	// "training", or why it does not train it.
	Here string `json:"here,omitempty"`
}

// SubmitJob publishes a job; the answer names it.
func (c *Client) SubmitJob(ctx context.Context, spec string) (TrainJob, error) {
	var out TrainJob
	b, _ := json.Marshal(TrainSubmitRequest{Spec: spec})
	err := c.do(ctx, http.MethodPost, "/train/jobs", bytes.NewReader(b), &out)
	return out, err
}

// Jobs lists the jobs the swarm knows, oldest first.
func (c *Client) Jobs(ctx context.Context) ([]TrainJob, error) {
	var out []TrainJob
	err := c.do(ctx, http.MethodGet, "/train/jobs", nil, &out)
	return out, err
}

// JobStatus describes one job (by its ID).
func (c *Client) JobStatus(ctx context.Context, id string) (TrainStatus, error) {
	var out TrainStatus
	err := c.do(ctx, http.MethodGet, "/train/jobs/"+url.PathEscape(id), nil, &out)
	return out, err
}

// StopJob stops a job this node submitted.
func (c *Client) StopJob(ctx context.Context, id string) (TrainJob, error) {
	var out TrainJob
	err := c.do(ctx, http.MethodPost, "/train/jobs/"+url.PathEscape(id)+"/stop", nil, &out)
	return out, err
}
