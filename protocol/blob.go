package protocol

import (
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
)

// Blobs (attachments) are encrypted on the device in chunks, so that files
// of any size stream through a fixed amount of memory: the STREAM
// construction, as in age. The key is fresh for every blob and travels
// inside the message that references it.
const (
	// BlobChunkSize is the plaintext size of every chunk but the last.
	BlobChunkSize = 64 << 10

	typeBlob       = 6
	blobHeaderSize = 2
	blobTagSize    = 16
	lastChunkFlag  = 1
)

// NewBlobKey returns a fresh random blob key.
func NewBlobKey() (k [BlobKeySize]byte) { rand.Read(k[:]); return k }

// EncryptedBlobSize returns the size of the encryption of size bytes.
func EncryptedBlobSize(size int64) int64 {
	chunks := size / BlobChunkSize
	if size%BlobChunkSize != 0 || size == 0 {
		chunks++
	}
	return blobHeaderSize + size + chunks*blobTagSize
}

func blobNonce(ctr uint64, last bool) []byte {
	n := make([]byte, nonceSize)
	for i := 10; i >= 3; i-- {
		n[i] = byte(ctr)
		ctr >>= 8
	}
	if last {
		n[11] = lastChunkFlag
	}
	return n
}

// A blobWriter encrypts what is written to it, one chunk at a time.
type blobWriter struct {
	dst  io.Writer
	aead cipher.AEAD
	buf  []byte
	out  []byte
	ctr  uint64
	err  error
}

// EncryptBlob returns a writer that encrypts to dst under key. Close must
// be called: it writes the last chunk, without which the blob does not
// decrypt (a truncated blob is always detected).
func EncryptBlob(dst io.Writer, key [BlobKeySize]byte) (io.WriteCloser, error) {
	if _, err := dst.Write([]byte{Version, typeBlob}); err != nil {
		return nil, err
	}
	return &blobWriter{dst: dst, aead: newGCM(key[:]), buf: make([]byte, 0, BlobChunkSize), out: make([]byte, 0, BlobChunkSize+blobTagSize)}, nil
}

func (w *blobWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 && w.err == nil {
		// A full chunk is written only once more data follows, since the
		// last chunk must carry the last-chunk flag.
		if len(w.buf) == BlobChunkSize {
			w.flush(false)
			continue
		}
		k := copy(w.buf[len(w.buf):BlobChunkSize], p)
		w.buf = w.buf[:len(w.buf)+k]
		p = p[k:]
		n += k
	}
	return n, w.err
}

func (w *blobWriter) flush(last bool) {
	w.out = w.aead.Seal(w.out[:0], blobNonce(w.ctr, last), w.buf, nil)
	w.ctr++
	w.buf = w.buf[:0]
	if _, err := w.dst.Write(w.out); err != nil {
		w.err = err
	}
}

func (w *blobWriter) Close() error {
	if w.err != nil {
		return w.err
	}
	w.flush(true)
	if w.err == nil {
		w.err = errors.New("protocol: blob writer is closed")
		return nil
	}
	return w.err
}

// A blobReader decrypts and authenticates a blob chunk by chunk.
type blobReader struct {
	src   io.Reader
	aead  cipher.AEAD
	in    []byte // one encrypted chunk and one byte more
	have  int    // bytes of in filled
	plain []byte
	out   []byte // decrypted, not yet read
	ctr   uint64
	done  bool
	err   error
}

// DecryptBlob returns a reader of the plaintext of the blob read from src.
// Each chunk is authenticated before any of it is returned; a truncated,
// extended, reordered or modified blob gives ErrDecrypt.
func DecryptBlob(src io.Reader, key [BlobKeySize]byte) (io.Reader, error) {
	var h [blobHeaderSize]byte
	if _, err := io.ReadFull(src, h[:]); err != nil {
		return nil, fmt.Errorf("%w: blob header: %v", ErrMalformed, err)
	}
	if h[0] != Version {
		return nil, fmt.Errorf("%w: blob version %d", ErrVersion, h[0])
	}
	if h[1] != typeBlob {
		return nil, fmt.Errorf("%w: not a blob (type %d)", ErrMalformed, h[1])
	}
	return &blobReader{
		src: src, aead: newGCM(key[:]),
		in:    make([]byte, BlobChunkSize+blobTagSize+1),
		plain: make([]byte, 0, BlobChunkSize),
	}, nil
}

func (r *blobReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		r.next()
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// next decrypts one chunk. It reads one byte past a full chunk: a chunk
// with nothing after it is the last, and must be sealed as the last.
func (r *blobReader) next() {
	n, err := io.ReadFull(r.src, r.in[r.have:])
	r.have += n
	switch {
	case err == io.ErrUnexpectedEOF || err == io.EOF:
		r.done = true
	case err != nil:
		r.err = err
		return
	}
	size := r.have
	if !r.done {
		size--
	}
	// Only an empty blob has an empty last chunk.
	if size < blobTagSize || (r.done && size == blobTagSize && r.ctr > 0) {
		r.err = fmt.Errorf("%w: blob is truncated", ErrDecrypt)
		return
	}
	out, err := r.aead.Open(r.plain[:0], blobNonce(r.ctr, r.done), r.in[:size], nil)
	if err != nil {
		r.err = fmt.Errorf("%w: blob chunk %d", ErrDecrypt, r.ctr)
		return
	}
	r.ctr++
	r.out = out
	r.have = 0
	if !r.done {
		r.in[0] = r.in[size]
		r.have = 1
	}
}
