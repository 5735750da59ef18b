package postgres

import (
	"testing"

	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/internal/store/storetest"
)

// BenchmarkStore runs the shared store benchmarks (queue insert, group
// commit, drain) against the database of QRTALK_TEST_POSTGRES, each on a
// schema of its own. Every commit waits for PostgreSQL's WAL flush
// (synchronous_commit=on), as in production.
func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store { return openTemp(b) })
}
