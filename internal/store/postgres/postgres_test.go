package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/internal/store/storetest"
	"github.com/qrtalk/qrtalk/protocol"
)

// envDSN names the variable holding the test database's DSN, for example
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const envDSN = "QRTALK_TEST_POSTGRES"

// baseDSN returns the test database's DSN, or skips the test when there is
// none (fails it under CI=true, where the database must be there).
func baseDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(envDSN)
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set, and CI=true requires the PostgreSQL tests to run", envDSN)
		}
		t.Skipf("PostgreSQL tests skipped: set %s to a database DSN (for example postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run them", envDSN)
	}
	return dsn
}

// withSearchPath returns dsn with search_path set to schema.
func withSearchPath(t testing.TB, dsn, schema string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("%s: %v", envDSN, err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}

// connect opens one plain connection to the test database, for setting up
// and inspecting what the store does.
func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to %s: %v", envDSN, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// newSchema creates an empty schema of its own for the test and returns a
// DSN whose search_path is that schema. The schema is dropped, with
// everything in it, when the test ends, so tests can run in parallel and
// leave nothing behind.
func newSchema(t testing.TB) string {
	t.Helper()
	base := baseDSN(t)
	var b [8]byte
	rand.Read(b[:])
	schema := "qrtalk_test_" + hex.EncodeToString(b[:])
	admin := connect(t, base)
	ctx := context.Background()
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("CREATE SCHEMA: %v", err)
	}
	t.Cleanup(func() {
		// After the stores' own cleanups (registered later, run earlier).
		if _, err := admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("DROP SCHEMA %s: %v", schema, err)
		}
	})
	return withSearchPath(t, base, schema)
}

func openDSN(t testing.TB, dsn string, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openTemp opens a store on a fresh schema.
func openTemp(t testing.TB) *Store {
	t.Helper()
	return openDSN(t, newSchema(t), Options{})
}

func TestConformance(t *testing.T) {
	baseDSN(t)
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

var now = time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)

// account registers a user with one device and returns the device.
func account(t testing.TB, s store.Store) store.Device {
	t.Helper()
	u := store.User{ID: protocol.NewUserID(), IdentityKey: []byte("identity key"), Created: now}
	d := store.Device{User: u.ID, ID: protocol.NewDeviceID(), Certificate: []byte("cert"),
		EncryptionKey: []byte("enc key"), AuthKey: []byte("auth key"), Created: now}
	if err := s.Register(context.Background(), u, d, nil, now); err != nil {
		t.Fatal(err)
	}
	return d
}

func message(d store.Device, envelope []byte) store.QueuedMessage {
	return store.QueuedMessage{User: d.User, Device: d.ID, ID: protocol.NewMessageID(), Envelope: envelope, Expires: now.Add(time.Hour)}
}

func schemaVersion(t *testing.T, c *pgx.Conn) (max, rows int) {
	t.Helper()
	if err := c.QueryRow(context.Background(), "SELECT coalesce(max(version), 0), count(*) FROM schema_migrations").Scan(&max, &rows); err != nil {
		t.Fatalf("reading schema_migrations: %v", err)
	}
	return max, rows
}

func TestSchemaVersionRecorded(t *testing.T) {
	baseDSN(t)
	t.Parallel()
	dsn := newSchema(t)
	s := openDSN(t, dsn, Options{})
	s.Close()
	// Opening again applies nothing and keeps the data.
	s = openDSN(t, dsn, Options{})
	d := account(t, s)
	s.Close()
	s = openDSN(t, dsn, Options{})
	if _, err := s.Device(context.Background(), d.User, d.ID); err != nil {
		t.Fatalf("device after reopening: %v", err)
	}
	if v, n := schemaVersion(t, connect(t, dsn)); v != SchemaVersion() || n != SchemaVersion() {
		t.Fatalf("schema_migrations: version %d in %d rows, want %d in %d", v, n, SchemaVersion(), SchemaVersion())
	}
}

func TestSchemaTooNew(t *testing.T) {
	baseDSN(t)
	t.Parallel()
	dsn := newSchema(t)
	s := openDSN(t, dsn, Options{})
	d := account(t, s)
	s.Close()

	c := connect(t, dsn)
	if _, err := c.Exec(context.Background(), "INSERT INTO schema_migrations (version) VALUES ($1)", SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), dsn, Options{})
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("Open(newer schema) = %v, want ErrSchemaTooNew", err)
	}
	// Refusing changed nothing.
	if v, n := schemaVersion(t, c); v != SchemaVersion()+1 || n != SchemaVersion()+1 {
		t.Fatalf("schema_migrations after a refused Open: version %d in %d rows", v, n)
	}
	var devices int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM devices WHERE device_id = $1", d.ID[:]).Scan(&devices); err != nil || devices != 1 {
		t.Fatalf("devices after a refused Open: %d, %v", devices, err)
	}
}

