package qr

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode/decoder"
	"github.com/makiuchi-d/gozxing/qrcode/detector"
)

// This file finds the three finder patterns (the squares in three corners of
// a QR code) in a black-and-white image. It follows the algorithm of ZXing's
// FinderPatternFinder, as ported by gozxing, with bounds that gozxing lacks,
// so that a hostile image costs time linear in its number of pixels:
//
//   - gozxing keeps every candidate centre and then tries every triple of
//     them: an image tiled with finder-like squares kept it busy for 47 s at
//     500×500 pixels and for over a minute at 1000×1000. We keep at most
//     maxCandidates and give up beyond that.
//   - gozxing's cross-checks follow the dark centre run of a candidate to its
//     end however long it is, so one long bar met by many scan rows costs
//     time quadratic in the image size. A run longer than twice the
//     candidate's width could never pass the check that follows, so we stop
//     counting there and reject the candidate at once. The diagonal check,
//     which in ZXing takes runs of any length as long as their ratios hold,
//     stops at the same bound: a real finder pattern's diagonal, counted in
//     steps of one row and one column, is about as long as its width.
//
// The rest of the pipeline (alignment pattern, perspective sampling, error
// correction, decoding of the bit stream) is gozxing's. Its work is bounded
// by the size of a QR code (177×177 modules), or by the small region where
// the alignment pattern is sought, or is linear in the image; FuzzModuleGrid
// and FuzzBitStream feed it arbitrary input.

const (
	// maxCandidates caps the candidate centres kept in one search. Choosing
	// three of n costs n³/6 steps, a few milliseconds for 256. A photo with a
	// code in it yields a handful; this many means a hostile or hopelessly
	// cluttered image.
	maxCandidates = 256
	// minSkip is the row step of the scan until a first centre is found:
	// every third row, as ZXing does when asked to try harder, so that small
	// codes in large photos are found.
	minSkip = 3
	// centerQuorum is how many scan rows must meet a centre for it to count
	// as confirmed.
	centerQuorum = 2
)

// errTooManyCandidates is returned when an image has more finder-like
// shapes than maxCandidates.
var errTooManyCandidates = fmt.Errorf("%w: more than %d finder-pattern candidates", ErrNotFound, maxCandidates)

// center is a candidate finder-pattern centre: x and y in pixels, size the
// estimated module size in pixels, count the number of scans that met it.
type center struct {
	x, y, size float64
	count      int
}

// aboutEquals reports whether a centre met at row i, column j with module
// size size is the same as c.
func (c center) aboutEquals(size, i, j float64) bool {
	if math.Abs(i-c.y) > size || math.Abs(j-c.x) > size {
		return false
	}
	d := math.Abs(size - c.size)
	return d <= 1 || d <= c.size
}

// combine averages a new sighting into c.
func (c center) combine(i, j, size float64) center {
	n := float64(c.count)
	return center{
		x:     (n*c.x + j) / (n + 1),
		y:     (n*c.y + i) / (n + 1),
		size:  (n*c.size + size) / (n + 1),
		count: c.count + 1,
	}
}

// finder holds the state of one search over a black-and-white image.
type finder struct {
	img           *gozxing.BitMatrix
	width, height int
	centers       []center
	hasSkipped    bool
	full          bool // a centre beyond maxCandidates was met
	reads         int  // pixels read, for the tests of the bounds
}

func (f *finder) dark(x, y int) bool {
	f.reads++
	return f.img.Get(x, y)
}

// decodeBits finds a QR code in a black-and-white image and decodes it.
func decodeBits(img *gozxing.BitMatrix) (string, error) {
	f := &finder{img: img, width: img.GetWidth(), height: img.GetHeight()}
	bl, tl, tr, err := f.find()
	if err != nil {
		return "", err
	}
	det, err := detector.NewDetector(img).ProcessFinderPatternInfo(detector.NewFinderPatternInfo(bl, tl, tr))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	res, err := decoder.NewDecoder().Decode(det.GetBits(), nil)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return res.GetText(), nil
}

// find scans the image row by row for runs of dark, light, dark, light and
// dark pixels in the ratio 1:1:3:1:1, checks each across, down and along the
// diagonal, and returns the three centres that best form a code's corners,
// as bottom-left, top-left and top-right.
func (f *finder) find() (bl, tl, tr *detector.FinderPattern, err error) {
	skip := minSkip
	// ZXing stops at the first three confirmed centres; we scan the whole
	// image, since a code's data modules can form a finder-like shape
	// above its real bottom-left corner (a clean terminal drawing did), and
	// selectBest then picks the three that best form the corners. The scan
	// stays linear in the number of pixels.
	for i := skip - 1; i < f.height; i += skip {
		var counts [5]int
		state := 0
		for j := 0; j < f.width; j++ {
			if f.dark(j, i) {
				if state&1 == 1 { // a light run ends
					state++
				}
				counts[state]++
				continue
			}
			if state&1 == 1 {
				counts[state]++
				continue
			}
			if state < 4 {
				state++
				counts[state]++
				continue
			}
			// The fifth run, dark, has just ended.
			if !crossRatio(counts, 2) || !f.handle(counts, i, j) {
				if f.full {
					return nil, nil, nil, errTooManyCandidates
				}
				// Keep the last three runs: they may begin a pattern.
				counts = [5]int{counts[2], counts[3], counts[4], 1, 0}
				state = 3
				continue
			}
			skip = 2
			if !f.hasSkipped {
				if rowSkip := f.rowSkip(); rowSkip > counts[2] {
					// Two confirmed centres: jump to where the third should be.
					i += rowSkip - counts[2] - skip
					j = f.width - 1
				}
			}
			state = 0
			counts = [5]int{}
		}
		if crossRatio(counts, 2) && f.handle(counts, i, f.width) {
			skip = counts[0]
		}
		if f.full {
			return nil, nil, nil, errTooManyCandidates
		}
	}
	return f.selectBest()
}

