package qr

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"unicode/utf8"

	"github.com/makiuchi-d/gozxing"
)

// Magic numbers of the formats we read.
var (
	pngMagic  = []byte("\x89PNG\r\n\x1a\n")
	jpegMagic = []byte{0xff, 0xd8, 0xff}
)

// DecodeFile reads the QR code in a PNG or JPEG file. Files larger than
// MaxFileSize bytes and images larger than MaxPixels pixels are refused
// with ErrTooLarge before their pixels are decoded.
func DecodeFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("qr: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxFileSize {
		return "", fmt.Errorf("%w: %s is %d bytes, more than %d", ErrTooLarge, path, fi.Size(), MaxFileSize)
	}
	text, err := DecodeReader(f)
	if err != nil {
		return "", fmt.Errorf("%w (%s)", err, path)
	}
	return text, nil
}

// DecodeReader reads a PNG or JPEG image from r and returns the text of the
// QR code in it. It reads at most MaxFileSize+1 bytes, and refuses larger
// input and images larger than MaxPixels pixels with ErrTooLarge.
func DecodeReader(r io.Reader) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return "", fmt.Errorf("qr: read image: %w", err)
	}
	if len(data) > MaxFileSize {
		return "", fmt.Errorf("%w: more than %d bytes", ErrTooLarge, MaxFileSize)
	}
	img, err := decodeImage(data)
	if err != nil {
		return "", err
	}
	return Decode(img)
}

// decodeImage decodes a PNG or JPEG image, after checking its size in its
// header. Only these two formats are read, whatever other decoders the
// program has registered with package image.
func decodeImage(data []byte) (image.Image, error) {
	var (
		name         string
		decodeConfig func(io.Reader) (image.Config, error)
		decode       func(io.Reader) (image.Image, error)
	)
	switch {
	case bytes.HasPrefix(data, pngMagic):
		name, decodeConfig, decode = "png", png.DecodeConfig, png.Decode
	case bytes.HasPrefix(data, jpegMagic):
		name, decodeConfig, decode = "jpeg", jpeg.DecodeConfig, jpeg.Decode
	default:
		return nil, ErrNotImage
	}
	cfg, err := decodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: broken %s header: %w", ErrNotImage, name, err)
	}
	if err := checkSize(cfg.Width, cfg.Height); err != nil {
		return nil, err
	}
	img, err := decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: broken %s: %w", ErrNotImage, name, err)
	}
	return img, nil
}

// checkSize refuses images over MaxPixels pixels.
func checkSize(width, height int) error {
	if width < 0 || height < 0 || int64(width)*int64(height) > MaxPixels {
		return fmt.Errorf("%w: %d×%d pixels, more than %d", ErrTooLarge, width, height, MaxPixels)
	}
	return nil
}

// Decode returns the text of the QR code in img: a PNG of ours, a
// screenshot, or a photo. It reads dark-on-light and light-on-dark codes at
// any angle. When the image holds several codes, it returns one of them.
// Images over MaxPixels pixels are refused with ErrTooLarge; ErrNotFound
// means there is no readable code.
func Decode(img image.Image) (string, error) {
	if img == nil {
		return "", fmt.Errorf("%w: nil image", ErrNotImage)
	}
	b := img.Bounds()
	if err := checkSize(b.Dx(), b.Dy()); err != nil {
		return "", err
	}
	if b.Empty() {
		return "", fmt.Errorf("%w: empty image", ErrNotFound)
	}
	if !wellFormed(img) {
		return "", fmt.Errorf("%w: pixel buffer shorter than its bounds", ErrNotImage)
	}
	lum := luminance(img)
	src, err := gozxing.NewPlanarYUVLuminanceSource(lum, b.Dx(), b.Dy(), 0, 0, b.Dx(), b.Dy(), false)
	if err != nil {
		return "", fmt.Errorf("qr: luminance: %w", err)
	}
	// The hybrid binarizer thresholds each 8×8 block against its
	// neighbourhood, which suits photos with uneven light; the global one,
	// a single threshold, suits small or flat images. Each is tried as it
	// comes and inverted, for light-on-dark codes. Each try is linear in the
	// number of pixels.
	var first error // the most telling: no inversion, hybrid binarizer
	for _, bin := range []gozxing.Binarizer{gozxing.NewHybridBinarizer(src), gozxing.NewGlobalHistgramBinarizer(src)} {
		bits, err := bin.GetBlackMatrix()
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		for range 2 {
			text, err := decodeBits(bits)
			if err == nil {
				if !utf8.ValidString(text) {
					return "", fmt.Errorf("%w: the code's text is not valid utf-8", ErrNotFound)
				}
				return text, nil
			}
			if first == nil {
				first = err
			}
			bits.FlipAll()
		}
	}
	if first == nil || errors.Is(first, ErrNotFound) {
		return "", cmp.Or(first, ErrNotFound)
	}
	return "", fmt.Errorf("%w: %w", ErrNotFound, first)
}