// TestConcurrentOpen: nodes starting at once on an empty schema; every
// migration step is applied exactly once (a second run of a step would fail
// on tables that exist, and schema_migrations' primary key would refuse the
// version twice), and every node opens.
func TestConcurrentOpen(t *testing.T) {
	baseDSN(t)
	t.Parallel()
	dsn := newSchema(t)
	const nodes = 6
	stores := make([]*Store, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range nodes {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = Open(context.Background(), dsn, Options{})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: Open: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	if v, n := schemaVersion(t, connect(t, dsn)); v != SchemaVersion() || n != SchemaVersion() {
		t.Fatalf("schema_migrations: version %d in %d rows, want %d in %d", v, n, SchemaVersion(), SchemaVersion())
	}
	// They share one database.
	d := account(t, stores[0])
	if _, err := stores[nodes-1].Device(context.Background(), d.User, d.ID); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	base := baseDSN(t)
	t.Parallel()
	ctx := context.Background()
	_, err := Open(ctx, withSearchPath(t, base, "qrtalk_test_does_not_exist"), Options{})
	if err == nil || !strings.Contains(err.Error(), "no schema") {
		t.Fatalf("Open(search_path of a missing schema) = %v, want an error saying there is no schema", err)
	}
	if _, err := Open(ctx, "postgres://%zz", Options{}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("Open(bad DSN) = %v, want ErrInvalid", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Open(cctx, newSchema(t), Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open(canceled) = %v, want context.Canceled", err)
	}
}

// TestConcurrentSweep: two nodes (two stores, two pools) sweeping the same
// schema at once, in small chunks so that they interleave; every expired
// message is deleted by exactly one of them, so the counts add up, and none
// is left.
func TestConcurrentSweep(t *testing.T) {
	baseDSN(t)
	t.Parallel()
	ctx := context.Background()
	dsn := newSchema(t)
	nodes := []*Store{openDSN(t, dsn, Options{SweepBatch: 37}), openDSN(t, dsn, Options{SweepBatch: 37})}
	s := nodes[0]

	const devices, perDevice = 8, 500
	var keep []store.QueuedMessage
	env := []byte("envelope")
	for range devices {
		d := account(t, s)
		var batch []store.QueuedMessage
		for i := range perDevice {
			m := message(d, env)
			m.Expires = now.Add(-time.Duration(i+1) * time.Second) // expired
			batch = append(batch, m)
		}
		live := message(d, env)
		keep = append(keep, live)
		batch = append(batch, live)
		if err := s.Enqueue(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	const sweepers = 3 // per node
	counts := make([]int, len(nodes)*sweepers)
	errs := make([]error, len(counts))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range counts {
		wg.Go(func() {
			<-start
			counts[i], errs[i] = nodes[i%len(nodes)].DeleteExpired(ctx, now)
		})
	}
	close(start)
	wg.Wait()
	total := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("sweeper %d: %v", i, err)
		}
		total += counts[i]
	}
	if total != devices*perDevice {
		t.Fatalf("sweepers deleted %d messages in all (%v), want %d", total, counts, devices*perDevice)
	}
	if n, err := nodes[1].QueueDepth(ctx); err != nil || n != len(keep) {
		t.Fatalf("QueueDepth after the sweep = %d, %v; want the %d unexpired", n, err, len(keep))
	}
	t.Logf("per-sweeper counts: %v", counts)
}

// TestConcurrentBlobSweep: the same for blobs, whose IDs go to the caller
// to delete the files: each expired ID is returned by exactly one node.
func TestConcurrentBlobSweep(t *testing.T) {
	baseDSN(t)
	t.Parallel()
	ctx := context.Background()
	dsn := newSchema(t)
	nodes := []*Store{openDSN(t, dsn, Options{}), openDSN(t, dsn, Options{})}
	owner := account(t, nodes[0])
	r := account(t, nodes[0])
	const n = 300
	want := map[store.BlobID]bool{}
	for i := range n + 5 {
		b := store.Blob{OwnerUser: owner.User, OwnerDevice: owner.ID, Size: 1, Created: now,
			Expires: now.Add(-time.Second), Recipients: []store.BlobRecipient{{User: r.User, Device: r.ID}}}
		rand.Read(b.ID[:])
		if i >= n {
			b.Expires = now.Add(time.Hour)
		} else {
			want[b.ID] = true
		}
		if err := nodes[0].CreateBlob(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	const sweepers = 6
	got := make([][]store.BlobID, sweepers)
	errs := make([]error, sweepers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range sweepers {
		wg.Go(func() {
			<-start
			got[i], errs[i] = nodes[i%len(nodes)].DeleteExpiredBlobs(ctx, now)
		})
	}
	close(start)
	wg.Wait()
	seen := map[store.BlobID]bool{}
	for i, ids := range got {
		if errs[i] != nil {
			t.Fatalf("sweeper %d: %v", i, errs[i])
		}
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("blob %v returned by two sweeps: its file would be deleted twice", id)
			}
			if !want[id] {
				t.Fatalf("blob %v returned but not expired", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != n {
		t.Fatalf("sweeps returned %d blobs, want %d", len(seen), n)
	}
	if ids, err := nodes[1].DeleteExpiredBlobs(ctx, now); err != nil || len(ids) != 0 {
		t.Fatalf("sweep after the sweep = %v, %v", ids, err)
	}
}

// TestEnqueueRevokeRace: messages enqueued while the device is revoked, from
// another node; whatever the interleaving, no message stays queued for the
// revoked device.
func TestEnqueueRevokeRace(t *testing.T) {
	baseDSN(t)
	t.Parallel()
	ctx := context.Background()
	dsn := newSchema(t)
	a, b := openDSN(t, dsn, Options{}), openDSN(t, dsn, Options{})
	for round := range 30 {
		d := account(t, a)
		var wg sync.WaitGroup
		start := make(chan struct{})
		errc := make(chan error, 8)
		for range 4 {
			wg.Go(func() {
				<-start
				for range 5 {
					if err := a.Enqueue(ctx, []store.QueuedMessage{message(d, []byte("x")), message(d, []byte("y"))}); err != nil {
						errc <- err
						return
					}
				}
			})
		}
		wg.Go(func() {
			<-start
			if err := b.RevokeDevice(ctx, d.User, d.ID, []byte("statement"), now); err != nil {
				errc <- err
			}
		})
		close(start)
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatalf("round %d: %v", round, err)
		}
		var left int
		if err := a.pool.QueryRow(ctx, "SELECT count(*) FROM queue WHERE user_id = $1", d.User[:]).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left != 0 {
			t.Fatalf("round %d: %d messages queued for a revoked device", round, left)
		}
	}
}

// TestMarkBlobFetchedRace: the last recipients fetching at once, on two
// nodes; exactly one of them is told that none remain.
func TestMarkBlobFetchedRace(t *testing.T) {
	baseDSN(t)
	t.Parallel()
	ctx := context.Background()
	dsn := newSchema(t)
	nodes := []*Store{openDSN(t, dsn, Options{}), openDSN(t, dsn, Options{})}
	owner := account(t, nodes[0])
	const recipients = 4
	var rs []store.Device
	for range recipients {
		rs = append(rs, account(t, nodes[0]))
	}
	for round := range 20 {
		b := store.Blob{OwnerUser: owner.User, OwnerDevice: owner.ID, Size: 1, Created: now, Expires: now.Add(time.Hour)}
		rand.Read(b.ID[:])
		for _, r := range rs {
			b.Recipients = append(b.Recipients, store.BlobRecipient{User: r.User, Device: r.ID})
		}
		if err := nodes[0].CreateBlob(ctx, b); err != nil {
			t.Fatal(err)
		}
		left := make([]int, recipients)
		errs := make([]error, recipients)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, r := range rs {
			wg.Go(func() {
				<-start
				left[i], errs[i] = nodes[i%2].MarkBlobFetched(ctx, b.ID, r.User, r.ID)
			})
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		slices.Sort(left)
		if !slices.Equal(left, []int{0, 1, 2, 3}) {
			t.Fatalf("round %d: remaining counts %v, want each of 0..3 once", round, left)
		}
	}
}

// TestTimes: times come back in UTC, truncated (not rounded) to the
// microsecond, whatever zone they were given in.
func TestTimes(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	ctx := context.Background()
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	created := time.Date(2031, 5, 6, 7, 8, 9, 123456789, zone)
	u := store.User{ID: protocol.NewUserID(), IdentityKey: []byte("k"), Created: created}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	got, err := s.User(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := created.Truncate(time.Microsecond).UTC()
	if got.Created != want {
		t.Fatalf("Created = %v, want %v", got.Created, want)
	}
	// Expiry with nanoseconds: expired from the microsecond it is stored at.
	d := account(t, s)
	m := message(d, []byte("x"))
	m.Expires = time.Date(2031, 1, 2, 3, 4, 5, 999, time.UTC) // 999 ns past now
	if err := s.Enqueue(ctx, []store.QueuedMessage{m}); err != nil {
		t.Fatal(err)
	}
	if ms, err := s.Pending(ctx, d.User, d.ID, now, 10); err != nil || len(ms) != 0 {
		t.Fatalf("Pending at the stored expiry = %d, %v; want none", len(ms), err)
	}
}

// TestLargeBatch: a batch as large as the QueueWriter makes, with envelopes
// of the largest size, in one statement, in order.
func TestLargeBatch(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	ctx := context.Background()
	d := account(t, s)
	batch := make([]store.QueuedMessage, 256)
	for i := range batch {
		env := make([]byte, 4<<10)
		rand.Read(env)
		batch[i] = message(d, env)
	}
	if err := s.Enqueue(ctx, batch); err != nil {
		t.Fatal(err)
	}
	got, err := s.Pending(ctx, d.User, d.ID, now, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(batch) {
		t.Fatalf("Pending = %d messages, want %d", len(got), len(batch))
	}
	for i := range got {
		if got[i].ID != batch[i].ID || !bytes.Equal(got[i].Envelope, batch[i].Envelope) {
			t.Fatalf("Pending[%d] differs from the batch's", i)
		}
	}
}

// TestVacuumRuns: Vacuum vacuums after deletions, and the dead rows are
// gone from the table's statistics' point of view.
func TestVacuumRuns(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	ctx := context.Background()
	d := account(t, s)
	var batch []store.QueuedMessage
	for range 20 {
		batch = append(batch, message(d, []byte("x")))
	}
	if err := s.Enqueue(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for _, m := range batch {
		if err := s.Ack(ctx, d.User, d.ID, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Vacuum(ctx); err != nil {
		t.Fatal(err)
	}
	if s.deleted.Load() {
		t.Fatal("Vacuum left the store marked as having deleted rows")
	}
	// pg_stat counters are updated asynchronously; the vacuum count is
	// what shows the VACUUM ran.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var vacuums int64
		if err := s.pool.QueryRow(ctx, `SELECT vacuum_count FROM pg_stat_user_tables
			WHERE relid = 'queue'::regclass`).Scan(&vacuums); err != nil {
			t.Fatal(err)
		}
		if vacuums > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("queue was never vacuumed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.Vacuum(ctx); err != nil { // nothing deleted since: nothing to do
		t.Fatal(err)
	}
}

// TestQueueWriterOnPostgres: the QueueWriter's group commit against the real
// database: concurrent senders, everything stored, fewer transactions than
// messages.
func TestQueueWriterOnPostgres(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	ctx := context.Background()
	d := account(t, s)
	w := store.NewQueueWriter(s, store.QueueWriterOptions{})
	const senders, each = 32, 10
	var wg sync.WaitGroup
	errc := make(chan error, senders*each)
	for range senders {
		wg.Go(func() {
			for range each {
				if err := w.Enqueue(ctx, message(d, []byte("x"))); err != nil {
					errc <- err
				}
			}
		})
	}
	wg.Wait()
	w.Close()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if n, err := s.QueueDepth(ctx); err != nil || n != senders*each {
		t.Fatalf("QueueDepth = %d, %v; want %d", n, err, senders*each)
	}
	st := w.Stats()
	t.Logf("%d messages in %d transactions", st.Messages, st.Batches)
}

// TestErrorMapping: what PostgreSQL reports comes back as the store's
// sentinels, wrapped.
func TestErrorMapping(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	ctx := context.Background()
	d := account(t, s)
	err := s.AddDevice(ctx, store.Device{User: protocol.NewUserID(), ID: protocol.NewDeviceID(), Certificate: []byte("c"), EncryptionKey: []byte("e"), AuthKey: []byte("a")})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("AddDevice(unknown user) = %v, want ErrNotFound (foreign key)", err)
	}
	err = s.AddDevice(ctx, store.Device{User: d.User, ID: d.ID, Certificate: []byte("c"), EncryptionKey: []byte("e"), AuthKey: []byte("a")})
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("AddDevice(existing) = %v, want ErrExists (unique violation)", err)
	}
	if !strings.HasPrefix(err.Error(), "postgres: ") {
		t.Errorf("error %q does not say where it comes from", err)
	}
	s.Close()
	if _, err := s.Pending(ctx, d.User, d.ID, now, 1); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Pending after Close = %v, want ErrClosed", err)
	}
	if err := s.Vacuum(ctx); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Vacuum after Close = %v, want ErrClosed", err)
	}
}
