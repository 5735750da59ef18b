package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
)

// StoresReport is what scenario g says beside its rows.
type StoresReport struct {
	Servers map[string]string `json:"servers,omitempty"` // store -> the server it ran
	How     string            `json:"how,omitempty"`
	Skipped string            `json:"skipped,omitempty"` // why g was not measured
}

// The systems of scenario g's rows.
const (
	sysSQLite   = "qrtalkd+sqlite"
	sysPostgres = "qrtalkd+postgres"
)

// scenarioStores is scenario g: the store-bound scenarios (a at one size,
// full rate; c at one group size; b queue and drain) on a fresh server
// with the SQLite store and on a fresh server with the PostgreSQL store
// (a schema of its own, dropped at the end), at the same sizes, in turn.
// A single node: no NATS.
func (b *bench) scenarioStores(ctx context.Context) error {
	s := b.s
	b.rep.Stores = &StoresReport{How: pgHow, Servers: map[string]string{}}
	if s.Server != "" {
		return b.skipStores("the bench drives a running server (--server); g spawns servers of its own")
	}
	pg, err := openPG(ctx, s.Postgres)
	if err != nil {
		return b.skipStores(fmt.Sprintf("PostgreSQL at %s: %v", redactDSN(s.Postgres), err))
	}
	defer func() {
		if err := pg.close(); err != nil {
			b.logf("g: dropping schema %s: %v", pg.schema, err)
		}
	}()
	gs := *s
	gs.Scenarios = []string{"a", "c", "b"}
	gs.LiveDevices = []int{s.GDevices}
	gs.GroupSizes = []int{s.GGroup}
	gs.StoreMessages, gs.StoreDevices = s.GStoreMessages, s.GStoreDevices
	gs.Duration = s.GDuration
	gs.Relay = false
	// Both servers run side by side and the scenarios alternate between
	// them (a on SQLite, a on PostgreSQL, then c, then b), so that a burst
	// of other load on the machine does not fall on one store only.
	sides := []string{"sqlite", "postgres"}
	subs := map[string]*bench{}
	defer func() {
		for _, side := range sides {
			if sub := subs[side]; sub != nil {
				sub.close()
				b.rep.Profiles = append(b.rep.Profiles, sub.rep.Profiles...)
			}
		}
	}()
	for _, side := range sides {
		sub := newBench(&gs, b.out, b.log, b.t0)
		sub.rep = &Report{}
		sub.tag, sub.fullOnly = "-g-"+side, true
		if side == "postgres" {
			sub.store, sub.pg = pg.dsn, pg
		}
		sub.dir = filepath.Join(b.dir, "g-"+side)
		if err := os.MkdirAll(sub.dir, 0o700); err != nil {
			return err
		}
		b.logf("g: %s: a fresh server", side)
		subs[side] = sub
		if err := sub.start(ctx); err != nil {
			return fmt.Errorf("%s store: %w", side, err)
		}
		b.rep.Stores.Servers[side] = sub.rep.Server
	}
	for _, sc := range gs.Scenarios {
		for _, side := range sides {
			sub := subs[side]
			subs["sqlite"].settle(ctx)
			subs["postgres"].settle(ctx)
			b.logf("g: %s: scenario %s", side, sc)
			var err error
			switch sc {
			case "a":
				err = sub.scenarioLive(ctx)
			case "c":
				err = sub.scenarioGroup(ctx)
			case "b":
				err = sub.scenarioStore(ctx)
			}
			if err != nil {
				return fmt.Errorf("%s store: %w", side, err)
			}
		}
	}
	results := map[string][]Result{}
	for _, side := range sides {
		results[side] = subs[side].rep.Results
	}
	sys := map[string]string{"sqlite": sysSQLite, "postgres": sysPostgres}
	for i, sq := range results["sqlite"] {
		for _, side := range []string{"sqlite", "postgres"} {
			if i >= len(results[side]) {
				continue
			}
			r := results[side][i]
			r.Case = r.Scenario + ": " + r.Case
			r.Scenario, r.System = "g", sys[side]
			if side == "postgres" && sq.Rate > 0 {
				if r.Extra == nil {
					r.Extra = map[string]float64{}
				}
				r.Extra["postgres_over_sqlite"] = r.Rate / sq.Rate
			}
			if side == "postgres" {
				r.Notes = joinNotes(r.Notes, "server columns: qrtalkd + PostgreSQL's processes")
			}
			b.add(&r)
		}
	}
	return nil
}

