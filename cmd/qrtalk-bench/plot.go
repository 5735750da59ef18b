package main

// The plots: PNG images of the sweeps, drawn here with image/png, the
// anti-aliasing rasterizer of golang.org/x/image/vector and the Go fonts
// (golang.org/x/image/font/gofont). Two line charts do not need a
// plotting library and its dependencies in the module that builds the
// product.

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
	"golang.org/x/image/vector"
)

const plotW, plotH = 960, 600

// The files --plot writes, by sweep.
var plotFiles = map[string]string{
	"devices": "throughput-vs-devices.png",
	"rate":    "latency-vs-offered-rate.png",
}

var (
	colQrtalkd = color.RGBA{0x1f, 0x5f, 0xbf, 0xff}
	colRelay   = color.RGBA{0xd9, 0x6c, 0x00, 0xff}
	colAxis    = color.RGBA{0x33, 0x33, 0x33, 0xff}
	colGrid    = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	colMinor   = color.RGBA{0xee, 0xee, 0xee, 0xff}
	colText    = color.RGBA{0x22, 0x22, 0x22, 0xff}
	colNote    = color.RGBA{0x66, 0x66, 0x66, 0xff}
)

// writePlots draws each sweep of rep into dir and returns the files.
func writePlots(dir string, rep *Report) ([]string, error) {
	if len(rep.Sweeps) == 0 {
		return nil, errors.New("--plot: the report has no sweeps (run scenario s)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	for _, sw := range rep.Sweeps {
		name, ok := plotFiles[sw.Name]
		if !ok {
			continue
		}
		img, err := drawSweep(sw, rep)
		if err != nil {
			return files, fmt.Errorf("plot %s: %w", sw.Name, err)
		}
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			return files, err
		}
		err = png.Encode(f, img)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return files, err
		}
		files = append(files, path)
	}
	return files, nil
}

// A series is one line of a chart.
type series struct {
	label  string
	col    color.RGBA
	dashed bool
	marker int // 0 circle, 1 square, 2 triangle, 3 diamond
	pts    [][2]float64
}

// A chart is what drawChart draws.
type chart struct {
	title, subtitle, footer string
	note                    string // a second line under the subtitle
	xLabel, yLabel          string
	xLog, yLog              bool
	xFmt, yFmt              func(float64) string
	series                  []series
	valueLabels             bool // write each point's y beside it
	yZero                   bool // linear y from 0
}

