package qr

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode/decoder"
)

// uris returns realistic qrtalk: URIs: an invite, a contact card, a device
// link, and shorter and longer text around them.
func uris() map[string]string {
	r := rand.New(rand.NewPCG(1, 2))
	b64 := func(n int) string {
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		var s strings.Builder
		for range n {
			s.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		return s.String()
	}
	b32 := func(n int) string {
		const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
		var s strings.Builder
		for range n {
			s.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		return s.String()
	}
	server := "s=https%3A%2F%2Fchat.example.org%3A8443"
	return map[string]string{
		"short":   "qrtalk:u/" + b32(26),
		"invite":  "qrtalk:invite?v=1&" + server + "&sfp=" + b64(43) + "&t=" + b32(26),
		"contact": "qrtalk:contact?v=1&" + server + "&u=" + b32(26) + "&fp=" + b64(43) + "&n=Ana%20Garc%C3%ADa&e=" + b64(40),
		"link":    "qrtalk:link?v=1&" + server + "&sfp=" + b64(43) + "&d=" + b32(26) + "&k=" + b64(86) + "&c=" + b64(43),
		"long":    "qrtalk:contact?v=1&" + server + "&x=" + b64(900),
		"unicode": "qrtalk:contact?n=Zoë Ωmega 😀&u=" + b32(26),
	}
}

func TestPNGRoundTrip(t *testing.T) {
	t.Parallel()
	for name, uri := range uris() {
		for _, scale := range []int{0, 2, 5} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				data, err := PNG(uri, scale)
				if err != nil {
					t.Fatal(err)
				}
				got, err := DecodeReader(bytes.NewReader(data))
				if err != nil {
					t.Fatalf("%d bytes, scale %d: %v", len(uri), scale, err)
				}
				if got != uri {
					t.Fatalf("decoded %q, want %q", got, uri)
				}
			})
		}
	}
}

