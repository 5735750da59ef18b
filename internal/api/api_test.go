package api

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestCatalogueDocumented keeps docs/OPERATIONS.md in step with the error
// catalogue: every error's link must lead somewhere.
func TestCatalogueDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(Catalogue) < 20 {
		t.Fatalf("catalogue has %d errors", len(Catalogue))
	}
	seen := map[int]bool{}
	for _, e := range Catalogue {
		if seen[e.Code] {
			t.Errorf("code %d used twice", e.Code)
		}
		seen[e.Code] = true
		if e.Code/100 != e.HTTP {
			t.Errorf("code %d does not start with its HTTP status %d", e.Code, e.HTTP)
		}
		if !strings.Contains(string(doc), `id="error-`+strconv.Itoa(e.Code)+`"`) {
			t.Errorf("error %d (%s) is not in docs/OPERATIONS.md", e.Code, e.Message)
		}
	}
}