func drawSweep(sw Sweep, rep *Report) (image.Image, error) {
	m := rep.Machine
	load := m.LoadAvg
	if m.LoadEnd != "" {
		load = fmt.Sprintf("%s at start, %s at end", strings.Fields(m.LoadAvg + " ")[0], strings.Fields(m.LoadEnd + " ")[0])
	}
	footer := fmt.Sprintf("qrtalk-bench %s · %d CPUs %s · load average %s · server and load generator on one machine (loopback)",
		rep.Started.UTC().Format("2006-01-02 15:04 UTC"), m.CPUs, m.CPUModel, load)
	pick := func(system string, y func(SweepPoint) float64) [][2]float64 {
		var pts [][2]float64
		for _, p := range sw.Points {
			if p.System == system && y(p) > 0 {
				pts = append(pts, [2]float64{p.X, y(p)})
			}
		}
		slices.SortFunc(pts, func(a, b [2]float64) int { return cmpFloat(a[0], b[0]) })
		return pts
	}
	rate := func(p SweepPoint) float64 { return p.Rate }
	p50 := func(p SweepPoint) float64 { return p.P50 }
	p99 := func(p SweepPoint) float64 { return p.P99 }
	var c chart
	switch sw.Name {
	case "devices":
		c = chart{
			title:    "Live delivery, 1 recipient device per message, full rate (closed loop, 64 in flight)",
			subtitle: "throughput against connected devices: qrtalkd and the bare HTTPS+WebSocket relay, same run, same load",
			xLabel:   "connected devices (live channels; log scale)", yLabel: "messages delivered and acknowledged per second",
			xLog: true, yZero: true, valueLabels: true,
			xFmt: fmtTick, yFmt: fmtTick,
			series: []series{
				{label: "qrtalkd", col: colQrtalkd, marker: 0, pts: pick("qrtalkd", rate)},
				{label: "bare relay", col: colRelay, marker: 1, pts: pick("relay", rate)},
			},
		}
		if rep.Settings.MessageSize != 0 {
			c.title = fmt.Sprintf("Live delivery of %s messages, 1 recipient device each, full rate (closed loop, %d in flight)",
				sizeName(rep.Settings.MessageSize), rep.Settings.Concurrency)
		}
	case "rate":
		full := 0.0
		devs := 0
		for _, p := range sw.Points {
			if p.System == "qrtalkd" && p.X == 100 {
				full = p.Offered
			}
			devs = p.Devices
		}
		sub := "latency from send to the recipient's acknowledgement, open loop (from each send's scheduled time)"
		if full > 0 {
			sub = fmt.Sprintf("100%% = %s msgs/s, qrtalkd's full rate at %d devices; the relay is offered the same rates", fmtTick(full), devs)
		}
		var skipped []string
		for _, p := range sw.Points {
			if p.Skipped > 0 {
				skipped = append(skipped, fmt.Sprintf("%s at %.0f%%: %d", p.System, p.X, p.Skipped))
			}
		}
		note := ""
		if len(skipped) > 0 {
			note = "sends skipped (over 8,192 in flight, a stall): " + strings.Join(skipped, ", ")
		}
		c = chart{
			title:    fmt.Sprintf("Live delivery latency against offered rate, %d connected devices", devs),
			subtitle: sub,
			xLabel:   "offered rate, % of qrtalkd's full rate", yLabel: "latency, ms (log scale)",
			yLog: true, xFmt: func(v float64) string { return fmtTick(v) + "%" }, yFmt: fmtTick, note: note,
			series: []series{
				{label: "qrtalkd p99", col: colQrtalkd, marker: 0, pts: pick("qrtalkd", p99)},
				{label: "qrtalkd p50", col: colQrtalkd, marker: 0, dashed: true, pts: pick("qrtalkd", p50)},
				{label: "relay p99", col: colRelay, marker: 1, pts: pick("relay", p99)},
				{label: "relay p50", col: colRelay, marker: 1, dashed: true, pts: pick("relay", p50)},
			},
		}
	default:
		return nil, fmt.Errorf("unknown sweep %q", sw.Name)
	}
	c.footer = footer
	return drawChart(c)
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// fmtTick writes a tick value: 1,000 separators, few decimals.
func fmtTick(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1000:
		s := fmt.Sprintf("%.0f", v)
		var b strings.Builder
		for i, r := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(r)
		}
		return b.String()
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 1:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", v), "0"), ".")
	default:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
	}
}

// fonts loads the Go fonts at the sizes the charts use.
func fonts() (regular, small, bold font.Face, err error) {
	reg, err := opentype.Parse(goregular.TTF)
	if err != nil {
		return nil, nil, nil, err
	}
	bd, err := opentype.Parse(gobold.TTF)
	if err != nil {
		return nil, nil, nil, err
	}
	face := func(f *opentype.Font, size float64) font.Face {
		if err != nil {
			return nil
		}
		var ff font.Face
		ff, err = opentype.NewFace(f, &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingFull})
		return ff
	}
	regular, small, bold = face(reg, 14), face(reg, 12), face(bd, 16)
	return regular, small, bold, err
}

// An axis maps data values to pixels.
type axis struct {
	lo, hi   float64 // data range (log10 of it on a log axis)
	log      bool
	p0, p1   float64 // pixels of lo and hi
	ticks    []float64
	minor    []float64
	fmtValue func(float64) string
}

func (a *axis) px(v float64) float64 {
	if a.log {
		v = math.Log10(v)
	}
	return a.p0 + (v-a.lo)/(a.hi-a.lo)*(a.p1-a.p0)
}