func TestPNGFile(t *testing.T) {
	t.Parallel()
	uri := uris()["invite"]
	data, err := PNG(uri, 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Width != cfg.Height || cfg.Width%DefaultScale != 0 {
		t.Errorf("png is %d×%d, want a square multiple of %d", cfg.Width, cfg.Height, DefaultScale)
	}
	path := filepath.Join(t.TempDir(), "invite.png")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeFile(path)
	if err != nil || got != uri {
		t.Fatalf("DecodeFile = %q, %v; want %q", got, err, uri)
	}
}

// parseTerminal reads Terminal's output back: for each character cell, which
// of its two halves are drawn. It fails the test on any other character or
// on ragged lines.
func parseTerminal(t *testing.T, s string) [][]bool {
	t.Helper()
	if !strings.HasSuffix(s, "\n") {
		t.Fatal("output does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	width := utf8.RuneCountInString(lines[0])
	drawn := make([][]bool, 0, 2*len(lines))
	for _, line := range lines {
		top, bottom := make([]bool, 0, width), make([]bool, 0, width)
		for _, r := range line {
			switch r {
			case '█':
				top, bottom = append(top, true), append(bottom, true)
			case '▀':
				top, bottom = append(top, true), append(bottom, false)
			case '▄':
				top, bottom = append(top, false), append(bottom, true)
			case ' ':
				top, bottom = append(top, false), append(bottom, false)
			default:
				t.Fatalf("unexpected character %q in %q", r, line)
			}
		}
		if len(top) != width {
			t.Fatalf("line of %d cells, want %d", len(top), width)
		}
		drawn = append(drawn, top, bottom)
	}
	return drawn
}

// renderCells draws a grid of drawn/undrawn half cells as a terminal shows
// it, fg for drawn and bg for the rest, px pixels per module.
func renderCells(drawn [][]bool, fg, bg uint8, px int) *image.Gray {
	h, w := len(drawn), len(drawn[0])
	img := image.NewGray(image.Rect(0, 0, w*px, h*px))
	for y := range h * px {
		for x := range w * px {
			v := bg
			if drawn[y/px][x/px] {
				v = fg
			}
			img.Pix[y*img.Stride+x] = v
		}
	}
	return img
}

// TestTerminalRoundTrip proves that the terminal drawing is a valid code:
// the drawing, parsed back, is exactly the code's modules with the quiet
// zone, and the picture a terminal shows of it decodes to the text.
func TestTerminalRoundTrip(t *testing.T) {
	t.Parallel()
	const dark, light = 20, 235
	for name, uri := range uris() {
		for _, level := range []Level{Low, Medium, Quartile, High} {
			for _, invert := range []bool{false, true} {
				t.Run(name+"/"+level.String(), func(t *testing.T) {
					t.Parallel()
					out, err := Terminal(uri, TerminalOptions{Level: level, Invert: invert})
					if err != nil {
						t.Fatal(err)
					}
					drawn := parseTerminal(t, out)
					want, err := modules(uri, level)
					if err != nil {
						t.Fatal(err)
					}
					n := len(want)
					if len(drawn) != n+1 || len(drawn[0]) != n {
						t.Fatalf("drawing is %d×%d half cells, want %d×%d", len(drawn[0]), len(drawn), n, n+1)
					}
					for y := range n {
						for x := range n {
							// Light modules are drawn by default, dark ones with Invert.
							if drawn[y][x] != (want[y][x] == invert) {
								t.Fatalf("module (%d,%d) drawn=%v, dark=%v, invert=%v", x, y, drawn[y][x], want[y][x], invert)
							}
						}
					}
					for x := range n {
						if drawn[n][x] {
							t.Fatal("the half row below the code is drawn")
						}
					}
					if want[quietZone][quietZone] != true || want[quietZone-1][quietZone-1] {
						t.Fatal("finder pattern corner or quiet zone misplaced")
					}
					// Default: light blocks on a dark terminal. Invert: dark
					// blocks on a light terminal. Both show dark on light.
					fg, bg := uint8(light), uint8(dark)
					if invert {
						fg, bg = dark, light
					}
					got, err := Decode(renderCells(drawn, fg, bg, 3))
					if err != nil {
						t.Fatal(err)
					}
					if got != uri {
						t.Fatalf("decoded %q, want %q", got, uri)
					}
				})
			}
		}
	}
}

// TestTerminalWrongBackground checks the documented fallback: the default
// drawing on a light terminal is an inverted code, which Decode still reads.
func TestTerminalWrongBackground(t *testing.T) {
	t.Parallel()
	uri := uris()["invite"]
	out, err := Terminal(uri, TerminalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(renderCells(parseTerminal(t, out), 20, 235, 3))
	if err != nil || got != uri {
		t.Fatalf("Decode = %q, %v; want %q", got, err, uri)
	}
}

func TestTerminalSize(t *testing.T) {
	t.Parallel()
	// A typical invite must fit a usual terminal width at the default level.
	out, err := Terminal(uris()["invite"], TerminalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if w := utf8.RuneCountInString(lines[0]); w > 80 {
		t.Errorf("invite is %d columns wide", w)
	}
	t.Logf("invite: %d columns × %d lines", utf8.RuneCountInString(lines[0]), len(lines))
}

// greyImage returns the PNG of text at scale as a grey image.
func greyImage(t testing.TB, text string, scale int) *image.Gray {
	t.Helper()
	data, err := PNG(text, scale)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	g := image.NewGray(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			g.Set(x, y, img.At(x, y))
		}
	}
	return g
}

// sample returns src's bilinear-interpolated grey level at (x, y), white
// outside it.
func sample(src *image.Gray, x, y float64) float64 {
	b := src.Bounds()
	at := func(x, y int) float64 {
		if x < b.Min.X || y < b.Min.Y || x >= b.Max.X || y >= b.Max.Y {
			return 255
		}
		return float64(src.GrayAt(x, y).Y)
	}
	x0, y0 := math.Floor(x), math.Floor(y)
	fx, fy := x-x0, y-y0
	ix, iy := int(x0), int(y0)
	return at(ix, iy)*(1-fx)*(1-fy) + at(ix+1, iy)*fx*(1-fy) + at(ix, iy+1)*(1-fx)*fy + at(ix+1, iy+1)*fx*fy
}

// transform maps src onto a w×h image: scaled by s, rotated by deg degrees
// around its centre, which lands at (cx, cy). lighting(x, y) multiplies
// each pixel, for uneven light.
func transform(src *image.Gray, w, h int, s, deg, cx, cy float64, lighting func(x, y int) float64) *image.Gray {
	dst := image.NewGray(image.Rect(0, 0, w, h))
	sin, cos := math.Sincos(deg * math.Pi / 180)
	sb := src.Bounds()
	scx, scy := float64(sb.Dx())/2, float64(sb.Dy())/2
	for y := range h {
		for x := range w {
			dx, dy := float64(x)-cx, float64(y)-cy
			sx := (cos*dx+sin*dy)/s + scx
			sy := (-sin*dx+cos*dy)/s + scy
			v := sample(src, sx, sy)
			if lighting != nil {
				v *= lighting(x, y)
			}
			dst.Pix[y*dst.Stride+x] = uint8(max(0, min(255, v)))
		}
	}
	return dst
}

// boxBlur blurs img with a (2r+1)×(2r+1) box.
func boxBlur(img *image.Gray, r int) *image.Gray {
	b := img.Bounds()
	dst := image.NewGray(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			sum, n := 0, 0
			for dy := -r; dy <= r; dy++ {
				for dx := -r; dx <= r; dx++ {
					p := image.Pt(x+dx, y+dy)
					if p.In(b) {
						sum += int(img.GrayAt(p.X, p.Y).Y)
						n++
					}
				}
			}
			dst.SetGray(x, y, color.Gray{uint8(sum / n)})
		}
	}
	return dst
}

func jpegBytes(t testing.TB, img image.Image, quality int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: quality}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// photo returns a code for text as a camera might see it: scaled, slightly
// rotated, off centre on a larger grey background with uneven light,
// blurred, and JPEG-compressed.
func photo(t testing.TB, text string, w, h int) []byte {
	t.Helper()
	src := greyImage(t, text, 4)
	light := func(x, y int) float64 { return 0.65 + 0.3*float64(x)/float64(w) + 0.05*float64(y)/float64(h) }
	img := transform(src, w, h, 1.7, 8, float64(w)*0.45, float64(h)*0.55, light)
	return jpegBytes(t, boxBlur(img, 1), 60)
}

func TestDecodePerturbed(t *testing.T) {
	t.Parallel()
	for name, uri := range uris() {
		if name == "long" {
			continue // version 27: too fine for these perturbations at this size
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := greyImage(t, uri, 6)
			cases := map[string][]byte{
				"scaled-0.55": jpegBytes(t, transform(src, 500, 500, 0.55, 0, 250, 250, nil), 95),
				"blurred":     jpegBytes(t, boxBlur(src, 2), 95),
				"jpeg-q25":    jpegBytes(t, src, 25),
				"rotated-30":  jpegBytes(t, transform(src, 700, 700, 1, 30, 350, 350, nil), 80),
				"photo":       photo(t, uri, 1280, 960),
			}
			for cname, data := range cases {
				got, err := DecodeReader(bytes.NewReader(data))
				if err != nil {
					t.Errorf("%s: %v", cname, err)
					continue
				}
				if got != uri {
					t.Errorf("%s: decoded %q, want %q", cname, got, uri)
				}
			}
		})
	}
}

// TestDecodeImageTypes feeds Decode each image type that has a fast path,
// and one that does not, with transparency and a non-zero origin.
func TestDecodeImageTypes(t *testing.T) {
	t.Parallel()
	uri := uris()["invite"]
	g := greyImage(t, uri, 4)
	b := g.Bounds()
	off := b.Add(image.Pt(7, -3))
	imgs := map[string]image.Image{
		"gray":     image.NewGray(off),
		"rgba":     image.NewRGBA(off),
		"nrgba":    image.NewNRGBA(off),
		"gray16":   image.NewGray16(off),
		"ycbcr":    image.NewYCbCr(off, image.YCbCrSubsampleRatio420),
		"paletted": image.NewPaletted(off, color.Palette{color.Transparent, color.Black}),
	}
	for name, img := range imgs {
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				v := g.GrayAt(x, y)
				switch m := img.(type) {
				case *image.YCbCr:
					m.Y[m.YOffset(x+7, y-3)] = v.Y
				case *image.Gray, *image.Gray16:
					m.(interface{ Set(int, int, color.Color) }).Set(x+7, y-3, v)
				case interface{ Set(int, int, color.Color) }:
					// Light modules transparent, to be read as white.
					c := color.Color(v)
					if v.Y > 128 {
						c = color.Transparent
					}
					m.Set(x+7, y-3, c)
				}
			}
		}
		got, err := Decode(img)
		if err != nil || got != uri {
			t.Errorf("%s: Decode = %q, %v", name, got, err)
		}
	}
	// A sub-image whose origin is not (0, 0) and whose stride is wider.
	big := image.NewGray(image.Rect(0, 0, b.Dx()+50, b.Dy()+50))
	for i := range big.Pix {
		big.Pix[i] = 255
	}
	for y := range b.Dy() {
		copy(big.Pix[(y+20)*big.Stride+30:], g.Pix[y*g.Stride:y*g.Stride+b.Dx()])
	}
	sub := big.SubImage(image.Rect(25, 15, b.Dx()+40, b.Dy()+35))
	if got, err := Decode(sub); err != nil || got != uri {
		t.Errorf("sub-image: Decode = %q, %v", got, err)
	}
}

