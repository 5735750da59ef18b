// Package qr draws qrtalk: URIs as QR codes, in a terminal and as PNG
// files, and reads them back from PNG and JPEG images.
//
// Libraries: github.com/makiuchi-d/gozxing (v0.1.1, pure Go, MIT licence), a
// port of ZXing, the widely used open-source barcode reader, is our only QR
// dependency because it both encodes and decodes; its decoder reads our
// tests' scaled, rotated, blurred, JPEG-compressed and inverted codes. It
// brings golang.org/x/text (character sets) and golang.org/x/xerrors. An
// encoder such as skip2/go-qrcode, yeqown/go-qrcode or rsc.io/qr would have
// been a second dependency for what gozxing already does.
//
// We do not call gozxing's QR detector as it is: its finder-pattern search
// keeps every candidate and then tries every triple of them, so an image
// tiled with finder-like squares makes it run for minutes, and its
// cross-checks follow runs of any length. detect.go runs the same search
// with a cap on the candidates and bounded runs, and hands the three
// patterns it finds to gozxing for sampling, error correction and decoding.
//
// Work is bounded for hostile input: files over MaxFileSize bytes and images
// over MaxPixels pixels are refused before they are decoded, and every
// decoding step is linear in the number of pixels.
//
// All functions are safe for concurrent use.
package qr

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error caused by the content of the text to encode
// or of the image to decode wraps one of them, for errors.Is; errors in the
// other arguments (a PNG scale, a level) and I/O errors do not.
var (
	// ErrInvalidText is returned when the text to encode is empty or is not
	// valid UTF-8.
	ErrInvalidText = errors.New("qr: invalid text")
	// ErrTooLong is returned when the text does not fit in the largest QR
	// code (version 40) at the chosen error-correction level.
	ErrTooLong = errors.New("qr: text too long for a qr code")
	// ErrNotImage is returned when the input is not a PNG or JPEG image, or
	// is a damaged one.
	ErrNotImage = errors.New("qr: not a png or jpeg image")
	// ErrTooLarge is returned when an input file is larger than MaxFileSize
	// bytes or an image has more than MaxPixels pixels.
	ErrTooLarge = errors.New("qr: image too large")
	// ErrNotFound is returned when no readable QR code is found in an image.
	ErrNotFound = errors.New("qr: no qr code found in image")
)

// Limits on the input of the decoders, checked before any pixel is decoded.
const (
	// MaxFileSize is the largest image file, in bytes, that DecodeFile and
	// DecodeReader accept.
	MaxFileSize = 20 << 20
	// MaxPixels is the largest image, in pixels (width × height), that the
	// decoders accept: 40 megapixels, more than a phone camera's default
	// resolution. A 40-megapixel 16-bit PNG still takes 320 MB to decode.
	MaxPixels = 40_000_000
)

// Level is a QR error-correction level: the share of the code that may be
// damaged or unreadable while it still decodes. Higher levels make larger
// codes for the same text. The zero value is Medium, the default.
type Level int

// Error-correction levels, from the QR specification.
const (
	// Medium recovers about 15% of the code. It is the default and the zero
	// value.
	Medium Level = iota
	// Low recovers about 7%: the smallest codes, for clean screens.
	Low
	// Quartile recovers about 25%.
	Quartile
	// High recovers about 30%: for printed codes that may be scuffed.
	High
)

// String returns the level's one-letter name from the QR specification.
func (l Level) String() string {
	switch l {
	case Low:
		return "L"
	case Medium:
		return "M"
	case Quartile:
		return "Q"
	case High:
		return "H"
	}
	return fmt.Sprintf("Level(%d)", int(l))
}
