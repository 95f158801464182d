package daemon

import (
	"fmt"
	"io"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/engine"
	"github.com/banner-mta/banner/banner/logwatch"
)

// ErrPattern is wrapped by TestLog's error when the patterns do not
// compile (a mistake of the caller, not of the log).
var ErrPattern = fmt.Errorf("invalid pattern")

// TestLogResult is what `banner test-log` reports: what the patterns
// matched, and the bans the engine would have issued, under Engine.
type TestLogResult struct {
	Report *logwatch.Report
	Bans   []banner.Ban
	Engine engine.Config
}

// TestLog runs cfg's log patterns (or, if pattern is not empty, that one
// regular expression alone) over in, and replays the matches through the
// engine's decisions with each line's time as the clock, as the daemon
// would have decided them. top is how many addresses per pattern the
// report lists (0: all). Nothing is changed anywhere.
func TestLog(cfg *config.File, pattern string, in io.Reader, top int) (TestLogResult, error) {
	mcfg := cfg.MatcherConfig()
	if pattern != "" {
		mcfg.Builtin = nil
		mcfg.Patterns = []logwatch.Pattern{{Name: "cmdline", Regex: pattern}}
	}
	m, err := logwatch.NewMatcher(mcfg)
	if err != nil {
		return TestLogResult{}, fmt.Errorf("%w: %w", ErrPattern, err)
	}
	var events []banner.Event
	report, err := logwatch.AnalyzeTop(in, m, func(mt logwatch.Match) {
		events = append(events, mt.Event())
	}, top)
	res := TestLogResult{Report: report, Engine: cfg.EngineConfig(nil)}
	if err != nil {
		return res, err
	}
	res.Bans = engine.Simulate(res.Engine, events)
	return res, nil
}
