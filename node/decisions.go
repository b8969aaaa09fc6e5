package node

import "github.com/batchpilot/batchpilot/tuner"

// DecisionLog is a placeholder ring until the tuner's lands.
type DecisionLog struct{}

func NewDecisionLog(n int) *DecisionLog { return &DecisionLog{} }

func (n *Node) recordDecision(obs tuner.Observation, old int, d tuner.Decision, breaker string) {}
