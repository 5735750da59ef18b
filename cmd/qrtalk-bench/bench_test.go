package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary be the bench's children too: the bench
// spawns its own executable, which under 'go test' is this binary.
func TestMain(m *testing.M) {
	if kind := os.Getenv(childEnv); kind != "" {
		os.Exit(runChild(kind, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// TestEveryScenarioTiny runs every scenario at a tiny size against a
// spawned server and relay, so that the tool cannot rot.
func TestEveryScenarioTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a server and a relay; skipped with -short")
	}
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "report.json")
	// Scenario g needs PostgreSQL: with $QRTALK_TEST_POSTGRES, or under
	// CI=true (where it must be there), every scenario runs; otherwise g is
	// left out, and said so.
	scenarios := "all"
	pg := os.Getenv("QRTALK_TEST_POSTGRES")
	switch {
	case pg != "":
	case os.Getenv("CI") == "true":
		t.Fatal("QRTALK_TEST_POSTGRES is not set, and CI=true requires scenario g (PostgreSQL) to run")
	default:
		t.Log("QRTALK_TEST_POSTGRES is not set: scenario g (SQLite and PostgreSQL side by side) is not tested")
		scenarios = "a,b,c,d,e,f,s"
		pg = defaultPostgres
	}
	args := []string{
		"--scenario", scenarios, "--postgres", pg,
		"--devices", "10", "--duration", "1s", "--messages", "200", "--concurrency", "8",
		"--store-messages", "200", "--store-devices", "5",
		"--group", "10", "--group-messages", "20",
		"--idle", "10", "--blobs", "1", "--blob-size", "1MiB",
		"--sweep-devices", "6,10", "--sweep-at", "10", "--sweep-rates", "25,50,100", "--sweep-duration", "500ms",
		"--g-devices", "6", "--g-group", "5", "--g-store-messages", "100", "--g-store-devices", "4", "--g-duration", "500ms",
		"--profile-dir", dir, "--plot", filepath.Join(dir, "plots"),
		"--json", jsonPath, "--markdown", filepath.Join(dir, "table.md"), "--quiet",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	start := time.Now()
	if code := run(ctx, args, &out, &errb); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	t.Logf("took %v\n%s", time.Since(start).Round(time.Millisecond), out.String())

	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	// Every scenario, on qrtalkd and (where there is one) on the relay;
	// g on both stores.
	want := map[string]int{"a": 2, "b": 2, "c": 1, "d": 1, "e": 1, "f": 2, "s": 3}
	got := map[string]map[string]int{}
	for _, r := range rep.Results {
		if got[r.Scenario] == nil {
			got[r.Scenario] = map[string]int{}
		}
		got[r.Scenario][r.System]++
		if r.Count <= 0 || r.Seconds <= 0 || r.Rate <= 0 {
			t.Errorf("%s %s %s: nothing measured: %+v", r.Scenario, r.System, r.Case, r)
		}
		if r.Errors != 0 {
			t.Errorf("%s %s %s: %d errors: %s", r.Scenario, r.System, r.Case, r.Errors, r.Notes)
		}
		if r.System == "qrtalkd" && r.ServerCPU <= 0 && r.PeakRSSMiB <= 0 {
			t.Errorf("%s %s: no server measurement", r.Scenario, r.Case)
		}
	}
	if scenarios == "all" {
		if got["g"][sysSQLite] != 4 || got["g"][sysPostgres] != 4 {
			t.Errorf("g: %v rows, want 4 of each store (a, c, b queue, b drain)", got["g"])
		}
		for _, p := range storePairs(rep.Results) {
			if p[1].DBPeakMiB <= 0 || p[1].PeakRSSMiB <= p[1].DBPeakMiB {
				t.Errorf("g: %s: PostgreSQL's memory not counted: %+v", p[1].Case, p[1])
			}
		}
		if rep.Stores == nil || rep.Stores.Skipped != "" || !strings.Contains(out.String(), "PG/SQLite") {
			t.Errorf("g: no side-by-side table: %+v", rep.Stores)
		}
	}
	// The sweeps: 2 device counts and 3 rates, each on qrtalkd and the
	// relay; the points a measured are reused, not measured again.
	if len(rep.Sweeps) != 2 || len(rep.Sweeps[0].Points) != 4 || len(rep.Sweeps[1].Points) != 6 {
		t.Errorf("sweeps: %+v", rep.Sweeps)
	}
	for _, sw := range rep.Sweeps {
		for _, p := range sw.Points {
			if p.Rate <= 0 || p.P99 <= 0 {
				t.Errorf("sweep %s: point not measured: %+v", sw.Name, p)
			}
		}
	}
	for _, name := range plotFiles {
		if fi, err := os.Stat(filepath.Join(dir, "plots", name)); err != nil || fi.Size() < 1000 {
			t.Errorf("plot %s: %v", name, err)
		}
	}
	for scen, relays := range want {
		if got[scen]["qrtalkd"] == 0 {
			t.Errorf("scenario %s: no qrtalkd result", scen)
		}
		if got[scen]["relay"] != relays {
			t.Errorf("scenario %s: %d relay results, want %d", scen, got[scen]["relay"], relays)
		}
	}
	for _, r := range rep.Results {
		if r.Scenario == "a" && r.System == "qrtalkd" && strings.Contains(r.Case, "full") && r.Ratio <= 0 {
			t.Errorf("a: no qrtalkd/relay ratio: %+v", r)
		}
		if r.Scenario == "a" && r.P50 <= 0 {
			t.Errorf("a: no latency: %+v", r)
		}
	}
	if len(rep.Targets) == 0 {
		t.Error("no targets judged")
	}
	// CPU profiles of each phase, allocation profiles around scenario a,
	// each a non-empty file.
	var names []string
	for _, p := range rep.Profiles {
		names = append(names, filepath.Base(p))
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: missing or empty (%v)", p, err)
		}
	}
	wantProfiles := []string{"server-cpu-idle-connect.pprof", "server-heap-idle.pprof", "server-cpu-storm-warm.pprof", "server-cpu-storm-cold.pprof",
		"server-allocs-live-before.pprof", "server-cpu-live.pprof", "server-allocs-live-after.pprof",
		"server-cpu-queue.pprof", "server-cpu-drain.pprof", "server-cpu-upload.pprof", "server-cpu-download.pprof"}
	if scenarios == "all" {
		for _, side := range []string{"sqlite", "postgres"} {
			for _, p := range []string{"server-allocs-live-before", "server-cpu-live", "server-allocs-live-after", "server-cpu-queue", "server-cpu-drain"} {
				wantProfiles = append(wantProfiles, p+"-g-"+side+".pprof")
			}
		}
	}
	if strings.Join(names, " ") != strings.Join(wantProfiles, " ") {
		t.Errorf("profiles: %v, want %v", names, wantProfiles)
	}
	for _, s := range []string{"sealed", "test keys", "qrtalkd/relay", "qrtalkd / bare relay", "KiB per channel"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output does not mention %q", s)
		}
	}

	// A saved report prints again, targets judged anew.
	var again bytes.Buffer
	md := filepath.Join(dir, "again.md")
	if code := run(ctx, []string{"--from-json", jsonPath, "--markdown", md}, &again, &errb); code != 0 {
		t.Fatalf("--from-json: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(again.String(), "live 1 KiB, 10 dev, full rate") || !strings.Contains(again.String(), "qrtalkd / bare relay") {
		t.Errorf("--from-json printed:\n%s", again.String())
	}
	if b, err := os.ReadFile(md); err != nil || !strings.Contains(string(b), "| target | want |") {
		t.Errorf("--from-json --markdown: %v\n%s", err, b)
	}
}

func TestFlags(t *testing.T) {
	var errb bytes.Buffer
	for _, args := range [][]string{
		{"--server", "https://example.org:8443", "--fingerprint", "x"},
		{"--server", "https://10.0.0.1:8443", "--fingerprint", "x"},
		{"--server", "http://127.0.0.1:8443", "--fingerprint", "x"},
		{"--server", "https://127.0.0.1:8443"},
		{"--scenario", "z"},
		{"--devices", "0"},
		{"--group", "3000"},
		{"--idle", "50000"},
		{"--storm", "tepid"},
		{"--blob-size", "ten"},
		{"--scenario", "g", "--postgres", "postgres://postgres@10.0.0.1:5432/test"},
		{"--scenario", "g", "--postgres", "mysql://127.0.0.1/test"},
		{"--scenario", "g", "--server", "https://127.0.0.1:8443", "--fingerprint", "x"},
		{"--sweep-rates", "0"},
		{"--sweep-rates", "300"},
		{"--g-group", "3000"},
	} {
		if _, err := parseFlags(args, &errb); err == nil {
			t.Errorf("%q: accepted", args)
		}
	}
	for _, args := range [][]string{
		{"--server", "https://127.0.0.1:8443", "--fingerprint", "x"},
		{"--server", "https://[::1]:8443", "--fingerprint", "x"},
		{"--scenario", "e,live", "--blob-size", "512KiB"},
	} {
		s, err := parseFlags(args, &errb)
		if err != nil {
			t.Errorf("%q: %v", args, err)
			continue
		}
		if args[0] == "--scenario" && (strings.Join(s.Scenarios, ",") != "e,a" || s.BlobSize != 512<<10) {
			t.Errorf("%q: scenarios %v, blob size %d", args, s.Scenarios, s.BlobSize)
		}
	}
}

// TestPlotsFromJSON draws the plots of a saved report (no server): both
// files, the right size, each series' colour on them.
func TestPlotsFromJSON(t *testing.T) {
	dir := t.TempDir()
	rep := &Report{Tool: "qrtalk-bench", Started: time.Date(2026, 11, 26, 10, 45, 0, 0, time.UTC),
		Machine:  Machine{CPUs: 2, CPUModel: "test", LoadAvg: "1.00 1.00 1.00", LoadEnd: "2.00 1.00 1.00"},
		Settings: Settings{MessageSize: 1024, Concurrency: 64}}
	dev := Sweep{Name: "devices", Title: "t", X: "x"}
	for i, n := range []int{100, 300, 1000, 3000} {
		dev.Points = append(dev.Points, SweepPoint{System: "qrtalkd", X: float64(n), Devices: n, Rate: 5000 + 100*float64(i), P99: 20},
			SweepPoint{System: "relay", X: float64(n), Devices: n, Rate: 10000 - 200*float64(i), P99: 10})
	}
	rate := Sweep{Name: "rate", Title: "t", X: "x"}
	for _, pct := range []float64{25, 50, 75, 100} {
		rate.Points = append(rate.Points, SweepPoint{System: "qrtalkd", X: pct, Devices: 1000, Offered: pct * 50, Rate: pct * 50, P50: 0.5 * pct, P99: 3 * pct},
			SweepPoint{System: "relay", X: pct, Devices: 1000, Offered: pct * 50, Rate: pct * 50, P50: 0.3, P99: 0.1 * pct, Skipped: 7})
	}
	rep.Sweeps = []Sweep{dev, rate}
	path := filepath.Join(dir, "r.json")
	if err := writeJSON(path, rep); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--from-json", path, "--plot", filepath.Join(dir, "p")}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, name := range []string{"throughput-vs-devices.png", "latency-vs-offered-rate.png"} {
		f, err := os.Open(filepath.Join(dir, "p", name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b := img.Bounds(); b.Dx() != plotW || b.Dy() != plotH {
			t.Errorf("%s: %v", name, b)
		}
		seen := map[color.RGBA]int{}
		for y := 0; y < plotH; y++ {
			for x := 0; x < plotW; x++ {
				r, g, b, a := img.At(x, y).RGBA()
				seen[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), uint8(a >> 8)}]++
			}
		}
		for _, c := range []color.RGBA{colQrtalkd, colRelay} {
			if seen[c] < 200 {
				t.Errorf("%s: %d pixels of %v", name, seen[c], c)
			}
		}
	}
	if !strings.Contains(out.String(), "latency-vs-offered-rate.png") {
		t.Errorf("output: %s", out.String())
	}
	// A report without sweeps has nothing to plot, and says so.
	rep.Sweeps = nil
	writeJSON(path, rep)
	errb.Reset()
	if code := run(context.Background(), []string{"--from-json", path, "--plot", filepath.Join(dir, "q")}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "no sweeps") {
		t.Errorf("no sweeps: exit %d: %s", code, errb.String())
	}
}
