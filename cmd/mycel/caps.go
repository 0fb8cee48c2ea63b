package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/mycel-net/mycel/internal/units"
	"github.com/mycel-net/mycel/node"
	"github.com/mycel-net/mycel/node/api"
)

// The caps of mycel node: sizes (--store-cap, --serve-memory,
// --train-memory, --daily-transfer) and rates (--max-upload,
// --max-download). An empty value is no cap; a given one must be above
// zero.

// capFlags are the texts of the cap flags of mycel node.
type capFlags struct {
	store, serveMem, trainMem, up, down, daily string
}

// parseCaps reads the cap flags into cfg.
func parseCaps(cfg *node.Config, f capFlags) error {
	var err error
	for _, c := range []struct {
		flag, text string
		dst        *int64
	}{{"store-cap", f.store, &cfg.StoreCap}, {"serve-memory", f.serveMem, &cfg.ServeMemory},
		{"train-memory", f.trainMem, &cfg.TrainMemory}, {"daily-transfer", f.daily, &cfg.DailyTransfer}} {
		if *c.dst, err = parseCap(c.flag, c.text); err != nil {
			return err
		}
	}
	if cfg.MaxUpload, err = parseRateCap("max-upload", f.up); err != nil {
		return err
	}
	if cfg.MaxDownload, err = parseRateCap("max-download", f.down); err != nil {
		return err
	}
	return nil
}

// parseCap reads the size a cap flag was given ("" is no cap: 0); its
// errors name the flag.
func parseCap(flag, s string) (int64, error) {
	if strings.TrimSpace(s) == "" {
		return 0, nil
	}
	n, err := units.ParseBytes(s)
	if err != nil && !negative(s) {
		return 0, fmt.Errorf("--%s: %w", flag, err)
	}
	if n <= 0 {
		return 0, fmt.Errorf("--%s %s: a cap must be above zero (leave the flag out for no cap)", flag, s)
	}
	return n, nil
}

// parseRateCap reads the rate a bandwidth flag was given ("" is no cap:
// 0), in bytes a second; its errors name the flag.
func parseRateCap(flag, s string) (int64, error) {
	if strings.TrimSpace(s) == "" {
		return 0, nil
	}
	n, err := parseRate(s)
	if err != nil && !negative(s) {
		return 0, fmt.Errorf("--%s: %w", flag, err)
	}
	if n <= 0 {
		return 0, fmt.Errorf("--%s %s: a cap must be above zero (leave the flag out for no cap)", flag, s)
	}
	return n, nil
}

// negative says whether s is a number below zero, with or without a unit.
func negative(s string) bool {
	t := strings.TrimSpace(s)
	return len(t) > 1 && t[0] == '-' && (t[1] >= '0' && t[1] <= '9' || t[1] == '.')
}

// parseRate reads a rate in bytes a second from a size a second (10MB/s,
// 512KiB/s: the units of parseBytes) or bits a second (80Mbit/s,
// 1Gbit/s, 500kbit/s; decimal, 8 bits a byte).
func parseRate(s string) (int64, error) {
	bad := fmt.Errorf("%q is not a rate: give bytes or bits a second, such as 10MB/s, 512KiB/s or 80Mbit/s", s)
	t := strings.TrimSpace(s)
	size, ok := strings.CutSuffix(t, "/s")
	if !ok {
		return 0, bad
	}
	size = strings.TrimSpace(size)
	lower := strings.ToLower(size)
	for _, u := range []struct {
		suffix string
		m      float64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}} {
		if num, ok := strings.CutSuffix(lower, u.suffix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || v < 0 || v*u.m/8 > 1<<62 {
				return 0, bad
			}
			return int64(v * u.m / 8), nil
		}
	}
	n, err := units.ParseBytes(size)
	if err != nil {
		return 0, bad
	}
	return n, nil
}

// formatRate shows a rate in bytes a second as the flags take it.
func formatRate(bps int64) string {
	return strings.ReplaceAll(units.FormatBytes(bps), " ", "") + "/s"
}

// printCaps prints the caps lines of mycel status.
func printCaps(w io.Writer, st api.Status) {
	c := st.Caps
	threads := fmt.Sprintf("compute on all %d cores", c.Cores)
	if c.Threads > 0 {
		threads = fmt.Sprintf("compute on %d of %d cores", c.Threads, c.Cores)
	}
	size := func(n int64) string {
		if n <= 0 {
			return "no cap"
		}
		return units.FormatBytes(n)
	}
	rate := func(n int64) string {
		if n <= 0 {
			return "no cap"
		}
		return formatRate(n)
	}
	fmt.Fprintf(w, "caps      %s; serve memory %s, train memory %s; upload %s, download %s\n",
		threads, size(c.ServeMemory), size(c.TrainMemory), rate(c.MaxUpload), rate(c.MaxDownload))
	day := "no daily cap"
	if c.DailyTransfer > 0 {
		day = "of " + units.FormatBytes(c.DailyTransfer) + " a day"
	}
	fmt.Fprintf(w, "transfer  %s since midnight (%s; the day ends %s)\n", units.FormatBytes(c.TransferToday), day, c.TransferResets.Local().Format("Mon 15:04"))
}
