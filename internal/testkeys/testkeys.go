// Package testkeys hands tests fixed RSA-3072 keys, so that they do not
// spend their time generating keys. Never use these keys outside tests.
package testkeys

import (
	_ "embed"
	"encoding/pem"
	"fmt"
	"sync"

	"github.com/qrtalk/qrtalk/protocol"
)

//go:embed test-keys.pem
var keysPEM []byte

var (
	once sync.Once
	keys []*protocol.PrivateKey
)

// Count is how many keys there are.
const Count = 8

// Key returns fixed test key i (0 <= i < Count).
func Key(i int) *protocol.PrivateKey {
	once.Do(func() {
		rest := keysPEM
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			k, err := protocol.ParsePrivateKey(block.Bytes)
			if err != nil {
				panic(fmt.Sprintf("testkeys: %v", err))
			}
			keys = append(keys, k)
		}
	})
	return keys[i%len(keys)]
}
