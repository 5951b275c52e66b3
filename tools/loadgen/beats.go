package main

import (
	"math"
	"time"
)

// finishBeats fills in the heartbeat gaps and the phases: the longest
// stretch without a heartbeat on any connection, overall and in each phase
// it overlaps, and the answers of each phase (-sender).
func (g *gen) finishBeats(res *result, pubStart time.Time) {
	n := g.phaseCount()
	type window struct{ from, to int64 }
	wins := make([]window, n)
	phases := make([]phaseR, n)
	start := int64(math.MaxInt64) // not published: everything is before
	if !pubStart.IsZero() {
		start = pubStart.UnixNano()
	}
	wins[0] = window{math.MinInt64, start}
	phases[0] = phaseR{Name: "before publishing", EndS: 0}
	for i := 1; i < n; i++ {
		name, at := "publishing", time.Duration(0)
		if len(g.cfg.FaultSchedule) > 0 {
			name, at = g.cfg.FaultSchedule[i-1].Mode, g.cfg.FaultSchedule[i-1].At
		}
		w := window{start + int64(at), math.MaxInt64}
		phases[i] = phaseR{Name: name, StartS: round3(at.Seconds()), EndS: -1}
		if i < n-1 {
			next := g.cfg.FaultSchedule[i].At
			w.to = start + int64(next)
			phases[i].EndS = round3(next.Seconds())
		}
		wins[i] = w
	}
	h := newHist()
	b := &res.Beats
	var maxGap int64
	for _, s := range g.subs {
		if !s.connected {
			continue
		}
		for _, gp := range s.gaps {
			d := gp.to - gp.from
			h.add(time.Duration(d))
			b.Gaps++
			if d > maxGap {
				maxGap, b.MaxStream = d, s.idx
				if start != math.MaxInt64 {
					b.MaxAtS = round3(float64(gp.to-start) / 1e9)
				}
			}
			for i, w := range wins {
				if gp.from < w.to && gp.to > w.from {
					phases[i].GapCount++
					phases[i].MaxGapS = max(phases[i].MaxGapS, round3(float64(d)/1e9))
				}
			}
		}
	}
	for i := range phases {
		h := newHist()
		for _, s := range g.subs {
			if s.connected && i < len(s.phaseLat) && s.phaseLat[i] != nil {
				h.merge(s.phaseLat[i])
			}
		}
		if h.n > 0 {
			sum := h.summary()
			phases[i].LatencyMS = &sum
		}
	}
	b.MaxGapS = round3(float64(maxGap) / 1e9)
	if b.Gaps > 0 {
		b.P99GapS = round3(h.quantile(0.99) / 1000)
	}
	if g.answers != nil {
		for i := range phases {
			phases[i].Answers = classCounts(g.answers.phases[i])
		}
	}
	res.Phases = phases
}