// pngHeader returns a PNG that claims to be w×h pixels and has no pixels.
func pngHeader(w, h uint32) []byte {
	var ihdr [13]byte
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 0 // 8-bit greyscale
	out := append([]byte(nil), pngMagic...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr[:]...)
	out = append(out, chunk...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(chunk))
}

// jpegWithSize returns a valid JPEG whose frame header is patched to claim
// w×h pixels.
func jpegWithSize(t testing.TB, w, h uint16) []byte {
	data := jpegBytes(t, image.NewGray(image.Rect(0, 0, 16, 16)), 90)
	i := bytes.Index(data, []byte{0xff, 0xc0})
	if i < 0 {
		t.Fatal("no SOF0 marker")
	}
	binary.BigEndian.PutUint16(data[i+5:], h)
	binary.BigEndian.PutUint16(data[i+7:], w)
	return data
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	valid, err := PNG(uris()["invite"], 0)
	if err != nil {
		t.Fatal(err)
	}
	noise := image.NewGray(image.Rect(0, 0, 300, 200))
	r := rand.New(rand.NewPCG(3, 4))
	for i := range noise.Pix {
		noise.Pix[i] = uint8(r.IntN(256))
	}
	var noisePNG bytes.Buffer
	if err := png.Encode(&noisePNG, noise); err != nil {
		t.Fatal(err)
	}
	white := image.NewGray(image.Rect(0, 0, 100, 100))
	for i := range white.Pix {
		white.Pix[i] = 255
	}
	var whitePNG bytes.Buffer
	if err := png.Encode(&whitePNG, white); err != nil {
		t.Fatal(err)
	}

	// A file one byte over the limit; sparse, so it costs no disk.
	huge := filepath.Join(dir, "huge.png")
	if f, err := os.Create(huge); err != nil {
		t.Fatal(err)
	} else {
		if _, err := f.Write(valid); err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(MaxFileSize + 1); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}

	cases := []struct {
		name string
		path string
		want error
	}{
		{"noise", write("noise.png", noisePNG.Bytes()), ErrNotFound},
		{"white", write("white.png", whitePNG.Bytes()), ErrNotFound},
		{"no code jpeg", write("noise.jpg", jpegBytes(t, noise, 80)), ErrNotFound},
		{"text file", write("notes.txt", []byte("qrtalk:invite?v=1\n")), ErrNotImage},
		{"empty file", write("empty.png", nil), ErrNotImage},
		{"gif", write("a.gif", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;")), ErrNotImage},
		{"truncated png", write("cut.png", valid[:len(valid)/2]), ErrNotImage},
		{"truncated jpeg", write("cut.jpg", jpegBytes(t, noise, 80)[:300]), ErrNotImage},
		{"png header only", write("hdr.png", pngHeader(100, 100)), ErrNotImage},
		{"oversized file", huge, ErrTooLarge},
		{"too many pixels png", write("big.png", pngHeader(10000, 5000)), ErrTooLarge},
		{"too many pixels jpeg", write("big.jpg", jpegWithSize(t, 65000, 65000)), ErrTooLarge},
	}
	for _, c := range cases {
		text, err := DecodeFile(c.path)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: DecodeFile = %q, %v; want %v", c.name, text, err, c.want)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}

	if _, err := DecodeFile(filepath.Join(dir, "missing.png")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := DecodeFile(dir); err == nil {
		t.Error("directory: no error")
	}
	// An endless stream is cut at the limit.
	if _, err := DecodeReader(endless{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("endless reader: %v", err)
	}
	if _, err := Decode(nil); !errors.Is(err, ErrNotImage) {
		t.Errorf("nil image: %v", err)
	}
	if _, err := Decode(image.NewGray(image.Rect(0, 0, 0, 0))); !errors.Is(err, ErrNotFound) {
		t.Errorf("empty image: %v", err)
	}
	if _, err := Decode(image.NewGray(image.Rect(0, 0, 1, 1))); !errors.Is(err, ErrNotFound) {
		t.Errorf("1×1 image: %v", err)
	}
	// A hand-made image whose buffer is too short for its bounds.
	short := &image.Gray{Pix: make([]byte, 99), Stride: 10, Rect: image.Rect(0, 0, 10, 10)}
	if _, err := Decode(short); !errors.Is(err, ErrNotImage) {
		t.Errorf("short buffer: %v", err)
	}
	narrow := &image.NRGBA{Pix: make([]byte, 400), Stride: 4, Rect: image.Rect(0, 0, 10, 10)}
	if _, err := Decode(narrow); !errors.Is(err, ErrNotImage) {
		t.Errorf("narrow stride: %v", err)
	}
	// Decode checks the size of an image in memory too, before any work.
	big := &image.Uniform{C: color.White}
	if _, err := Decode(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("unbounded image: %v", err)
	}
}

type endless struct{}

var pngLike = bytes.Repeat(pngMagic, 4096)

func (endless) Read(p []byte) (int, error) {
	return copy(p, pngLike), nil
}

func TestEncodeErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		text string
		want error
	}{
		{"empty", "", ErrInvalidText},
		{"invalid utf-8", "qrtalk:\xff\xfe", ErrInvalidText},
		{"over medium capacity", strings.Repeat("a", 2400), ErrTooLong},
		{"over any capacity", strings.Repeat("7", maxTextLen+1), ErrTooLong},
	}
	for _, c := range cases {
		if _, err := Terminal(c.text, TerminalOptions{}); !errors.Is(err, c.want) {
			t.Errorf("Terminal(%s): %v, want %v", c.name, err, c.want)
		}
		if _, err := PNG(c.text, 0); !errors.Is(err, c.want) {
			t.Errorf("PNG(%s): %v, want %v", c.name, err, c.want)
		}
	}
	// The same text fits at Low but not at High.
	text := strings.Repeat("a", 2000)
	if _, err := Terminal(text, TerminalOptions{Level: Low}); err != nil {
		t.Errorf("2000 bytes at L: %v", err)
	}
	if _, err := Terminal(text, TerminalOptions{Level: High}); !errors.Is(err, ErrTooLong) {
		t.Errorf("2000 bytes at H: %v", err)
	}
	if _, err := Terminal("x", TerminalOptions{Level: Level(9)}); err == nil {
		t.Error("unknown level: no error")
	}
	for _, scale := range []int{-1, MaxScale + 1} {
		if _, err := PNG("x", scale); err == nil {
			t.Errorf("scale %d: no error", scale)
		}
	}
	if _, err := PNG("x", MaxScale); err != nil {
		t.Errorf("scale %d: %v", MaxScale, err)
	}
}

// finderSquare draws a finder pattern of module size m with its corner at
// (x0, y0).
func finderSquare(img *image.Gray, x0, y0, m int) {
	for y := range 7 * m {
		for x := range 7 * m {
			d := max(abs(x/m-3), abs(y/m-3))
			if d == 3 || d <= 1 {
				img.Pix[(y0+y)*img.Stride+x0+x] = 0
			}
		}
	}
}

func abs(a int) int {
	if a < 0 {
		return -a
	}
	return a
}

func whiteGray(w, h int) *image.Gray {
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	return img
}

// hostileImages returns images made to cost a ZXing-style detector work
// that grows faster than the number of pixels.
func hostileImages() map[string]*image.Gray {
	imgs := map[string]*image.Gray{}

	// Finder patterns tiled: every triple is a candidate code. gozxing's own
	// detector took 47 s on the 500×500 one.
	for _, mode := range []string{"uniform", "mixed"} {
		img := whiteGray(1000, 1000)
		r := rand.New(rand.NewPCG(5, 6))
		for y := 2; y < 1000-40; {
			rowMax := 0
			for x := 2; x < 1000-40; {
				m := 1
				if mode == "mixed" {
					m = 1 + r.IntN(4)
				}
				finderSquare(img, x, y, m)
				x += 7*m + 2
				rowMax = max(rowMax, 7*m)
			}
			y += rowMax + 2
		}
		imgs["tiled-"+mode] = img
	}

	// Tall stripes in the ratio 1:1:3:1:1: every scan row meets a
	// candidate whose centre column runs the height of the image.
	stripes := whiteGray(2000, 2000)
	for x := 0; x+16 <= 2000; x += 16 {
		for y := 10; y < 1990; y++ {
			row := stripes.Pix[y*stripes.Stride:]
			for _, dx := range []int{0, 1, 4, 5, 6, 7, 8, 9, 12, 13} {
				row[x+dx] = 0
			}
		}
	}
	imgs["stripes"] = stripes

	// Rows of small finder patterns whose middle rows are joined by a dark
	// line across the image: each candidate's row check follows the line.
	lines := whiteGray(2000, 2000)
	for y := 4; y+14 < 2000; y += 14 {
		for x := 4; x+12 < 2000; x += 10 {
			finderSquare(lines, x, y, 1)
		}
		row := lines.Pix[(y+3)*lines.Stride:]
		for x := 0; x < 2000; x++ {
			row[x] = 0
		}
	}
	imgs["lines"] = lines
	return imgs
}

// TestHostileImages checks that images built against the detector are
// refused after work linear in their size: the finder reads each pixel a
// bounded number of times, and keeps no more than maxCandidates centres.
func TestHostileImages(t *testing.T) {
	t.Parallel()
	for name, img := range hostileImages() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := img.Bounds()
			pixels := b.Dx() * b.Dy()
			src, err := gozxing.NewPlanarYUVLuminanceSource(luminance(img), b.Dx(), b.Dy(), 0, 0, b.Dx(), b.Dy(), false)
			if err != nil {
				t.Fatal(err)
			}
			bits, err := gozxing.NewHybridBinarizer(src).GetBlackMatrix()
			if err != nil {
				t.Fatal(err)
			}
			f := &finder{img: bits, width: b.Dx(), height: b.Dy()}
			_, _, _, err = f.find()
			t.Logf("%v; %d centres, %.2f reads per pixel", err, len(f.centers), float64(f.reads)/float64(pixels))
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("find: %v, want ErrNotFound", err)
			}
			if strings.HasPrefix(name, "tiled") && !errors.Is(err, errTooManyCandidates) {
				t.Errorf("find: %v, want errTooManyCandidates", err)
			}
			// A scan of every third row reads a third of the pixels; the
			// cross-checks add a few times that, not a factor of the size.
			if f.reads > 4*pixels {
				t.Errorf("%d reads for %d pixels", f.reads, pixels)
			}

			start := time.Now()
			_, err = Decode(img)
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("Decode: %v, want ErrNotFound", err)
			}
			t.Logf("Decode: %v", time.Since(start))
		})
	}
}

