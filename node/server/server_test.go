package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/mycel-net/mycel/node/api"
)

// fakeBackend answers the few calls a test makes; any other panics
// (the embedded nil interface).
type fakeBackend struct {
	Backend
	gcErr     error
	export    []byte // written before exportErr
	exportErr error
}

func (f *fakeBackend) GC(context.Context, api.GCRequest) (api.GCResult, error) {
	return api.GCResult{}, f.gcErr
}

func (f *fakeBackend) Resolve(ref string) (api.ModelEntry, error) {
	if ref != "m" {
		return api.ModelEntry{}, fmt.Errorf("%w: no model %q", api.ErrNotFound, ref)
	}
	return api.ModelEntry{CID: cid.NewCidV1(cid.Raw, []byte{0, 0}).String()}, nil
}

func (f *fakeBackend) ExportModel(_ context.Context, _ cid.Cid, w io.Writer) error {
	w.Write(f.export)
	return f.exportErr
}

// Errors reach the client with their message and the status of their
// kind, which the client's error matches again.
func TestErrorStatuses(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		is     error
	}{
		{fmt.Errorf("%w: store gc: an import or pull is running", api.ErrBusy), http.StatusConflict, api.ErrBusy},
		{fmt.Errorf("%w: dry_run", api.ErrBadRequest), http.StatusBadRequest, api.ErrBadRequest},
		{errors.New("disk on fire"), http.StatusInternalServerError, nil},
	} {
		srv := httptest.NewServer(Handler(&fakeBackend{gcErr: tc.err}))
		_, err := api.NewClient(srv.URL).GC(context.Background(), api.GCRequest{})
		srv.Close()
		var se *api.StatusError
		if !errors.As(err, &se) || se.Status != tc.status || err.Error() != tc.err.Error() {
			t.Errorf("%v: got %v (%#v), want status %d and the same message", tc.err, err, se, tc.status)
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%v: the client's error is not %v", err, tc.is)
		}
	}
}

// An export that fails before its first byte is a status and a message;
// one that fails after is a partial body and the error in the trailer.
func TestExportErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		written []byte
		status  int
	}{{nil, http.StatusNotFound}, {[]byte("GGUF..."), http.StatusOK}} {
		srv := httptest.NewServer(Handler(&fakeBackend{export: tc.written, exportErr: fmt.Errorf("%w: only part of model m", api.ErrNotFound)}))
		var out bytes.Buffer
		err := api.NewClient(srv.URL).Export(ctx, "m", &out)
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), "only part of model m") || !bytes.Equal(out.Bytes(), tc.written) {
			t.Errorf("after %d bytes: %v, %q", len(tc.written), err, out.Bytes())
		}
		var se *api.StatusError
		if got := errors.As(err, &se); got != (tc.status != http.StatusOK) || (got && se.Status != tc.status) {
			t.Errorf("after %d bytes: %#v, want status %d", len(tc.written), err, tc.status)
		}
	}
	srv := httptest.NewServer(Handler(&fakeBackend{}))
	defer srv.Close()
	if err := api.NewClient(srv.URL).Export(ctx, "x", io.Discard); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("an unknown model: %v", err)
	}
}
