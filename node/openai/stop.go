package openai

import (
	"errors"
	"strings"
)

// errStopString ends a generation when a stop string appears.
var errStopString = errors.New("stop string reached")

// stopFilter passes text through, holding back any tail that could be the
// start of a stop string, and ends the generation (errStopString) when one
// appears; the stop string and what follows are never emitted.
type stopFilter struct {
	stops []string
	emit  func(string) error
	held  string
}

func newStopFilter(stops []string, emit func(string) error) *stopFilter {
	var s []string
	for _, x := range stops {
		if x != "" {
			s = append(s, x)
		}
	}
	return &stopFilter{stops: s, emit: emit}
}

func (f *stopFilter) write(text string) error {
	if text == "" {
		return nil
	}
	if len(f.stops) == 0 {
		return f.emit(text)
	}
	buf := f.held + text
	cut := -1
	for _, s := range f.stops {
		if i := strings.Index(buf, s); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		f.held = ""
		if cut > 0 {
			if err := f.emit(buf[:cut]); err != nil {
				return err
			}
		}
		return errStopString
	}
	// Hold back the longest suffix that is a prefix of some stop string.
	keep := 0
	for _, s := range f.stops {
		for n := min(len(s)-1, len(buf)); n > keep; n-- {
			if strings.HasSuffix(buf, s[:n]) {
				keep = n
				break
			}
		}
	}
	f.held = buf[len(buf)-keep:]
	if out := buf[:len(buf)-keep]; out != "" {
		return f.emit(out)
	}
	return nil
}

// flush emits what was held back at the end of a generation.
func (f *stopFilter) flush() error {
	h := f.held
	f.held = ""
	if h == "" {
		return nil
	}
	return f.emit(h)
}