func (b *bench) skipStores(why string) error {
	if b.s.requireStores {
		return fmt.Errorf("cannot compare the stores: %s", why)
	}
	b.rep.Stores.Skipped = why
	b.logf("g: not measured: %s", why)
	return nil
}

// printStores writes scenario g's rows side by side.
func printStores(w io.Writer, rep *Report) {
	if rep.Stores == nil {
		return
	}
	if rep.Stores.Skipped != "" {
		fmt.Fprintf(w, "g: SQLite and PostgreSQL stores: not measured: %s\n\n", rep.Stores.Skipped)
		return
	}
	pairs := storePairs(rep.Results)
	if len(pairs) == 0 {
		return
	}
	fmt.Fprintln(w, "g: SQLite and PostgreSQL stores side by side (a fresh qrtalkd each, same sizes; server = qrtalkd, plus PostgreSQL's processes on the PostgreSQL side)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tunit\tSQLite /s\tPostgreSQL /s\tPG/SQLite\tSQLite p99 ms\tPG p99 ms\tSQLite CPU µs/unit\tPG CPU µs/unit\t(of it PG's)\tSQLite RSS MiB\tPG RSS+PSS MiB\t(of it PG's)\t")
	for _, p := range pairs {
		sq, pg := p[0], p[1]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			sq.Case, sq.Unit, fmtNum(sq.Rate), fmtNum(pg.Rate), ratioStr(pg.Rate, sq.Rate),
			fmtMs(sq.P99), fmtMs(pg.P99), fmtNum(sq.CPUPerUnit), fmtNum(pg.CPUPerUnit), fmtNum(perUnit(pg.DBCPU, pg.Count)),
			fmtNum(sq.PeakRSSMiB), fmtNum(pg.PeakRSSMiB), fmtNum(pg.DBPeakMiB))
	}
	tw.Flush()
	fmt.Fprintf(w, "g: %s\n\n", rep.Stores.How)
}

// storesMarkdown writes scenario g's rows side by side as Markdown.
func storesMarkdown(w io.Writer, rep *Report) {
	if rep.Stores == nil {
		return
	}
	if rep.Stores.Skipped != "" {
		fmt.Fprintf(w, "g: not measured: %s\n\n", rep.Stores.Skipped)
		return
	}
	pairs := storePairs(rep.Results)
	if len(pairs) == 0 {
		return
	}
	fmt.Fprintln(w, "| g: case | unit | SQLite /s | PostgreSQL /s | PG/SQLite | SQLite p99 ms | PG p99 ms | SQLite CPU µs/unit | PG CPU µs/unit (of it PG's) | SQLite RSS MiB | PG RSS+PSS MiB (of it PG's) |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, p := range pairs {
		sq, pg := p[0], p[1]
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s (%s) | %s | %s (%s) |\n",
			sq.Case, sq.Unit, fmtNum(sq.Rate), fmtNum(pg.Rate), ratioStr(pg.Rate, sq.Rate),
			fmtMs(sq.P99), fmtMs(pg.P99), fmtNum(sq.CPUPerUnit), fmtNum(pg.CPUPerUnit), fmtNum(perUnit(pg.DBCPU, pg.Count)),
			fmtNum(sq.PeakRSSMiB), fmtNum(pg.PeakRSSMiB), fmtNum(pg.DBPeakMiB))
	}
	fmt.Fprintf(w, "\n%s\n\n", rep.Stores.How)
}

// storePairs pairs scenario g's SQLite and PostgreSQL rows by case.
func storePairs(rs []Result) [][2]Result {
	var out [][2]Result
	for _, sq := range rs {
		if sq.Scenario != "g" || sq.System != sysSQLite {
			continue
		}
		for _, pg := range rs {
			if pg.Scenario == "g" && pg.System == sysPostgres && pg.Case == sq.Case {
				out = append(out, [2]Result{sq, pg})
			}
		}
	}
	return out
}

func ratioStr(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func perUnit(cpu, count float64) float64 {
	if count <= 0 {
		return 0
	}
	return cpu / count * 1e6
}