// TestDecodeLargeImage decodes a code in a large photo, near the pixel
// limit: the work stays linear.
func TestDecodeLargeImage(t *testing.T) {
	if testing.Short() {
		t.Skip("large image")
	}
	t.Parallel()
	uri := uris()["invite"]
	code := greyImage(t, uri, 10)
	img := whiteGray(6000, 4000)
	for y := range code.Rect.Dy() {
		copy(img.Pix[(y+1700)*img.Stride+2700:], code.Pix[y*code.Stride:(y+1)*code.Stride])
	}
	start := time.Now()
	got, err := Decode(img)
	if err != nil || got != uri {
		t.Fatalf("Decode = %q, %v", got, err)
	}
	t.Logf("24 MP: %v", time.Since(start))
}

// fuzzSeeds returns the seed corpus of FuzzDecode: valid codes in both
// formats, their damaged versions, and files that are not images.
func fuzzSeeds(t testing.TB) [][]byte {
	t.Helper()
	small, err := PNG("qrtalk:u/0123456789abcdefghjkmnpqrs", 1)
	if err != nil {
		t.Fatal(err)
	}
	invite, err := PNG(uris()["invite"], 2)
	if err != nil {
		t.Fatal(err)
	}
	smallJPEG := jpegBytes(t, greyImage(t, "qrtalk:u/0123456789abcdefghjkmnpqrs", 2), 50)
	return [][]byte{
		small,
		invite,
		smallJPEG,
		jpegBytes(t, greyImage(t, uris()["short"], 3), 75),
		small[:len(small)-20],
		smallJPEG[:len(smallJPEG)/2],
		pngHeader(100, 100),
		pngHeader(1<<31-1, 1<<31-1),
		jpegWithSize(t, 65000, 65000),
		[]byte("qrtalk:invite?v=1"),
		{},
	}
}