// newAxis chooses the range and ticks of an axis for values vs.
func newAxis(vs []float64, log, zero bool, p0, p1 float64, f func(float64) string) *axis {
	a := &axis{log: log, p0: p0, p1: p1, fmtValue: f}
	lo, hi := slices.Min(vs), slices.Max(vs)
	if log {
		lo, hi = math.Log10(lo), math.Log10(hi)
		pad := math.Max((hi-lo)*0.08, 0.05)
		a.lo, a.hi = lo-pad, hi+pad
		for e := math.Floor(a.lo); e <= math.Ceil(a.hi); e++ {
			for _, m := range []float64{1, 2, 5} {
				v := m * math.Pow(10, e)
				lv := math.Log10(v)
				if lv < a.lo || lv > a.hi {
					continue
				}
				if m == 1 || a.hi-a.lo < 2.5 {
					a.ticks = append(a.ticks, v)
				} else {
					a.minor = append(a.minor, v)
				}
			}
			for m := 2.0; m < 10; m++ {
				v := m * math.Pow(10, e)
				if lv := math.Log10(v); lv >= a.lo && lv <= a.hi && !slices.Contains(a.ticks, v) {
					a.minor = append(a.minor, v)
				}
			}
		}
		return a
	}
	if zero {
		lo = math.Min(lo, 0)
	}
	span := hi - lo
	if span <= 0 {
		span = math.Max(math.Abs(hi), 1)
	}
	if zero {
		a.lo, a.hi = lo, hi+span*0.12
	} else {
		a.lo, a.hi = lo-span*0.08, hi+span*0.08
	}
	step := niceStep((a.hi - a.lo) / 6)
	for v := math.Ceil(a.lo/step) * step; v <= a.hi+step*1e-9; v += step {
		a.ticks = append(a.ticks, v)
	}
	return a
}

func niceStep(raw float64) float64 {
	e := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*e >= raw {
			return m * e
		}
	}
	return 10 * e
}

type painter struct {
	img *image.RGBA
	ras *vector.Rasterizer
}

func (p *painter) fill(pts [][2]float64, col color.Color) {
	if len(pts) < 3 {
		return
	}
	// The rasterizer covers the shape's bounding box only: its cost is
	// that of the area it covers.
	x0, y0, x1, y1 := pts[0][0], pts[0][1], pts[0][0], pts[0][1]
	for _, q := range pts[1:] {
		x0, y0, x1, y1 = math.Min(x0, q[0]), math.Min(y0, q[1]), math.Max(x1, q[0]), math.Max(y1, q[1])
	}
	box := image.Rect(int(math.Floor(x0)), int(math.Floor(y0)), int(math.Ceil(x1))+1, int(math.Ceil(y1))+1).Intersect(p.img.Bounds())
	if box.Empty() {
		return
	}
	p.ras.Reset(box.Dx(), box.Dy())
	p.ras.DrawOp = draw.Over
	ox, oy := float64(box.Min.X), float64(box.Min.Y)
	p.ras.MoveTo(float32(pts[0][0]-ox), float32(pts[0][1]-oy))
	for _, q := range pts[1:] {
		p.ras.LineTo(float32(q[0]-ox), float32(q[1]-oy))
	}
	p.ras.ClosePath()
	p.ras.Draw(p.img, box, image.NewUniform(col), image.Point{})
}

// segment strokes a straight line w pixels wide.
func (p *painter) segment(x0, y0, x1, y1, w float64, col color.Color) {
	dx, dy := x1-x0, y1-y0
	l := math.Hypot(dx, dy)
	if l == 0 {
		return
	}
	nx, ny := -dy/l*w/2, dx/l*w/2
	p.fill([][2]float64{{x0 + nx, y0 + ny}, {x1 + nx, y1 + ny}, {x1 - nx, y1 - ny}, {x0 - nx, y0 - ny}}, col)
}