// crossRatio reports whether five run lengths are close enough to
// 1:1:3:1:1. slack is 2 for rows and columns, 1.333 for diagonals.
func crossRatio(counts [5]int, slack float64) bool {
	total := 0
	for _, c := range counts {
		if c == 0 {
			return false
		}
		total += c
	}
	if total < 7 {
		return false
	}
	module := float64(total) / 7
	v := module / slack
	return math.Abs(module-float64(counts[0])) < v &&
		math.Abs(module-float64(counts[1])) < v &&
		math.Abs(3*module-float64(counts[2])) < 3*v &&
		math.Abs(module-float64(counts[3])) < v &&
		math.Abs(module-float64(counts[4])) < v
}

// centerFromEnd returns the centre of the runs that end at end.
func centerFromEnd(counts [5]int, end int) float64 {
	return float64(end-counts[4]-counts[3]) - float64(counts[2])/2
}

// handle checks a candidate met at row i whose runs end at column j, and
// records it. It reports whether the candidate passed the checks.
func (f *finder) handle(counts [5]int, i, j int) bool {
	total := counts[0] + counts[1] + counts[2] + counts[3] + counts[4]
	cj := centerFromEnd(counts, j)
	ci := f.crossCheck(i, int(cj), false, counts[2], total)
	if math.IsNaN(ci) {
		return false
	}
	cj = f.crossCheck(int(cj), int(ci), true, counts[2], total)
	if math.IsNaN(cj) || !f.crossCheckDiagonal(int(ci), int(cj), total) {
		return false
	}
	size := float64(total) / 7
	for k, c := range f.centers {
		if c.aboutEquals(size, ci, cj) {
			f.centers[k] = c.combine(ci, cj, size)
			return true
		}
	}
	if len(f.centers) >= maxCandidates {
		f.full = true
		return false
	}
	f.centers = append(f.centers, center{x: cj, y: ci, size: size, count: 1})
	return true
}

// crossCheck counts the 1:1:3:1:1 runs through a candidate along a column
// (start is a row, fixed a column) or, if horizontal, along a row (start is
// a column, fixed a row), and returns the centre along that line, or NaN.
// maxCount bounds the outer runs, and the runs must add up to within 40%
// (column) or 20% (row) of total, as in ZXing's crossCheckVertical and
// crossCheckHorizontal; unlike them, the centre run is bounded (see the top
// of this file).
func (f *finder) crossCheck(start, fixed int, horizontal bool, maxCount, total int) float64 {
	limit, tolerance := f.height, 2
	if horizontal {
		limit, tolerance = f.width, 1
	}
	at := func(p int) bool {
		if horizontal {
			return f.dark(p, fixed)
		}
		return f.dark(fixed, p)
	}
	centerMax := 2 * total
	var s [5]int

	p := start
	for p >= 0 && at(p) && s[2] <= centerMax {
		s[2]++
		p--
	}
	if p < 0 || s[2] > centerMax {
		return math.NaN()
	}
	for p >= 0 && !at(p) && s[1] <= maxCount {
		s[1]++
		p--
	}
	if p < 0 || s[1] > maxCount {
		return math.NaN()
	}
	for p >= 0 && at(p) && s[0] <= maxCount {
		s[0]++
		p--
	}
	if s[0] > maxCount {
		return math.NaN()
	}

	p = start + 1
	for p < limit && at(p) && s[2] <= centerMax {
		s[2]++
		p++
	}
	if p == limit || s[2] > centerMax {
		return math.NaN()
	}
	for p < limit && !at(p) && s[3] < maxCount {
		s[3]++
		p++
	}
	if p == limit || s[3] >= maxCount {
		return math.NaN()
	}
	for p < limit && at(p) && s[4] < maxCount {
		s[4]++
		p++
	}
	if s[4] >= maxCount {
		return math.NaN()
	}

	sum := s[0] + s[1] + s[2] + s[3] + s[4]
	diff := sum - total
	if diff < 0 {
		diff = -diff
	}
	if 5*diff >= tolerance*total || !crossRatio(s, 2) {
		return math.NaN()
	}
	return centerFromEnd(s, p)
}