// FuzzDecode feeds arbitrary bytes to the decoder of files: it must not
// panic, and every error must be one of ours.
func FuzzDecode(f *testing.F) {
	seeds := fuzzSeeds(f)
	if len(seeds) == 0 {
		f.Fatal("empty seed corpus")
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		text, err := DecodeReader(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrNotImage) && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if !utf8.ValidString(text) {
			t.Fatalf("decoded text is not valid utf-8: %q", text)
		}
	})
}

// FuzzGrayPixels feeds arbitrary small grey images to Decode, which reaches
// the finder far more often than mutated image files do. The first byte is
// the width. The seeds are kept small: with seeds of a few kilobytes the
// fuzzing engine stops reporting progress (golang/go#51484).
func FuzzGrayPixels(f *testing.F) {
	one := whiteGray(9, 9)
	finderSquare(one, 1, 1, 1)
	seeds := [][]byte{
		append([]byte{9}, one.Pix...),
		{3, 1, 2, 3, 4, 5, 6},
		bytes.Repeat([]byte{0, 255}, 64),
		{0},
	}
	if len(seeds) == 0 {
		f.Fatal("empty seed corpus")
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 1 || data[0] == 0 {
			return
		}
		w := int(data[0])
		pix := data[1:]
		h := len(pix) / w
		img := &image.Gray{Pix: pix[:w*h], Stride: w, Rect: image.Rect(0, 0, w, h)}
		text, err := Decode(img)
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatalf("error wraps no sentinel: %v", err)
		}
		if !utf8.ValidString(text) {
			t.Fatalf("decoded text is not valid utf-8: %q", text)
		}
	})
}

