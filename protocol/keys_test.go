package protocol

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
)

// pkcs8RSA encodes the eight integers of a two-prime RSA key as PKCS #8,
// whatever they are, to build keys that crypto/rsa would never produce.
func pkcs8RSA(t *testing.T, n *big.Int, d, p, q, dP, dQ, qInv *big.Int) []byte {
	t.Helper()
	inner, err := asn1.Marshal(struct {
		Version               int
		N                     *big.Int
		E                     int
		D, P, Q, Dp, Dq, Qinv *big.Int
	}{0, n, KeyExponent, d, p, q, dP, dQ, qInv})
	if err != nil {
		t.Fatal(err)
	}
	var outer struct {
		Version int
		Algo    struct {
			Algorithm  asn1.ObjectIdentifier
			Parameters asn1.RawValue
		}
		PrivateKey []byte
	}
	outer.Algo.Algorithm = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	outer.Algo.Parameters = asn1.NullRawValue
	outer.PrivateKey = inner
	der, err := asn1.Marshal(outer)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestParsePrivateKeyConsistency: a key whose values agree with each
// other by every check of crypto/rsa, but whose primes multiply to 2n, is
// not a key of its modulus (docs/PROTOCOL.md section 5.2: p·q = n).
func TestParsePrivateKeyConsistency(t *testing.T) {
	one, e := big.NewInt(1), big.NewInt(KeyExponent)
	crafted := 0
	for i := 0; i < 8 && crafted == 0; i++ {
		der := testKey(t, i).Bytes()
		k, _ := x509.ParsePKCS8PrivateKey(der)
		rk := k.(*rsa.PrivateKey)
		if _, err := ParsePrivateKey(pkcs8RSA(t, rk.N, rk.D, rk.Primes[0], rk.Primes[1], rk.Precomputed.Dp, rk.Precomputed.Dq, rk.Precomputed.Qinv)); err != nil {
			t.Fatalf("the genuine key, re-encoded: %v", err)
		}
		// d that does not match dP.
		d2 := new(big.Int).Add(rk.D, one)
		if _, err := ParsePrivateKey(pkcs8RSA(t, rk.N, d2, rk.Primes[0], rk.Primes[1], rk.Precomputed.Dp, rk.Precomputed.Dq, rk.Precomputed.Qinv)); !errors.Is(err, ErrMalformed) {
			t.Errorf("d + 1: got %v, want ErrMalformed", err)
		}
		// p = 2P: every CRT value made consistent with p and q.
		p, q := new(big.Int).Lsh(rk.Primes[0], 1), rk.Primes[1]
		pm1, qm1 := new(big.Int).Sub(p, one), new(big.Int).Sub(q, one)
		dP, dQ, qInv := new(big.Int).ModInverse(e, pm1), new(big.Int).ModInverse(e, qm1), new(big.Int).ModInverse(q, p)
		if dP == nil || dQ == nil || qInv == nil || new(big.Int).GCD(nil, nil, pm1, qm1).Cmp(one) != 0 {
			continue
		}
		// d ≡ dP (mod p−1), d ≡ dQ (mod q−1), by the CRT.
		m := new(big.Int).ModInverse(pm1, qm1)
		tt := new(big.Int).Mul(new(big.Int).Sub(dQ, dP), m)
		tt.Mod(tt, qm1)
		d := new(big.Int).Add(dP, new(big.Int).Mul(pm1, tt))
		if d.Cmp(rk.N) >= 0 || d.BitLen() <= KeyBits/2 {
			continue
		}
		crafted++
		if _, err := ParsePrivateKey(pkcs8RSA(t, rk.N, d, p, q, dP, dQ, qInv)); !errors.Is(err, ErrMalformed) {
			t.Errorf("test key %d with p = 2P: got %v, want ErrMalformed", i, err)
		}
	}
	if crafted == 0 {
		t.Fatal("no test key gave a crafted key: the test checks nothing")
	}
}
