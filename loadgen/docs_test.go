package loadgen

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/batchpilot/batchpilot/loadgen/sinksim"
)

// The scenario files in docs/loadtesting.md parse and plan as they are.
func TestDocumentedScenariosParse(t *testing.T) {
	b, err := os.ReadFile("../docs/loadtesting.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllStringSubmatch(string(b), -1)
	var loadgens, sinksims int
	for _, m := range blocks {
		block := m[1]
		if !strings.Contains(block, `"phases"`) {
			continue
		}
		if strings.Contains(block, `"scale"`) || strings.Contains(block, `"loop"`) {
			if _, err := sinksim.ParseScenario([]byte(block)); err != nil {
				t.Errorf("documented sinksim scenario: %v\n%s", err, block)
			}
			sinksims++
			continue
		}
		sc, err := ParseScenario([]byte(block))
		if err != nil {
			t.Errorf("documented scenario: %v\n%s", err, block)
			continue
		}
		if _, err := sc.plan(Phase{}, "http", nil, "doc"); err != nil {
			t.Errorf("documented scenario does not plan: %v\n%s", err, block)
		}
		loadgens++
	}
	if loadgens == 0 || sinksims == 0 {
		t.Errorf("found %d loadgen and %d sinksim scenarios in the docs, want some of each", loadgens, sinksims)
	}
}