// wellFormed reports whether the pixel buffer of an image that luminance
// reads directly covers its bounds. Images from image/png and image/jpeg
// always do; one built by hand might not, and would make us read out of
// range.
func wellFormed(img image.Image) bool {
	b := img.Bounds()
	last := b.Max.Sub(image.Pt(1, 1))
	fits := func(pix []byte, stride, bpp, offset int) bool {
		return stride >= b.Dx()*bpp && offset >= 0 && offset+bpp <= len(pix)
	}
	switch p := img.(type) {
	case *image.YCbCr:
		return fits(p.Y, p.YStride, 1, p.YOffset(last.X, last.Y))
	case *image.Gray:
		return fits(p.Pix, p.Stride, 1, p.PixOffset(last.X, last.Y))
	case *image.NRGBA:
		return fits(p.Pix, p.Stride, 4, p.PixOffset(last.X, last.Y))
	case *image.RGBA:
		return fits(p.Pix, p.Stride, 4, p.PixOffset(last.X, last.Y))
	case *image.Paletted:
		return fits(p.Pix, p.Stride, 1, p.PixOffset(last.X, last.Y))
	}
	return true
}

// luminance returns the image's grey levels, row by row, transparent parts
// taken as white. The common types of the image/png and image/jpeg decoders
// are read directly; others go through At, which is slower.
func luminance(img image.Image) []byte {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := make([]byte, w*h)
	switch p := img.(type) {
	case *image.YCbCr:
		for y := range h {
			i := p.YOffset(b.Min.X, b.Min.Y+y)
			copy(out[y*w:(y+1)*w], p.Y[i:i+w])
		}
	case *image.Gray:
		for y := range h {
			i := p.PixOffset(b.Min.X, b.Min.Y+y)
			copy(out[y*w:(y+1)*w], p.Pix[i:i+w])
		}
	case *image.NRGBA:
		for y := range h {
			row := p.Pix[p.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range w {
				px := row[4*x : 4*x+4]
				l := (uint32(px[0]) + 2*uint32(px[1]) + uint32(px[2])) / 4
				a := uint32(px[3])
				out[y*w+x] = byte((l*a + 255*(255-a)) / 255)
			}
		}
	case *image.RGBA:
		for y := range h {
			row := p.Pix[p.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range w {
				px := row[4*x : 4*x+4]
				// Premultiplied: over white, add the uncovered part.
				l := (uint32(px[0])+2*uint32(px[1])+uint32(px[2]))/4 + 255 - uint32(px[3])
				out[y*w+x] = byte(min(l, 255))
			}
		}
	case *image.Paletted:
		// Indices beyond the palette read as black, as image/png makes them.
		var table [256]byte
		for i, c := range p.Palette {
			if i < len(table) && c != nil {
				table[i] = grey(c)
			}
		}
		for y := range h {
			i := p.PixOffset(b.Min.X, b.Min.Y+y)
			for x, v := range p.Pix[i : i+w] {
				out[y*w+x] = table[v]
			}
		}
	default:
		for y := range h {
			for x := range w {
				c := img.At(b.Min.X+x, b.Min.Y+y)
				if c != nil {
					out[y*w+x] = grey(c)
				}
			}
		}
	}
	return out
}

// grey returns the grey level of c over white.
func grey(c color.Color) byte {
	r, g, b, a := c.RGBA()
	l := (r+2*g+b)/4 + 0xffff - a
	return byte(min(l, 0xffff) >> 8)
}