// line strokes a polyline, dashed or not, with round joins.
func (p *painter) line(pts [][2]float64, w float64, col color.Color, dashed bool) {
	for i := 1; i < len(pts); i++ {
		x0, y0, x1, y1 := pts[i-1][0], pts[i-1][1], pts[i][0], pts[i][1]
		if !dashed {
			p.segment(x0, y0, x1, y1, w, col)
			if i < len(pts)-1 {
				p.disc(x1, y1, w/2, col)
			}
			continue
		}
		l := math.Hypot(x1-x0, y1-y0)
		const dash, gap = 9.0, 6.0
		for t := 0.0; t < l; t += dash + gap {
			e := math.Min(t+dash, l)
			p.segment(x0+(x1-x0)*t/l, y0+(y1-y0)*t/l, x0+(x1-x0)*e/l, y0+(y1-y0)*e/l, w, col)
		}
	}
}

func (p *painter) disc(x, y, r float64, col color.Color) {
	const n = 24
	pts := make([][2]float64, n)
	for i := range pts {
		a := 2 * math.Pi * float64(i) / n
		pts[i] = [2]float64{x + r*math.Cos(a), y + r*math.Sin(a)}
	}
	p.fill(pts, col)
}

func (p *painter) marker(kind int, x, y, r float64, col color.Color) {
	switch kind {
	case 1:
		p.fill([][2]float64{{x - r, y - r}, {x + r, y - r}, {x + r, y + r}, {x - r, y + r}}, col)
	case 2:
		p.fill([][2]float64{{x, y - r*1.2}, {x + r*1.1, y + r*0.8}, {x - r*1.1, y + r*0.8}}, col)
	case 3:
		p.fill([][2]float64{{x, y - r*1.3}, {x + r*1.3, y}, {x, y + r*1.3}, {x - r*1.3, y}}, col)
	default:
		p.disc(x, y, r, col)
	}
}

// text draws s with its baseline at y; align -1 left, 0 centre, 1 right.
func (p *painter) text(face font.Face, s string, x, y float64, align int, col color.Color) {
	d := &font.Drawer{Dst: p.img, Src: image.NewUniform(col), Face: face}
	w := float64(d.MeasureString(s)) / 64
	switch align {
	case 0:
		x -= w / 2
	case 1:
		x -= w
	}
	d.Dot = fixed.P(int(math.Round(x)), int(math.Round(y)))
	d.DrawString(s)
}

// vtext draws s turned a quarter anticlockwise, centred on (x, y).
func (p *painter) vtext(face font.Face, s string, x, y float64, col color.Color) {
	d := &font.Drawer{Face: face}
	w := d.MeasureString(s).Ceil()
	m := face.Metrics()
	h := (m.Ascent + m.Descent).Ceil()
	tmp := image.NewRGBA(image.Rect(0, 0, w, h))
	d.Dst, d.Src, d.Dot = tmp, image.NewUniform(col), fixed.Point26_6{Y: m.Ascent}
	d.DrawString(s)
	rot := image.NewRGBA(image.Rect(0, 0, h, w))
	for ty := 0; ty < h; ty++ {
		for tx := 0; tx < w; tx++ {
			rot.SetRGBA(ty, w-1-tx, tmp.RGBAAt(tx, ty))
		}
	}
	at := image.Pt(int(x)-h/2, int(y)-w/2)
	draw.Draw(p.img, rot.Bounds().Add(at), rot, image.Point{}, draw.Over)
}