// FuzzModuleGrid feeds module grids to gozxing's decoder, the stage after
// our finder: a hostile image can make the sampled grid anything. The seeds
// are real codes, so that mutations get through error correction into the
// bit-stream parser. The first byte picks the version.
func FuzzModuleGrid(f *testing.F) {
	var seeds [][]byte
	for _, text := range []string{"qrtalk:u/0123456789abcdefghjkmnpqrs", "QRTALK 12345", "Zoë 😀"} {
		m, err := modules(text, Medium)
		if err != nil {
			f.Fatal(err)
		}
		n := len(m) - 2*quietZone
		seed := []byte{byte((n - 17) / 4)}
		var acc byte
		for i := range n * n {
			if m[quietZone+i/n][quietZone+i%n] {
				acc |= 1 << (i % 8)
			}
			if i%8 == 7 || i == n*n-1 {
				seed, acc = append(seed, acc), 0
			}
		}
		seeds = append(seeds, seed)
	}
	if len(seeds) == 0 {
		f.Fatal("empty seed corpus")
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 1 {
			return
		}
		n := 17 + 4*(int(data[0])%40+1)
		bits := data[1:]
		grid := make([][]bool, n)
		for y := range grid {
			grid[y] = make([]bool, n)
			for x := range grid[y] {
				if i := y*n + x; i/8 < len(bits) {
					grid[y][x] = bits[i/8]>>(i%8)&1 == 1
				}
			}
		}
		_, _ = decoder.NewDecoder().DecodeBoolMap(grid, nil)
	})
}

