package sqlite

import (
	"testing"

	"github.com/qrtalk/qrtalk/internal/store"
	"github.com/qrtalk/qrtalk/internal/store/storetest"
)

// BenchmarkStore runs the shared store benchmarks (queue insert, group
// commit, drain) on a SQLite file in a temporary directory, synchronous=FULL
// as in production.
func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store { return openTemp(b) })
}
