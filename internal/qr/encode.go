package qr

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"strings"
	"unicode/utf8"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode/decoder"
	"github.com/makiuchi-d/gozxing/qrcode/encoder"
)

const (
	// quietZone is the light margin, in modules, that the QR specification
	// asks for on every side; scanners need it to find the code.
	quietZone = 4
	// maxTextLen is the most any QR code holds: 7089 digits (version 40,
	// level L, numeric mode). Longer text is refused before any encoding work.
	maxTextLen = 7089
	// DefaultScale is the PNG module size, in pixels, used when PNG is given
	// a scale of 0: a typical invite becomes a PNG of about 500×500 pixels.
	DefaultScale = 8
	// MaxScale is the largest PNG module size, in pixels.
	MaxScale = 32
)

// TerminalOptions are the options of Terminal. The zero value is the
// default: Medium error correction, light modules drawn.
type TerminalOptions struct {
	// Level is the error-correction level; the zero value is Medium.
	Level Level
	// Invert draws the dark modules as blocks instead of the light ones,
	// which gives dark-on-light codes on terminals with a light background.
	Invert bool
}

// Terminal returns text as a QR code drawn with Unicode half blocks (▀ ▄ █
// and space), two modules per character row, quiet zone included, one line
// per row ending in "\n".
//
// By default the light modules are drawn as blocks and the dark ones are
// left blank, so a terminal with a dark background shows dark modules on a
// light code, as the QR specification wants, whatever its colours. On a
// light background the same text shows the code inverted (light on dark),
// which phone cameras and Decode read but some older scanners do not: set
// opts.Invert there.
func Terminal(text string, opts TerminalOptions) (string, error) {
	m, err := modules(text, opts.Level)
	if err != nil {
		return "", err
	}
	n := len(m)
	var b strings.Builder
	b.Grow((n + 1) / 2 * (3*n + 1))
	for y := 0; y < n; y += 2 {
		for x := 0; x < n; x++ {
			// A module is drawn when it is light (dark with Invert). Below
			// the last row there is nothing to draw: the terminal's own
			// background shows.
			top := m[y][x] == opts.Invert
			bottom := y+1 < n && m[y+1][x] == opts.Invert
			switch {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// PNG returns text as a QR code in a PNG image: black modules on white,
// with the quiet zone, scale pixels per module (0 means DefaultScale; at
// most MaxScale), at Medium error correction.
func PNG(text string, scale int) ([]byte, error) {
	if scale == 0 {
		scale = DefaultScale
	}
	if scale < 1 || scale > MaxScale {
		return nil, fmt.Errorf("qr: png scale %d out of range 1 to %d", scale, MaxScale)
	}
	m, err := modules(text, Medium)
	if err != nil {
		return nil, err
	}
	side := len(m) * scale
	img := image.NewPaletted(image.Rect(0, 0, side, side), color.Palette{color.White, color.Black})
	for y := range side {
		row := img.Pix[y*img.Stride : y*img.Stride+side]
		for x := range side {
			if m[y/scale][x/scale] {
				row[x] = 1
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("qr: encode png: %w", err)
	}
	return buf.Bytes(), nil
}

// modules encodes text and returns the code's modules, quiet zone included,
// as rows of booleans: true is dark.
func modules(text string, level Level) ([][]bool, error) {
	if text == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidText)
	}
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("%w: not valid utf-8", ErrInvalidText)
	}
	if len(text) > maxTextLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLong, len(text))
	}
	ecl, err := level.zxing()
	if err != nil {
		return nil, err
	}
	var hints map[gozxing.EncodeHintType]any
	if !isASCII(text) {
		// Byte mode means ISO-8859-1 unless an ECI header says otherwise;
		// say UTF-8, so that readers do not have to guess.
		hints = map[gozxing.EncodeHintType]any{gozxing.EncodeHintType_CHARACTER_SET: "UTF-8"}
	}
	code, err := encoder.Encoder_encode(text, ecl, hints)
	if err != nil {
		if strings.Contains(err.Error(), "too big") {
			return nil, fmt.Errorf("%w: %d bytes at level %v", ErrTooLong, len(text), level)
		}
		return nil, fmt.Errorf("qr: encode: %w", err)
	}
	in := code.GetMatrix()
	if in == nil || in.GetWidth() != in.GetHeight() {
		return nil, fmt.Errorf("qr: encode: no square module matrix")
	}
	n := in.GetWidth() + 2*quietZone
	m := make([][]bool, n)
	for y := range m {
		m[y] = make([]bool, n)
		if y < quietZone || y >= n-quietZone {
			continue
		}
		for x := quietZone; x < n-quietZone; x++ {
			m[y][x] = in.Get(x-quietZone, y-quietZone) == 1
		}
	}
	return m, nil
}

// zxing returns gozxing's name for the level.
func (l Level) zxing() (decoder.ErrorCorrectionLevel, error) {
	switch l {
	case Low:
		return decoder.ErrorCorrectionLevel_L, nil
	case Medium:
		return decoder.ErrorCorrectionLevel_M, nil
	case Quartile:
		return decoder.ErrorCorrectionLevel_Q, nil
	case High:
		return decoder.ErrorCorrectionLevel_H, nil
	}
	return 0, fmt.Errorf("qr: unknown error-correction level %d", int(l))
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
