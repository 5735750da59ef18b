// Package wire holds the byte-level encoding of protocol v1: big-endian
// integers and length-prefixed byte strings, written by a Builder and read
// back strictly by a Reader. See docs/PROTOCOL.md, "Encoding conventions".
package wire

import (
	"encoding/binary"
	"errors"
)

// ErrShort is recorded by a Reader that runs out of input.
var ErrShort = errors.New("truncated input")

// ErrTrailing is returned by Reader.Finish when input is left over.
var ErrTrailing = errors.New("trailing data")

// ErrLength is recorded when a length prefix exceeds the caller's limit.
var ErrLength = errors.New("length out of range")

// A Builder appends encoded fields to a byte slice.
type Builder struct{ buf []byte }

// NewBuilder returns a Builder whose buffer has room for size bytes.
func NewBuilder(size int) *Builder { return &Builder{buf: make([]byte, 0, size)} }

// Bytes returns the encoded bytes.
func (b *Builder) Bytes() []byte { return b.buf }

// U8 appends one byte.
func (b *Builder) U8(v uint8) { b.buf = append(b.buf, v) }

// U16 appends a big-endian uint16.
func (b *Builder) U16(v uint16) { b.buf = binary.BigEndian.AppendUint16(b.buf, v) }

// U32 appends a big-endian uint32.
func (b *Builder) U32(v uint32) { b.buf = binary.BigEndian.AppendUint32(b.buf, v) }

// U64 appends a big-endian uint64.
func (b *Builder) U64(v uint64) { b.buf = binary.BigEndian.AppendUint64(b.buf, v) }

// I64 appends a big-endian two's complement int64.
func (b *Builder) I64(v int64) { b.U64(uint64(v)) }

// Raw appends bytes as they are (for fixed-size fields and labels).
func (b *Builder) Raw(p []byte) { b.buf = append(b.buf, p...) }

// Str appends a string as it is (for labels).
func (b *Builder) Str(s string) { b.buf = append(b.buf, s...) }

// Var8 appends p with a one-byte length prefix. The caller keeps len(p) < 256.
func (b *Builder) Var8(p []byte) { b.U8(uint8(len(p))); b.Raw(p) }

// Var16 appends p with a uint16 length prefix. The caller keeps len(p) < 65536.
func (b *Builder) Var16(p []byte) { b.U16(uint16(len(p))); b.Raw(p) }

// Var32 appends p with a uint32 length prefix.
func (b *Builder) Var32(p []byte) { b.U32(uint32(len(p))); b.Raw(p) }

// A Reader consumes fields from a byte slice. The first error sticks: later
// reads return zero values, so a decoder reads every field, then checks Err
// or Finish once.
type Reader struct {
	buf []byte
	err error
}

// NewReader returns a Reader over p. Slices it returns alias p.
func NewReader(p []byte) *Reader { return &Reader{buf: p} }

// Err returns the first error met, if any.
func (r *Reader) Err() error { return r.err }

// Len returns the number of bytes not yet read.
func (r *Reader) Len() int { return len(r.buf) }

// Finish returns the first error met, or ErrTrailing if input is left over.
func (r *Reader) Finish() error {
	if r.err != nil {
		return r.err
	}
	if len(r.buf) != 0 {
		return ErrTrailing
	}
	return nil
}

// Fail records err if no error was recorded yet.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = err
		r.buf = nil
	}
}

// Fixed returns the next n bytes.
func (r *Reader) Fixed(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.buf) < n {
		r.Fail(ErrShort)
		return nil
	}
	p := r.buf[:n:n]
	r.buf = r.buf[n:]
	return p
}

// Into fills dst with the next len(dst) bytes.
func (r *Reader) Into(dst []byte) { copy(dst, r.Fixed(len(dst))) }

// U8 reads one byte.
func (r *Reader) U8() uint8 {
	p := r.Fixed(1)
	if p == nil {
		return 0
	}
	return p[0]
}

// U16 reads a big-endian uint16.
func (r *Reader) U16() uint16 {
	p := r.Fixed(2)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint16(p)
}

// U32 reads a big-endian uint32.
func (r *Reader) U32() uint32 {
	p := r.Fixed(4)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint32(p)
}

// U64 reads a big-endian uint64.
func (r *Reader) U64() uint64 {
	p := r.Fixed(8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

// I64 reads a big-endian two's complement int64.
func (r *Reader) I64() int64 { return int64(r.U64()) }

// Var8 reads a one-byte-length-prefixed byte string of at most max bytes.
func (r *Reader) Var8(max int) []byte {
	n := int(r.U8())
	if r.err == nil && n > max {
		r.Fail(ErrLength)
	}
	return r.Fixed(n)
}

// Var16 reads a uint16-length-prefixed byte string of at most max bytes.
func (r *Reader) Var16(max int) []byte {
	n := int(r.U16())
	if r.err == nil && n > max {
		r.Fail(ErrLength)
	}
	return r.Fixed(n)
}

// Var32 reads a uint32-length-prefixed byte string of at most max bytes.
func (r *Reader) Var32(max int) []byte {
	n := uint64(r.U32())
	if r.err == nil && n > uint64(max) {
		r.Fail(ErrLength)
	}
	return r.Fixed(int(n))
}