func drawChart(c chart) (image.Image, error) {
	regular, small, bold, err := fonts()
	if err != nil {
		return nil, err
	}
	var xs, ys []float64
	for _, s := range c.series {
		for _, pt := range s.pts {
			xs = append(xs, pt[0])
			ys = append(ys, pt[1])
		}
	}
	if len(xs) == 0 {
		return nil, errors.New("no points")
	}
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	p := &painter{img: img, ras: vector.NewRasterizer(plotW, plotH)}

	left, right, top, bottom := 96.0, float64(plotW)-36, 84.0, float64(plotH)-86
	xa := newAxis(xs, c.xLog, false, left, right, c.xFmt)
	if !c.xLog && len(xs) > 0 {
		// Ticks at the measured points.
		xa.ticks = nil
		for _, v := range xs {
			if !slices.Contains(xa.ticks, v) {
				xa.ticks = append(xa.ticks, v)
			}
		}
		slices.Sort(xa.ticks)
	}
	if c.xLog {
		// Ticks at the measured points, too: they are few.
		xa.minor = append(xa.minor, xa.ticks...)
		xa.ticks = nil
		for _, v := range xs {
			if !slices.Contains(xa.ticks, v) {
				xa.ticks = append(xa.ticks, v)
			}
		}
	}
	ya := newAxis(ys, c.yLog, c.yZero, bottom, top, c.yFmt)

	p.text(bold, c.title, left, 30, -1, colText)
	p.text(small, c.subtitle, left, 52, -1, colNote)
	p.text(small, c.note, left, 70, -1, colNote)
	for _, v := range ya.minor {
		y := ya.px(v)
		p.segment(left, y, right, y, 1, colMinor)
	}
	for _, v := range xa.minor {
		x := xa.px(v)
		p.segment(x, top, x, bottom, 1, colMinor)
	}
	for _, v := range ya.ticks {
		y := ya.px(v)
		p.segment(left, y, right, y, 1, colGrid)
		p.text(small, ya.fmtValue(v), left-8, y+4, 1, colText)
	}
	for _, v := range xa.ticks {
		x := xa.px(v)
		p.segment(x, top, x, bottom, 1, colGrid)
		p.text(small, xa.fmtValue(v), x, bottom+18, 0, colText)
	}
	p.segment(left, bottom, right, bottom, 1.5, colAxis)
	p.segment(left, top, left, bottom, 1.5, colAxis)
	p.text(regular, c.xLabel, (left+right)/2, bottom+42, 0, colText)
	p.vtext(regular, c.yLabel, 24, (top+bottom)/2, colText)
	p.text(small, c.footer, 24, float64(plotH)-14, -1, colNote)

	for _, s := range c.series {
		var pts [][2]float64
		for _, pt := range s.pts {
			pts = append(pts, [2]float64{xa.px(pt[0]), ya.px(pt[1])})
		}
		w := 2.5
		if s.dashed {
			w = 2
		}
		p.line(pts, w, s.col, s.dashed)
		for i, pt := range pts {
			p.marker(s.marker, pt[0], pt[1], 4.5, s.col)
			if c.valueLabels {
				// Above the point, or below it when another series'
				// point just above would cover the label.
				dy := -8.0
				for _, o := range c.series {
					for _, q := range o.pts {
						if q[0] == s.pts[i][0] && q[1] > s.pts[i][1] && pt[1]-ya.px(q[1]) < 18 {
							dy = 18
						}
					}
				}
				p.text(small, c.yFmt(s.pts[i][1]), pt[0]+8, pt[1]+dy, -1, s.col)
			}
		}
	}
	// Legend: in the corner of the plot area that hides the fewest points.
	lw, lh := 190.0, 22.0*float64(len(c.series))+8
	best, lx, ly := -1, 0.0, 0.0
	for _, corner := range [][2]float64{{right - lw - 8, top + 8}, {left + 16, top + 8}, {right - lw - 8, bottom - lh - 8}, {left + 16, bottom - lh - 8}} {
		n := 0
		for _, s := range c.series {
			for _, pt := range s.pts {
				x, y := xa.px(pt[0]), ya.px(pt[1])
				if x > corner[0]-60 && x < corner[0]+lw+10 && y > corner[1]-24 && y < corner[1]+lh+10 {
					n++
				}
			}
		}
		if best < 0 || n < best {
			best, lx, ly = n, corner[0], corner[1]+18
		}
	}
	for _, s := range c.series {
		p.line([][2]float64{{lx, ly - 4}, {lx + 36, ly - 4}}, 2.5, s.col, s.dashed)
		p.marker(s.marker, lx+18, ly-4, 4.5, s.col)
		p.text(regular, s.label, lx+46, ly+1, -1, colText)
		ly += 22
	}
	return img, nil
}