// FuzzBitStream feeds arbitrary data codewords to gozxing's bit-stream
// parser: anyone can make a valid code whose error correction checks out
// around any bytes at all.
func FuzzBitStream(f *testing.F) {
	seeds := [][]byte{
		append([]byte{0x40, 0x50}, "qrtalk:invite?v=1"...),           // byte mode
		{0x20, 0x5b, 0x0b, 0x78, 0xd1, 0x72, 0xdc, 0x4d, 0x43, 0x40}, // alphanumeric
		{0x10, 0x20, 0x0c, 0x56, 0x61, 0x80},                         // numeric
		{0x71, 0xa4, 0x06, 0x85, 0x4d, 0x00},                         // ECI UTF-8, then byte mode
		{0x80, 0x28, 0xd9, 0xf0},                                     // kanji
		{0xd1, 0x01, 0x00, 0x01, 0x00},                               // hanzi
		{0x30, 0x12, 0x34, 0x40, 0x10, 0x41},                         // structured append
		{0x50, 0x20, 0x10, 0x00},                                     // FNC1, first position
		{0x90, 0x41, 0x20, 0x10},                                     // FNC1, second position
		{},
	}
	if len(seeds) == 0 {
		f.Fatal("empty seed corpus")
	}
	for i, s := range seeds {
		f.Add(byte(i), byte(i), s)
	}
	levels := []decoder.ErrorCorrectionLevel{
		decoder.ErrorCorrectionLevel_L, decoder.ErrorCorrectionLevel_M,
		decoder.ErrorCorrectionLevel_Q, decoder.ErrorCorrectionLevel_H,
	}
	f.Fuzz(func(t *testing.T, v, l byte, data []byte) {
		version, err := decoder.Version_GetVersionForNumber(int(v)%40 + 1)
		if err != nil {
			t.Fatal(err)
		}
		level := levels[int(l)%len(levels)]
		buf := make([]byte, version.GetTotalCodewords()-version.GetECBlocksForLevel(level).GetTotalECCodewords())
		copy(buf, data)
		_, _ = decoder.DecodedBitStreamParser_Decode(buf, version, level, nil)
	})
}

