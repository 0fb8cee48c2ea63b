package work

import (
	"strings"
	"testing"
	"time"
)

func TestParseSchedule(t *testing.T) {
	for _, tc := range []struct {
		text string
		err  string // "" for a good schedule; else a part of the error
	}{
		{"", ""},
		{"mon-fri 18:00-08:00, sat-sun all", ""},
		{"daily 09:00-17:00", ""},
		{"Mon 9:00-12:00 13:00-17:30", ""},
		{"fri-mon all", ""},
		{"sunday 00:00-24:00", ""},
		{"tue 22:00-02:00,wed all", ""},
		{"mon", "no hours after the days"},
		{"mon-fri", "no hours after the days"},
		{"mon 18:00-08:00,", `rule 2 (""): empty`},
		{"mon-fry all", `"fry" is not a day`},
		{"weekdays all", `"weekdays" is not a day`},
		{"mon 18:00", `hours "18:00": want a range HH:MM-HH:MM`},
		{"mon 18:00-8", `"8" is not a time HH:MM`},
		{"mon 25:00-08:00", `"25:00" is past the day's end`},
		{"mon 24:00-08:00", `"24:00" is past the day's end`},
		{"mon 18:60-20:00", `"18:60" is not a time`},
		{"mon 08:00-08:00", "the range is empty"},
		{"mon all 08:00-09:00", `"all" with other hours`},
		{"mon-fri 18:00-08:00, sat-sun al", `rule 2 ("sat-sun al"): hours "al"`},
	} {
		s, err := ParseSchedule(tc.text)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.text, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one with %q", tc.text, err, tc.err)
		case tc.err == "" && s.String() != strings.TrimSpace(tc.text):
			t.Errorf("%q: String() = %q", tc.text, s.String())
		}
	}
}

// In at fixed times: ranges within a day, across midnight (into the next
// day, and from Friday night into Saturday), over the week's end (sun
// to mon), and the minute a range ends.
func TestScheduleIn(t *testing.T) {
	// 2027-03-01 is a Monday.
	at := func(day int, hhmm string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", "2027-03-01 "+hhmm, time.Local)
		if err != nil {
			t.Fatal(err)
		}
		return tm.AddDate(0, 0, day)
	}
	const mon, tue, fri, sat, sun, nextMon = 0, 1, 4, 5, 6, 7
	for _, tc := range []struct {
		text string
		day  int
		hhmm string
		in   bool
	}{
		{"", tue, "03:00", true},
		{"mon-fri 18:00-08:00, sat-sun all", mon, "07:59", false}, // Sunday's rule gives the whole Sunday only
		{"mon-fri 18:00-08:00, sat-sun all", mon, "12:00", false},
		{"mon-fri 18:00-08:00, sat-sun all", mon, "17:59", false},
		{"mon-fri 18:00-08:00, sat-sun all", mon, "18:00", true},
		{"mon-fri 18:00-08:00, sat-sun all", tue, "00:30", true}, // Monday night, past midnight
		{"mon-fri 18:00-08:00, sat-sun all", tue, "07:59", true},
		{"mon-fri 18:00-08:00, sat-sun all", tue, "08:00", false},
		{"mon-fri 18:00-08:00, sat-sun all", sat, "03:00", true},
		{"mon-fri 18:00-08:00, sat-sun all", sun, "23:59", true},
		{"mon-fri 18:00-08:00, sat-sun all", nextMon, "00:00", false},
		{"fri 22:00-06:00", fri, "21:59", false},
		{"fri 22:00-06:00", fri, "22:00", true},
		{"fri 22:00-06:00", sat, "05:59", true},
		{"fri 22:00-06:00", sat, "06:00", false},
		{"fri 22:00-06:00", sun, "01:00", false},
		{"sun 20:00-04:00", nextMon, "03:00", true}, // across the week's end
		{"sun 20:00-04:00", mon, "03:00", true},     // the Sunday before
		{"sun 20:00-04:00", tue, "03:00", false},
		{"sat-mon 09:00-17:00", sun, "12:00", true}, // a range of days over the week's end
		{"sat-mon 09:00-17:00", mon, "16:59", true},
		{"sat-mon 09:00-17:00", tue, "12:00", false},
		{"daily 12:00-13:00 20:00-24:00", tue, "12:30", true},
		{"daily 12:00-13:00 20:00-24:00", tue, "13:00", false},
		{"daily 12:00-13:00 20:00-24:00", tue, "23:59", true},
		{"daily 12:00-13:00 20:00-24:00", tue, "00:00", false},
	} {
		s, err := ParseSchedule(tc.text)
		if err != nil {
			t.Fatal(err)
		}
		tm := at(tc.day, tc.hhmm)
		if got := s.In(tm); got != tc.in {
			t.Errorf("%q at %s: in %v, want %v", tc.text, tm.Format("Mon 15:04"), got, tc.in)
		}
	}
}

func TestScheduleNext(t *testing.T) {
	s, err := ParseSchedule("mon-fri 18:00-08:00, sat-sun all")
	if err != nil {
		t.Fatal(err)
	}
	mon, _ := time.ParseInLocation("2006-01-02 15:04:05", "2027-03-01 12:34:56", time.Local)
	next, ok := s.Next(mon)
	if want := mon.Add(5*time.Hour + 25*time.Minute + 4*time.Second); !ok || !next.Equal(want) {
		t.Errorf("next change after Monday 12:34:56: %v %v, want %v", next, ok, want)
	}
	fri, _ := time.ParseInLocation("2006-01-02 15:04", "2027-03-05 19:00", time.Local)
	next, ok = s.Next(fri) // in until the weekend's end: Sunday's "all" ends at midnight
	if !ok || next.Weekday() != time.Monday || next.Format("15:04") != "00:00" || next.Sub(fri) > 3*24*time.Hour {
		t.Errorf("next change after Friday 19:00: %v %v", next, ok)
	}
	all, _ := ParseSchedule("daily all")
	if _, ok := all.Next(fri); ok {
		t.Error("a schedule of every hour changes")
	}
}
