package web

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/batchpilot/batchpilot/consensus"
)

// The dashboard and API clients read a budget decision's reason against the
// enum of the OpenAPI document: every reason the controller gives is in it,
// and it lists no other.
func TestOpenAPIListsEveryBudgetReason(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas struct {
				BudgetDecision struct {
					Properties struct {
						Reason struct {
							Enum []string `json:"enum"`
						} `json:"reason"`
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
}
