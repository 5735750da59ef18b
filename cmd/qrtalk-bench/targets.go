package main

import (
	"fmt"
	"strings"
)

// targets judges a run against issue 6's targets.
func targets(rs []Result, s *Settings, cores int) []Target {
	find := func(scen, system, caseHas string) []Result {
		var out []Result
		for _, r := range rs {
			if r.Scenario == scen && r.System == system && strings.Contains(r.Case, caseHas) {
				out = append(out, r)
			}
		}
		return out
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "missed"
	}
	var ts []Target

	// Live delivery throughput, and the ratio to the relay.
	full := find("a", "qrtalkd", "full rate")
	t := Target{Name: "a: live delivery, 1 KiB over TLS", Want: ">= 10,000 msgs/s", Verdict: "not measured"}
	r := Target{Name: "a: qrtalkd / bare relay", Want: ">= 0.5", Verdict: "not measured"}
	if len(full) > 0 {
		var parts, ratios []string
		ok, rok, haveRatio := true, true, false
		worst, worstRatio := full[0].Rate, 0.0
		for _, x := range full {
			parts = append(parts, fmt.Sprintf("%s: %.0f/s", devs(x.Case), x.Rate))
			ok = ok && x.Rate >= 10_000
			worst = min(worst, x.Rate)
			if x.Ratio > 0 {
				ratios = append(ratios, fmt.Sprintf("%s: %.2f", devs(x.Case), x.Ratio))
				rok = rok && x.Ratio >= 0.5
				if !haveRatio || x.Ratio < worstRatio {
					worstRatio = x.Ratio
				}
				haveRatio = true
			}
		}
		t.Measured, t.Verdict = strings.Join(parts, ", "), verdict(ok)
		if !ok {
			t.Note = fmt.Sprintf("lowest is %.2f× the target", worst/10_000)
		}
		if s.MessageSize != 1024 {
			t.Note = strings.TrimPrefix(t.Note+"; messages were not 1 KiB", "; ")
		}
		if haveRatio {
			r.Measured, r.Verdict = strings.Join(ratios, ", "), verdict(rok)
			if !rok {
				r.Note = fmt.Sprintf("lowest is %.2f, %.0f%% short", worstRatio, (0.5-worstRatio)/0.5*100)
			}
		}
	}
	ts = append(ts, t, r)

	half := find("a", "qrtalkd", "half rate")
	t = Target{Name: "a: p99 latency at half of full rate", Want: "<= 10 ms", Verdict: "not measured"}
	if len(half) > 0 {
		var parts []string
		ok := true
		worst := 0.0
		for _, x := range half {
			parts = append(parts, fmt.Sprintf("%s: %.1f ms at %.0f/s", devs(x.Case), x.P99, x.Offered))
			ok = ok && x.P99 > 0 && x.P99 <= 10
			worst = max(worst, x.P99)
		}
		t.Measured, t.Verdict = strings.Join(parts, ", "), verdict(ok)
		if !ok {
			t.Note = fmt.Sprintf("worst is %.1f× the target", worst/10)
		}
	}
	ts = append(ts, t)

	rate := func(name, want, scen, caseHas string, goal float64) {
		t := Target{Name: name, Want: want, Verdict: "not measured"}
		if xs := find(scen, "qrtalkd", caseHas); len(xs) > 0 {
			x := xs[0]
			t.Measured, t.Verdict = fmt.Sprintf("%.0f msgs/s (%s msgs)", x.Rate, fmtNum(x.Count)), verdict(x.Rate >= goal && x.Errors == 0)
			if x.Rate < goal {
				t.Note = fmt.Sprintf("%.2f× the target", x.Rate/goal)
			}
		}
		ts = append(ts, t)
	}
	rate("b: durable queueing (group commit)", ">= 10,000 msgs/s", "b", "queue", 10_000)
	rate("b: drain on connect", ">= 30,000 msgs/s", "b", "drain", 30_000)

	t = Target{Name: "d: server RSS per idle live channel", Want: "<= 12 KiB", Verdict: "not measured"}
	if xs := find("d", "qrtalkd", "idle"); len(xs) > 0 {
		per := xs[0].Extra["rss_per_conn_kib"]
		t.Measured, t.Verdict = fmt.Sprintf("%.1f KiB (%s channels)", per, fmtNum(xs[0].Count)), verdict(per <= 12)
		switch {
		case per <= 0:
			t.Verdict, t.Note = "not measured", "too few channels: RSS noise is larger than their cost"
		case per > 12:
			t.Note = fmt.Sprintf("%.1f× the target", per/12)
		}
	}
	ts = append(ts, t)

	t = Target{Name: "e: reconnect of 10,000 devices", Want: "<= 10 s", Verdict: "not measured"}
	if xs := find("e", "qrtalkd", "storm"); len(xs) > 0 {
		var parts []string
		ok := true
		worst := 0.0
		for _, x := range xs {
			kind := x.Case[strings.LastIndex(x.Case, " ")+1:]
			parts = append(parts, fmt.Sprintf("%s: %.1f s", kind, x.Seconds))
			ok = ok && x.Seconds <= 10 && x.Errors == 0
			worst = max(worst, x.Seconds)
		}
		t.Measured, t.Verdict = strings.Join(parts, ", "), verdict(ok)
		if !ok {
			t.Note = fmt.Sprintf("slowest is %.1f× the target", worst/10)
		}
		if s.Idle < 10_000 {
			// Not at size: what the server's CPU per reconnection says of
			// 10,000, on this machine's cores.
			var bounds []string
			over := false
			for _, x := range xs {
				if x.CPUPerUnit > 0 {
					kind := x.Case[strings.LastIndex(x.Case, " ")+1:]
					bound := x.CPUPerUnit * 10_000 / 1e6 / float64(cores)
					bounds = append(bounds, fmt.Sprintf("%s ≥ %.1f s", kind, bound))
					over = over || bound > 10
				}
			}
			t.Verdict = "not measured"
			t.Note = fmt.Sprintf("only %d devices; 10,000 × the server CPU per reconnection / %d cores: %s", s.Idle, cores, strings.Join(bounds, ", "))
			if len(bounds) > 0 && (!ok || over) {
				// Fewer devices already took longer, or the server's CPU
				// alone would.
				t.Verdict = "missed"
			}
		}
	}
	ts = append(ts, t)

	t = Target{Name: "g: SQLite and PostgreSQL stores side by side", Want: "both measured", Verdict: "not measured"}
	var gs []string
	for _, r := range rs {
		if r.Scenario == "g" && r.System == sysPostgres && r.Extra["postgres_over_sqlite"] > 0 {
			gs = append(gs, fmt.Sprintf("%s: PG/SQLite %.2f", strings.SplitN(r.Case, ",", 2)[0], r.Extra["postgres_over_sqlite"]))
		}
	}
	if len(gs) > 0 {
		t.Measured, t.Verdict = strings.Join(gs, ", "), "met"
	}
	ts = append(ts, t)
	return ts
}

// devs extracts "N dev" from a case name.
func devs(c string) string {
	f := strings.Split(c, ", ")
	for _, p := range f {
		if strings.HasSuffix(p, " dev") {
			return p
		}
	}
	return c
}
