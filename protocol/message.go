package protocol

import (
	"fmt"
	"unicode/utf8"

	"github.com/qrtalk/qrtalk/internal/wire"
)

// Limits on the plaintext of a message.
const (
	MaxBodySize       = 256 << 10 // larger content goes in an attachment
	MaxAttachments    = 32
	MaxContentTypeLen = 127
	MaxNameLen        = 255
	GroupIDSize       = 16
	BlobIDSize        = 16
	BlobKeySize       = 32

	// padBlock: plaintexts are padded with zeros to a multiple of this,
	// so the server learns sizes only to within a block.
	padBlock = 256

	maxAttachmentSize = BlobIDSize + BlobKeySize + 32 + 8 + 2 + MaxNameLen + 1 + MaxContentTypeLen
	maxPlaintextSize  = 1 + MaxContentTypeLen + 1 + GroupIDSize + 4 + MaxBodySize + 2 + MaxAttachments*maxAttachmentSize + padBlock
)

// A Message is the end-to-end encrypted content of an envelope: what the
// server never sees. Receipts, typing events and group changes are
// Messages too, told apart by ContentType.
type Message struct {
	// ContentType is a MIME type such as "text/plain; charset=utf-8", or one
	// of the application/x.qrtalk.* types of the client.
	ContentType string
	// GroupID is empty for a one-to-one message, else 16 bytes chosen by
	// the group's creator.
	GroupID []byte
	Body    []byte
	// Attachments reference blobs encrypted with EncryptBlob and uploaded
	// to the server.
	Attachments []Attachment
}

// An Attachment is a reference to an encrypted blob, with what is needed
// to fetch, check and decrypt it.
type Attachment struct {
	BlobID    [BlobIDSize]byte
	Key       [BlobKeySize]byte
	SHA256    [32]byte // of the encrypted blob as stored by the server
	Size      uint64   // of the plaintext
	Name      string
	MediaType string
}

func (m *Message) check() error {
	if m.ContentType == "" || len(m.ContentType) > MaxContentTypeLen || !printableASCII(m.ContentType) {
		return fmt.Errorf("%w: content type must be 1 to %d printable ASCII characters", ErrMalformed, MaxContentTypeLen)
	}
	if len(m.GroupID) != 0 && len(m.GroupID) != GroupIDSize {
		return fmt.Errorf("%w: group ID must be empty or %d bytes", ErrMalformed, GroupIDSize)
	}
	if len(m.Body) > MaxBodySize {
		return fmt.Errorf("%w: body is %d bytes, at most %d (send larger content as an attachment)", ErrTooLarge, len(m.Body), MaxBodySize)
	}
	if len(m.Attachments) > MaxAttachments {
		return fmt.Errorf("%w: %d attachments, at most %d", ErrTooLarge, len(m.Attachments), MaxAttachments)
	}
	for _, a := range m.Attachments {
		if len(a.Name) > MaxNameLen || !utf8.ValidString(a.Name) {
			return fmt.Errorf("%w: attachment name must be valid UTF-8 of at most %d bytes", ErrMalformed, MaxNameLen)
		}
		if len(a.MediaType) > MaxContentTypeLen || !printableASCII(a.MediaType) {
			return fmt.Errorf("%w: attachment media type must be printable ASCII of at most %d bytes", ErrMalformed, MaxContentTypeLen)
		}
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// marshal encodes m and pads it with zeros to a multiple of padBlock.
func (m *Message) marshal() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	size := 1 + len(m.ContentType) + 1 + len(m.GroupID) + 4 + len(m.Body) + 2
	for _, a := range m.Attachments {
		size += BlobIDSize + BlobKeySize + 32 + 8 + 2 + len(a.Name) + 1 + len(a.MediaType)
	}
	padded := (size + padBlock - 1) / padBlock * padBlock
	b := wire.NewBuilder(padded)
	b.Var8([]byte(m.ContentType))
	b.Var8(m.GroupID)
	b.Var32(m.Body)
	b.U16(uint16(len(m.Attachments)))
	for _, a := range m.Attachments {
		b.Raw(a.BlobID[:])
		b.Raw(a.Key[:])
		b.Raw(a.SHA256[:])
		b.U64(a.Size)
		b.Var16([]byte(a.Name))
		b.Var8([]byte(a.MediaType))
	}
	b.Raw(make([]byte, padded-size))
	return b.Bytes(), nil
}

// unmarshalMessage decodes a plaintext produced by marshal. The result
// copies nothing it can alias: p is a fresh buffer from the AEAD.
func unmarshalMessage(p []byte) (*Message, error) {
	if len(p) > maxPlaintextSize {
		return nil, fmt.Errorf("%w: plaintext is %d bytes", ErrTooLarge, len(p))
	}
	r := wire.NewReader(p)
	m := &Message{}
	m.ContentType = string(r.Var8(MaxContentTypeLen))
	if g := r.Var8(GroupIDSize); len(g) > 0 {
		m.GroupID = g
	}
	m.Body = r.Var32(MaxBodySize)
	n := int(r.U16())
	if n > MaxAttachments {
		r.Fail(wire.ErrLength)
	}
	for i := 0; i < n && r.Err() == nil; i++ {
		var a Attachment
		r.Into(a.BlobID[:])
		r.Into(a.Key[:])
		r.Into(a.SHA256[:])
		a.Size = r.U64()
		a.Name = string(r.Var16(MaxNameLen))
		a.MediaType = string(r.Var8(MaxContentTypeLen))
		m.Attachments = append(m.Attachments, a)
	}
	if r.Err() != nil {
		return nil, fmt.Errorf("%w: message: %v", ErrMalformed, r.Err())
	}
	pad := r.Fixed(r.Len())
	for _, c := range pad {
		if c != 0 {
			return nil, fmt.Errorf("%w: message padding is not zero", ErrMalformed)
		}
	}
	if (len(p)-len(pad)+padBlock-1)/padBlock*padBlock != len(p) {
		return nil, fmt.Errorf("%w: message padding has the wrong length", ErrMalformed)
	}
	if m.Body == nil {
		m.Body = []byte{}
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return m, nil
}
