package web

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/batchpilot/batchpilot/consensus"
)

// The dashboard and API clients read a budget decision against the OpenAPI
// document: every reason the controller gives is in its enum, and it lists no
// other; the same for the fields of the decision's figures.
func TestOpenAPIListsEveryBudgetReasonAndFigure(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas struct {
				BudgetDecision struct {
					Properties struct {
						Reason struct {
							Enum []string `json:"enum"`
						} `json:"reason"`
						Figures struct {
							Properties map[string]json.RawMessage `json:"properties"`
						} `json:"figures"`
					} `json:"properties"`
				} `json:"BudgetDecision"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	enum := doc.Components.Schemas.BudgetDecision.Properties.Reason.Enum
	want := slices.Clone(consensus.BudgetReasons)
	slices.Sort(enum)
	slices.Sort(want)
	if !slices.Equal(enum, want) {
		t.Fatalf("OpenAPI BudgetDecision.reason enum %v; the controller's reasons are %v", enum, want)
	}

	// The figures a decision was made from: the document names every field
	// the API writes, and no other.
	var fields []string
	ft := reflect.TypeFor[consensus.BudgetFigures]()
	for i := range ft.NumField() {
		if name, _, _ := strings.Cut(ft.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			fields = append(fields, name)
		}
	}
	documented := slices.Sorted(maps.Keys(doc.Components.Schemas.BudgetDecision.Properties.Figures.Properties))
	slices.Sort(fields)
	if !slices.Equal(documented, fields) {
		t.Fatalf("OpenAPI BudgetDecision.figures properties %v; consensus.BudgetFigures writes %v", documented, fields)
	}
}
