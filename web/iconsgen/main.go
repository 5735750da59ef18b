// Command iconsgen draws the web app's icons (web/app/icons) from code, so
// that no asset comes from elsewhere: a speech bubble holding a QR-like
// pattern, on the app's colour. Run it from web/ with go generate.
package main

import (
	"crypto/sha256"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
)

var (
	background = color.NRGBA{0x0b, 0x5e, 0x6b, 0xff} // the theme colour of app.css
	bubble     = color.NRGBA{0xff, 0xff, 0xff, 0xff}
	ink        = color.NRGBA{0x0b, 0x3a, 0x42, 0xff}
)

// modules is a 21 by 21 pattern: the three finder patterns of a version 1
// QR code, and fixed pseudo-random modules elsewhere (it does not decode).
func modules() [21][21]bool {
	var m [21][21]bool
	finder := func(r0, c0 int) {
		for r := 0; r < 7; r++ {
			for c := 0; c < 7; c++ {
				ring := r == 0 || r == 6 || c == 0 || c == 6
				core := r >= 2 && r <= 4 && c >= 2 && c <= 4
				m[r0+r][c0+c] = ring || core
			}
		}
	}
	finder(0, 0)
	finder(0, 14)
	finder(14, 0)
	seed := sha256.Sum256([]byte("qrtalk icon"))
	bit := 0
	for r := 0; r < 21; r++ {
		for c := 0; c < 21; c++ {
			inFinder := (r < 8 && c < 8) || (r < 8 && c > 12) || (r > 12 && c < 8)
			if inFinder {
				continue
			}
			b := seed[(bit/8)%32] >> (bit % 8) & 1
			if bit/256%2 == 1 {
				b ^= 1
			}
			m[r][c] = b == 1
			bit++
		}
	}
	return m
}

// shade returns the colour at (x, y) in unit coordinates, or transparent.
func shade(x, y float64, rounded bool, m *[21][21]bool) color.NRGBA {
	if rounded && !inRoundRect(x, y, 0, 0, 1, 1, 0.18) {
		return color.NRGBA{}
	}
	// The bubble, with a tail at its bottom left.
	inBubble := inRoundRect(x, y, 0.17, 0.14, 0.83, 0.74, 0.10)
	inTail := inTriangle(x, y, 0.26, 0.70, 0.46, 0.70, 0.22, 0.88)
	if !inBubble && !inTail {
		return background
	}
	const x0, y0, size = 0.24, 0.205, 0.52
	if x >= x0 && x < x0+size && y >= y0 && y < y0+size {
		c := int((x - x0) / size * 21)
		r := int((y - y0) / size * 21)
		if m[r][c] {
			return ink
		}
	}
	return bubble
}

func inRoundRect(x, y, x0, y0, x1, y1, rad float64) bool {
	if x < x0 || x > x1 || y < y0 || y > y1 {
		return false
	}
	cx := math.Max(x0+rad, math.Min(x, x1-rad))
	cy := math.Max(y0+rad, math.Min(y, y1-rad))
	return (x-cx)*(x-cx)+(y-cy)*(y-cy) <= rad*rad
}

func inTriangle(x, y, ax, ay, bx, by, cx, cy float64) bool {
	d := func(px, py, qx, qy, rx, ry float64) float64 { return (px-rx)*(qy-ry) - (qx-rx)*(py-ry) }
	d1, d2, d3 := d(x, y, ax, ay, bx, by), d(x, y, bx, by, cx, cy), d(x, y, cx, cy, ax, ay)
	neg := d1 < 0 || d2 < 0 || d3 < 0
	pos := d1 > 0 || d2 > 0 || d3 > 0
	return !(neg && pos)
}

// draw renders the icon at size pixels, 4x4 supersampled. A maskable icon
// fills the square and keeps its drawing in the central 80% safe zone.
func draw(size int, maskable bool) *image.NRGBA {
	m := modules()
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	const ss = 4
	for py := 0; py < size; py++ {
		for px := 0; px < size; px++ {
			var r, g, b, a float64
			for sy := 0; sy < ss; sy++ {
				for sx := 0; sx < ss; sx++ {
					x := (float64(px) + (float64(sx)+0.5)/ss) / float64(size)
					y := (float64(py) + (float64(sy)+0.5)/ss) / float64(size)
					if maskable {
						x, y = 0.5+(x-0.5)/0.8, 0.5+(y-0.5)/0.8
					}
					var c color.NRGBA
					if maskable && (x < 0 || x > 1 || y < 0 || y > 1) {
						c = background
					} else {
						c = shade(x, y, !maskable, &m)
					}
					fa := float64(c.A) / 255
					r += float64(c.R) * fa
					g += float64(c.G) * fa
					b += float64(c.B) * fa
					a += fa
				}
			}
			if a == 0 {
				continue
			}
			img.SetNRGBA(px, py, color.NRGBA{uint8(r/a + 0.5), uint8(g/a + 0.5), uint8(b/a + 0.5), uint8(a/(ss*ss)*255 + 0.5)})
		}
	}
	return img
}

func main() {
	dir := filepath.Join("app", "icons")
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	for _, icon := range []struct {
		name     string
		size     int
		maskable bool
	}{
		{"icon-192.png", 192, false},
		{"icon-512.png", 512, false},
		{"icon-maskable-192.png", 192, true},
		{"icon-maskable-512.png", 512, true},
		{"apple-touch-icon.png", 180, true},
		{"favicon-32.png", 32, false},
	} {
		f, err := os.Create(filepath.Join(dir, icon.name))
		if err == nil {
			err = png.Encode(f, draw(icon.size, icon.maskable))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "iconsgen:", err)
			os.Exit(1)
		}
	}
}