// crossCheckDiagonal reports whether the runs along the diagonal through a
// centre, up-left and down-right, are close to 1:1:3:1:1. Each run stops at
// twice the candidate's row total: a real finder pattern's diagonal, counted
// in steps of one row and one column, is about as long as its width.
func (f *finder) crossCheckDiagonal(ci, cj, total int) bool {
	limit := 2 * total
	var s [5]int
	in := func(k int) bool { return ci-k >= 0 && cj-k >= 0 }
	k := 0
	for ; in(k) && f.dark(cj-k, ci-k) && s[2] <= limit; k++ {
		s[2]++
	}
	if s[2] == 0 || s[2] > limit {
		return false
	}
	for ; in(k) && !f.dark(cj-k, ci-k) && s[1] <= limit; k++ {
		s[1]++
	}
	if s[1] == 0 || s[1] > limit {
		return false
	}
	for ; in(k) && f.dark(cj-k, ci-k) && s[0] <= limit; k++ {
		s[0]++
	}
	if s[0] == 0 || s[0] > limit {
		return false
	}

	out := func(k int) bool { return ci+k < f.height && cj+k < f.width }
	k = 1
	for ; out(k) && f.dark(cj+k, ci+k) && s[2] <= limit; k++ {
		s[2]++
	}
	if s[2] > limit {
		return false
	}
	for ; out(k) && !f.dark(cj+k, ci+k) && s[3] <= limit; k++ {
		s[3]++
	}
	if s[3] == 0 || s[3] > limit {
		return false
	}
	for ; out(k) && f.dark(cj+k, ci+k) && s[4] <= limit; k++ {
		s[4]++
	}
	if s[4] == 0 || s[4] > limit {
		return false
	}
	return crossRatio(s, 1.333)
}

// rowSkip returns how many rows the scan may skip once two centres are
// confirmed: the third one lies about that far below. It sets hasSkipped.
func (f *finder) rowSkip() int {
	if len(f.centers) <= 1 {
		return 0
	}
	var first *center
	for k := range f.centers {
		c := &f.centers[k]
		if c.count < centerQuorum {
			continue
		}
		if first == nil {
			first = c
			continue
		}
		f.hasSkipped = true
		return int((math.Abs(first.x-c.x) - math.Abs(first.y-c.y)) / 2)
	}
	return 0
}

// selectBest returns the three centres with similar module sizes that come
// closest to an isosceles right triangle, ordered bottom-left, top-left,
// top-right.
func (f *finder) selectBest() (bl, tl, tr *detector.FinderPattern, err error) {
	cs := f.centers
	// Centres met by several scan rows are the likely corners; single
	// sightings count only when there are not three of the others.
	var confirmed []center
	for _, c := range cs {
		if c.count >= centerQuorum {
			confirmed = append(confirmed, c)
		}
	}
	if len(confirmed) >= 3 {
		cs = confirmed
	}
	if len(cs) < 3 {
		return nil, nil, nil, fmt.Errorf("%w: %d finder patterns", ErrNotFound, len(cs))
	}
	sort.Slice(cs, func(a, b int) bool { return cs[a].size < cs[b].size })
	sq := func(a, b center) float64 {
		x, y := a.x-b.x, a.y-b.y
		return x*x + y*y
	}
	best := math.MaxFloat64
	var pick [3]center
	for i := 0; i < len(cs)-2; i++ {
		for j := i + 1; j < len(cs)-1; j++ {
			ij := sq(cs[i], cs[j])
			for k := j + 1; k < len(cs); k++ {
				if cs[k].size > cs[i].size*1.4 {
					break // sorted by size: all further ones differ too
				}
				// Sides squared, sorted: a ≤ b ≤ c. A right isosceles
				// triangle has c = 2a = 2b.
				s := [3]float64{ij, sq(cs[j], cs[k]), sq(cs[i], cs[k])}
				if s[0] > s[1] {
					s[0], s[1] = s[1], s[0]
				}
				if s[1] > s[2] {
					s[1], s[2] = s[2], s[1]
				}
				if s[0] > s[1] {
					s[0], s[1] = s[1], s[0]
				}
				d := math.Abs(s[2]-2*s[1]) + math.Abs(s[2]-2*s[0])
				if d < best {
					best = d
					pick = [3]center{cs[i], cs[j], cs[k]}
				}
			}
		}
	}
	if best == math.MaxFloat64 {
		return nil, nil, nil, fmt.Errorf("%w: finder patterns differ in size", ErrNotFound)
	}
	var fp [3]*detector.FinderPattern
	for n, c := range pick {
		fp[n] = detector.NewFinderPattern(c.x, c.y, c.size, c.count)
	}
	a, b, c := gozxing.ResultPoint_OrderBestPatterns(fp[0], fp[1], fp[2])
	bl, ok1 := a.(*detector.FinderPattern)
	tl, ok2 := b.(*detector.FinderPattern)
	tr, ok3 := c.(*detector.FinderPattern)
	if !ok1 || !ok2 || !ok3 {
		return nil, nil, nil, errors.New("qr: internal error: unexpected finder pattern type")
	}
	return bl, tl, tr, nil
}
