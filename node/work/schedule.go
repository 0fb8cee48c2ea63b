package work

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A Schedule is the hours of the week a volunteer gives, in the local
// time zone. Its text is rules separated by commas; a rule is days and
// then hours:
//
//	mon-fri 18:00-08:00, sat-sun all
//
// Days are mon, tue, wed, thu, fri, sat and sun (or their full names), a
// range of them such as mon-fri or fri-mon (wrapping over the week's
// end), or daily for all seven. Hours are all (the whole day) or one or
// more ranges HH:MM-HH:MM separated by spaces; 24:00 may end a range. A
// range whose end comes before its start crosses midnight: it begins on
// each of the rule's days and ends the next morning, so "fri 22:00-06:00"
// covers Friday night until Saturday at six. An empty text gives every
// hour.
type Schedule struct {
	text  string
	rules []rule
}

type rule struct {
	days  [7]bool // by time.Weekday
	spans []span  // minutes of the day; end <= start crosses midnight
}

type span struct{ start, end int }

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

// ParseSchedule reads a schedule's text (see Schedule). Its errors name
// the rule and the part that is wrong.
func ParseSchedule(text string) (*Schedule, error) {
	s := &Schedule{text: strings.TrimSpace(text)}
	if s.text == "" {
		return s, nil
	}
	for i, raw := range strings.Split(s.text, ",") {
		r, err := parseRule(strings.Fields(strings.ToLower(raw)))
		if err != nil {
			return nil, fmt.Errorf("schedule %q: rule %d (%q): %w", s.text, i+1, strings.TrimSpace(raw), err)
		}
		s.rules = append(s.rules, r)
	}
	return s, nil
}

func parseRule(f []string) (rule, error) {
	var r rule
	switch len(f) {
	case 0:
		return r, fmt.Errorf("empty: want days and hours, such as \"mon-fri 18:00-08:00\"")
	case 1:
		return r, fmt.Errorf("no hours after the days: add \"all\" or a range such as 09:00-17:00")
	}
	if err := parseDays(f[0], &r.days); err != nil {
		return r, err
	}
	hours := f[1:]
	if len(hours) == 1 && hours[0] == "all" {
		r.spans = []span{{0, 24 * 60}}
		return r, nil
	}
	for _, h := range hours {
		if h == "all" {
			return r, fmt.Errorf("\"all\" with other hours: give either")
		}
		a, b, ok := strings.Cut(h, "-")
		if !ok {
			return r, fmt.Errorf("hours %q: want a range HH:MM-HH:MM, or \"all\"", h)
		}
		start, err := parseClock(a, false)
		if err != nil {
			return r, fmt.Errorf("hours %q: start: %w", h, err)
		}
		end, err := parseClock(b, true)
		if err != nil {
			return r, fmt.Errorf("hours %q: end: %w", h, err)
		}
		if start == end {
			return r, fmt.Errorf("hours %q: the range is empty (for the whole day write \"all\")", h)
		}
		r.spans = append(r.spans, span{start, end})
	}
	return r, nil
}

func parseDays(s string, days *[7]bool) error {
	if s == "daily" {
		for i := range days {
			days[i] = true
		}
		return nil
	}
	a, b, isRange := strings.Cut(s, "-")
	first, ok := dayNames[a]
	if !ok {
		return fmt.Errorf("days %q: %q is not a day (mon, tue, wed, thu, fri, sat, sun, or daily)", s, a)
	}
	last := first
	if isRange {
		if last, ok = dayNames[b]; !ok {
			return fmt.Errorf("days %q: %q is not a day (mon, tue, wed, thu, fri, sat, sun, or daily)", s, b)
		}
	}
	for d := first; ; d = (d + 1) % 7 {
		days[d] = true
		if d == last {
			break
		}
	}
	return nil
}

// parseClock reads HH:MM as minutes of the day; 24:00 only as an end.
func parseClock(s string, end bool) (int, error) {
	hh, mm, ok := strings.Cut(s, ":")
	if !ok || len(mm) != 2 || len(hh) < 1 || len(hh) > 2 {
		return 0, fmt.Errorf("%q is not a time HH:MM", s)
	}
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if err1 != nil || err2 != nil || h < 0 || m < 0 || m > 59 {
		return 0, fmt.Errorf("%q is not a time HH:MM", s)
	}
	switch {
	case h == 24 && m == 0 && end:
		return 24 * 60, nil
	case h > 23:
		return 0, fmt.Errorf("%q is past the day's end (00:00 to 24:00)", s)
	}
	return h*60 + m, nil
}

// String is the schedule's text.
func (s *Schedule) String() string { return s.text }

// Always reports whether the schedule gives every hour (it is empty).
func (s *Schedule) Always() bool { return len(s.rules) == 0 }

// In reports whether t, in its own location, falls in the schedule.
func (s *Schedule) In(t time.Time) bool {
	if s.Always() {
		return true
	}
	day := t.Weekday()
	prev := (day + 6) % 7
	min := t.Hour()*60 + t.Minute()
	for _, r := range s.rules {
		for _, sp := range r.spans {
			if sp.start < sp.end {
				if r.days[day] && min >= sp.start && min < sp.end {
					return true
				}
				continue
			}
			// Across midnight: from start on a rule's day to end the next.
			if (r.days[day] && min >= sp.start) || (r.days[prev] && min < sp.end) {
				return true
			}
		}
	}
	return false
}

// Next returns the first minute after t at which In changes, and false
// if it never does (a schedule of every hour, or of none).
func (s *Schedule) Next(t time.Time) (time.Time, bool) {
	now := s.In(t)
	m := t.Truncate(time.Minute)
	for i := 1; i <= 8*24*60; i++ {
		c := m.Add(time.Duration(i) * time.Minute)
		if s.In(c) != now {
			return c, true
		}
	}
	return time.Time{}, false
}