func BenchmarkTerminal(b *testing.B) {
	uri := uris()["invite"]
	for b.Loop() {
		if _, err := Terminal(uri, TerminalOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPNG(b *testing.B) {
	uri := uris()["invite"]
	for b.Loop() {
		if _, err := PNG(uri, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode decodes a PNG of ours, from bytes to text.
func BenchmarkDecode(b *testing.B) {
	data, err := PNG(uris()["invite"], 0)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := DecodeReader(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodePhoto decodes a 1280×960 JPEG "photo" of a code.
func BenchmarkDecodePhoto(b *testing.B) {
	data := photo(b, uris()["invite"], 1280, 960)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := DecodeReader(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeNoCode measures the worst case of an image without a code:
// every binarizer and polarity is tried.
func BenchmarkDecodeNoCode(b *testing.B) {
	img := image.NewGray(image.Rect(0, 0, 1280, 960))
	r := rand.New(rand.NewPCG(7, 8))
	for i := range img.Pix {
		img.Pix[i] = uint8(r.IntN(256))
	}
	for b.Loop() {
		if _, err := Decode(img); !errors.Is(err, ErrNotFound) {
			b.Fatal(err)
		}
	}
}

// TestDecodeFinderLookalike decodes a code whose data modules form a
// finder-like shape above its real bottom-left corner. The detector used to
// stop at the first three confirmed centres, took that shape for a corner,
// and failed on a clean drawing (seen in CI with this very contact code).
// Random codes of the same shape at several module sizes must decode too.
func TestDecodeFinderLookalike(t *testing.T) {
	t.Parallel()
	texts := []string{"qrtalk:contact?v=1&s=https%3A%2F%2F127.0.0.1%3A39155&sfp=fSRh2CgJUtHCsKrGUyz9-rHHzhiIlev36FrNqc8H1pI&u=hgwqflpnn5jqacoz7yhewwjuti&fp=sivQxZwZN0YXGDPgHDjb0LxH0Rg_SX9dtkM_SN0i0W4"}
	rng := rand.New(rand.NewPCG(6, 7))
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	for range 40 {
		id := make([]byte, 26)
		for i := range id {
			id[i] = alphabet[rng.IntN(len(alphabet))]
		}
		fp := make([]byte, 32)
		for i := range fp {
			fp[i] = byte(rng.Uint32())
		}
		texts = append(texts, fmt.Sprintf("qrtalk:contact?v=1&s=https%%3A%%2F%%2F127.0.0.1%%3A%d&sfp=fSRh2CgJUtHCsKrGUyz9-rHHzhiIlev36FrNqc8H1pI&u=%s&fp=%s",
			1024+rng.IntN(60000), id, base64.RawURLEncoding.EncodeToString(fp)))
	}
	for i, text := range texts {
		out, err := Terminal(text, TerminalOptions{})
		if err != nil {
			t.Fatal(err)
		}
		drawn := parseTerminal(t, out)
		drawn = drawn[:len(drawn)-1] // the half row below the code
		for px := 1; px <= 6; px++ {
			got, err := Decode(renderCells(drawn, 255, 0, px))
			if err != nil {
				t.Fatalf("code %d at %d px per module: %v", i, px, err)
			}
			if got != text {
				t.Fatalf("code %d at %d px: decoded %q", i, px, got)
			}
		}
	}
}
