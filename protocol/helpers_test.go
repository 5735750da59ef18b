package protocol

import (
	"encoding/pem"
	"os"
	"sync"
	"testing"
)

var (
	testKeysOnce sync.Once
	testKeysList []*PrivateKey
)

// testKey returns the i-th fixed test key from internal/testkeys/test-keys.pem, so
// that tests do not spend their time generating RSA keys.
func testKey(t testing.TB, i int) *PrivateKey {
	t.Helper()
	testKeysOnce.Do(func() {
		data, err := os.ReadFile("../internal/testkeys/test-keys.pem")
		if err != nil {
			panic(err)
		}
		for {
			var block *pem.Block
			block, data = pem.Decode(data)
			if block == nil {
				break
			}
			k, err := ParsePrivateKey(block.Bytes)
			if err != nil {
				panic(err)
			}
			testKeysList = append(testKeysList, k)
		}
	})
	if i >= len(testKeysList) {
		t.Fatalf("only %d test keys", len(testKeysList))
	}
	return testKeysList[i]
}
