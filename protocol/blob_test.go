package protocol

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
)

func TestBlobRoundTrip(t *testing.T) {
	key := NewBlobKey()
	for _, size := range []int{0, 1, BlobChunkSize - 1, BlobChunkSize, BlobChunkSize + 1, 3*BlobChunkSize + 17} {
		plain := make([]byte, size)
		rand.Read(plain)
		var ct bytes.Buffer
		w, err := EncryptBlob(&ct, key)
		if err != nil {
			t.Fatal(err)
		}
		// Odd write sizes cross chunk boundaries.
		for p := plain; len(p) > 0; {
			n := min(len(p), 7919)
			if _, err := w.Write(p[:n]); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if int64(ct.Len()) != EncryptedBlobSize(int64(size)) {
			t.Fatalf("size %d: encrypted %d bytes, EncryptedBlobSize says %d", size, ct.Len(), EncryptedBlobSize(int64(size)))
		}
		r, err := DecryptBlob(bytes.NewReader(ct.Bytes()), key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("size %d: round trip failed: %v", size, err)
		}
		// Truncation at any chunk boundary, and a flipped bit, are detected.
		enc := ct.Bytes()
		for _, cut := range []int{len(enc) - 1, len(enc) - blobTagSize, blobHeaderSize + BlobChunkSize + blobTagSize} {
			if cut < blobHeaderSize || cut >= len(enc) {
				continue
			}
			r, _ := DecryptBlob(bytes.NewReader(enc[:cut]), key)
			if _, err := io.ReadAll(r); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("size %d cut at %d: got %v, want ErrDecrypt", size, cut, err)
			}
		}
		r, _ = DecryptBlob(bytes.NewReader(flip(enc, len(enc)/2+1)), key)
		if _, err := io.ReadAll(r); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("size %d flipped: got %v, want ErrDecrypt", size, err)
		}
		r, _ = DecryptBlob(bytes.NewReader(append(bytes.Clone(enc), 0)), key)
		if _, err := io.ReadAll(r); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("size %d extended: got %v, want ErrDecrypt", size, err)
		}
	}
}
